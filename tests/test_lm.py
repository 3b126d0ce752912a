"""The lm engine (any causal language model in transformers; opt is its alias) offline, on tiny random
configurations of four architectures with tokenizers learned from the shipped text: whole runs through the
CLI with a stop and a resume, a hub model by name from a Hugging Face cache laid out as the hub writes it,
the position limit, a model's own generation_config, and LoRA adapters (peft)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN, run_loop, run_process

from collapse_tui.cli import main
from collapse_tui.engines.lm import LORA_MISSING, LMEngine
from collapse_tui.engines.lm_models import tiny_config, train_tokenizer

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ARCHS = ("opt", "gpt2", "gpt_neox", "llama")
# tiny: hidden 32, 2 layers, a 300-token vocabulary, 16-token blocks of 3,000 characters of WikiText-2
SMALL = dict(max_chars=3000, block_size=16, vocab_size=300, tiny_hidden=32, tiny_heads=2, tiny_layers=2)
FIT = dict(epochs=1, batch=16, num_beams=2, repetition_penalty=3.0)
TEXT = dict(train=WIKI_TRAIN, test=WIKI_TEST)
REPO = "tiny-org/tiny-llama"
POSITIONS = 40  # the cached model's max_position_embeddings: blocks of 16 fit (32 positions), of 24 do not


def preset(path: Path, engine: str, generations: int = 2, **keys: object) -> Path:
    """A 1-seed preset of engine with these [engine] keys (strings, numbers)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in {**TEXT, **SMALL, **FIT, **keys}.items()]
    experiment = f'engine = "{engine}"\ngenerations = {generations}\nseeds = 1\ndevice = "cpu"\n'
    path.write_text(
        f'[experiment]\ndescription = "test"\n{experiment}'
        '[data]\nmode = "replace"\ndetector_auc = false\n[engine]\n' + "\n".join(lines) + "\n"
    )
    return path


def cli_run(runs: Path, preset_path: Path) -> Path:
    assert main(["--batch", str(preset_path), "--runs-dir", str(runs)]) == 0
    (run,) = runs.iterdir()
    return run


def engine(**keys: object) -> LMEngine:
    return LMEngine({**TEXT, **SMALL, **FIT, **keys})


# --- each architecture through whole runs -----------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_runs_and_resumes_to_the_uninterrupted_rows(arch, tmp_path):
    """Two generations straight through the CLI, and stopped after generation 0 and resumed: the same rows.
    For OPT the straight run is engine "opt" and the stopped one "lm": the alias gives the same rows.
    Generation 0's test perplexity is the saved model's own loss (transformers' labels=) on the test blocks."""
    from transformers import AutoModelForCausalLM

    keys = dict(model="tiny", tiny_arch=arch)  # the fast decoder: opt_beam for OPT, lm_decode for the others
    whole = cli_run(tmp_path / "whole", preset(tmp_path / "whole.toml", "opt" if arch == "opt" else "lm", **keys))
    part, state = run_loop(tmp_path / "part", str(preset(tmp_path / "part.toml", "lm", **keys)), [], stop_after=0)
    assert state == "stopped" and len(part.metrics_path.read_text().splitlines()) == 1
    assert main(["--batch", "--resume", str(part.path)]) == 0
    rows = [json.loads(r) for r in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    assert part.metrics_path.read_text() == (whole / "metrics.jsonl").read_text()

    saved = whole / "state" / "reference-0"
    assert json.loads((saved / "config.json").read_text())["model_type"] == arch
    model = AutoModelForCausalLM.from_pretrained(saved).eval()
    test = torch.from_numpy(engine(**keys).dataset().test.astype(np.int64))
    with torch.no_grad():
        losses = [float(model(input_ids=b[None], labels=b[None]).loss) for b in test]
    assert rows[0]["perplexity"] == pytest.approx(float(np.exp(np.mean(losses))), rel=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_tokenizers_carry_their_familys_special_tokens(arch):
    """GPT-2 and GPT-NeoX: one end-of-text token and no pad (generate is given it as pad); Llama: a bos
    before every line, as its tokenizer does; OPT: the tiny tokenizer it always had."""
    tok = engine(model="tiny", tiny_arch=arch).dataset().tokenizer
    ids = tok(["a line", "another"])["input_ids"]
    specials = (tok.pad_token, tok.bos_token, tok.eos_token)
    assert (
        specials
        == {
            "opt": ("<pad>", "</s>", "</s>"),
            "gpt2": (None, "<|endoftext|>", "<|endoftext|>"),
            "gpt_neox": (None, "<|endoftext|>", "<|endoftext|>"),
            "llama": (None, "<s>", "</s>"),
        }[arch]
    )
    assert [i[0] == tok.bos_token_id for i in ids] == [arch == "llama"] * 2


# --- a hub model by name from the Hugging Face cache ----------------------------------------------------
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hub_cache(hf_home: Path, repo: str, folder: Path) -> Path:
    """folder's files in HF_HOME/hub as huggingface_hub writes a download: blobs named by their hash (sha256 for
    LFS files such as safetensors, the git blob id for the rest), snapshots/<commit>/ holding relative links
    to them, refs/main naming the commit. The snapshot folder."""
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = base / "snapshots" / commit
    for d in (base / "blobs", snapshot, base / "refs"):
        d.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        blob = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else git_blob_sha1(data)
        (base / "blobs" / blob).write_bytes(data)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", blob))
    (base / "refs" / "main").write_text(commit)  # no newline, as the hub writes it
    return snapshot


# a model whose own generation_config samples and bans repeated bigrams, with two end-of-text tokens
ODD_GENERATION = {"do_sample": True, "temperature": 0.7, "top_k": 5, "no_repeat_ngram_size": 2, "eos_token_id": [2, 0]}


def hub_env(home: Path) -> dict[str, str]:
    """This environment with HF_HOME = home and the hub offline (no other cache folder set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    return env | {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> tuple[Path, Path]:
    """(HF_HOME holding REPO, a random tiny Llama with a tokenizer learned on the training text, in its hub
    cache; the same files in a plain folder)."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hub")
    lines = Path(WIKI_TRAIN).read_text(encoding="utf-8")[: SMALL["max_chars"]].splitlines(keepends=True)
    tok = train_tokenizer(lines, SMALL["vocab_size"], "llama")
    p = engine(model="tiny", tiny_arch="llama").params
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(tiny_config(p, tok, POSITIONS))
    model.generation_config.update(**ODD_GENERATION)
    plain = root / "plain"
    model.save_pretrained(plain)
    tok.save_pretrained(plain)
    write_hub_cache(root / "home", REPO, plain)
    return root / "home", plain


def test_the_cache_is_laid_out_as_the_hub_writes_it(hub_home):
    """huggingface_hub's own reader finds the repository, its main revision and every file."""
    from huggingface_hub import scan_cache_dir

    home, plain = hub_home
    (repo,) = scan_cache_dir(home / "hub").repos
    (revision,) = repo.revisions
    assert repo.repo_id == REPO and revision.refs == {"main"}
    assert sorted(f.file_name for f in revision.files) == sorted(f.name for f in plain.iterdir())


def test_an_uncached_hub_model_offline_says_what_to_download(hub_home, tmp_path):
    home, _ = hub_home
    env = hub_env(home)
    args = ["--batch", str(preset(tmp_path / "p.toml", "lm", model="tiny-org/absent")), "--runs-dir", "runs"]
    done = run_process(
        [sys.executable, "-m", "collapse_tui", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"collapse-tui: engine.model: tiny-org/absent is not in the Hugging Face cache ({home / 'hub'})"
    )
    assert "download tiny-org/absent" in done.stderr and not (tmp_path / "runs").exists()


@pytest.fixture
def cache_here(hub_home, monkeypatch, no_hub):
    """This process reads hub_home's cache (as HF_HOME = hub_home[0] makes a new one do: the uncached test checks
    that); the hub itself is a closed local port (no_hub)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_home[0] / "hub"))
    return hub_home


def test_a_cached_hub_model_runs_by_name_offline_as_its_folder_does(cache_here, monkeypatch, tmp_path):
    """model = "org/name" with the hub cache holding it and HF_HUB_OFFLINE=1: a generation through the CLI;
    its row equals that of the same model given as a local folder."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    keys = dict(generations=1, generator="hf")
    by_name = cli_run(tmp_path / "name", preset(tmp_path / "name.toml", "lm", model=REPO, **keys))
    by_folder = cli_run(tmp_path / "folder", preset(tmp_path / "folder.toml", "lm", model=str(cache_here[1]), **keys))
    rows = (by_name / "metrics.jsonl").read_text()
    assert len(rows.splitlines()) == 1 and rows == (by_folder / "metrics.jsonl").read_text()


def test_a_cached_model_needs_no_hub_and_an_uncached_one_does(cache_here):
    assert engine(model=REPO).hub_needs() == []
    assert engine(model=REPO).preflight() == []  # the hub cannot be reached, and nothing needs it
    assert engine(model="tiny-org/absent").hub_needs() == [("engine.model", "the model tiny-org/absent")]


@pytest.mark.parametrize("where", ["cache", "folder"])
def test_blocks_past_the_models_positions_are_refused_before_a_run_directory(cache_here, where, tmp_path, capsys):
    model = REPO if where == "cache" else str(cache_here[1])
    runs = tmp_path / "runs"
    assert (
        main(["--batch", str(preset(tmp_path / "p.toml", "lm", model=model, block_size=24)), "--runs-dir", str(runs)])
        == 2
    )
    err = capsys.readouterr().err
    assert err == (
        "collapse-tui: engine.block_size: a block and its continuation take 48 positions, more than the model's "
        f"{POSITIONS} (max_position_embeddings); set engine.block_size to at most {POSITIONS // 2}\n"
    )
    assert not runs.exists()


def test_the_engines_keys_not_the_models_generation_config_decide_the_continuations(hub_home):
    """The cached model's generation_config samples and bans repeated bigrams: the engine generates by its own
    keys (beam search, penalty 3), keeping the model's two end-of-text tokens, which are banned until the
    last token, as transformers' generate does with exactly those settings."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    _, plain = hub_home
    e = engine(model=str(plain), generator="hf", num_beams=3)
    model = e.new_model()
    assert e.eos_ids(model) == [2, 0] and not model.generation_config.do_sample
    prompts = e.dataset().train[:6]
    ours = e.continue_blocks(model, prompts, seed=0)
    ids = torch.from_numpy(prompts.astype(np.int64))
    plain_model = AutoModelForCausalLM.from_pretrained(plain).eval()
    settings = dict(num_beams=3, min_new_tokens=16, max_new_tokens=16, repetition_penalty=3.0, do_sample=False)
    config = GenerationConfig(**settings, eos_token_id=[2, 0], pad_token_id=2, bos_token_id=1)
    torch.manual_seed(0)
    with torch.no_grad():
        theirs = plain_model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        own = plain_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, min_new_tokens=16)
    assert np.array_equal(ours, theirs[:, 16:].numpy()) and not np.isin(ours, [2, 0]).any()
    assert not np.array_equal(ours, own[:, 16:].numpy())  # what the model's own config would have done


# --- LoRA ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["opt", "gpt2"])
def test_lora_trains_the_adapters_alone_and_a_saved_generation_loads_back(arch, tmp_path):
    """lora_rank 4 on the attention (OPT's q_proj and v_proj: 2 x 4 x (32 + 32) weights a layer; GPT-2's fused
    c_attn, a Conv1D: 4 x (32 + 96)): after a generation's fit only those changed, every starting weight is
    as it was; saved (safetensors, the adapters alone) and loaded, the model is the same, weight for weight."""
    pytest.importorskip("peft")
    e = engine(model="tiny", tiny_arch=arch, lora_rank=4, lr=1e-2)
    start = {k: v.clone() for k, v in e.new_model().state_dict().items()}
    model = e.fit(e.dataset().train[None], [np.random.default_rng(0)], lambda *a: None).model
    after = model.state_dict()
    assert after.keys() == start.keys()
    adapters = {k for k in after if "lora_" in k}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * {"opt": 2 * 4 * (32 + 32), "gpt2": 4 * (32 + 96)}[arch]  # 2 layers
    assert all(torch.equal(after[k], start[k]) for k in after.keys() - adapters)
    assert all(not torch.equal(after[k], start[k]) for k in adapters)  # B starts at 0, A at its seeded init

    (saved := tmp_path / "model").mkdir()
    e.save(model, saved)
    assert {f.suffix for f in saved.iterdir()} <= {".json", ".safetensors", ".md"}  # no pickle
    loaded = engine(model="tiny", tiny_arch=arch, lora_rank=4).load(saved)
    back = loaded.state_dict()
    assert back.keys() == after.keys() and all(torch.equal(back[k], after[k]) for k in after)
    test = e.dataset().test
    np.testing.assert_array_equal(e.block_nll(loaded, test), e.block_nll(model, test))


def test_lora_continuations_by_the_fast_search_are_generates(tmp_path):
    """The fast beam search runs the model's own attention modules, so the adapters act there too: the same
    tokens as transformers' generate (fp32) once the adapters have moved the model."""
    pytest.importorskip("peft")
    e = engine(model="tiny", lora_rank=4, lr=1e-2, num_beams=3)
    model = e.fit(e.dataset().train[None], [np.random.default_rng(0)], lambda *a: None).model
    prompts = e.dataset().train[:8]
    fast = e.continue_blocks(model, prompts, seed=0)
    e.params = dataclasses.replace(e.params, generator="hf")
    hf = e.continue_blocks(model, prompts, seed=0)
    assert np.array_equal(fast, hf)


def test_lora_without_peft_is_one_line_before_a_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if peft were not installed
    runs = tmp_path / "runs"
    assert (
        main(["--batch", str(preset(tmp_path / "p.toml", "lm", model="tiny", lora_rank=4)), "--runs-dir", str(runs)])
        == 2
    )
    assert capsys.readouterr().err == f"collapse-tui: {LORA_MISSING}\n" and not runs.exists()

"""Bad presets and overrides: exit 2, one line naming the problem, no traceback, no run directory."""

from __future__ import annotations

import os
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import run_process

from collapse_tui.cli import main
from collapse_tui.preset_files import builtin_presets, load_preset
from collapse_tui.sweep import builtin_sweeps
from collapse_tui.validation import validate

GOOD = """
[experiment]
engine = "gaussian"
generations = 3
seeds = [0, 1]
[data]
mode = "replace"
[engine]
samples = 10
"""

# (preset text or bytes, extra CLI args, words the one-line message must contain)
BAD = {
    "toml-syntax": ("[experiment\nengine = 'gaussian'\n", [], ["invalid TOML", "line 1"]),
    "duplicate-key": ("[experiment]\nengine = 'gaussian'\nengine = 'gmm'\n", [], ["invalid TOML"]),
    "non-utf8": (b"[experiment]\nengine = '\xff\xfe'\n", [], ["not UTF-8", "0xff"]),
    "wrong-type": (
        GOOD.replace("generations = 3", 'generations = "five"'),
        [],
        ["experiment.generations", "'five'", "integer"],
    ),
    "float-for-int": (GOOD.replace("generations = 3", "generations = 2.5"), [], ["experiment.generations", "2.5"]),
    "bool-for-int": (GOOD.replace("samples = 10", "samples = true"), [], ["engine.samples", "True"]),
    "out-of-range": (GOOD.replace("generations = 3", "generations = 0"), [], ["experiment.generations", ">= 1"]),
    "too-few-samples": (GOOD.replace("samples = 10", "samples = 1"), [], ["engine.samples", ">= 2"]),
    "fraction-range": (GOOD + "\n", ["--set", "data.keep_fraction=1.5"], ["data.keep_fraction", "1.5", "[0, 1]"]),
    "unknown-key": (GOOD.replace('mode = "replace"', 'mdoe = "replace"'), [], ["data.mdoe", "did you mean data.mode"]),
    "unknown-section": (GOOD + "[model]\nx = 1\n", [], ["[model]", "unknown section"]),
    "section-not-table": ("experiment = 3\n", [], ["experiment", "expected a table"]),
    "unknown-engine": (GOOD.replace('"gaussian"', '"gausian"'), [], ["experiment.engine", "did you mean gaussian"]),
    "missing-engine": ("[experiment]\ngenerations = 3\n", [], ["experiment.engine", "missing"]),
    "unknown-mode": (GOOD.replace('"replace"', '"acumulate"'), [], ["data.mode", "did you mean accumulate"]),
    "unknown-filter": (GOOD + "", ["--set", "data.filter=best"], ["data.filter", "'best'"]),
    "other-engines-key": (
        GOOD.replace("samples = 10", "components = 2"),
        [],
        ["engine.components", "belongs to engine 'gmm'"],
    ),
    "seeds-empty": (GOOD.replace("seeds = [0, 1]", "seeds = []"), [], ["experiment.seeds"]),
    "seeds-duplicate": (GOOD.replace("seeds = [0, 1]", "seeds = [1, 1]"), [], ["experiment.seeds", "distinct"]),
    "seeds-negative": (GOOD.replace("seeds = [0, 1]", "seeds = [0, -1]"), [], ["experiment.seeds"]),
    "bad-device": (GOOD + "", ["--set", "experiment.device=gpu"], ["experiment.device", "'gpu'"]),
    "name-escapes": (
        GOOD.replace("[experiment]", '[experiment]\nname = "../../etc"'),
        [],
        ["experiment.name", "../../etc"],
    ),
    "set-no-equals": (GOOD, ["--set", "experiment.generations"], ["--set", "SECTION.KEY=VALUE"]),
    "set-no-section": (GOOD, ["--set", "generations=3"], ["--set", "SECTION.KEY=VALUE"]),
    "set-bad-value": (GOOD, ["--set", "engine.samples=abc"], ["engine.samples", "'abc'"]),
    "set-unknown-key": (GOOD, ["--set", "engine.sample=5"], ["engine.sample", "did you mean engine.samples"]),
    "filter-keep-zero": (GOOD, ["--set", "data.filter_keep=0"], ["data.filter_keep", "[0.01, 1]"]),
}


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_preset_exits_2_with_one_line(case, write_preset, tmp_path, capsys):
    text, extra, words = BAD[case]
    path = write_preset(text)
    runs = tmp_path / "runs"
    code, err = _run_cli(["--batch", str(path), "--runs-dir", str(runs), *extra], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("collapse-tui: "), err
    for word in words:
        assert word in err, (word, err)
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--batch", "{tmp}"], ["is a directory"]),
        (["--batch", "{tmp}/missing.toml"], ["missing.toml", "no such preset file"]),
        (["--batch", "gmm-quik"], ["did you mean gmm-quick"]),
        (["--batch"], ["--batch needs a PRESET"]),
        (["--batch", "--resume", "{tmp}"], ["not a run directory"]),
        (["--batch", "gmm", "--resume", "{tmp}"], ["--resume takes the run directory alone"]),
        (["--batch", "gmm", "--frobnicate"], ["unrecognized arguments: --frobnicate"]),
        (["presets", "extra"], ["presets: takes no arguments"]),
    ],
)
def test_bad_command_lines(args, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run_cli([a.replace("{tmp}", str(tmp_path)) for a in args], capsys)
    assert code == 2 and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not (tmp_path / "runs").exists()


def test_bad_preset_through_the_console_script_has_no_traceback(write_preset, tmp_path):
    path = write_preset(GOOD.replace("generations = 3", 'generations = "five"'))
    proc = run_process(
        [sys.executable, "-m", "collapse_tui", "--batch", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr == "collapse-tui: experiment.generations: expected an integer >= 1, got 'five'\n"
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_a_missing_package_is_named_before_a_run_directory_exists(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "from collapse_tui.cli import main\n"
        f"sys.exit(main(['--batch', 'vae-quick', '--runs-dir', {str(tmp_path / 'runs')!r}]))"
    )
    proc = run_process([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("collapse-tui: engine 'vae' needs torch, not installed") and ".[torch]" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_an_unreachable_hub_is_found_before_a_run_directory_exists(tmp_path):
    """opt-tiny without local text needs wikitext from the hub: a refused connection (HF_ENDPOINT at a
    closed local port) gives one line at once, naming the keys to set, and no retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_ENDPOINT": "http://127.0.0.1:9"}
    args = [sys.executable, "-m", "collapse_tui", "--batch", "opt-tiny", "--runs-dir", str(tmp_path / "runs")]
    start = time.monotonic()
    proc = run_process(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("collapse-tui: engine.dataset: wikitext/wikitext-2-raw-v1 comes from the Hugging")
    assert "engine.text_dir" in proc.stderr and "HF_HUB_OFFLINE=1" in proc.stderr
    assert time.monotonic() - start < 20 and not (tmp_path / "runs").exists()
    # with local text, the same preset passes the check (and the tiny model needs no hub)
    from collapse_tui.preflight import check_runnable

    text = Path(__file__).with_name("data") / "wikitext-2"
    check_runnable(
        load_preset(
            "opt-tiny", [f"engine.train={str(text / 'valid.txt')!r}", f"engine.test={str(text / 'test.txt')!r}"]
        )
    )


def test_resolved_preset_loads_back_to_the_same_config(write_preset):
    cfg = load_preset(str(write_preset(GOOD)), ["data.mode=keep", "experiment.seeds=4"])
    assert cfg.data.mode == "keep" and cfg.seeds == [0, 1, 2, 3]
    assert cfg.engine == {"dim": 1, "samples": 10, "test_samples": 10000, "estimator": "unbiased"}  # defaults filled
    again = validate(tomllib.loads(cfg.to_toml()))
    assert again == cfg


def test_set_reads_toml_values_and_bare_strings(write_preset):
    cfg = load_preset(
        str(write_preset(GOOD)), ['data.mode="accumulate"', "experiment.seeds=[3,5]", "data.keep_fraction=0.25"]
    )
    assert (cfg.data.mode, cfg.seeds, cfg.data.keep_fraction) == ("accumulate", [3, 5], 0.25)
    assert load_preset(str(write_preset(GOOD)), ["data.mode=fresh"]).data.mode == "fresh"


def test_every_builtin_preset_is_valid_and_listed(capsys):
    names = builtin_presets()
    assert {"gaussian", "gaussian-quick", "gmm", "gmm-quick", "gmm-accumulate"} <= set(names)
    assert main(["presets"]) == 0
    *lines, engines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted([*names, *builtin_sweeps()])  # sweeps: test_sweep.py
    assert engines == "engines: categorical, gaussian, gmm, linreg, lm, ngram, opt, vae"
    for name in names:
        cfg = load_preset(name)
        assert cfg.name == name and cfg.experiment["description"]


def test_builtin_presets_are_found_from_any_folder(tmp_path):
    proc = run_process([sys.executable, "-m", "collapse_tui", "presets"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "gmm-accumulate" in proc.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("collapse-tui 0.")


def test_a_path_that_is_no_builtin_name_is_read_as_a_file(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gmm").mkdir()  # a folder named like a built-in preset is not taken for it
    code, err = _run_cli(["--batch", "gmm"], capsys)
    assert code == 2 and "gmm: is a directory" in err


def test_the_gmm_description_counts_generations_as_its_table_does():
    cfg = load_preset("gmm")  # generations = 2001 models: generation 0 (real data) .. 2000
    assert f"generations 0..{cfg.generations - 1}" in cfg.experiment["description"]

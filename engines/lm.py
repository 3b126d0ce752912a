"""Any causal language model in transformers on WikiText-2, the paper's OPT-125m by default (Nature,
section 4): each generation fine-tunes the same starting weights on the last generation's text, then
continues every block of the ORIGINAL training set with beam search; those continuations are the next
generation's training blocks. Engine "lm"; "opt" is the same engine under the name the opt presets use.

model: a hub id (read from the Hugging Face cache, with no network call once cached) or a local folder,
loaded by AutoModelForCausalLM / AutoTokenizer, never with remote code; or "tiny": a small config of
tiny_arch (OPT, GPT-2, GPT-NeoX, Llama) trained from scratch with a byte-level BPE tokenizer learned
offline on the training text, with that family's special tokens (tests, CPU demos). The model's own
generation_config (sampling defaults, banned n-grams) is replaced by the engine's keys; its end-of-text
tokens are kept. lora_rank > 0 trains LoRA adapters (peft) and leaves the starting weights as they are.
Data: wikitext-2-raw-v1 from the hub, or local text files (one per split, or a folder holding
train.txt/valid.txt/test.txt), tokenised line by line, concatenated and cut into block_size blocks with
the remainder dropped, as the official run_clm code does.

Metrics per generation (model n, its generated blocks, the generation-0 model as reference):
- perplexity / nll: on the real test blocks, exp(mean NLL per predicted token).
- seq_ppl_q05 .. seq_ppl_q95, seq_ppl_mean, seq_ppl_hist: per-sequence perplexity of the generated blocks
  (the next generation's training data) under the reference model: the paper's figure.
- variance: variance of the log of those per-sequence perplexities.
- distinct_1/2/3: unique n-grams / all n-grams of the generated tokens (n-grams inside a block).
- rep4: share of 4-grams in a block that repeat an earlier 4-gram of the same block (mean over blocks).
- rare_mass: share of generated tokens that are rare in the real training data (the tokens making up the
  least frequent rare_tail share of the real tokens; real data sit at about rare_tail).
torch and transformers are imported inside the methods, never when a preset is validated.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .base import NOTE, DataError, Fitted, Generated, Metric, Param, Report, TorchEngine, held_apart
from .cross_prompt import CROSS_PROMPT_METRICS, cross_prompt_metrics
from .hub import download_command, hub_problems, offline
from .lm_models import (
    TINY_TOKENS,
    cached_model,
    encode_lines,
    hub_cache,
    model_config,
    quiet_peft,
    tiny_config,
    train_tokenizer,
)
from .lm_train import Schedule, Trained, train_causal_lm
from .text_data import (
    HUB_ALTERNATIVE,
    TextData,
    TextSource,
    group_blocks,
    hub_text,
    prompt_indices,
    rare_tokens,
    read_splits,
    split_blocks,
    text_path_problems,
    text_source_params,
    with_prompt,
)
from .text_metrics import METRICS, TEXT_HEADLINE, hashed_ngrams, seq_ppl_stats, text_metrics

INIT_SEED = 1234  # the tiny model's starting weights: the same for every generation, seed and run
EVAL_MAX = 5000  # generated blocks measured per generation
PATH_KEYS = ("text_dir", "train", "valid", "test")
LOCAL = ("/", ".", "~")  # a model named so is a folder here, never a hub id
START_FILE = "start.safetensors"  # beside a tiny model's weights: the pretrained ones every generation starts from
ADAPTER_CONFIG = "adapter_config.json"  # peft's: a saved model that is LoRA adapters on the starting weights
LORA_MISSING = (
    "engine.lora_rank: LoRA needs peft, not installed (pip install 'collapse-tui[lora]'); "
    "or set engine.lora_rank = 0 (full fine-tuning)"
)


def _quiet_hugging_face() -> None:
    """Engines never print: no progress bars or info logs from transformers (e.g. when saving)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def local_path(model: str) -> bool:
    """model names a folder here: one that exists, or a path (/, ., ~) that should."""
    return model.startswith(LOCAL) or Path(model).expanduser().exists()


class LMEngine(TextSource, TorchEngine):
    name = "lm"
    PATH_KEYS = PATH_KEYS
    preview_kind = "text"
    figures = "collapse_tui.engines.figures.opt"
    METRICS = {**METRICS, **CROSS_PROMPT_METRICS}
    HEADLINE = TEXT_HEADLINE
    DISTANCE = Metric("perplexity of the other chain's text under this chain's model", "per token", log=True)
    can_score = True
    requires = ("torch", "transformers", "tokenizers", "safetensors")
    mitigations = frozenset({"l2", "ewc", "distill", "real_weight", "detector"})
    PARAMS = {
        "model": Param(
            "facebook/opt-125m",
            str,
            'hub id, local folder (absolute or relative to the working folder), or "tiny" (small model from scratch)',
        ),
        **text_source_params(valid=True),
        "valid_fraction": Param(0.1, float, "no validation text: share of training blocks held out", 0, 0.5),
        "block_size": Param(64, int, "tokens per block (training example)", min=2, max=4096),
        "vocab_size": Param(2000, int, "tiny: BPE vocabulary learned on the training text", min=300, max=65536),
        "tiny_layers": Param(2, int, "tiny: decoder layers", min=1, max=48),
        "tiny_hidden": Param(64, int, "tiny: hidden size", min=8, max=4096),
        "tiny_heads": Param(4, int, "tiny: attention heads (divide tiny_hidden)", min=1, max=64),
        "tiny_arch": Param("opt", str, "tiny: the architecture built from scratch", choices=tuple(TINY_TOKENS)),
        "pretrain_epochs": Param(
            0,
            int,
            "tiny: first train the seeded init this many epochs on the real training blocks, once per run "
            "(stored with every saved model); every generation then fine-tunes from those weights (0: from the init)",
            min=0,
        ),
        "pretrain_lr": Param(
            5e-3, float, "tiny: pretraining's peak learning rate (cosine to lr_min)", min=0, min_exclusive=True
        ),
        "epochs": Param(5, int, "training epochs per generation", min=1),
        "batch": Param(128, int, "blocks per optimizer step", min=1),
        "lr": Param(2e-5, float, "AdamW peak learning rate", min=0, min_exclusive=True),
        "lora_rank": Param(
            0,
            int,
            "LoRA adapters of this rank on the attention train, the starting weights stay (needs peft: the [lora] "
            "extra); 0: every weight trains",
            min=0,
            max=4096,
        ),
        "lora_alpha": Param(0.0, float, "LoRA's scale numerator alpha (0: twice lora_rank)", min=0),
        "lr_min": Param(1e-6, float, "cosine schedule's floor", min=0),
        "weight_decay": Param(0.0, float, "AdamW weight decay", min=0),
        "warmup_steps": Param(0, int, "linear warmup steps before the cosine", min=0),
        "schedule": Param(
            "step",
            str,
            "cosine from lr to lr_min over the optimizer steps (step), or a step per epoch as the official code's "
            "CosineAnnealingLR(T_max=epochs) (epoch)",
            choices=("step", "epoch"),
        ),
        "prompts": Param(
            "original",
            str,
            "what the synthetic data continue: the original real training blocks (original), or the generation's "
            "own training set, as the official code does (train: from generation 1 on, the last one's output)",
            choices=("original", "train"),
        ),
        "checkpoint": Param(
            "best",
            str,
            "the weights that generate and are tested: the epoch with the best validation loss (best, the paper's "
            "text) or the last epoch (last, what the official code's in-memory model is)",
            choices=("best", "last"),
        ),
        "blocking": Param(
            "whole",
            str,
            "how text becomes blocks: each split concatenated whole (whole), or as the official code's "
            "map(batched=True, num_proc=4): 4 shards of rows, 1000 rows a batch in each, each batch's remainder "
            "dropped (official)",
            choices=("whole", "official"),
        ),
        "num_beams": Param(5, int, "beam search width for the synthetic data", min=1, max=64),
        "new_tokens": Param(0, int, "new tokens per continuation (0: block_size; must equal block_size)", min=0),
        "repetition_penalty": Param(3.0, float, "generate's repetition_penalty (1.0: none)", min=0, min_exclusive=True),
        "do_sample": Param(False, bool, "sample (with beams: beam sampling) instead of deterministic beam search"),
        "temperature": Param(1.0, float, "do_sample: temperature", min=0, min_exclusive=True),
        "top_k": Param(0, int, "do_sample: keep the k likeliest tokens (0: all)", min=0),
        "top_p": Param(1.0, float, "do_sample: nucleus top-p", min=0, max=1, min_exclusive=True),
        "min_p": Param(
            0.0, float, "do_sample: drop tokens below min_p x the likeliest one's probability (0: none)", 0, 1
        ),
        "generator": Param(
            "fast",
            str,
            "fast: the engine's decoder (generate's tokens; generate itself for a model whose cache it cannot "
            "drive, said in the log); hf: transformers' generate",
            choices=("fast", "hf"),
        ),
        "gen_batch": Param(
            512, int, "prompts per beam search batch (its KV cache: ~6 GB in bf16 for OPT-125m at 512, 5 beams)", min=1
        ),
        "eval_batch": Param(256, int, "blocks per scoring forward pass", min=1),
        "precision": Param("auto", str, "auto: bf16 on a GPU that has it, else fp32", choices=("auto", "fp32", "bf16")),
        "compile": Param(
            "auto", str, "torch.compile the training forward (auto: on CUDA)", choices=("auto", "on", "off")
        ),
        "rare_tail": Param(0.1, float, "rare tokens: the least frequent ones making up this share", 0, 1),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Engine's params, device, train
        super().__init__(*args, **kwargs)
        self._data: TextData | None = None
        self._start: dict[str, Any] | None = None  # starting weights of a pretrained model
        self._start_state: dict[str, Any] | None = None  # the tiny model's pretrained weights (pretrain_epochs)
        self._told: set[str] = set()  # why generate decodes instead of the fast decoder, said in the log

    # --- parameters and data ----------------------------------------------------------------------
    @staticmethod
    def check_params(p: Any) -> None:
        if p.new_tokens not in (0, p.block_size):
            raise DataError(
                f"engine.new_tokens: the synthetic blocks replace real ones, so it must equal block_size "
                f"({p.block_size}) or be 0, got {p.new_tokens}"
            )
        if p.pretrain_epochs and p.model != "tiny":
            raise DataError("engine.pretrain_epochs: only the tiny model is pretrained here; set it to 0")
        if p.model == "tiny" and p.tiny_hidden % p.tiny_heads:
            raise DataError(f"engine.tiny_heads: {p.tiny_heads} does not divide tiny_hidden")
        if p.lr_min > p.lr:
            raise DataError(f"engine.lr_min: {p.lr_min} is above lr {p.lr}")

    def hub_needs(self) -> list[tuple[str, str]]:
        """A model named by a path (or a folder that exists) is local: preflight says when it is missing."""
        p = self.params
        needs = []
        if hub_text(p, PATH_KEYS):
            needs.append(("engine.dataset", f"wikitext/{p.dataset}"))
        if p.model != "tiny" and not local_path(p.model) and cached_model(p.model) is None:
            needs.append(("engine.model", f"the model {p.model}"))
        return needs

    def preflight(self) -> list[str]:
        p = self.params
        lines = []
        if p.lora_rank and importlib.util.find_spec("peft") is None:
            lines.append(LORA_MISSING)
        if p.model != "tiny" and p.model.startswith(LOCAL) and not Path(p.model).expanduser().exists():
            lines.append(f"engine.model: no folder {p.model}")
        needs = self.hub_needs()
        if offline() and ("engine.model", f"the model {p.model}") in needs:
            lines.append(
                f"engine.model: {p.model} is not in the Hugging Face cache ({hub_cache()}) and HF_HUB_OFFLINE "
                f"is set; download it once ({download_command(p.model).replace(' --local-dir DIR', '')}), or "
                'into a folder and set engine.model to it, or set engine.model = "tiny"'
            )
        model = (
            f"download it ({download_command(p.model)}) and set engine.model to that folder, "
            'or set engine.model = "tiny"'
        )
        hub = hub_problems(needs, {"engine.dataset": HUB_ALTERNATIVE, "engine.model": model})
        if config := model_config(p.model):
            try:
                self.check_positions(config)
            except DataError as e:
                lines.append(str(e))
        return super().preflight() + text_path_problems(p, PATH_KEYS) + hub + lines

    def check_positions(self, config: dict[str, Any]) -> None:
        """DataError when a prompt block and its continuation do not fit the model's positions (config: the
        model's config.json as a dict)."""
        limit = config.get("max_position_embeddings") or config.get("n_positions")
        need = self.params.block_size + self.new_tokens
        if limit and need > limit:
            raise DataError(
                f"engine.block_size: a block and its continuation take {need} positions, more than the model's "
                f"{limit} (max_position_embeddings); set engine.block_size to at most {limit // 2}"
            )

    def dataset(self) -> TextData:
        if self._data is None:
            _quiet_hugging_face()  # here, not at construction: the start screen builds engines to ask them
            p, paths = self.params, self._checked_paths()
            files = {k: paths[k] for k in ("train", "valid", "test")}
            texts = read_splits(files, paths["text_dir"], p.dataset, p.max_chars)
            tok = self._tokenizer(texts["train"])
            rows = {split: encode_lines(tok, lines) for split, lines in texts.items()}
            train, valid, test = split_blocks(rows, p.block_size, p.valid_fraction, p.blocking == "official")
            self._data = TextData(tok, train, valid, test, rare_tokens(train, len(tok), p.rare_tail))
        return self._data

    def _tokenizer(self, train_lines: list[str]):
        if self.params.model == "tiny":
            return train_tokenizer(train_lines, self.params.vocab_size, self.params.tiny_arch)
        from transformers import AutoTokenizer

        return self._from_hub(AutoTokenizer, "tokenizer")

    def _from_hub(self, cls, what: str, **kw):
        """A pretrained model or tokenizer by local folder or hub id (from the cache alone once cached, so no
        network call); never with remote code. Failing: one line saying what to do."""
        name = self.params.model
        local = Path(name).expanduser().exists()
        only_local = local or cached_model(name) is not None
        try:
            return cls.from_pretrained(
                str(Path(name).expanduser()) if local else name,
                local_files_only=only_local,
                trust_remote_code=False,
                **kw,
            )
        except Exception as e:
            where = f"the local folder {name}" if local else f"the Hugging Face hub ({name})"
            raise DataError(
                f"engine.model: cannot load the {what} from {where} ({type(e).__name__}); download it "
                f"({download_command(name)}) and set engine.model to that folder, "
                f'or set engine.model = "tiny"'
            ) from None

    # --- torch ------------------------------------------------------------------------------------
    def new_model(self):
        """The starting weights: the same every generation (the pretrained ones, the tiny seeded init, or the
        tiny model pretrained once from it), with fresh LoRA adapters (the same every generation) when
        lora_rank is set."""
        model = self._start_model()
        return self._with_lora(model) if self.params.lora_rank else model  # peft's model forwards start_state

    def _start_model(self):
        """The starting weights, without adapters, on the device, generating as the engine's keys say."""
        import torch
        from transformers import AutoModelForCausalLM

        p = self.params
        if p.model == "tiny":
            model = self._tiny_init()
            if p.pretrain_epochs:
                start = self._pretrained()
                model.load_state_dict(start)
                model.start_state = start
        else:
            if self._start is None:
                m = self._from_hub(AutoModelForCausalLM, "model", dtype=torch.float32)
                self.check_positions(m.config.to_dict())
                state = {k: v.clone() for k, v in m.state_dict().items()}
                self._start = {"config": m.config, "generation": m.generation_config, "state": state}
            model = AutoModelForCausalLM.from_config(self._start["config"], trust_remote_code=False)
            model.load_state_dict(self._start["state"])
            model.generation_config = copy.deepcopy(self._start["generation"])  # its end-of-text tokens
        model.generation_config = self._generation_config(model)
        return model.to(self._dev())

    def _generation_config(self, model):
        """A generation_config with the model's special tokens alone: a model's own sampling defaults (top_k,
        temperature, banned n-grams) would otherwise change what generate does with the engine's keys."""
        from transformers import GenerationConfig

        eos = self.eos_ids(model)
        return GenerationConfig(
            bos_token_id=model.generation_config.bos_token_id, eos_token_id=eos or None, pad_token_id=self._pad(eos)
        )

    def eos_ids(self, model) -> list[int]:
        """The ids that end a text: the model's generation_config's (one or a list) and the tokenizer's."""
        ids = model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        tok_eos = self.dataset().tokenizer.eos_token_id
        return ids + [tok_eos] if tok_eos is not None and tok_eos not in ids else ids

    def _pad(self, eos: list[int]) -> int | None:
        """The pad id generate is given: the tokenizer's, else the first end-of-text id (GPT-2 has no pad)."""
        pad = self.dataset().tokenizer.pad_token_id
        return pad if pad is not None else (eos[0] if eos else None)

    def _with_lora(self, model):
        """model with LoRA adapters on its attention (peft's default modules for its architecture); the
        adapters' initial weights are seeded, the same every generation."""
        import torch

        if importlib.util.find_spec("peft") is None:
            raise DataError(LORA_MISSING)
        from peft import LoraConfig, get_peft_model

        p = self.params
        cfg = LoraConfig(r=p.lora_rank, lora_alpha=p.lora_alpha or 2 * p.lora_rank, lora_dropout=0.0)
        with torch.random.fork_rng(devices=[]), quiet_peft():
            torch.manual_seed(INIT_SEED)
            try:
                return get_peft_model(model, cfg)
            except ValueError as e:  # an architecture peft has no default target modules for
                raise DataError(f"engine.lora_rank: peft cannot place adapters on this model ({e})") from None

    def _tiny_init(self):
        """The tiny model's seeded initial weights, on the device."""
        import torch
        from transformers import AutoModelForCausalLM

        p, tok = self.params, self.dataset().tokenizer
        cfg = tiny_config(p, tok, max(2048, 2 * p.block_size))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            return AutoModelForCausalLM.from_config(cfg).to(self._dev())

    def _pretrained(self, report: Report | None = None) -> dict[str, Any]:
        """The tiny model's pretrained weights: the seeded init trained pretrain_epochs on the real training
        blocks (the best validation epoch), computed once, or those a saved model of this run carries."""
        if self._start_state is None:
            p = self.params
            sched = Schedule(p.pretrain_epochs, p.batch, p.pretrain_lr, p.lr_min, p.weight_decay, p.warmup_steps, False)
            trained = self._train_blocks(
                self._tiny_init(),
                self.dataset().train,
                sched,
                INIT_SEED,
                lambda _, *where: report("pretrain", *where) if report is not None else None,
            )
            self._start_state = {k: v.clone().contiguous() for k, v in trained.best.items()}
        return self._start_state

    def _bf16(self) -> bool:
        import torch

        dev, prec = self._dev(), self.params.precision
        return prec == "bf16" or (prec == "auto" and dev.type == "cuda" and torch.cuda.is_bf16_supported())

    def _compiles(self) -> bool:
        return self.params.compile == "on" or (self.params.compile == "auto" and self._dev().type == "cuda")

    def _autocast(self):

        import torch

        return torch.autocast(self._dev().type, dtype=torch.bfloat16) if self._bf16() else contextlib.nullcontext()

    def fit(
        self,
        data: np.ndarray,
        rngs: list[np.random.Generator],
        report: Report,
        source: Any = None,
        reference: Any = None,
        weights: np.ndarray | None = None,
    ) -> Fitted:
        """The starting weights fine-tuned on data (1, N, block_size) by engines/lm_train.py; the weights of
        the epoch with the best validation loss. With a reference (generation 0's model) the [train]
        mitigations apply (engines/torch_mitigations.py): an L2-SP or EWC anchor to its weights (the fit
        then starts from them), distillation
        of its token distributions; weights (1, N) weigh each block's loss (all 1: the plain fit, bit for bit)."""
        from . import torch_mitigations as tm

        if getattr(source, "start_state", None) is not None:  # the run's pretrained weights (also on resume)
            self._start_state = source.start_state
        if self.params.pretrain_epochs:
            self._pretrained(report)  # here, to report its progress
        mit = tm.build(self.train_keys, reference, tm.example_weights(weights, data.shape[1]), self._dev(), self.fisher)
        model, trained = self.train(data, int(rngs[0].integers(2**63)), report, mit)
        val = trained.val_loss if self.params.checkpoint == "best" else trained.val_losses[-1]
        return Fitted(model, {"train_loss": trained.train_loss, "val_loss": val})

    def fisher(self, model: Any) -> dict[str, Any]:
        """EWC's diagonal Fisher of model on the real training blocks: each block's mean NLL per token, in fp32."""
        import torch

        from . import torch_mitigations as tm

        train = self.dataset().train
        x = torch.from_numpy(np.ascontiguousarray(train[tm.fisher_indices(len(train))], dtype=np.int64))
        return tm.fisher_diagonal(
            model, x.to(self._dev()), lambda m, b: m(input_ids=b[None], labels=b[None]).loss.float()
        )

    def train(self, data: np.ndarray, seed: int, report: Report, mit: Any = None) -> tuple[Any, Trained]:
        if data.shape[0] != 1:
            raise ValueError(f"the {self.name} engine trains one seed at a time, got data for {data.shape[0]}")
        p = self.params
        model = self.new_model()
        sched = Schedule(p.epochs, p.batch, p.lr, p.lr_min, p.weight_decay, p.warmup_steps, p.schedule == "epoch")
        trained = self._train_blocks(model, data[0], sched, seed, report, self._compiles(), mit)
        if p.checkpoint == "best":
            model.load_state_dict(trained.best)
        model.eval()
        return model, trained

    def _train_blocks(
        self, model, blocks: np.ndarray, sched: Schedule, seed: int, report, compile_forward=False, mit=None
    ) -> Trained:
        """engines/lm_train.py's loop on blocks (N, L), on this engine's device and precision, each epoch
        validated by the mean NLL of the validation blocks: pretraining and fine-tuning alike."""
        import torch

        valid = self.dataset().valid
        x = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.int64)).to(self._dev())
        return train_causal_lm(
            model,
            x,
            sched,
            seed,
            validate=lambda m: float(self.block_nll(m, valid).mean()),
            report=report,
            autocast=self._autocast,
            compile_forward=compile_forward,
            mit=mit,
        )

    def block_nll(self, model, blocks: np.ndarray) -> np.ndarray:
        """Mean NLL per predicted token of each block (tokens 2..L given the ones before), (n,) float64."""
        import torch
        import torch.nn.functional as F

        model.eval()
        out = []
        bs = self.params.eval_batch
        with torch.no_grad():
            for i in range(0, len(blocks), bs):
                ids = torch.from_numpy(np.ascontiguousarray(blocks[i : i + bs], dtype=np.int64)).to(self._dev())
                with self._autocast():
                    logits = model(input_ids=ids).logits
                nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
                out.append(nll.view(len(ids), -1).double().mean(dim=1))
        return torch.cat(out).cpu().numpy() if out else np.zeros(0)

    def sample(self, model: Any, n: int, rngs: list[np.random.Generator], report: Report, data=None) -> Generated:
        """Continuations of the original training blocks, or with prompts = "train" of the blocks model was
        fitted on (cycled when n > N): exactly new_tokens new tokens each, by beam search; (1, n, new_tokens)
        int32. The preview: the prompts at fixed places with their continuations, decoded."""
        train = data[0] if self.params.prompts == "train" and data is not None else self.dataset().train
        prompts = train[np.arange(n) % len(train)]
        seed = int(rngs[0].integers(2**63))
        out = self.continue_blocks(model, prompts, seed, report)
        shown = prompt_indices(len(train), n)
        return Generated(
            out[None], [with_prompt(*pair) for pair in zip(self.decode(prompts[shown]), self.decode(out[shown]))]
        )

    def continue_blocks(self, model, prompts: np.ndarray, seed: int, report: Report | None = None) -> np.ndarray:
        """Exactly new_tokens tokens continuing each prompt, (n, new_tokens) int32, gen_batch prompts a batch:
        by the engine's decoder (engines/lm_decode.py) or, with generator = "hf", by generate."""
        import torch

        from .lm_decode import Decoding, continuer

        p, dev = self.params, self._dev()
        k = self.new_tokens
        model.eval()
        if p.lora_rank:  # the architecture's own model, its attention modules applying the adapters
            model = model.get_base_model()
        eos = self.eos_ids(model)
        d = Decoding(p.num_beams, k, p.repetition_penalty, p.do_sample, p.temperature, p.top_k, p.top_p, p.min_p)
        gen = torch.Generator(dev).manual_seed(seed)  # the fast decoder's draws; generate's: the global generator
        run, why = continuer(model, d, eos, self._pad(eos), p.generator == "fast", gen, self._bf16())
        if why and report is not None and why not in self._told:  # once per run and reason
            self._told.add(why)
            report(f"{NOTE}transformers' generate decodes: {why}", 0, 0, None)
        bs = p.gen_batch
        out = np.zeros((len(prompts), k), dtype=np.int32)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(seed)
            for i in range(0, len(prompts), bs):
                if report is not None:
                    report("sample", i, len(prompts), None, f"generating {i}/{len(prompts)} prompts")
                ids = torch.from_numpy(np.ascontiguousarray(prompts[i : i + bs], dtype=np.int64)).to(dev)
                with self._autocast():
                    new = run(ids)
                if new.shape[1] != k:
                    raise RuntimeError(f"generation gave {new.shape[1]} new tokens, expected {k}")
                out[i : i + len(ids)] = new.cpu().numpy()
        if report is not None:
            report("sample", len(prompts), len(prompts), None, f"generating {len(prompts)}/{len(prompts)} prompts")
        return out

    def decode(self, blocks: np.ndarray) -> list[str]:
        tok = self.dataset().tokenizer
        return [tok.decode([int(t) for t in b], skip_special_tokens=True) for b in blocks]

    # --- text shared with other text engines (chains) --------------------------------------------------
    def to_shared(self, samples: np.ndarray) -> list[list[str]]:
        """Per seed, its generated blocks decoded to text."""
        return [self.decode(seed) for seed in samples]

    def from_shared(self, texts: list[list[str]]) -> np.ndarray:
        """Per seed, its texts tokenised by this engine's tokenizer, concatenated and cut into blocks of
        block_size: (seeds, n_blocks, block_size) int32, n_blocks the fewest of any seed."""
        tok, L = self.dataset().tokenizer, self.params.block_size
        per_seed = [group_blocks(encode_lines(tok, list(seed)), L) for seed in texts]
        n = min((len(b) for b in per_seed), default=0)
        if n == 0:
            raise DataError(f"the shared text gives no block of {L} tokens")
        return np.stack([b[:n] for b in per_seed])

    def detector_real(self, rngs: list[np.random.Generator], n: int) -> np.ndarray | None:
        """Up to n validation blocks per seed: the validation text, or the training blocks cut off for it."""
        return held_apart(self.dataset().valid, rngs, n)

    def features(self, examples: np.ndarray, reference: Any) -> np.ndarray:
        return hashed_ngrams(examples)

    def score(self, reference: Any, samples: np.ndarray) -> np.ndarray:
        """Mean NLL per predicted token of each block under the reference model, (S, n)."""
        return np.stack([self.block_nll(reference, s) for s in samples])

    # --- metrics ----------------------------------------------------------------------------------
    def evaluate(self, model: Any, samples: np.ndarray, reference: Any) -> list[dict[str, Any]]:
        data = self.dataset()
        nll = float(self.block_nll(model, data.test).mean())
        rows = []
        for s in samples[:, :EVAL_MAX]:
            seq_nll = self.block_nll(reference, s)
            rows.append(
                {
                    "perplexity": float(np.exp(nll)),
                    "nll": nll,
                    "variance": float(seq_nll.var(ddof=1)) if len(seq_nll) > 1 else 0.0,
                    **seq_ppl_stats(seq_nll),
                    **text_metrics(s, data.rare),
                    **cross_prompt_metrics(s, data.test),
                }
            )
        return rows

    def distance(self, model: Any, other_model: Any, other_samples: np.ndarray) -> np.ndarray:
        """Cross-perplexity: exp of this model's mean NLL per token on the other chain's generated text
        (re-tokenised into this engine's blocks), up to EVAL_MAX blocks per seed."""
        return np.array([float(np.exp(self.block_nll(model, s[:EVAL_MAX]).mean())) for s in other_samples])

    # --- checkpoints ------------------------------------------------------------------------------
    def save(self, model: Any, directory: Path) -> None:
        """The weights in safetensors; with LoRA the adapters alone (the starting weights are the model's)."""
        directory = Path(directory)
        model.save_pretrained(directory, safe_serialization=True)
        if getattr(model, "start_state", None) is not None:
            from safetensors.torch import save_file

            save_file(model.start_state, directory / START_FILE)

    def load(self, directory: Path) -> Any:
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        _quiet_hugging_face()
        directory = Path(directory)
        start = (
            load_file(directory / START_FILE, device=str(self._dev())) if (directory / START_FILE).is_file() else None
        )
        if (directory / ADAPTER_CONFIG).is_file():
            from peft import PeftModel

            if start is not None:
                self._start_state = start  # the base the adapters were trained on
            with quiet_peft():
                model = PeftModel.from_pretrained(self._start_model(), directory, is_trainable=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
            model = model.to(self._dev())
        if start is not None:
            model.start_state = start
        model.eval()
        return model


# --- helpers (numpy; the tokenizer ones import tokenizers/transformers) --------------------------------
class OPTEngine(LMEngine):
    """The lm engine under the name the opt presets use: the same keys, the same rows."""

    name = "opt"

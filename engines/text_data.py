"""Real text for the text engines: local files or WikiText from the Hugging Face hub, read as the official
code reads it (line by line, as the hub's rows), and cut into fixed-size token blocks.

numpy only; `datasets` and `tokenizers` are imported when they are used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, Param

N_PROMPTS = 8  # fixed real prompts whose continuations the sample panes show
SPLIT_FILES = {
    "train": ("train.txt", "wiki.train.raw", "wiki.train.tokens"),
    "valid": ("valid.txt", "validation.txt", "wiki.valid.raw", "wiki.valid.tokens"),
    "test": ("test.txt", "wiki.test.raw", "wiki.test.tokens"),
}


@dataclass
class TextData:
    tokenizer: Any  # what turns text into the ids of the blocks (a transformers tokenizer for OPT)
    train: np.ndarray  # (N, block_size) int32: the original training blocks
    valid: np.ndarray  # (V, block_size): picks the best checkpoint
    test: np.ndarray  # (T, block_size): test perplexity
    rare: np.ndarray  # (vocab,) bool: tokens rare in the real training blocks


def text_source_params(valid: bool) -> dict[str, Param]:
    """The keys that say where a text engine's real text comes from (the hub's WikiText, or local files),
    with a validation file when the engine reads one."""
    folder = "train.txt, valid.txt and test.txt (or wiki.*.raw)" if valid else "train.txt and test.txt (or wiki.*.raw)"
    held_out = "local validation text file; empty: valid_fraction of the training blocks"
    return {
        "dataset": Param("wikitext-2-raw-v1", str, "hub dataset (config of 'wikitext') when no local text is set"),
        "text_dir": Param(
            "", Path, f"local folder with {folder}" + ("" if valid else "; its valid.txt: the detector's real text")
        ),
        "train": Param("", Path, "local training text file (overrides text_dir's)"),
        **({"valid": Param("", Path, held_out)} if valid else {}),
        "test": Param("", Path, "local test text file"),
        "max_chars": Param(0, int, "read only the first max_chars characters of each text (0: all)", min=0),
    }


HUB_ALTERNATIVE = "offline, set engine.text_dir or engine.train/valid/test to local text files"


def hub_text(params: Any, keys: tuple[str, ...]) -> bool:
    """Whether the text comes from the hub: no local text key is set."""
    return not any(getattr(params, k) for k in keys)


def text_path_problems(params: Any, keys: tuple[str, ...]) -> list[str]:
    """What the local text keys lack, one line each: text_dir must be a folder and train/valid/test files,
    and local text needs a training and a test text (preflight: said before a run directory exists, not
    when the run first reads them)."""
    problems = []
    for key in keys:
        value = getattr(params, key)
        is_dir = key == "text_dir"
        if value and not (Path(value).is_dir() if is_dir else Path(value).is_file()):
            problems.append(f"engine.{key}: no such {'folder' if is_dir else 'file'}: {value}")
    if hub_text(params, keys):
        return problems
    text_dir = getattr(params, "text_dir", "")
    folder = Path(text_dir) if text_dir and Path(text_dir).is_dir() else None
    given = {k: Path(getattr(params, k)) if k in keys and getattr(params, k) else None for k in SPLIT_FILES}
    missing = [split for split, f in local_files(given, folder).items() if f is None and split != "valid"]
    if missing and folder:
        names = " or ".join(SPLIT_FILES[split][0] for split in missing)
        problems.append(
            f"engine.text_dir: {text_dir} has no {names} (expected train.txt and test.txt, valid.txt optional, "
            "or WikiText's wiki.train.raw and wiki.test.raw)"
        )
    elif not text_dir:
        problems += [f"engine.{s}: local text needs a {s} text too (engine.{s} or engine.text_dir)" for s in missing]
    return problems


def check_text_paths(params: Any, keys: tuple[str, ...]) -> None:
    """text_path_problems' first line as a DataError, for an engine that reads its text without a preflight."""
    if problems := text_path_problems(params, keys):
        raise DataError(problems[0])


def local_files(files: dict[str, Path | None], folder: Path | None) -> dict[str, Path | None]:
    """The text file of each split: the one given, else one named as in SPLIT_FILES inside folder."""
    found = {split: files.get(split) for split in SPLIT_FILES}
    if folder is not None:
        for split, names in SPLIT_FILES.items():
            if found[split] is None:
                found[split] = next((folder / n for n in names if (folder / n).is_file()), None)
    return found


# bytes per character of text read, for its lines, words or token ids: tracemalloc's peaks were 15 (the n-gram
# engine) and 25 (OPT's tiny model, its Rust tokenizer's own memory not counted) on 2.2 MB of WikiText-2
TEXT_BYTES_PER_CHAR = 32


def text_bytes(files: dict[str, Path | None], max_chars: int) -> int:
    """About the memory the local texts take once read and cut into words or tokens (file sizes only)."""
    total = 0
    for f in files.values():
        if f is not None and f.is_file():
            size = f.stat().st_size  # bytes: at least as many as characters
            total += min(size, max_chars) if max_chars else size
    return total * TEXT_BYTES_PER_CHAR


def read_text(path: Path, max_chars: int, key: str, skip: int = 0) -> list[str]:
    """The lines of the first max_chars characters (0: all) of a UTF-8 text after its first skip, read no
    further."""
    try:
        with open(path, encoding="utf-8") as f:
            f.read(skip)
            return f.read(max_chars or -1).splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise DataError(f"engine.{key}: {path} is not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataError(f"engine.{key}: cannot read {path} ({e.strerror or type(e).__name__})") from None


def read_splits(
    files: dict[str, Path | None], folder: Path | None, dataset: str, max_chars: int
) -> dict[str, list[str]]:
    """Lines of each split (with their line breaks, as the hub's rows have them); 'valid' may be [].
    Local text when a training file is given (or found in folder: SPLIT_FILES), else wikitext/dataset
    from the hub; offline, one line saying which keys to set."""
    files = local_files(files, folder)
    limit = max_chars or None
    if files.get("train") is not None:  # check_text_paths found a test text too
        return {split: read_text(f, max_chars, split) if f else [] for split, f in files.items()}
    try:
        import datasets

        ds = datasets.load_dataset("wikitext", dataset)
    except Exception as e:
        raise DataError(
            f"engine.dataset: cannot load wikitext/{dataset} from the Hugging Face hub "
            f"({type(e).__name__}); {HUB_ALTERNATIVE}"
        ) from None

    def lines(split: str) -> list[str]:
        rows = ds[split]["text"]
        if limit is None:
            return list(rows)
        out, n = [], 0
        for r in rows:
            if n >= limit:
                break
            out.append(r[: limit - n])
            n += len(out[-1])
        return out

    return {"train": lines("train"), "valid": lines("validation"), "test": lines("test")}


OFFICIAL_CHUNK = 1000  # rows per batch of datasets' map(batched=True), the official code's grouping
OFFICIAL_PROCS = 4  # its preprocess_datasets(preprocessing_num_workers=4): map(..., num_proc=4)


def group_blocks(ids: list[list[int]], block_size: int, chunk: int = 0) -> np.ndarray:
    """Concatenate the rows' tokens and cut them into block_size blocks, dropping the remainder; with chunk,
    chunk rows at a time, each chunk's remainder dropped (map(group_texts, batched=True) in one process)."""
    if chunk:
        parts = [group_blocks(ids[i : i + chunk], block_size) for i in range(0, len(ids), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, block_size), dtype=np.int32)
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int32)
    n = len(flat) // block_size
    return flat[: n * block_size].reshape(n, block_size)


def official_blocks(ids: list[list[int]], block_size: int) -> np.ndarray:
    """The blocks of the official code's preprocess_datasets (dataset.py, called by main.py): datasets'
    map(group_texts, batched=True, num_proc=4) cuts the rows into min(4, rows) contiguous shards (as
    Dataset.shard(contiguous=True): the first rows % 4 shards one row longer), and each shard groups
    OFFICIAL_CHUNK rows at a time, dropping each batch's remainder. A batch of fewer tokens than a block
    gives main.py one short block, which its DataLoader cannot stack with the others; it gives none here."""
    shards = min(OFFICIAL_PROCS, len(ids))
    div, mod = divmod(len(ids), max(shards, 1))
    starts = [div * i + min(i, mod) for i in range(shards + 1)]
    parts = [group_blocks(ids[a:b], block_size, OFFICIAL_CHUNK) for a, b in zip(starts, starts[1:], strict=False)]
    return np.concatenate(parts) if parts else np.zeros((0, block_size), dtype=np.int32)


def split_blocks(
    rows: dict[str, list[list[int]]], block_size: int, valid_fraction: float, official: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) blocks of the token rows of each split, grouped whole or as the official code
    does (official_blocks); without a validation text, the last valid_fraction of the training blocks."""

    def blocks(ids: list[list[int]]) -> np.ndarray:
        return official_blocks(ids, block_size) if official else group_blocks(ids, block_size)

    train = blocks(rows["train"])
    if rows["valid"]:
        valid = blocks(rows["valid"])
    else:
        k = max(1, int(round(len(train) * valid_fraction)))
        train, valid = train[:-k], train[-k:]
    test = blocks(rows["test"])
    for split, part in (("train", train), ("valid", valid), ("test", test)):
        if len(part) == 0:
            raise DataError(f"engine.{split}: the text gives no block of {block_size} tokens")
    return train, valid, test


def rare_tokens(blocks: np.ndarray, vocab: int, tail: float) -> np.ndarray:
    """Tokens that, taken from the least frequent up, make up the `tail` share of the real tokens."""
    counts = np.bincount(blocks.ravel(), minlength=vocab).astype(np.float64)
    order = np.argsort(counts, kind="stable")  # rarest first; unseen tokens are rare too
    cum = np.cumsum(counts[order]) / counts.sum()
    rare = np.zeros(vocab, dtype=bool)
    rare[order[cum <= tail]] = True
    return rare


def prompt_indices(n_train: int, n: int) -> np.ndarray:
    """The fixed prompts: N_PROMPTS training blocks spread evenly over the (first n of the) training set."""
    m = min(n_train, n)
    return np.unique(np.linspace(0, m - 1, min(N_PROMPTS, m)).astype(int))


# A text preview entry is the prompt, PROMPT_END, then the continuation; the sample panes show both and
# compare continuations only. Entries without it (older runs) are all continuation.
PROMPT_END = "\x1e"


def with_prompt(prompt: str, continuation: str) -> str:
    return f"{prompt}{PROMPT_END}{continuation}"


def split_prompt(entry: str) -> tuple[str, str]:
    """(prompt, continuation) of a text preview entry."""
    prompt, sep, rest = entry.partition(PROMPT_END)
    return (prompt, rest) if sep else ("", entry)


EOS, UNK = "<eos>", "<unk>"


def line_words(lines: list[str]) -> list[list[str]]:
    """The words of each non-empty line, then <eos> (as PyTorch's word_language_model reads WikiText-2)."""
    return [ws + [EOS] for ws in (line.split() for line in lines) if ws]


def text_words(text: str) -> list[str]:
    """Words of text as the word engines exchange it: blank-separated, each line break an <eos>."""
    return text.replace("\n", f" {EOS} ").split()


def words_text(words: list[str]) -> str:
    """The inverse of text_words: words joined by single blanks, each <eos> a line break."""
    out: list[str] = []
    for w in words:
        out.append("\n" if w == EOS else w if not out or out[-1] == "\n" else f" {w}")
    return "".join(out)


class TextSource:
    """What the text engines (ngram, lm) share about their text: the files their source keys name, what reading
    them costs, and the keys resolved and checked before the text is read. An engine mixing it in has
    text_source_params' keys plus block_size and new_tokens, and sets PATH_KEYS (text_dir and its splits)."""

    PATH_KEYS: tuple[str, ...]
    data_keys = "engine.max_chars"

    def _files(self) -> dict[str, Path | None]:
        p = self.params
        splits = {k: self.path(getattr(p, k)) for k in self.PATH_KEYS if k != "text_dir"}
        return local_files(splits, self.path(p.text_dir))

    def data_bytes(self) -> int:
        return text_bytes(self._files(), self.params.max_chars)

    @property
    def new_tokens(self) -> int:
        return self.params.new_tokens or self.params.block_size

    def _checked_paths(self) -> dict[str, Path | None]:
        """The path keys resolved against the working folder, after check_params and check_text_paths pass on
        them (a bad key: DataError)."""
        p = self.params
        paths = {k: self.path(getattr(p, k)) for k in self.PATH_KEYS}
        resolved = dataclasses.replace(p, **{k: str(v or "") for k, v in paths.items()})
        self.check_params(resolved)
        check_text_paths(resolved, self.PATH_KEYS)
        return paths

"""blocking = "official" against the official code itself: its dataset.py's preprocess_datasets (copied
below) runs datasets' map with num_proc=4 on the shipped WikiText-2 text, and engines/text_data.py's
official_blocks must give the same blocks without datasets."""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import numpy as np
import pytest
from conftest import WIKI_TEST, WIKI_TRAIN

from collapse_tui.engines.text_data import OFFICIAL_CHUNK, group_blocks, official_blocks

datasets = pytest.importorskip("datasets")

LINES = [x for f in (WIKI_TRAIN, WIKI_TEST) for x in Path(f).read_text(encoding="utf-8").splitlines(keepends=True)]
WORDS = {w: i for i, w in enumerate(sorted({w for line in LINES for w in line.split()}), start=3)}
BOS = 2  # as OPT's tokenizer, each row starts with one: an empty row is one token


def tokenize_function(examples: dict) -> dict:
    """A word-level tokenizer (the blocks depend on the rows' token counts and ids, not on how they were cut)."""
    ids = [[BOS] + [WORDS[w] for w in text.split()] for text in examples["text"]]
    return {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}


def preprocess_datasets(raw_dataset, block_size=64, preprocessing_num_workers=4):
    """github.com/iliaishacked/curse_recurse, dataset.py, as main.py calls it (its tokenizer aside)."""
    column_names = raw_dataset.column_names
    tokenized_datasets = raw_dataset.map(
        tokenize_function,
        batched=True,
        num_proc=preprocessing_num_workers,
        remove_columns=column_names,
        keep_in_memory=True,
    )

    def group_texts(examples):
        concatenated_examples = {k: list(chain(*examples[k])) for k in examples.keys()}  # noqa: SIM118 (their code)
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        if total_length >= block_size:
            total_length = (total_length // block_size) * block_size
        result = {
            k: [t[i : i + block_size] for i in range(0, total_length, block_size)]
            for k, t in concatenated_examples.items()
        }
        result["labels"] = result["input_ids"].copy()
        return result

    return tokenized_datasets.map(group_texts, batched=True, num_proc=preprocessing_num_workers, keep_in_memory=True)


@pytest.mark.parametrize("rows", [4005, 3])
def test_official_blocks_are_those_of_datasets_map_in_4_processes(rows):
    """4005 rows (the shipped text read over again; not a multiple of 4 or of 1000): 4 shards of 1002, 1001,
    1001 and 1001 rows, each grouped as a batch of 1000 rows and one of the rest, each batch's remainder
    dropped. The second shard's last batch is one empty row, a single token: main.py's short block, which
    official_blocks leaves out. 3 rows, each of over 64 words: datasets runs 3 processes, one row each, and
    each makes its own blocks (the shipped text's first 3 lines are too short to make any)."""
    long = [line for line in LINES if len(line.split()) > 64]
    lines = [LINES[i % len(LINES)] for i in range(rows)] if rows > 3 else long[:rows]
    theirs = preprocess_datasets(datasets.Dataset.from_dict({"text": lines}))["input_ids"]
    ids = tokenize_function({"text": lines})["input_ids"]
    ours = official_blocks(ids, 64)
    full = [b for b in theirs if len(b) == 64]
    assert full
    assert ours.shape == (len(full), 64) and ours.tolist() == full
    if rows == 4005:
        assert [len(b) for b in theirs if len(b) != 64] == [1]  # the short block, from the second shard
        single = group_blocks(ids, 64, OFFICIAL_CHUNK)  # map in one process: batches from row 0
        whole = group_blocks(ids, 64)
        assert len(ours) < len(single) < len(whole)  # so 4 processes drop more remainders than one
        assert not np.array_equal(ours[: len(ours) // 2], single[: len(ours) // 2])  # and shift the blocks

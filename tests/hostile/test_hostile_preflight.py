"""A preset that lacks several things on this machine at once (issue 26, section 3): the command line says
every one of them, one line each, exits 2, and creates nothing, instead of stopping at the first."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WIKI_TEST, WIKI_TRAIN

from collapse_tui import preflight
from collapse_tui.cli import main
from collapse_tui.engines import engine_class

torch = pytest.importorskip("torch")

# a tiny OPT chain (local training text, a test file that is not there, a hub model) and an n-gram chain
# that reads WikiText from the hub, both on a GPU
PRESET = """
[experiment]
generations = 2
seeds = 1
device = "cuda"

[data]
share_others = 0.5

[[chains]]
name = "opt"
engine = "opt"
model = "org/absent-model"
train = "{train}"
test = "{absent}"

[[chains]]
name = "ngram"
engine = "ngram"
"""


def refused_lines(argv: list[str], runs: Path, capsys) -> list[str]:
    """The lines the CLI says on stderr; it exits 2 and the runs folder is not made."""
    assert main(["--batch", *argv, "--runs-dir", str(runs)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and not runs.exists()
    return out.err.splitlines()


def test_everything_missing_is_said_at_once(tmp_path, write_preset, capsys, monkeypatch, no_hub):
    """Six things lacking: a package, the GPU, a data file, the model and the dataset (the hub out of
    reach) and memory: six lines, in that order, each naming its key; none of them hides another."""
    absent = tmp_path / "absent-test.txt"
    preset = write_preset(PRESET.format(train=WIKI_TRAIN, absent=absent))
    opt = engine_class("opt")
    monkeypatch.setattr(opt, "requires", (*opt.requires, "collapse_tui_absent_module"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(preflight, "available_memory", lambda: 2**20)  # 1 MiB: the training text is more
    lines = refused_lines([str(preset)], tmp_path / "runs", capsys)
    assert all(line.startswith("collapse-tui: ") for line in lines), lines
    expected = [
        "engine 'opt' needs collapse_tui_absent_module, not installed",
        "experiment.device: 'cuda', and torch sees no GPU here",
        f"engine.test: no such file: {absent}",
        "engine.model: the model org/absent-model comes from the Hugging Face hub, which cannot be reached",
        "engine.dataset: wikitext/wikitext-2-raw-v1 comes from the Hugging Face hub, which cannot be reached",
        "this run needs about",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.removeprefix("collapse-tui: ").startswith(start), (start, line)
    # the memory line counts the training text read (32 bytes a character): 200 kB of it, against 1 MiB
    assert "of it the real data" in lines[-1] and "use less real data (engine.max_chars)" in lines[-1]


def test_what_is_there_is_not_listed(tmp_path, capsys, monkeypatch, no_hub):
    """The same checks on a preset that lacks only its GPU: one line, the GPU's; local text and the tiny
    model need no hub, and the memory is there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sets = ["experiment.device='cuda'", f"engine.train='{WIKI_TRAIN}'", f"engine.test='{WIKI_TEST}'"]
    lines = refused_lines(["opt-tiny", *(a for s in sets for a in ("--set", s))], tmp_path / "runs", capsys)
    assert len(lines) == 1 and lines[0].startswith("collapse-tui: experiment.device: 'cuda', and torch sees no GPU")

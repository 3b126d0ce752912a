"""Phrases shared across prompts (collapse_tui/phrases.py shared_phrases) against a brute-force count over
every run of words, and the Diff pane of a real app (App.run_test) on a real n-gram run whose prompts end
up continued by the same sentence: it names that sentence and how many prompts share it, never "no change"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import WIKI_TEST, WIKI_TRAIN, run_loop

from collapse_tui.engines.text_data import split_prompt
from collapse_tui.phrases import SHARED_MIN_WORDS, shared_phrases, texts_holding, words
from collapse_tui.records import RunState
from collapse_tui.rundir import RunDir
from collapse_tui.tui.app import build_app

SIZE = (80, 24)


def most_shared(texts: list[str]) -> tuple[int, int]:
    """By brute force over every run of SHARED_MIN_WORDS or more words of every text: the most texts any
    run is found in (two at least, else 0), and the longest run found in that many."""
    best = (0, 0)
    tokens = [words(t)[0] for t in texts]
    padded = [f" {' '.join(ws)} " for ws in tokens]
    for ws in tokens:
        for i in range(len(ws)):
            for j in range(i + SHARED_MIN_WORDS, len(ws) + 1):
                held = sum(f" {' '.join(ws[i:j])} " in text for text in padded)
                if held < 2:
                    break  # a longer run is held by no more texts
                best = max(best, (held, j - i))
    return best


def test_shared_phrases_find_the_run_most_texts_hold():
    texts = [
        "It was the best of times , it was the worst of times . And so on",
        "The age of wisdom : it was the best of times , it was the worst of times .",
        "Nothing shared here but of times , it was the , which is short",
        "He said it was the best of times , it was the epoch of belief",
    ]
    found = shared_phrases(texts)
    assert (found[0].texts, found[0].key.count(" ") + 1) == most_shared(texts) == (4, 6)
    assert found[0].key == "of times , it was the"
    assert (found[1].texts, found[1].key) == (3, "it was the best of times , it was the")
    assert found[2].key == "it was the best of times , it was the worst of times ." and found[2].texts == 2
    assert texts_holding(texts, found[2].key) == 2 and texts_holding(texts[2:], found[1].key) == 1
    assert shared_phrases(["a b c d e", "a b c d f"]) == []  # four words: shorter than a shared phrase


def collapsed_run(tmp_path: Path) -> Path:
    """A real ngram run (setting A in small: trigram, 3-beam search with the repetition penalty) of 3
    generations on the shipped WikiText-2, whose shown prompts end up continued alike."""
    sets = [f"engine.train='{WIKI_TRAIN}'", f"engine.test='{WIKI_TEST}'", "experiment.seeds=1"]
    sets += ["experiment.generations=3", "engine.max_chars=20000", "engine.block_size=32", "engine.num_beams=3"]
    rundir, state = run_loop(tmp_path, "ngram", sets)
    assert state == RunState.FINISHED
    return rundir.path


def test_the_diff_pane_shows_the_sentence_every_prompt_ends_in(tmp_path):
    path = collapsed_run(tmp_path)
    run = RunDir(path)
    first, last = ([split_prompt(e)[1] for e in run.load_samples(g)] for g in (0, 2))
    held, length = most_shared(last)
    assert held == len(last) == 8  # every prompt shown shares a phrase at generation 2
    assert most_shared(first)[0] < held

    async def check() -> None:
        app = build_app(str(path), [], tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("2")
            await pilot.pause()
            diff = str(app.screen.query_one("#diff-body").render())
            assert "no change" not in diff
            lines = diff.split("\n")
            at = lines.index("phrases shared by prompts, generation 0 -> 2 (of the 8 shown)")
            before, arrow, after, *phrase = lines[at + 1].split()
            shown = " ".join(phrase).lower()
            assert (arrow, int(after)) == ("->", held) and len(shown.split()) == length
            assert texts_holding(last, shown) == held and int(before) == texts_holding(first, shown)
            moved = [ln for ln in lines if ln.startswith(("cross_rep", "distinct_conts"))]
            assert len(moved) == 2  # the metrics across prompts moved too, over all the prompts

    asyncio.run(check())

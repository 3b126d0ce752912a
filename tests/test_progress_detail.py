"""Where a long generation is: the reports the opt and ngram engines make (epoch e/E, step s/S, generating
i/N prompts), the loop's Progress events carrying them, the app's progress row showing them, and the log
lines (batch output, app log) that say them once 30 s pass without a line, and no more often."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import numpy as np
from conftest import WIKI_TEST, WIKI_TRAIN, tiny_opt, wait_for

from collapse_tui import runlog
from collapse_tui.batch import BatchView
from collapse_tui.engines import ngram_search
from collapse_tui.engines.ngram import NgramEngine
from collapse_tui.events import GenerationDone, Progress, RunStarted
from collapse_tui.preset_files import load_preset
from collapse_tui.tui.app import build_app


class Calls:
    """A report that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args: object) -> None:
        self.calls.append(args)


def ngram_sets(generations: int) -> list[str]:
    return [
        f"engine.train='{WIKI_TRAIN}'",
        f"engine.test='{WIKI_TEST}'",
        "engine.max_chars=6000",
        "engine.block_size=8",
        "engine.num_beams=2",
        f"experiment.generations={generations}",
        "experiment.seeds=2",
    ]


def test_the_opt_engine_reports_epochs_steps_and_prompts():
    e = tiny_opt(
        max_chars=2000, tiny_hidden=16, tiny_layers=1, epochs=2, batch=8, pretrain_epochs=1, gen_batch=4, num_beams=2
    )
    rngs = [np.random.default_rng(0)]
    calls = Calls()
    e.fit(e.real_data(rngs), rngs, calls)
    per_epoch = -(-len(e.dataset().train) // 8)
    pretrain = [("pretrain", s, per_epoch, f"epoch 1/1, step {s}/{per_epoch}") for s in range(1, per_epoch + 1)]
    train = [
        ("train", s, 2 * per_epoch, f"epoch {(s - 1) // per_epoch + 1}/2, step {s}/{2 * per_epoch}")
        for s in range(1, 2 * per_epoch + 1)
    ]
    assert per_epoch > 1 and [(c[0], c[1], c[2], c[4]) for c in calls.calls] == pretrain + train
    assert isinstance(calls.calls[-1][3], float)  # the last step's loss is always read

    calls = Calls()
    e.sample(e.new_model(), 10, rngs, calls)
    assert calls.calls == [("sample", i, 10, None, f"generating {i}/10 prompts") for i in (0, 4, 8, 10)]


def test_the_ngram_engine_reports_prompts_and_words_chunk_by_chunk(monkeypatch):
    e = NgramEngine({"train": WIKI_TRAIN, "test": WIKI_TEST, "max_chars": 6000, "block_size": 8, "num_beams": 2})
    monkeypatch.setattr(ngram_search, "CHUNK_PROMPTS", 5)  # 12 rows in 3 chunks, on one thread (under 64 rows)
    rngs = [np.random.default_rng(0), np.random.default_rng(1)]
    calls = Calls()
    model = e.fit(e.real_data(rngs), rngs, calls).model
    e.sample(model, 6, rngs, calls)  # 12 rows: 2 seeds x 6 prompts, in chunks [0, 4), [4, 8), [8, 12)
    expected = [("train", 0, 1, None), ("train", 1, 1, None)]
    for j, (start, stop) in enumerate(((0, 4), (4, 8), (8, 12))):
        for t in range(8):
            done = stop if t == 7 else start
            expected.append(("sample", 8 * j + t + 1, 24, None, f"generating {done}/12 prompts, word {t + 1}/8"))
    assert calls.calls == expected


def test_the_loop_passes_the_detail_on_and_the_progress_row_shows_it(tmp_path, monkeypatch):
    """A real ngram run in the app, held after its sampling: the row shows the engine's last report."""
    R = 2 * len(NgramEngine(load_preset("ngram", ngram_sets(1)).engine).dataset().train)  # 2 seeds' prompts
    gate, sample = threading.Event(), NgramEngine.sample

    def held(self, *args, **kwargs):
        out = sample(self, *args, **kwargs)
        if not gate.wait(20):
            raise TimeoutError("the test never let the generation finish")
        return out

    monkeypatch.setattr(NgramEngine, "sample", held)

    async def check() -> None:
        app = build_app("ngram", ngram_sets(1), tmp_path / "app-runs")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("enter")
            phase = app.screen.query_one("#phase")
            want = f"gen 0 sample: generating {R}/{R} prompts, word 8/8"
            await wait_for(pilot, lambda: str(phase.render()) == want, what="the detail", timeout=10)
            assert str(phase.render()) == want
            gate.set()

    asyncio.run(check())


def test_log_lines_say_where_a_generation_is_after_30_s_without_a_line(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(runlog.time, "monotonic", lambda: clock[0])
    out = io.StringIO()  # not a terminal: plain timestamped lines
    view = BatchView(out)
    row = {"seed": 0, "generation": 0, "perplexity": 2.0, "variance": 1.0}
    events = [
        (0.0, RunStarted(Path("runs/r"), "r", "opt", 2, (0,), 0)),
        *((t, Progress(0, "train", s, 90, 2.5, f"epoch 1/3, step {s}/90")) for t, s in ((10, 1), (29.9, 2), (30, 3))),
        *((t, Progress(0, "train", s, 90, 2.4, f"epoch 2/3, step {s}/90")) for t, s in ((45, 40), (60.5, 41))),
        (70.0, GenerationDone(0, (row,), 70.0)),
        (99.0, Progress(1, "sample", 0, 10, None, "generating 0/10 prompts")),
        (100.0, Progress(1, "sample", 4, 10, None, "generating 4/10 prompts")),
    ]
    for t, ev in events:
        clock[0] = t
        view.handle(ev)
    said = [line.split(" ", 2)[2] for line in out.getvalue().splitlines()[2:]]  # after the start's two lines
    assert said == [
        "gen 0 train: epoch 1/3, step 3/90 loss 2.5",
        "gen 0 train: epoch 2/3, step 41/90 loss 2.4",
        said[2],
        "gen 1 sample: generating 4/10 prompts",
    ]
    assert said[2].startswith("gen 0/1  perplexity 2")
    assert Progress(0, "fit", 1, 4).text() == "gen 0 fit 1/4"  # an engine that says no more: step/total

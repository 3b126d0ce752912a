"""The text panes of a real app (App.run_test): each prompt's end with its continuation and no blank-line
runs in the Samples pane; the Diff pane names the text metrics that moved (an opt-tiny run whose rep4 rose)
and compares continuations, symbols included."""

from __future__ import annotations

import asyncio

from conftest import WIKI

from collapse_tui.engines.text_data import with_prompt
from collapse_tui.preset_files import load_preset
from collapse_tui.rundir import RunDir
from collapse_tui.tui.app import build_app

SIZE = (80, 24)


def text_run(tmp_path):
    """An opt-tiny run directory (nothing trained): real prompts, continuations with WikiText's raw line
    breaks, turning into "= = =" headings; rep4 rising 0.31 -> 0.93, distinct_2 falling."""
    lines = [ln for ln in (WIKI / "valid.txt").read_text(encoding="utf-8").splitlines() if len(ln.split()) > 60]
    prompts = [" ".join(ln.split()[:30]) for ln in lines[:3]]
    cfg = load_preset("opt-tiny", ["experiment.generations=2", "experiment.seeds=1"])
    run = RunDir(RunDir.create(tmp_path, cfg).path)
    for g, (rep4, d2) in enumerate(((0.31, 0.5), (0.93, 0.02))):
        run.append_metrics(
            [
                {
                    "seed": 0,
                    "generation": g,
                    "perplexity": 30.0,
                    "variance": 1.0,
                    "rep4": rep4,
                    "distinct_2": d2,
                    "rare_mass": 0.1,
                }
            ]
        )
        cont = (
            [" ".join(ln.split()[30:60]) + " \n \n" for ln in lines[:3]]
            if g == 0
            else [" = = = Early life = = = \n \n \n = = = Early life = = = \n"] * 3
        )
        run.save_samples(g, [with_prompt(p, c) for p, c in zip(prompts, cont)])
    run.write_status(state="stopped", generation=1, error=None)
    return run.path, prompts


def test_samples_show_prompts_with_continuations_and_the_diff_names_what_moved(tmp_path):
    path, prompts = text_run(tmp_path)

    async def check() -> None:
        app = build_app(str(path), [], tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            body = str(app.screen.query_one("#right #body").render())
            assert body.startswith("#1 … " + " ".join(prompts[0].split()[-12:]) + "\n→ = = = Early life = = =\n= = =")
            assert "\n\n\n" not in body and "\n \n" not in body  # one blank line between prompts, none inside
            await pilot.press("2")
            await pilot.pause()
            diff = str(app.screen.query_one("#diff-body").render())
            assert "text metrics that moved, generation 0 -> 1" in diff
            assert any(
                ln.startswith("rep4") and "0.31 -> 0.93" in ln and ln.endswith("+0.62") for ln in diff.split("\n")
            )
            assert "distinct_2" in diff and "rare_mass" not in diff  # it did not move
            assert "appeared" in diff and "= = = early life" in diff.lower()  # symbols count as tokens
            word_diff = diff.split("word diff of continuation #1")[1]
            assert "[-Black Sea . It is" in word_diff and prompts[0][:20] not in diff  # continuations only

    asyncio.run(check())

"""The run screen of a run of several chains, at 80x24: c picks the chain whose trends, table and
samples show; the trends are that chain's medians over seeds."""

from __future__ import annotations

import numpy as np
from conftest import make_run
from test_tui import SIZE, run_async, trend_values, wait_for

from collapse_tui.rundir import RunDir
from collapse_tui.tui.app import build_app
from collapse_tui.tui.components import SamplesView, Trend
from collapse_tui.tui.run_screen import RunScreen


@run_async
async def test_c_picks_the_chain_the_run_screen_shows(tmp_path):
    path = make_run(tmp_path, "points-ecosystem", "experiment.generations=4", "experiment.seeds=3")
    rows = RunDir(path).read_metrics()
    app = build_app(str(path), [], tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: len(trend_values(screen, "variance")) == 4, what="the run's 4 generations")
        for chain in ("gmm", "gauss"):
            assert screen.chain == chain
            assert f"chain {chain} (" in str(screen.query_one("#status").render())
            want = [
                np.median([r["variance"] for r in rows if r["generation"] == g and r["chain"] == chain])
                for g in range(4)
            ]
            np.testing.assert_allclose(trend_values(screen, "variance"), want, rtol=1e-12)
            view = screen.query_one(SamplesView)
            assert view.saved == (0, 1, 2, 3)
            assert np.array_equal(view.samples(3), RunDir(path).load_samples(3, chain))
            assert "dist_" + {"gmm": "gauss", "gauss": "gmm"}[chain] in screen.run_state.keys
            await pilot.press("c")
        assert screen.chain == "gmm"  # round again
        await pilot.press("v")  # a row per chain and metric, each that chain's medians
        rows_shown = [t for t in screen.query(".chain-trend").results(Trend) if t.display]
        assert [(t.sub, t.label) for t in rows_shown] == [
            (k, c) for k in ("perplexity", "variance") for c in ("gmm", "gauss")
        ]
        assert not screen.query_one("#trend-variance", Trend).display
        for t in rows_shown:
            if t.sub == "variance":
                want = [
                    np.median([r["variance"] for r in rows if r["generation"] == g and r["chain"] == t.label])
                    for g in range(4)
                ]
                np.testing.assert_allclose(t.values, want, rtol=1e-12)
        assert len(str(screen.query_one(".chain-trend", Trend).render()).splitlines()[0]) <= 80
        await pilot.press("v")
        assert screen.query_one("#trend-variance", Trend).display

"""The batch output's generation lines: the medians over seeds of the engine's headline metrics (what the
run screen's trend rows show), log-quantities' medians taken in log space."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collapse_tui.cli import main


@pytest.mark.parametrize(
    "preset, sets, keys",
    [
        ("linreg", ["experiment.seeds=9"], ("perplexity", "excess_risk")),
        ("categorical-zipf", ["experiment.seeds=8"], ("perplexity", "support")),
        ("gaussian-quick", ["experiment.seeds=8", "data.detector_auc=false"], ("perplexity", "variance")),
    ],
)
def test_a_generation_line_gives_the_engines_headline_medians(tmp_path, capsys, preset, sets, keys):
    argv = ["--batch", preset, "--runs-dir", str(tmp_path), "--set", "experiment.generations=3"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    last = next(line for line in capsys.readouterr().out.splitlines() if " gen 2/2 " in line)
    words = last.split()
    said = {k: words[words.index(k) + 1] for k in keys}
    assert words[4 : 4 + 2 * len(keys) : 2] == list(keys) and words[4 + 2 * len(keys)].startswith("(")
    (metrics,) = tmp_path.glob("*/metrics.jsonl")
    rows = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["generation"] == 2]
    for key in keys:
        got = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        if key == "perplexity":  # a log-quantity: the median of its logs
            centre = 10 ** np.median(np.log10(got)) if np.isfinite(got).all() else np.nan
        else:
            centre = np.median(got)
        if np.isnan(centre):
            assert said[key] in ("n/a", "inf")
        else:
            assert float(said[key]) == pytest.approx(centre, rel=5e-4)  # 4 significant digits

"""The quick presets are what a new user runs first: each must show the paper's signature within its
run. The headline metric (the run screen's variance trend) falls quarter after quarter of the run:
the median over seeds of its log, for the preset's own seeds and for a second set of seeds."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_preset

QUARTERS = 4


def quarter_medians(by_gen: dict[int, dict[str, np.ndarray]], key: str) -> np.ndarray:
    """Median over seeds and over the generations of each quarter of the run of log10(key)."""
    gens = sorted(by_gen)
    table = np.log10(np.stack([by_gen[g][key] for g in gens]))  # (generations, seeds)
    return np.array([np.median(part) for part in np.array_split(table, QUARTERS)])


@pytest.mark.parametrize(
    ("preset", "seeds", "second", "fall"),
    [
        # by hand at seeds 0-3 and 100-103: -1.8 and -2.7 decades from the first quarter to the last
        ("gmm-quick", 4, 100, 1.0),
        # M = 20, unbiased: E[log var] falls by ~1/(M - 1) a generation, ~4 decades over 200
        ("gaussian-quick", 20, 100, 2.0),
        # 4 generations, so each quarter is one: variance of the reference encoder's means of the
        # samples, by hand 0.61, 0.37, 0.14, 0.003 at seed 0 and 0.64, 0.45, 0.26, 0.056 at seed 1
        ("vae-quick", 1, 1, 0.5),
    ],
)
@pytest.mark.parametrize("which", ["preset", "second"])
def test_quick_demo_variance_falls_quarter_by_quarter(tmp_path, preset, seeds, second, fall, which):
    if preset.startswith("vae"):
        pytest.importorskip("torch")
    first = 0 if which == "preset" else second
    by_gen = run_preset(tmp_path, preset, f"experiment.seeds={list(range(first, first + seeds))}")
    q = quarter_medians(by_gen, "variance")
    assert np.all(np.diff(q) < 0), q
    assert q[-1] < q[0] - fall, q

"""The data modes on marked examples: which real and generated examples the next generation gets."""

from __future__ import annotations

import numpy as np
import pytest

from collapse_tui.datamodes import next_data

S, N = 3, 100


def marked(value: float, n: int = N) -> np.ndarray:
    """(S, n, 2) examples whose first column says where they came from."""
    x = np.zeros((S, n, 2))
    x[..., 0] = value
    x[..., 1] = np.arange(n)
    return x


def mix(mode: str, prev=None, pool=None, **kw):
    real = marked(0)
    args = dict(keep_fraction=0.1, fresh_fraction=0.2, draw_fresh=lambda k: marked(2, k)) | kw
    return next_data(
        mode,
        prev=real if prev is None else prev,
        pool=real if pool is None else pool,
        real=real,
        samples=marked(1),
        rngs=[np.random.default_rng(i) for i in range(S)],
        **args,
    )


def test_replace_trains_on_the_samples_alone():
    data, _ = mix("replace")
    assert (data[..., 0] == 1).all() and data.shape == (S, N, 2)


def test_keep_redraws_its_real_share_each_generation():
    data, _ = mix("keep")
    assert data.shape == (S, N, 2) and ((data[..., 0] == 0).sum(axis=1) == 10).all()
    real_ids = [set(data[s, data[s, :, 0] == 0, 1]) for s in range(S)]
    assert len({frozenset(ids) for ids in real_ids}) == S  # each seed drew its own real examples
    samples_ids = data[0, data[0, :, 0] == 1, 1]
    assert len(set(samples_ids)) == 90  # drawn without replacement


def test_accumulate_grows_and_subsample_keeps_the_size():
    data, pool = mix("accumulate")
    assert data.shape == (S, 2 * N, 2) and pool is data
    data2, _ = mix("accumulate", prev=data)
    assert data2.shape == (S, 3 * N, 2)
    sub, pool = mix("accumulate-subsample")
    assert sub.shape == (S, N, 2) and pool.shape == (S, 2 * N, 2)
    assert 0 < (sub[..., 0] == 0).sum() < S * N  # a mix of real and generated


def test_fresh_draws_new_real_examples():
    data, _ = mix("fresh")
    assert ((data[..., 0] == 2).sum(axis=1) == 20).all() and ((data[..., 0] == 1).sum(axis=1) == 80).all()


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError):
        mix("forget")

"""Seeds pooling their samples (data.share_seeds) against the single-Gaussian theory (paper.md section 1).

With share_seeds = 1 the K seeds of a population all fit the pooled K x M samples from generation 1
on: they share one model, and from there the population is one chain of sample size K x M. Each fit
after generation 1 multiplies the variance by chi2_{KM-1} / (KM - 1) (unbiased estimator), so
log(sigma_n^2 / sigma_1^2) has mean (n - 1) (psi((KM-1)/2) + log(2 / (KM - 1))) and variance
(n - 1) psi'((KM-1)/2); its exp is the median of the variance ratio. With share 0 the same holds with M.
Tolerances: four standard errors of the mean over the populations (a correct run fails one assertion
with probability about 6e-5), and the test asserts it can tell M = 400 from M = 100 apart.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_preset
from scipy.special import digamma, polygamma

K, M, N = 4, 100, 60  # seeds per population, samples per seed, last generation
POPULATIONS = 200


def closed_form(m: int, fits: int) -> tuple[float, float]:
    """Mean and standard deviation of the log variance ratio after `fits` unbiased fits to m samples."""
    return fits * (digamma((m - 1) / 2) + np.log(2 / (m - 1))), np.sqrt(fits * polygamma(1, (m - 1) / 2))


@pytest.mark.parametrize("share, pooled", [(1.0, K * M), (0.0, M)])
def test_pooled_seeds_follow_the_closed_form_of_the_pooled_sample_size(tmp_path, share, pooled):
    rows = run_preset(
        tmp_path,
        "gaussian",
        f"experiment.generations={N + 1}",
        f"experiment.seeds={K * POPULATIONS}",
        f"engine.samples={M}",
        "engine.test_samples=10",
        f"data.share_seeds={share}",
        f"data.population={K}",
    )
    assert (rows[1]["train_size"] == pooled).all() and (rows[0]["train_size"] == M).all()
    var1, var_n = rows[1]["fit_std"] ** 2, rows[N]["fit_std"] ** 2
    if share == 1:  # one model per population from generation 1 on (each seed sums the pool in its own order)
        assert (np.ptp(var_n.reshape(POPULATIONS, K), axis=1) <= 1e-12 * var_n.reshape(POPULATIONS, K)[:, 0]).all()
    log_ratio = np.log(var_n / var1)
    if share == 1:
        log_ratio = log_ratio.reshape(POPULATIONS, K)[:, 0]  # one per population: the independent ones
    mean, sd = closed_form(pooled, N - 1)
    se = sd / np.sqrt(log_ratio.size)
    assert abs(log_ratio.mean() - mean) < 4 * se, (log_ratio.mean(), mean, se)
    assert abs(log_ratio.std(ddof=1) / sd - 1) < 0.25
    # the other sample size's closed form is more than 8 standard errors away
    other = closed_form(M if pooled != M else K * M, N - 1)[0]
    assert abs(other - mean) > 8 * se
    # the median variance ratio, the paper's quantity: exp of the mean log under the lognormal law
    assert np.median(np.exp(log_ratio)) == pytest.approx(np.exp(mean), rel=8 * se)

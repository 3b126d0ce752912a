"""The paper's single-Gaussian theory (Nature 3.1, SI 3.1.1), run through the real loop and run dir.

Each tolerance is four standard errors of the estimate, measured from the seeds themselves, so a
correct engine fails with probability about 6e-5 per assertion; the SE bounds assert that the test
has the power to tell the closed forms apart from the no-collapse values (1.11 vs 1, 0.165 vs 0.015).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_preset
from scipy.special import digamma, gammaln, polygamma

M = 100


def assert_close(values: np.ndarray, expected: float, max_se: float) -> None:
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert se < max_se, f"too few seeds to test: SE {se:.4f}"
    assert abs(values.mean() - expected) < 4 * se, f"{values.mean():.4f} vs {expected:.4f} (SE {se:.4f})"


def test_generation_10_matches_the_closed_forms(tmp_path):
    g10 = run_preset(
        tmp_path, "gaussian", "experiment.generations=11", "experiment.seeds=10000", f"engine.samples={M}"
    )[10]
    # the model of generation 10 is N(mu_10, sigma_10^2), fitted 11 times (generation 0 is one fit)
    mu, sigma = g10["mean_shift"], g10["fit_std"]  # 1-D: mean_shift = |mu_10|, fit_std = sigma_10
    # Var(X^10) pooled over seeds = E[sigma^2] + E[mu^2] = 1 + 11/M exactly for unbiased fits
    assert_close(sigma**2 + mu**2, 1 + 11 / M, max_se=0.01)
    # E[W2^2(N(mu, sigma^2), N(0, 1))] = E[mu^2] + E[(sigma - 1)^2] = 11/M + 2 - 2 E[sigma],
    # E[sigma] = c^11 with c = E[sqrt(chi2_{M-1} / (M-1))]; to first order (3/2)(11/M) = 0.165
    c = np.exp(0.5 * np.log(2 / (M - 1)) + gammaln(M / 2) - gammaln((M - 1) / 2))
    exact = 11 / M + 2 - 2 * c**11
    assert abs(exact - 1.5 * 11 / M) < 0.001
    assert_close(g10["w2"] ** 2, exact, max_se=0.003)
    # within one seed the sample variance stays 1 on average: sigma_n^2 is a martingale
    assert_close(g10["variance"], 1.0, max_se=0.01)


@pytest.mark.parametrize("estimator, ddof", [("unbiased", 1), ("mle", 0)])
def test_log_variance_of_the_fit_follows_its_closed_form_for_both_estimators(tmp_path, estimator, ddof):
    """Each fit multiplies the model's variance by chi2_{M-1} / (M - ddof), independently, so after the
    n + 1 fits of generation n, log sigma_n^2 has mean (n + 1) (psi((M-1)/2) + log(2 / (M - ddof))) and
    variance (n + 1) psi'((M-1)/2); its exp is the median variance: 0.36 (unbiased) and 0.13 (mle) at
    generation 99, the paper's 0.38 and 0.14."""
    n, seeds = 99, 500
    rows = run_preset(
        tmp_path,
        "gaussian",
        f"experiment.generations={n + 1}",
        f"experiment.seeds={seeds}",
        f"engine.estimator={estimator!r}",
        "engine.test_samples=10",
    )
    log_var = np.log(rows[n]["fit_std"] ** 2)
    mean = (n + 1) * (digamma((M - 1) / 2) + np.log(2 / (M - ddof)))
    sd = np.sqrt((n + 1) * polygamma(1, (M - 1) / 2))
    assert abs(log_var.mean() - mean) < 4 * sd / np.sqrt(seeds), (log_var.mean(), mean)
    assert abs(log_var.std(ddof=1) / sd - 1) < 0.1
    assert np.exp(mean) == pytest.approx({"unbiased": 0.363, "mle": 0.133}[estimator], abs=0.001)
    # the two estimators are ~(n + 1) / M = 1.0 apart in log variance: over 10 standard errors
    assert (n + 1) * np.log(M / (M - 1)) > 10 * sd / np.sqrt(seeds)


def test_each_seed_variance_heads_to_zero_and_accumulate_keeps_it(tmp_path):
    replace = run_preset(tmp_path / "r", "gaussian", "experiment.generations=1200", "experiment.seeds=64")
    last = replace[1199]["variance"]
    # log sigma^2 drifts by about -1/M a generation: median about e^-12 after 1200 generations
    assert np.median(last) < 1e-3 and (last < 0.1).mean() > 0.9
    assert np.median(replace[0]["variance"]) > 0.8
    # Gerstgrasser et al.: accumulating all data keeps the variance near 1 where replace loses most
    acc = run_preset(
        tmp_path / "a", "gaussian", "experiment.generations=200", "experiment.seeds=64", "data.mode=accumulate"
    )
    rep = replace[199]["variance"]
    assert np.median(acc[199]["variance"]) > 0.7 and np.median(rep) < 0.4
    assert np.median(acc[199]["w2"]) < 0.5 * np.median(replace[199]["w2"])
    assert acc[199]["train_size"][0] == 200 * M  # the accumulated set grew by M each generation


@pytest.mark.parametrize("mode", ["keep", "fresh", "accumulate-subsample"])
def test_real_data_modes_slow_the_collapse(tmp_path, mode):
    rows = run_preset(
        tmp_path,
        "gaussian",
        "experiment.generations=300",
        "experiment.seeds=64",
        f"data.mode={mode}",
        "data.keep_fraction=0.5",
        "data.fresh_fraction=0.5",
    )
    assert (rows[299]["train_size"] == M).all()
    assert np.median(rows[299]["variance"]) > 0.5  # replace: median about e^-3 = 0.05 by now


def test_filter_keeps_the_samples_the_reference_finds_most_typical(tmp_path):
    rows = run_preset(
        tmp_path,
        "gaussian",
        "experiment.generations=2",
        "experiment.seeds=64",
        "data.filter=perplexity",
        "data.filter_keep=0.5",
    )
    # generation 1 trains on the central half of N(0, 1)-like samples: variance 1 - 2*0.674*phi(0.674)/0.5 = 0.143
    assert 0.1 < np.median(rows[1]["fit_std"] ** 2) < 0.2
    assert np.median(rows[0]["fit_std"] ** 2) > 0.8

"""The slow calibration tier: SBC with 200 simulations, full and collapsed.

Run by ``.ci/run`` after the default suite (``bash run.sh test -m slow``); the default
``bash run.sh test`` leaves it out. A slopes-plus-correlation model, so every kind of
hyperparameter is ranked (β, σ, two SDs and a correlation).

How the checks are set: with 200 simulations and 99 thinned draws the rank ECDF of a
calibrated fit stays inside the simultaneous 99% band of Säilynoja et al. (2022) for
each parameter, so over the 6 parameters the chance of a false alarm is at most ~6%;
we ask for 99.9% bands per parameter (false alarm at most ~0.6% per method). A
posterior 20% too narrow moves the truth outside the central 90% interval in ~19% of
simulations instead of 10%: over 200 simulations that is a shift of ~4 binomial SDs
(sd of the coverage ≈ 0.021), which the band check and the chi-square test both flag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arviz_stats.ecdf_utils import ecdf_pit

import lmm_bayes as lb
from lmm_bayes.calibration import workers
from lmm_bayes.calibration.sbc import SBCResult, ranks_dataset
from lmm_bayes.inference.layout import hyperparameters

pytestmark = pytest.mark.slow

N_SIMS = 200
BAND = 0.999
SBC_ARGS = dict(draws=200, tune=300, chains=2, thin=4, progressbar=False)  # 2 * 50 = 100 ranked draws


def slopes_model() -> lb.LMM:
    rng = np.random.default_rng(7)
    g = np.repeat([f"g{k}" for k in range(12)], 8)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "y": rng.normal(size=g.size)})
    priors = {
        "Intercept": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "x": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "sigma": {"dist": "HalfNormal", "sigma": 1.0},
        "g": {"sd": {"dist": "HalfNormal", "sigma": 1.0}, "eta": 2.0},
    }
    return lb.LMM("y ~ x + (1 + x | g)", df, priors=priors)


def outside_band(result: SBCResult, prob: float = BAND) -> dict[str, float]:
    """Per parameter, how far (in ECDF units) the ranks' ECDF leaves the simultaneous band (0: inside)."""
    pit = result.pit()
    worst = {}
    for name, da in pit.data_vars.items():
        flat = da.values.reshape(da.sizes["sim"], -1)
        for k in range(flat.shape[1]):
            x, ecdf, lower, upper = ecdf_pit(flat[:, k], prob, 1000, rng=np.random.default_rng(0))
            worst[f"{name}[{k}]"] = float(max(np.max(lower - ecdf), np.max(ecdf - upper), 0.0))
    return worst


@pytest.fixture(scope="module")
def dask_client():
    import distributed  # a declared test dependency: missing, the tests fail rather than skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.mark.parametrize("method", ["collapsed", "full"])
def test_sbc_200_simulations_is_calibrated(dask_client, method):
    res = lb.sbc(slopes_model(), n_sims=N_SIMS, seed=11, executor=dask_client, method=method, **SBC_ARGS)
    assert res.ranks.sizes["sim"] == N_SIMS
    assert set(res.ranks.data_vars) == {"beta", "sigma", "g_sd", "g_corr"}
    out = outside_band(res)
    assert max(out.values()) == 0.0, f"{method}: rank ECDF outside the {BAND:.1%} band: {out}"
    assert res.uniformity["p_value"].min() > 0.001, res.uniformity
    # the central 90% interval covers the truth 90% of the time, within 4 binomial SDs
    sd = np.sqrt(0.9 * 0.1 / N_SIMS)
    assert (res.coverage["90%"] - 0.9).abs().max() < 4 * sd, res.coverage


def test_a_posterior_20_percent_too_narrow_is_caught(monkeypatch):
    """The same 200 fits ranked twice: as sampled (calibrated) and shrunk 20% toward their mean."""
    calibrated: list[np.ndarray] = []
    rank = workers.rank_truth

    def narrow(posterior, truth, params, thin):
        calibrated.append(rank(posterior, truth, params, thin))
        sample = ("chain", "draw")
        return rank(posterior - 0.2 * (posterior - posterior.mean(sample)), truth, params, thin)

    monkeypatch.setattr(workers, "rank_truth", narrow)
    model = slopes_model()
    narrowed = lb.sbc(model, n_sims=N_SIMS, seed=12, method="collapsed", **SBC_ARGS)
    params = hyperparameters(model.design)
    honest = SBCResult.from_ranks(ranks_dataset(np.stack(calibrated), params, {}), narrowed.n_draws)

    assert max(outside_band(honest).values()) == 0.0, outside_band(honest)
    assert max(outside_band(narrowed).values()) > 0.0
    assert narrowed.uniformity["p_value"].min() < 0.001, narrowed.uniformity
    # too narrow: the 90% intervals cover clearly less than 90%
    assert narrowed.coverage["90%"].mean() < 0.9 - 3 * np.sqrt(0.9 * 0.1 / N_SIMS), narrowed.coverage


def bernoulli_model() -> lb.GLMM:
    """Choices of 12 participants x 10 trials, logit p = Intercept + x + b (a GLMM: full method, non-centered)."""
    rng = np.random.default_rng(8)
    g = np.repeat([f"p{k}" for k in range(12)], 10)
    df = pd.DataFrame({"g": g, "x": rng.normal(size=g.size), "y": rng.integers(0, 2, g.size)})
    priors = {
        "Intercept": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "x": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "g": {"sd": {"dist": "HalfNormal", "sigma": 1.0}},
    }
    return lb.GLMM("y ~ x + (1 | g)", df, family="bernoulli", priors=priors)


def test_sbc_200_simulations_of_a_glmm_is_calibrated(dask_client):
    """Issue 20: the Bernoulli likelihood in simulation and fit, ranked as for the LMM, same thresholds."""
    res = lb.sbc(bernoulli_model(), n_sims=N_SIMS, seed=12, executor=dask_client, **SBC_ARGS)
    assert res.ranks.sizes["sim"] == N_SIMS and res.ranks.attrs["family"] == "bernoulli"
    assert set(res.ranks.data_vars) == {"beta", "g_sd"}
    out = outside_band(res)
    assert max(out.values()) == 0.0, f"rank ECDF outside the {BAND:.1%} band: {out}"
    assert res.uniformity["p_value"].min() > 0.001, res.uniformity
    sd = np.sqrt(0.9 * 0.1 / N_SIMS)
    assert (res.coverage["90%"] - 0.9).abs().max() < 4 * sd, res.coverage

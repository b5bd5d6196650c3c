"""Exact draws of the Gaussian no- and complete-pooling models (inference/conjugate.py), against dense algebra.

The reference integrates the dense Gaussian algebra over a fine grid of σ: the marginal likelihood
N(y | W m0, σ²I + W S0 Wᵀ) from scipy, and θ | σ, y from the dense precision S0⁻¹ + WᵀW/σ².
The draws are independent, so each posterior mean's Monte Carlo SE is its SD / √draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lmm_bayes.inference.conjugate import exact_draws, sigma_log_prior
from lmm_bayes.spec.distribution import Prior

SIGMA_PRIORS = [Prior("HalfNormal", sigma=2.0), Prior("Exponential", lam=0.5), Prior("HalfStudentT", nu=3.0, sigma=1.0),
                Prior("HalfCauchy", beta=1.0)]


def _problem(seed: int, *, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    J, codes = 6, np.repeat(np.arange(6), [2, 3, 5, 8, 4, 1])
    n = len(codes)
    x, w = rng.normal(size=n), rng.normal(size=n)
    y = offset + 1 + rng.normal(0, 1, J)[codes] + 0.5 * x + 0.7 * w + rng.normal(0, 0.8, n)
    Zc = np.column_stack([np.ones(n), x])
    shared = (np.array([0.0]), np.array([3.0]))
    cluster = (np.array([offset + 1.0, 0.0]), np.array([4.0, 2.0]))
    return y, w[:, None], Zc, codes, J, shared, cluster


def _dense_reference(y, Xs, Zc, codes, J, shared, cluster, prior):
    """E[θ], E[σ] and SD[σ] by integrating the dense algebra over a grid of σ."""
    n, p = Xs.shape
    q = Zc.shape[1]
    W = np.zeros((n, p + J * q))
    W[:, :p] = Xs
    for i, j in enumerate(codes):
        W[i, p + j * q: p + (j + 1) * q] = Zc[i]
    m0 = np.concatenate([shared[0], np.tile(cluster[0], J)])
    S0 = np.diag(np.concatenate([shared[1], np.tile(cluster[1], J)]) ** 2)
    grid = np.linspace(0.05, 4.0, 4000)
    logd = np.array([stats.multivariate_normal.logpdf(y, W @ m0, s**2 * np.eye(n) + W @ S0 @ W.T) for s in grid])
    logd += sigma_log_prior(prior, grid)
    wts = np.exp(logd - logd.max())
    wts /= wts.sum()
    means = []
    for s in grid:
        P = np.linalg.inv(S0) + W.T @ W / s**2
        means.append(m0 + np.linalg.solve(P, W.T @ (y - W @ m0) / s**2))
    theta = wts @ np.array(means)
    e_sigma = wts @ grid
    return theta, e_sigma, np.sqrt(wts @ (grid - e_sigma) ** 2)


@pytest.mark.parametrize("prior", SIGMA_PRIORS, ids=lambda p: p.dist)
def test_exact_draws_match_the_dense_posterior(prior):
    y, Xs, Zc, codes, J, shared, cluster = _problem(1)
    theta, e_sigma, sd_sigma = _dense_reference(y, Xs, Zc, codes, J, shared, cluster, prior)
    d = exact_draws(y, Xs, Zc, codes, J, shared_prior=shared, cluster_prior=cluster, sigma_prior=prior,
                    chains=2, draws=10_000, seed=2)
    S = 20_000
    drawn = np.concatenate([d.beta.reshape(S, -1), d.coef.reshape(S, -1)], axis=1)
    z = (drawn.mean(0) - theta) / (drawn.std(0) / np.sqrt(S))
    assert np.abs(z).max() < 4.5, z  # 13 means: 4.5 MCSE leaves a false alarm rate below 1e-4
    assert abs(d.sigma.mean() - e_sigma) < 4.5 * d.sigma.std() / np.sqrt(S)
    assert d.sigma.std() == pytest.approx(sd_sigma, rel=0.05)


def test_exact_draws_do_not_depend_on_where_the_data_sit():
    """A response shifted by 1e9 (with the priors shifted alike) gives the same posterior of everything else."""
    prior = SIGMA_PRIORS[0]
    base = _problem(3)
    far = _problem(3, offset=1e9)
    kw = {"sigma_prior": prior, "chains": 1, "draws": 4000, "seed": 5}
    a = exact_draws(*base[:5], shared_prior=base[5], cluster_prior=base[6], **kw)
    b = exact_draws(*far[:5], shared_prior=far[5], cluster_prior=far[6], **kw)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=1e-6)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.coef[..., 1], a.coef[..., 1], rtol=1e-6, atol=1e-6)


def test_no_and_complete_pooling_of_a_gaussian_model_are_exact():
    import lmm_bayes as lb
    from lmm_bayes.inference.sampling import SamplerSettings
    from lmm_bayes.teaching.pooling_models import fit_complete_pooling, fit_no_pooling

    df = lb.datasets.load("sleepstudy")
    settings = SamplerSettings(draws=500, tune=100, chains=2, seed=1, progressbar=False)
    model = lb.LMM("Reaction ~ Days + (Days | Subject)", df)
    no = fit_no_pooling(model, "Subject", settings=settings)
    complete = fit_complete_pooling(model, "Subject", settings=settings)
    assert no.idata.attrs["method"] == complete.idata.attrs["method"] == "exact"
    health = no.diagnostics()
    assert health["divergences"] == 0 and health["min_ess_bulk"] > 800  # independent draws: ESS about 1000
    # each subject's own line: its least squares (the priors are wide), within 4 MCSE
    coef = no.coef_draws("Subject")
    for j, (_, rows) in enumerate(df.groupby("Subject", sort=True)):
        ols = np.polyfit(rows["Days"], rows["Reaction"], 1)[::-1]
        one = coef.isel(Subject=j).values.reshape(-1, 2)
        assert np.all(np.abs(one.mean(0) - ols) < 4 * one.std(0) / np.sqrt(len(one)) + 0.01 * one.std(0))
    # a Student-t prior on a shared coefficient is not conjugate: the sampler takes it
    t = lb.LMM("Reaction ~ Days + (1 | Subject)", df, priors={"Days": lb.Prior("StudentT", nu=3, mu=0, sigma=20)})
    assert fit_no_pooling(t, "Subject", settings=settings).idata.attrs["method"] == "full"

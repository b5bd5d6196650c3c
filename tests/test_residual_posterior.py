"""The structured method's posterior against the full PyMC graph of the same model (b sampled, R explicit).

The full graph writes the AR(1) likelihood in its innovation form row by row
(``e_1 ~ N(0, sigma_j)``, ``e_i - phi e_(i-1) ~ N(0, sigma_j sqrt(1 - phi^2))``, ``phi = rho^gap``), with the
package's priors, and is sampled with nutpie; the posterior means must agree in Monte Carlo standard errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb

pytestmark = pytest.mark.slow


def _data(seed: int = 2, J: int = 8, T: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(J):
        s = 0.5 * np.exp(rng.normal(scale=0.5))
        e = np.empty(T)
        e[0] = rng.normal()
        for t in range(1, T):
            e[t] = 0.5 * e[t - 1] + np.sqrt(0.75) * rng.normal()
        trials = np.sort(rng.choice(np.arange(1, T + 6), size=T, replace=False))  # a few gaps
        x = rng.normal(size=T)
        y = 1.0 + 0.4 * x + rng.normal(scale=0.7) + s * e
        rows += [{"g": f"c{j}", "trial": int(trials[t]), "x": x[t], "y": y[t]} for t in range(T)]
    return pd.DataFrame(rows)


def _full_graph(design, priors):
    """The same model with every b a parameter and R's AR(1) written out row by row."""
    import pymc as pm
    import pytensor.tensor as pt

    from lmm_bayes.inference.graph import add_fixed_effects, add_group_covariance, add_sigma

    res = design.residual
    g = design.group("g")
    order = res.order
    first = res.gap[order] == 0
    with pm.Model(coords={"coef": list(design.X_columns), "g": list(g.levels), "g_effect": list(g.effects)}) as m:
        beta = add_fixed_effects(design, priors)
        _, L = add_group_covariance(g, priors.group_by_name["g"])
        sigma = add_sigma(priors)
        tau = pm.HalfNormal("sigma_sd", 1.0)
        u = pm.Deterministic("sigma_u", pm.Normal("sigma_log", pt.log(sigma), tau, dims="g") - pt.log(sigma), dims="g")
        rho = pm.Uniform("rho", -1.0, 1.0)
        z = pm.Normal("g_z", 0.0, 1.0, dims=("g", "g_effect"))
        b = pt.dot(z, L.T)
        codes = g.codes[order]
        mu = pt.dot(design.X[order], beta) + pt.sum(g.Z[order] * b[codes], axis=1)
        e = design.y[order] - mu
        s_row = sigma * pt.exp(u[codes])
        phi = rho ** res.gap[order].astype(float)
        prev = pt.concatenate([pt.zeros(1), e[:-1]])
        innov = pt.where(first, e, e - phi * prev)
        scale = pt.where(first, s_row, s_row * pt.sqrt(1 - phi**2))
        pm.Potential("ar_lik", pm.logp(pm.Normal.dist(0.0, scale), innov).sum())
    return m


def test_posterior_matches_full_graph():
    import arviz_stats as azs
    import nutpie

    from lmm_bayes.inference.methods.structured.likelihood import build_structured_model

    model = lb.LMM("y ~ x + (1 | g)", _data(), sigma="~ (1 | g)", ar="trial | g")
    d, p = model.design, model.priors
    post = {}
    for name, graph in (("collapsed", build_structured_model(d, p)), ("full", _full_graph(d, p))):
        trace = nutpie.sample(nutpie.compile_pymc_model(graph), draws=1500, tune=1000, chains=4, seed=3,
                              progress_bar=False)
        post[name] = trace.posterior.to_dataset() if hasattr(trace.posterior, "to_dataset") else trace.posterior
    names = ["beta", "sigma", "g_sd", "sigma_sd", "sigma_u", "rho"]
    for v in names:
        a, b = post["collapsed"][v], post["full"][v]
        mcse = np.sqrt(azs.mcse(a.to_dataset())[v].values ** 2 + azs.mcse(b.to_dataset())[v].values ** 2)
        diff = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values)
        assert np.all(diff < 4 * mcse), (v, diff, mcse)


def test_sigma_by_level_alone_fits_with_loo():
    """sigma= without ar=: the fit stores each row's log-likelihood (rows independent given b), LOO runs,
    and the residual SDs of two groups of levels are told apart."""
    rng = np.random.default_rng(7)
    J, T = 12, 40
    sig = np.where(np.arange(J) < 6, 0.5, 1.5)
    g = np.repeat([f"c{j:02d}" for j in range(J)], T)
    x = rng.normal(size=J * T)
    y = 1.0 + 0.5 * x + np.repeat(rng.normal(size=J), T) + np.repeat(sig, T) * rng.normal(size=J * T)
    fit = lb.LMM("y ~ x + (1 | g)", pd.DataFrame({"g": g, "x": x, "y": y}), sigma="~ (1 | g)").fit(
        draws=300, tune=300, chains=2, seed=2, progressbar=False)
    assert "log_likelihood" in fit.idata.children
    loo = fit.loo()
    assert np.isfinite(loo.elpd)
    table = fit.residual_sd()
    assert table["mean"].iloc[6:].min() > table["mean"].iloc[:6].max()

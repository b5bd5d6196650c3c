"""PSIS-LOO, comparing fits and R² (lmm_bayes.results.comparison)."""

from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import arviz as az
import arviz_stats
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

import lmm_bayes as lb
from lmm_bayes.results.comparison import r2_draws

DATA = Path(__file__).parent / "data"
SLOPES = "Reaction ~ Days + (Days | Subject)"
INTERCEPT = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(scope="module")
def fits(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {f: lb.LMM(f, sleepstudy).fit(seed=3, progressbar=False) for f in (INTERCEPT, SLOPES)}


def _point_posterior(entry: dict, design) -> types.SimpleNamespace:
    """A one-draw 'fit' at lme4's estimates (fixef, varcorr, sigma as r2_performance.json has them)."""
    name = {"(Intercept)": "Intercept"}
    data = {"beta": (("chain", "draw", "coef"), [[[entry["fixef"][k] for k in entry["fixef"]]]]),
            "sigma": (("chain", "draw"), [[entry["sigma"]]])}
    coords = {"coef": [name.get(k, k) for k in entry["fixef"]]}
    for g in design.groups:
        rows = [r for r in entry["varcorr"] if r["grp"] == g.name]
        effects = list(g.effects)
        sd = np.zeros(len(effects))
        R = np.eye(len(effects))
        for r in rows:
            a = effects.index(name.get(r["var1"], r["var1"]))
            if r["var2"] is None:
                sd[a] = r["sdcor"]
            else:
                c = effects.index(name.get(r["var2"], r["var2"]))
                R[a, c] = R[c, a] = r["sdcor"]
        data[f"{g.name}_sd"] = (("chain", "draw", g.effect_dim), [[sd]])
        coords[g.effect_dim] = effects
        if g.correlated:
            data[f"{g.name}_corr"] = (("chain", "draw", g.effect_dim, f"{g.effect_dim}_bis"), [[R]])
            coords[f"{g.effect_dim}_bis"] = effects
    return types.SimpleNamespace(posterior=xr.Dataset(data, coords=coords), design=design)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_r2_formula_equals_performance_r2_nakagawa_at_lme4_estimates(index, sleepstudy):
    """Exact: the formula evaluated at lme4's REML estimates is performance::r2_nakagawa's value."""
    entry = json.loads((DATA / "r2_performance.json").read_text())["entries"][index]
    data = sleepstudy if entry["dataset"] == "sleepstudy" else pd.read_csv(DATA / "crossed_sim.csv")
    design = lb.LMM(entry["formula"], data).design
    got = r2_draws(_point_posterior(entry, design)).values[0, 0]
    np.testing.assert_allclose(got, [entry["r2_marginal"], entry["r2_conditional"]], rtol=1e-9)


def test_r2_per_draw_equals_a_hand_computation(fits):
    """Draw by draw: var(X beta) and mean diag(Z Lambda Z') with the full Z and Lambda = I (x) G."""
    fit = fits[SLOPES]
    d, post = fit.design, fit.posterior
    got = r2_draws(fit).transpose("chain", "draw", "r2").values
    Z = d.Z.toarray()
    for c, k in [(0, 0), (1, 17), (3, 999)]:
        one = post.isel(chain=c, draw=k)
        fixed = np.var(d.X @ one["beta"].values, ddof=1)
        sd, R = one["Subject_sd"].values, one["Subject_corr"].values
        Lam = np.kron(np.eye(d.groups[0].n_levels), np.outer(sd, sd) * R)
        random = np.mean(np.diag(Z @ Lam @ Z.T))
        total = fixed + random + float(one["sigma"]) ** 2
        np.testing.assert_allclose(got[c, k], [fixed / total, (fixed + random) / total], rtol=1e-10)


def test_r2_table_summarises_the_draws(fits):
    table = fits[SLOPES].r2()
    assert list(table.index) == ["marginal", "conditional"]
    draws = r2_draws(fits[SLOPES])
    for name in table.index:
        assert table.loc[name, "mean"] == pytest.approx(float(draws.sel(r2=name).mean()), rel=1e-12)
    # performance's point values (0.279, 0.799) lie inside the posterior intervals
    assert table.loc["marginal", "hdi_low"] < 0.2787 < table.loc["marginal", "hdi_high"]
    assert table.loc["conditional", "hdi_low"] < 0.7992 < table.loc["conditional", "hdi_high"]


def test_loo_agrees_with_importance_sampling_written_out(fits):
    """``fit.loo()`` against LOO computed here from the definition, not from the stored values or arviz.

    The pointwise log-likelihood is recomputed with scipy from beta, Subject_b, sigma and the data. For each
    row, E_post[1 / p(y_i | theta)] = 1 / p(y_i | y_-i), so plain importance sampling estimates elpd_i by
    -log mean_s exp(-ll_is): PSIS smooths only the largest ratios of the same draws, so the two agree
    within the IS estimate's Monte Carlo error, se_i = sd(w) / (mean(w) sqrt(ESS(w))), w = exp(-ll_i)
    (delta method). Checked on the rows with Pareto k < 0.5 (finite-variance ratios, where se_i is
    trustworthy; 172 of 180 rows here): their summed elpd within 4 SE (measured: 0.02 against an SE of
    0.11). p_loo = lppd - elpd exactly, lppd = sum_i log mean_s p(y_i | theta_s) by hand; elpd = sum elpd_i.
    Measured on scratch edits of the stored log-likelihood (layout): sigma x 1.1 fails the first check
    (-2.36 against 0.47); sigma x 1.02 passes it (-0.15: a 2% sigma barely moves a Gaussian's summed
    log density) and fails the p_loo identity (31.60 against 32.63)."""
    fit = fits[SLOPES]
    post = fit.posterior.transpose("chain", "draw", ...)
    d = fit.design
    (g,) = d.groups
    b = post["Subject_b"].sel(Subject=list(g.levels), Subject_effect=["Intercept", "Days"]).values[:, :, g.codes]
    Zrows = np.column_stack([np.ones(d.n), d.data["Days"].to_numpy()])
    mu = post["beta"].sel(coef="Intercept").values[..., None] + post["beta"].sel(coef="Days").values[..., None] \
        * d.data["Days"].to_numpy() + np.einsum("cdnq,nq->cdn", b, Zrows)
    ll = stats.norm.logpdf(d.y, mu, post["sigma"].values[..., None])
    S = ll.shape[0] * ll.shape[1]
    is_i = -(special.logsumexp(-ll, axis=(0, 1)) - np.log(S))
    w = np.exp(-(ll - ll.min(axis=(0, 1))))  # the ratios, rescaled per row
    ess = np.array([float(az.ess(xr.DataArray(w[..., i], dims=("chain", "draw")), method="mean"))
                    for i in range(d.n)])
    se_i = w.std(axis=(0, 1)) / w.mean(axis=(0, 1)) / np.sqrt(ess)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fit.loo()
    elpd_i, k = np.asarray(ours.elpd_i), np.asarray(ours.pareto_k)
    ok = k < 0.5
    assert ok.sum() > 150, ok.sum()
    gap = float(np.sum(elpd_i[ok] - is_i[ok]))
    assert abs(gap) < 4 * np.sqrt(np.sum(se_i[ok] ** 2)), (gap, np.sqrt(np.sum(se_i[ok] ** 2)))
    assert ours.elpd == pytest.approx(elpd_i.sum(), rel=1e-12)
    lppd = float(np.sum(special.logsumexp(ll, axis=(0, 1)) - np.log(S)))
    assert ours.p == pytest.approx(lppd - ours.elpd, rel=1e-9)


def test_high_pareto_k_gives_one_warning_that_says_what_to_do(fits, monkeypatch):
    real = az.loo

    def with_two_bad(*args, **kwargs):
        res = real(*args, **kwargs)
        k = np.full(np.shape(res.pareto_k), 0.1)
        k[:2] = 1.2
        res.pareto_k = xr.DataArray(k, dims=res.pareto_k.dims)
        return res

    monkeypatch.setattr(arviz_stats, "loo", with_two_bad)  # comparison.loo imports arviz_stats at first use
    with pytest.warns(UserWarning, match=r"PSIS-LOO: observations with a Pareto k above 0.7: 2 in this fit\. .*K-fold"):
        fits[SLOPES].loo()


def test_compare_ranks_the_random_slope_model_first(fits):
    """Sleepstudy's subjects differ in slope: lme4's LRT and every LOO comparison prefer (Days | Subject)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lb.compare({"intercept": fits[INTERCEPT], "slopes": fits[SLOPES]})
        direct = az.compare({"intercept": fits[INTERCEPT].idata, "slopes": fits[SLOPES].idata}, round_to="none")
    assert list(table.index) == ["slopes", "intercept"]
    pd.testing.assert_frame_equal(table, direct)
    assert table.loc["intercept", "elpd_diff"] < -table.loc["intercept", "dse"]  # measured: -24.2, dse 11.6


def test_compare_and_loo_errors(fits, sleepstudy):
    with pytest.raises(TypeError, match="dict of two or more fits"):
        lb.compare([fits[SLOPES]])
    with pytest.raises(TypeError, match="dict of two or more fits"):
        lb.compare({"one": fits[SLOPES]})
    with pytest.raises(TypeError, match=r"fits\['b'\] is a str, not a fit"):
        lb.compare({"a": fits[SLOPES], "b": "fit"})
    other = lb.LMM(SLOPES, sleepstudy.iloc[:170]).fit(seed=1, progressbar=False, draws=100, tune=200)
    with pytest.raises(ValueError, match="same response values"):
        lb.compare({"a": fits[SLOPES], "b": other})
    light = lb.LMM(SLOPES, sleepstudy).fit(seed=1, progressbar=False, draws=100, tune=200, log_likelihood=False)
    with pytest.raises(ValueError, match="no pointwise log-likelihood: refit with log_likelihood=True"):
        light.loo()
    with pytest.raises(ValueError, match=r"fits\['b'\] has no pointwise log-likelihood"):
        lb.compare({"a": fits[SLOPES], "b": light})

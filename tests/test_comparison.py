"""PSIS-LOO, comparing fits and R² (lmm_bayes.results.comparison)."""

from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmm_bayes as lb
from lmm_bayes.results import comparison
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


def test_loo_is_arviz_stats_loo_on_the_fit(fits):
    fit = fits[SLOPES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fit.loo()
        theirs = az.loo(fit.idata, pointwise=True)
    assert ours.elpd == pytest.approx(theirs.elpd, rel=1e-12)
    assert ours.se == pytest.approx(theirs.se, rel=1e-12)
    np.testing.assert_allclose(np.asarray(ours.pareto_k), np.asarray(theirs.pareto_k))


def test_high_pareto_k_gives_one_warning_that_says_what_to_do(fits, monkeypatch):
    real = az.loo

    def with_two_bad(*args, **kwargs):
        res = real(*args, **kwargs)
        k = np.full(np.shape(res.pareto_k), 0.1)
        k[:2] = 1.2
        res.pareto_k = xr.DataArray(k, dims=res.pareto_k.dims)
        return res

    monkeypatch.setattr(comparison.az, "loo", with_two_bad)
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

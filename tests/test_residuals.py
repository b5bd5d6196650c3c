"""Fitted values, residuals and the numbers behind the effects plot, against the draws computed by hand.

Every check is an identity on the fit's own draws (kind 2 in tests/README.md): no Monte
Carlo error, so the tolerance is rounding.
"""

import warnings

import arviz_stats as azs
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmm_bayes as lb
from lmm_bayes.results.effects import conditional_effects, reference_row
from lmm_bayes.results.residuals import fitted, fitted_draws, residuals

SLOPES = "Reaction ~ Days + (Days | Subject)"
FAST = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}


@pytest.fixture(scope="module")
def fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(SLOPES, sleepstudy).fit(seed=5, **FAST)


@pytest.fixture(scope="module")
def mu_by_hand(fit):
    """X beta + Z b per draw, written out: beta0 + b0[j] + (beta1 + b1[j]) * Days, (chain, draw, row)."""
    post = fit.posterior
    days = fit.design.data["Days"].to_numpy(dtype=float)
    subject = fit.design.data["Subject"].astype(str).to_numpy()
    b = post["Subject_b"].sel(Subject=xr.DataArray(subject, dims="row"))  # (chain, draw, row, effect)
    beta0 = post["beta"].sel(coef="Intercept")
    beta1 = post["beta"].sel(coef="Days")
    mu = beta0 + b.sel(Subject_effect="Intercept") + (beta1 + b.sel(Subject_effect="Days")) * xr.DataArray(
        days, dims="row"
    )
    return mu.transpose("chain", "draw", "row").values


def test_fitted_is_the_posterior_mean_of_x_beta_plus_z_b(fit, mu_by_hand):
    table = fit.fitted()
    assert table.columns.tolist() == ["mean", "sd", "hdi_low", "hdi_high"]
    assert table.index.equals(fit.design.index)
    np.testing.assert_allclose(table["mean"].to_numpy(), mu_by_hand.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(table["sd"].to_numpy(), mu_by_hand.reshape(-1, 180).std(axis=0, ddof=1), rtol=1e-9)
    hdi = azs.hdi(xr.DataArray(mu_by_hand[..., 7], dims=("chain", "draw")), prob=0.94).values
    np.testing.assert_allclose(table[["hdi_low", "hdi_high"]].to_numpy()[7], hdi, rtol=1e-12)
    np.testing.assert_allclose(fitted_draws(fit).values, mu_by_hand, rtol=1e-12)


def test_population_fitted_is_x_beta(fit):
    table = fitted(fit, levels="population")
    beta = fit.posterior["beta"].mean(("chain", "draw"))
    days = fit.design.data["Days"].to_numpy(dtype=float)
    expected = float(beta.sel(coef="Intercept")) + float(beta.sel(coef="Days")) * days
    np.testing.assert_allclose(table["mean"].to_numpy(), expected, rtol=1e-12)
    assert table.attrs["levels"] == "population"


def test_residuals_are_y_minus_fitted(fit, mu_by_hand):
    res = fit.residuals()
    y = fit.design.y
    assert res.columns.tolist() == ["observed", "fitted", "residual", "sd", "hdi_low", "hdi_high", "standardized"]
    np.testing.assert_array_equal(res["observed"].to_numpy(), y)
    np.testing.assert_allclose(res["fitted"].to_numpy(), mu_by_hand.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(res["residual"].to_numpy(), y - mu_by_hand.mean(axis=(0, 1)), rtol=1e-9, atol=1e-9)
    sigma = float(fit.posterior["sigma"].mean())
    np.testing.assert_allclose(res["standardized"].to_numpy(), res["residual"].to_numpy() / sigma, rtol=1e-12)
    # the interval is that of y - mu draw by draw, i.e. y minus the fitted interval mirrored
    hdi = azs.hdi(xr.DataArray(y[3] - mu_by_hand[..., 3], dims=("chain", "draw")), prob=0.94).values
    np.testing.assert_allclose(res[["hdi_low", "hdi_high"]].to_numpy()[3], hdi, rtol=1e-12)
    # marginal residuals keep the cluster effects: they differ from the conditional ones
    marginal = residuals(fit, levels="population")
    assert np.abs(marginal["residual"] - res["residual"]).max() > 10


def test_effects_population_line_is_beta0_plus_beta1_x(fit):
    ce = fit.conditional_effects("Days", group="Subject", n_points=7)
    fixef = fit.fixef()["mean"]
    grid = ce["Days"].values
    np.testing.assert_allclose(grid, np.linspace(0, 9, 7))
    np.testing.assert_allclose(ce["population"].values, fixef["Intercept"] + fixef["Days"] * grid, rtol=1e-10)
    # the band is the HDI of beta0 + beta1 x over the draws, here at x = grid[2]
    post = fit.posterior["beta"]
    line = post.sel(coef="Intercept") + post.sel(coef="Days") * grid[2]
    np.testing.assert_allclose([ce["low"].values[2], ce["high"].values[2]], azs.hdi(line, prob=0.94).values,
                               rtol=1e-12)
    assert ce.attrs["band"] == "mean" and ce.attrs["x"] == "Days" and ce.attrs["group"] == "Subject"


def test_effects_cluster_lines_are_coef(fit):
    ce = conditional_effects(fit, "Days", group="Subject", n_points=10)
    coef = fit.coef("Subject")["mean"].unstack("effect")
    grid = ce["Days"].values
    expected = coef["Intercept"].to_numpy()[:, None] + coef["Days"].to_numpy()[:, None] * grid[None, :]
    assert list(ce["Subject"].values) == list(coef.index)
    np.testing.assert_allclose(ce["cluster"].values, expected, rtol=1e-10)


def test_effects_cluster_lines_stop_where_the_cluster_data_stop(sleepstudy):
    short = sleepstudy[~((sleepstudy["Subject"].astype(str) == "308") & (sleepstudy["Days"] > 4))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = lb.LMM(SLOPES, short).fit(seed=2, **FAST)
    ce = small.conditional_effects("Days", group="Subject", n_points=10)
    line = ce["cluster"].sel(Subject="308").values
    grid = ce["Days"].values
    assert np.isnan(line[grid > 4]).all() and np.isfinite(line[grid <= 4]).all()
    assert np.isfinite(ce["cluster"].sel(Subject="309").values).all()


def test_prediction_band_is_the_hdi_of_new_observations(fit):
    ce = fit.conditional_effects("Days", band="prediction", n_points=5, seed=3)
    rows = pd.DataFrame({"Days": ce["Days"].values, "Subject": reference_row(fit.design.data)["Subject"]})
    draws = fit.predict(rows, levels="population", kind="response", seed=3)
    hdi = azs.hdi(draws, prob=0.94, dim=["chain", "draw"]).transpose("obs", ...).values
    np.testing.assert_allclose(ce[["low", "high"]].to_array().values.T, hdi, rtol=1e-12)
    assert "cluster" not in ce


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": 3}, TypeError, "x must be the name of a numeric predictor"),
        ({"x": "Dayz"}, ValueError, "not a predictor column of this model"),
        ({"x": "Subject"}, ValueError, "must be a numeric column"),
        ({"x": "Days", "band": "both"}, ValueError, "band"),
        ({"x": "Days", "group": "Subjct"}, ValueError, "Subjct"),
        ({"x": "Days", "n_points": 1}, ValueError, "n_points"),
    ],
)
def test_effects_errors(fit, kwargs, error, match):
    with pytest.raises(error, match=match):
        conditional_effects(fit, **kwargs)


def test_fitted_errors(fit):
    with pytest.raises(ValueError, match="levels"):
        fitted(fit, levels="new")
    with pytest.raises(TypeError, match="fit must be an lmm_bayes.Fit"):
        residuals("fit")


@pytest.fixture(scope="module")
def nested_fit(sleepstudy):
    halves = sleepstudy.assign(Half=np.where(sleepstudy["Days"] < 5, "early", "late"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM("Reaction ~ Days + (1 | Subject/Half)", halves).fit(seed=4, **FAST)


def test_effects_cluster_lines_hold_only_their_own_factor(nested_fit):
    """With a second factor, a Subject's line is coef(Subject) along x, without any Subject:Half deviation."""
    ce = nested_fit.conditional_effects("Days", group="Subject", n_points=4)
    intercepts = nested_fit.coef("Subject")["mean"].xs("Intercept", level="effect")
    slope = nested_fit.fixef()["mean"]["Days"]
    grid = ce["Days"].values
    np.testing.assert_allclose(ce["cluster"].values, intercepts.to_numpy()[:, None] + slope * grid, rtol=1e-10)
    # a Subject:Half cluster's line covers only its half of the days
    inner = nested_fit.conditional_effects("Days", group="Subject:Half", n_points=4)
    line = inner["cluster"].sel({"Subject:Half": "308:early"}).values
    assert np.isfinite(line[grid < 5]).all() and np.isnan(line[grid >= 5]).all()

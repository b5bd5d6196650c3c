"""The tables' interval choice, varcorr's variances, G, contrasts and sum coding (issue 15).

Every number is checked against the draws it summarises, computed here by hand: the
equal-tailed bounds against numpy's quantiles, the variances against the squared SD draws,
G against sd_i corr_ij sd_j draw by draw, and the contrasts against the fixed effects
they combine (exactly, draw by draw, for both codings).
"""

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.results.summary import format_table

FAST = dict(draws=300, tune=300, chains=2, progressbar=False)


def _conditions(seed=3):
    """300 rows: 3 conditions x 20 subjects x 5 trials, a numeric covariate and a 2-level site."""
    rng = np.random.default_rng(seed)
    n_subj, reps = 20, 5
    cond = np.tile(np.repeat(["a", "b", "c"], reps), n_subj)
    subject = np.repeat([f"s{k:02d}" for k in range(n_subj)], 3 * reps)
    site = np.where(np.repeat(np.arange(n_subj), 3 * reps) % 2 == 0, "north", "south")
    x = rng.normal(2.0, 1.0, cond.size)
    effect = {"a": 0.0, "b": 0.8, "c": -0.5}
    b = rng.normal(0.0, 0.7, n_subj)
    y = (1.0 + np.vectorize(effect.get)(cond) + 0.3 * x + 0.4 * (site == "south")
         + b[np.repeat(np.arange(n_subj), 3 * reps)] + rng.normal(0.0, 0.5, cond.size))
    return pd.DataFrame({"y": y, "cond": cond, "subject": subject, "site": site, "x": x})


@pytest.fixture(scope="module")
def cond_data():
    return _conditions()


@pytest.fixture(scope="module")
def treatment_fit(cond_data):
    return lb.LMM("y ~ cond + x + site + (1 | subject)", cond_data).fit(seed=1, **FAST)


@pytest.fixture(scope="module")
def sum_fit(cond_data):
    return lb.LMM("y ~ C(cond, Sum) + x + site + (1 | subject)", cond_data).fit(seed=1, **FAST)


@pytest.fixture(scope="module")
def slopes_fit(sleepstudy):
    return lb.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(seed=2, **FAST)


def _flat(da):
    return da.transpose("chain", "draw", ...).values.reshape(-1, *da.shape[2:])


# ---------------------------------------------------------------- intervals


def test_equal_tailed_bounds_are_the_quantiles_of_the_draws(slopes_fit):
    table = slopes_fit.fixef(ci="eti", prob=0.95)
    draws = _flat(slopes_fit.posterior["beta"].transpose("chain", "draw", "coef"))
    low, high = np.quantile(draws, [0.025, 0.975], axis=0)
    assert table.columns[:4].tolist() == ["mean", "sd", "eti_low", "eti_high"]
    np.testing.assert_allclose(table["eti_low"], low, rtol=1e-12)
    np.testing.assert_allclose(table["eti_high"], high, rtol=1e-12)
    assert table.attrs["interval"] == "95% ETI"


def test_hdi_stays_the_default_and_is_narrower_or_equal(slopes_fit):
    hdi = slopes_fit.fixef()
    eti = slopes_fit.fixef(ci="eti", prob=0.94)
    assert hdi.attrs["interval"] == "94% HDI" and "hdi_low" in hdi
    draws = _flat(slopes_fit.posterior["beta"].transpose("chain", "draw", "coef"))
    inside = ((draws >= hdi["hdi_low"].to_numpy()) & (draws <= hdi["hdi_high"].to_numpy())).mean(axis=0)
    assert (inside >= 0.94 - 1 / len(draws)).all()
    assert not np.allclose(hdi["hdi_low"], eti["eti_low"], rtol=1e-9)  # a different interval, not a relabelling


@pytest.mark.parametrize("table", [
    lambda f: f.fixef(ci="eti", prob=0.9),
    lambda f: f.varcorr(ci="eti", prob=0.9),
    lambda f: f.ranef("Subject", ci="eti", prob=0.9),
    lambda f: f.coef(ci="eti", prob=0.9),
    lambda f: f.icc(ci="eti", prob=0.9),
    lambda f: f.r2(ci="eti", prob=0.9),
    lambda f: f.hypothesis(["Days > 5", "Days < 20"], ci="eti", prob=0.9),
    lambda f: f.predict_summary(ci="eti", prob=0.9),
])
def test_every_table_takes_the_interval_choice(slopes_fit, table):
    t = table(slopes_fit)
    assert {"eti_low", "eti_high"} <= set(t.columns) and "hdi_low" not in t.columns
    assert t.attrs["interval"] == "90% ETI"
    assert (t["eti_low"] <= t["eti_high"]).all()


def test_ranef_eti_matches_the_b_draws(slopes_fit):
    t = slopes_fit.ranef("Subject", ci="eti", prob=0.8)
    b = slopes_fit.posterior["Subject_b"].transpose("chain", "draw", "Subject", "Subject_effect")
    low = np.quantile(_flat(b), 0.1, axis=0).ravel()
    np.testing.assert_allclose(t["eti_low"].to_numpy(), low, rtol=1e-12)


def test_hypothesis_keeps_each_interval_and_probability_apart(slopes_fit):
    """Two hypotheses in one call: the second's interval must not use the first's probability."""
    both = slopes_fit.hypothesis(["Days > 5", "Days < 5"], prob=0.5)
    alone = slopes_fit.hypothesis("Days < 5", prob=0.5)
    pd.testing.assert_series_equal(both.iloc[1], alone.iloc[0])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"ci": "95%"}, ValueError, r"ci must be one of 'hdi', 'eti', got '95%'"),
    ({"ci": "ETI"}, ValueError, r"ci must be one of"),
    ({"prob": 95}, ValueError, r"prob must be strictly between 0 and 1"),
    ({"prob": "0.9"}, TypeError, r"prob must be a number"),
])
def test_a_bad_interval_choice_says_what_to_write(slopes_fit, kwargs, error, message):
    with pytest.raises(error, match=message):
        slopes_fit.fixef(**kwargs)


# ---------------------------------------------------------------- varcorr and G


def test_varcorr_variance_is_the_mean_of_the_squared_sd_draws(slopes_fit):
    vc = slopes_fit.varcorr()
    post = slopes_fit.posterior
    sd = post["Subject_sd"]
    assert vc.loc[("Subject", "sd(Days)"), "variance"] == pytest.approx(float((sd.sel(Subject_effect="Days") ** 2).mean()),
                                                                      rel=1e-12)
    assert vc.loc[("Residual", "sigma"), "variance"] == pytest.approx(float((post["sigma"] ** 2).mean()), rel=1e-12)
    assert np.isnan(vc.loc[("Subject", "corr(Intercept,Days)"), "variance"])
    # a variance is not the squared posterior mean of the SD (Jensen), so the column is its own number
    assert vc.loc[("Residual", "sigma"), "variance"] > vc.loc[("Residual", "sigma"), "mean"] ** 2


def test_G_is_the_draw_by_draw_mean_of_sd_corr_sd(slopes_fit):
    post = slopes_fit.posterior
    sd = _flat(post["Subject_sd"].transpose("chain", "draw", "Subject_effect"))
    corr = _flat(post["Subject_corr"].transpose("chain", "draw", ...))
    by_hand = (sd[:, :, None] * corr * sd[:, None, :]).mean(axis=0)
    G = slopes_fit.G("Subject")
    assert G.index.tolist() == G.columns.tolist() == ["Intercept", "Days"]
    np.testing.assert_allclose(G.to_numpy(), by_hand, rtol=1e-10)
    R = slopes_fit.G("Subject", kind="correlation")
    np.testing.assert_allclose(R.to_numpy(), corr.mean(axis=0), rtol=1e-10)
    assert np.allclose(np.diag(R), 1.0) and np.array_equal(G.to_numpy(), G.to_numpy().T)


def test_G_refuses_an_unknown_group_or_kind(slopes_fit):
    with pytest.raises(ValueError, match="Subjects"):
        slopes_fit.G("Subjects")
    with pytest.raises(ValueError, match="kind"):
        slopes_fit.G("Subject", kind="precision")


# ---------------------------------------------------------------- sum coding


def test_sum_coding_in_the_formula_gives_deviation_columns(cond_data):
    design = lb.LMM("y ~ C(cond, Sum) + (1 | subject)", cond_data).design
    assert design.X_columns == ("Intercept", "C(cond, Sum)[a]", "C(cond, Sum)[b]")
    rows = {c: design.X[cond_data["cond"].to_numpy() == c][0, 1:].tolist() for c in "abc"}
    assert rows == {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [-1.0, -1.0]}
    omit_a = lb.LMM('y ~ C(cond, Sum("a")) + (1 | subject)', cond_data).design
    assert omit_a.X_columns[1:] == ('C(cond, Sum("a"))[b]', 'C(cond, Sum("a"))[c]')
    ref_b = lb.LMM('y ~ C(cond, Treatment("b")) + (1 | subject)', cond_data).design
    assert ref_b.X_columns[1:] == ('C(cond, Treatment("b"))[a]', 'C(cond, Treatment("b"))[c]')


@pytest.mark.parametrize(("formula", "message"), [
    ("y ~ C(cond, Helmert) + (1 | subject)", "the second argument of C\\(\\) is a coding"),
    ("y ~ C(cond, Sum, levels=['a', 'b', 'c']) + (1 | subject)", "is not supported: choose the reference"),
    ("y ~ C(cond, Sum('a', 'b')) + (1 | subject)", "takes one level in quotes"),
    ("y ~ C(cond, Treatment('z')) + (1 | subject)", "must be one of the column's values"),
])
def test_a_bad_coding_is_a_formula_error(cond_data, formula, message):
    with pytest.raises(lb.FormulaError, match=message):
        lb.LMM(formula, cond_data)


# ---------------------------------------------------------------- contrasts


def test_treatment_contrasts_are_the_coefficients_draw_by_draw(treatment_fit, cond_data):
    d = treatment_fit.contrasts  # facade
    table = d("cond")
    assert table.index.tolist() == [("mean", "a"), ("mean", "b"), ("mean", "c"),
                                    ("difference", "b - a"), ("difference", "c - a"), ("difference", "c - b")]
    from lmm_bayes.results.contrasts import contrast_draws

    draws = contrast_draws(treatment_fit, "cond")
    beta = treatment_fit.posterior["beta"]
    b, c = beta.sel(coef="cond[b]", drop=True), beta.sel(coef="cond[c]", drop=True)
    np.testing.assert_allclose(draws.sel(contrast="b - a"), b, atol=1e-12)
    np.testing.assert_allclose(draws.sel(contrast="c - b"), c - b, atol=1e-12)
    # a mean: the intercept, the covariate at its mean, the site averaged over its two levels
    a_mean = (beta.sel(coef="Intercept") + beta.sel(coef="x") * cond_data["x"].mean()
              + beta.sel(coef="site[south]") / 2)
    np.testing.assert_allclose(draws.sel(contrast="a"), a_mean, atol=1e-12)
    assert table.loc[("difference", "b - a"), "mean"] == pytest.approx(float(b.mean()), rel=1e-12)
    assert table.loc[("difference", "b - a"), "prob_positive"] == pytest.approx(float((b > 0).mean()))
    assert np.isnan(table.loc[("mean", "a"), "prob_positive"])
    assert table.attrs["grid"] == f"x = {cond_data['x'].mean():.4g}; site averaged over 2 levels"


def test_sum_contrasts_are_the_coefficients_draw_by_draw(sum_fit):
    from lmm_bayes.results.contrasts import contrast_draws

    draws = contrast_draws(sum_fit, "cond", at={"x": 0.0, "site": "north"})
    beta = sum_fit.posterior["beta"]
    dev_a, dev_b = beta.sel(coef="C(cond, Sum)[a]", drop=True), beta.sel(coef="C(cond, Sum)[b]", drop=True)
    intercept = beta.sel(coef="Intercept", drop=True)
    np.testing.assert_allclose(draws.sel(contrast="c"), intercept - dev_a - dev_b, atol=1e-12)
    np.testing.assert_allclose(draws.sel(contrast="b - a"), dev_b - dev_a, atol=1e-12)


def test_the_coding_does_not_change_the_contrasts(treatment_fit, sum_fit):
    """Same model, two parameterisations: the answers agree within Monte Carlo and prior noise."""
    t, s = treatment_fit.contrasts("cond"), sum_fit.contrasts("cond")
    z = (t["mean"] - s["mean"]).abs() / np.sqrt(t["sd"] ** 2 + s["sd"] ** 2)
    assert (z < 0.5).all(), z


def test_contrasts_recover_the_simulated_differences(treatment_fit):
    table = treatment_fit.contrasts("cond", ci="eti", prob=0.99)
    truth = {"b - a": 0.8, "c - a": -0.5, "c - b": -1.3}
    for name, value in truth.items():
        row = table.loc[("difference", name)]
        assert row["eti_low"] < value < row["eti_high"], (name, row)


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), [
    (("x",), {}, ValueError, r"'x' is numeric, so it has no levels to compare"),
    (("subject",), {}, ValueError, r"'subject' is not a predictor of the fixed part"),
    (("cond",), {"at": {"site": "east"}}, ValueError, r"at\['site'\] = 'east' is not a level of 'site'"),
    (("cond",), {"at": {"cond": "a"}}, ValueError, r"at names \['cond'\]"),
    ((3,), {}, TypeError, r"variable must be a column name"),
    (("cond",), {"at": [("x", 1.0)]}, TypeError, r"at must be a dict like \{'x': 1.5\}, got list"),
])
def test_contrasts_refuse_what_they_cannot_answer(treatment_fit, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        treatment_fit.contrasts(*args, **kwargs)


# ---------------------------------------------------------------- printing


def test_fixed_decimals_put_small_and_large_numbers_on_one_footing():
    t = pd.DataFrame({"mean": [251.6, 0.06913], "sd": [6.9, 0.0152], "r_hat": [1.0, 0.99971],
                      "ess_bulk": [812.4, 1500.0]}, index=["Intercept", "corr"])
    out = format_table(t)
    # each estimate to the precision its posterior SD supports (2 significant digits of the SD)
    assert out.loc["Intercept", "mean"] == "251.6" and out.loc["corr", "mean"] == "0.069"
    assert out.loc["corr", "sd"] == "0.015"
    assert out["r_hat"].tolist() == ["1.000", "1.000"] and out["ess_bulk"].tolist() == ["812", "1500"]


def test_the_printed_summary_shows_variances_and_the_interval(slopes_fit):
    text = str(slopes_fit.summary(ci="eti", prob=0.95))
    assert "intervals: 95% ETI" in text and "variance" in text and "eti_low" in text


def test_the_pooling_tables_take_the_interval_choice_too(slopes_fit):
    """shrinkage (and compare_pooling, contextual_effect) summarise through mean_interval."""
    table = slopes_fit.shrinkage("Subject", ci="eti", prob=0.8)
    coef = slopes_fit.coef_draws("Subject").transpose("chain", "draw", "Subject", "Subject_effect")
    low = np.quantile(_flat(coef), 0.1, axis=0).ravel()
    np.testing.assert_allclose(table["partial_pooling_low"].to_numpy(), low, rtol=1e-12)
    assert table.attrs["intervals"].startswith("80%") and "partial pooling ETI" in table.attrs["intervals"]


# ---------------------------------------------------------------- non-finite at= and hypotheses (issue 37 item 11)


@pytest.mark.parametrize(("at", "error", "message"), [
    ({"Days": float("inf")}, ValueError, r"at\['Days'\] = inf is not a finite number"),
    ({"Days": float("nan")}, ValueError, r"at\['Days'\] = nan is not a finite number"),
    ({"Days": 1e200}, ValueError, r"not finite in every draw at Days = 1e\+200.*overflow"),
    ({"Days": "5"}, TypeError, r"at\['Days'\] must be a number, got str '5'"),
])
def test_icc_refuses_a_non_finite_at(slopes_fit, at, error, message):
    with pytest.raises(error, match=message):
        slopes_fit.icc(at=at)


def test_icc_at_a_large_finite_value_is_the_hand_formula(slopes_fit):
    """Far out (Days = 1e6) the share is still z'Gz / (z'Gz + sigma^2), G written out from the SDs and correlation."""
    post = slopes_fit.posterior.transpose("chain", "draw", ...)
    sd = post["Subject_sd"].values
    rho = post["Subject_corr"].values[..., 0, 1]
    z0, z1 = 1.0, 1e6
    zGz = (z0 * sd[..., 0]) ** 2 + (z1 * sd[..., 1]) ** 2 + 2 * z0 * z1 * rho * sd[..., 0] * sd[..., 1]
    share = zGz / (zGz + post["sigma"].values ** 2)
    table = slopes_fit.icc(at={"Days": 1e6})
    assert table.loc["Subject", "mean"] == pytest.approx(share.mean(), rel=1e-10)
    assert table.attrs["at"] == "evaluated at Days=1e+06"


@pytest.mark.parametrize(("at", "error", "message"), [
    ({"x": float("nan")}, ValueError, r"at\['x'\] = nan is not a finite number"),
    ({"x": float("-inf")}, ValueError, r"at\['x'\] = -inf is not a finite number"),
    ({"x": 1e308}, ValueError, r"contrasts of 'cond' at x = 1e\+308 are not all finite.*overflow.*x from -?\d"),
    ({"x": 1e160}, ValueError, r"at x = 1e\+160 are not all finite \(their SD overflows\)"),
    ({"x": "high"}, TypeError, r"at\['x'\] must be a number, got str 'high'"),
])
def test_contrasts_refuse_a_non_finite_at(treatment_fit, at, error, message):
    with pytest.raises(error, match=message) as err:
        treatment_fit.contrasts("cond", at=at)
    assert "na_action" not in str(err.value)  # contrasts() has no such argument


def test_contrasts_at_a_finite_value_are_the_coefficients(treatment_fit):
    """At x = 1e3 the means are Intercept + cond + 1e3 x + site averaged, by hand draw by draw."""
    beta = treatment_fit.posterior["beta"].transpose("chain", "draw", "coef")
    from lmm_bayes.results.contrasts import contrast_draws

    base = beta.sel(coef="Intercept") + 1e3 * beta.sel(coef="x") + 0.5 * beta.sel(coef="site[south]")
    draws = contrast_draws(treatment_fit, "cond", at={"x": 1e3})
    np.testing.assert_allclose(draws.sel(contrast="a").values, base.values, rtol=1e-10)
    np.testing.assert_allclose(draws.sel(contrast="b").values, (base + beta.sel(coef="cond[b]")).values,
                               rtol=1e-10)


@pytest.mark.parametrize(("text", "message"), [
    ("Days / 0 > 1", r"left side 'Days / 0' is not finite in every draw \(division by zero\)"),
    ("Days > 1 / (Intercept - Intercept)", r"right side '1 / \(Intercept - Intercept\)' is not finite .*division"),
    ("Days * 1e308 * 10 > 0", r"left side 'Days \* 1e308 \* 10' is not finite .*\(overflow\)"),
    ("Days > 1e999", r"right side '1e999' is not finite"),
    ("Intercept * 5e305 > -5e305 * Intercept", r"left - right is not finite .*\(overflow\)"),
    ("Days > " + "9" * 400, r"right side '9999.*' is not finite in every draw \(a number beyond float's range\)"),
    ("Days > 0 / 0", r"right side '0 / 0' is not finite in every draw \(division by zero\)"),
])
def test_a_hypothesis_that_is_not_finite_is_refused(slopes_fit, text, message):
    """Was: 'Days / 0 > 1' held with probability 1.0 (inf > 0 in every draw)."""
    with pytest.raises(ValueError, match=message):
        slopes_fit.hypothesis(text)

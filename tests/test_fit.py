"""Fitting and results against lme4's REML estimates, known truth, and the documented layout."""

import warnings

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.errors import SamplingWarning

SLOPES = "Reaction ~ Days + (Days | Subject)"
FAST = dict(draws=500, tune=500, chains=2, progressbar=False)


@pytest.fixture(scope="module")
def slopes_fit(sleepstudy):
    return lb.LMM(SLOPES, sleepstudy).fit(seed=11, method="full", draws=1000, tune=1000, chains=4,
                                         progressbar=False)


@pytest.fixture(scope="module")
def uncorrelated_fit(sleepstudy):
    return lb.LMM("Reaction ~ Days + (Days || Subject)", sleepstudy).fit(seed=3, **FAST)


@pytest.fixture(scope="module")
def intercept_fit(sleepstudy):
    return lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(seed=5, **FAST)


def test_fixef_matches_lme4_reml(slopes_fit, lme4_reference):
    ref = lme4_reference[("sleepstudy", SLOPES, "REML")]
    fe = slopes_fit.fixef()
    assert list(fe.index) == ["Intercept", "Days"]
    assert list(fe.columns) == ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk", "ess_tail"]
    for name, lme4_name in [("Intercept", "(Intercept)"), ("Days", "Days")]:
        assert abs(fe.loc[name, "mean"] - ref["fixef"][lme4_name]) < 0.25 * fe.loc[name, "sd"]
        assert fe.loc[name, "hdi_low"] < ref["fixef"][lme4_name] < fe.loc[name, "hdi_high"]


def test_variance_components_match_lme4_reml(slopes_fit, lme4_reference):
    ref = lme4_reference[("sleepstudy", SLOPES, "REML")]
    post = slopes_fit.posterior
    median_sd = post["Subject_sd"].median(("chain", "draw"))
    sd_int, sd_days = ref["random_effects"][0]["sd"]
    assert median_sd.sel(Subject_effect="Intercept") == pytest.approx(sd_int, rel=0.25)
    assert median_sd.sel(Subject_effect="Days") == pytest.approx(sd_days, rel=0.25)
    assert float(post["sigma"].median()) == pytest.approx(ref["residual_sd"], rel=0.25)
    vc = slopes_fit.varcorr()
    assert vc.index.names == ["group", "term"]
    assert list(vc.index) == [
        ("Subject", "sd(Intercept)"), ("Subject", "sd(Days)"),
        ("Subject", "corr(Intercept,Days)"), ("Residual", "sigma"),
    ]
    assert -1 < vc.loc[("Subject", "corr(Intercept,Days)"), "mean"] < 1


def test_sampler_health(slopes_fit):
    d = slopes_fit.diagnostics()
    assert set(d) == {"divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "min_bfmi", "treedepth_hits"}
    assert d["divergences"] == 0
    assert d["max_r_hat"] < 1.01
    assert d["min_ess_bulk"] > 400


def test_ranef_and_coef(slopes_fit):
    re = slopes_fit.ranef("Subject")
    co = slopes_fit.coef("Subject")
    assert re.index.names == ["level", "effect"] and co.index.names == ["level", "effect"]
    assert re.shape == co.shape == (36, 7)
    assert re.index[0] == ("308", "Intercept")
    fe = slopes_fit.fixef()["mean"]
    for effect in ["Intercept", "Days"]:
        diff = co.xs(effect, level="effect")["mean"] - re.xs(effect, level="effect")["mean"]
        np.testing.assert_allclose(diff, fe[effect], rtol=1e-10)
    # random effects are deviations: their mean across subjects is near 0
    assert abs(re.xs("Days", level="effect")["mean"].mean()) < 1.0


def test_uncorrelated_has_no_correlation_rows(uncorrelated_fit):
    vc = uncorrelated_fit.varcorr()
    assert not any(t.startswith("corr") for t in vc.index.get_level_values("term"))
    assert "Subject_corr" not in uncorrelated_fit.posterior


def test_icc_random_intercept_matches_lme4(intercept_fit, lme4_reference):
    ref = lme4_reference[("sleepstudy", "Reaction ~ Days + (1 | Subject)", "REML")]
    sb, s = ref["random_effects"][0]["sd"][0], ref["residual_sd"]
    icc = intercept_fit.icc()
    assert list(icc.index) == ["Subject", "Residual"]
    assert icc.loc["Subject", "mean"] == pytest.approx(sb**2 / (sb**2 + s**2), abs=0.05)
    assert icc["mean"].sum() == pytest.approx(1.0)


def test_icc_with_slopes_says_where(slopes_fit):
    at0 = slopes_fit.icc()
    assert at0.attrs["at"] == "evaluated at Days=0"
    at9 = slopes_fit.icc(at={"Days": 9})
    assert at9.attrs["at"] == "evaluated at Days=9"
    assert at9.loc["Subject", "mean"] > at0.loc["Subject", "mean"]
    with pytest.raises(ValueError, match="not random slopes"):
        slopes_fit.icc(at={"Nights": 1})


def test_summary_prints_like_lme4(slopes_fit):
    s = slopes_fit.summary()
    text = str(s)
    for piece in ["Formula: Reaction ~ Days + (Days | Subject)", "Rows: 180; groups: Subject 18",
                  "Random effects", "Fixed effects", "corr(Intercept,Days)", "divergences 0"]:
        assert piece in text
    assert "<table" in s._repr_html_()


def test_datatree_groups_and_provenance(slopes_fit):
    idata = slopes_fit.idata
    for group in ["posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood"]:
        assert group in idata.children
    attrs = idata.attrs
    assert attrs["lmm_bayes_version"] == lb.__version__
    assert attrs["formula"] == SLOPES
    assert attrs["sampler"] == "nutpie" and attrs["method"] == "full" and attrs["seed"] == 11
    assert "Intercept" in attrs["priors"]
    assert slopes_fit.priors.group_by_name["Subject"].eta == 2.0


# variable, dims, coords checked
LAYOUT = [
    ("beta", ("chain", "draw", "coef"), {"coef": ["Intercept", "Days"]}),
    ("sigma", ("chain", "draw"), {}),
    ("Subject_sd", ("chain", "draw", "Subject_effect"), {"Subject_effect": ["Intercept", "Days"]}),
    ("Subject_corr", ("chain", "draw", "Subject_effect", "Subject_effect_bis"),
     {"Subject_effect_bis": ["Intercept", "Days"]}),
    ("Subject_b", ("chain", "draw", "Subject", "Subject_effect"), {"Subject": None}),
]


@pytest.mark.parametrize("name, dims, coords", LAYOUT)
def test_posterior_layout(slopes_fit, sleepstudy, name, dims, coords):
    da = slopes_fit.posterior[name]
    assert da.dims == dims
    assert da.sizes["chain"] == 4 and da.sizes["draw"] == 1000
    for dim, values in coords.items():
        expected = sorted(sleepstudy["Subject"].unique()) if values is None else values
        assert list(da[dim].values) == expected


def test_posterior_has_only_documented_variables(slopes_fit):
    assert set(slopes_fit.posterior.data_vars) == {name for name, _, _ in LAYOUT}


def test_correlation_matrix_is_valid(slopes_fit):
    corr = slopes_fit.posterior["Subject_corr"].values
    np.testing.assert_allclose(corr[..., 0, 0], 1.0)
    np.testing.assert_allclose(corr[..., 0, 1], corr[..., 1, 0])


def test_log_likelihood_supports_loo(intercept_fit):
    import arviz as az

    ll = intercept_fit.idata["log_likelihood"]["y"]
    assert ll.dims == ("chain", "draw", "obs") and ll.sizes["obs"] == 180
    loo = az.loo(intercept_fit.idata)
    assert np.isfinite(loo.elpd)


def test_same_seed_same_draws(sleepstudy, intercept_fit):
    again = lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(seed=5, **FAST)
    np.testing.assert_array_equal(again.posterior["beta"].values, intercept_fit.posterior["beta"].values)
    assert again.idata.attrs["compiled_model_reused"] == 1


def test_user_priors_reach_the_graph(sleepstudy):
    model = lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy,
                   priors={"Days": {"dist": "Normal", "mu": 100.0, "sigma": 0.01}})
    assert "Normal(mu=100, sigma=0.01)" in str(model.priors)
    pm_model = model.pymc_model()
    draws = __import__("pymc").draw(pm_model["beta"], draws=200, random_seed=1)
    assert abs(draws[:, 1].mean() - 100) < 0.01


def test_recovery_nested_simulation():
    rng = np.random.default_rng(42)
    n_sub, n_neu, n_tri = 30, 8, 12
    beta, sd_s, rho, sd_n, sigma = np.array([5.0, 1.5]), np.array([1.0, 0.5]), -0.4, 0.7, 2.0
    G = np.diag(sd_s) @ np.array([[1, rho], [rho, 1]]) @ np.diag(sd_s)
    b_s = rng.multivariate_normal(np.zeros(2), G, size=n_sub)
    b_n = rng.normal(0, sd_n, size=(n_sub, n_neu))
    s = np.repeat(np.arange(n_sub), n_neu * n_tri)
    n = np.tile(np.repeat(np.arange(n_neu), n_tri), n_sub)
    x = rng.normal(size=s.size)
    y = beta[0] + b_s[s, 0] + (beta[1] + b_s[s, 1]) * x + b_n[s, n] + rng.normal(0, sigma, s.size)
    df = pd.DataFrame({"subject": [f"s{i}" for i in s], "neuron": [f"n{i}" for i in n], "x": x, "y": y})
    fit = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df).fit(seed=2, **FAST)
    truth = {
        ("Subject", "sd(Intercept)"): 1.0, ("subject", "sd(Intercept)"): 1.0, ("subject", "sd(x)"): 0.5,
        ("subject", "corr(Intercept,x)"): rho, ("subject:neuron", "sd(Intercept)"): sd_n,
        ("Residual", "sigma"): sigma,
    }
    vc = fit.varcorr()
    for key, value in truth.items():
        if key in vc.index:
            assert vc.loc[key, "hdi_low"] < value < vc.loc[key, "hdi_high"], key
    fe = fit.fixef()
    for name, value in zip(["Intercept", "x"], beta):
        assert fe.loc[name, "hdi_low"] < value < fe.loc[name, "hdi_high"], name
    assert len(vc) == 5


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(sampler="stan"), ValueError, "sampler must be one of"),
    (dict(method="laplace"), ValueError, "method must be one of"),
    (dict(draws=0), ValueError, "draws must be at least 1"),
    (dict(draws=10.5), TypeError, "draws must be an integer"),
    (dict(chains="4"), TypeError, "chains must be an integer"),
    (dict(target_accept=1.5), ValueError, "target_accept must be strictly between 0 and 1"),
    (dict(seed=-1), ValueError, "seed must be at least 0"),
    (dict(progressbar="yes"), TypeError, "progressbar must be True or False"),
])
def test_fit_argument_errors(sleepstudy, kwargs, error, message):
    with pytest.raises(error, match=message):
        lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(**kwargs)


@pytest.mark.parametrize("sampler", ["numpyro", "blackjax"])
def test_jax_samplers_say_what_is_missing(sleepstudy, sampler):
    pytest.importorskip("pytest")
    if __import__("importlib").util.find_spec("jax") is not None:
        pytest.skip("JAX is installed here; the missing-JAX message cannot be shown")
    with pytest.raises(ValueError, match=f"sampler='{sampler}' needs JAX"):
        lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(sampler=sampler)


@pytest.mark.parametrize("priors, error, message", [
    ({"Dayz": {"dist": "Normal", "mu": 0, "sigma": 1}}, ValueError, r"unknown key 'Dayz' \(did you mean 'Days'\?\)"),
    ({"Days": {"dist": "Gamma", "alpha": 1, "beta": 1}}, ValueError, "not one of"),
    ({"Days": {"dist": "Normal", "mu": 0}}, ValueError, r"takes parameters \['mu', 'sigma'\]"),
    ({"sigma": {"dist": "HalfNormal", "sigma": -1}}, ValueError, "must be positive"),
    ({"Subject": {"eta": 0}}, ValueError, "eta.*positive"),
    ({"Subject": {"sd(Dayz)": {"dist": "HalfNormal", "sigma": 1}}}, ValueError, "unknown key 'sd\\(Dayz\\)'"),
    ({"Days": 3.0}, TypeError, "must be lb.Prior"),
    ("flat", TypeError, "priors must be a dict"),
])
def test_prior_errors(sleepstudy, priors, error, message):
    with pytest.raises(error, match=message):
        lb.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy, priors=priors)


def test_unreliable_fit_warns_once(sleepstudy):
    with pytest.warns(SamplingWarning, match="min bulk ESS") as record:
        lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(draws=30, tune=30, chains=2, seed=1,
                                                                   progressbar=False)
    assert len([w for w in record if issubclass(w.category, SamplingWarning)]) == 1


def test_unknown_group(slopes_fit):
    with pytest.raises(ValueError, match=r"no grouping factor 'subject'; the model has \['Subject'\]"):
        slopes_fit.ranef("subject")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="group must be"):
            slopes_fit.coef(1)


def test_auto_falls_back_to_full_for_crossed_factors_with_a_note():
    from lmm_bayes.errors import MethodNote
    from lmm_bayes.spec.validate import ImplicitNestingWarning

    rng = np.random.default_rng(9)
    df = pd.DataFrame({"s": np.repeat([f"s{i}" for i in range(6)], 6), "item": np.tile([f"i{j}" for j in range(6)], 6)})
    df["y"] = rng.normal(size=len(df))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplicitNestingWarning)
        warnings.simplefilter("ignore", SamplingWarning)
        model = lb.LMM("y ~ 1 + (1 | s) + (1 | item)", df)
        with pytest.warns(MethodNote, match="method='auto' chose 'full':.*crossed"):
            fit = model.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
    assert fit.method == "full"
    assert "crossed" in fit.idata.attrs["method_note"]

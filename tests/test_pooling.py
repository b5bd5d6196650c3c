"""No / partial / complete pooling, shrinkage, within-between effects, implied covariance, pooling plots."""

import matplotlib

matplotlib.use("Agg")

import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import norm, spearmanr

import lmm_bayes as lb
from lmm_bayes.results import contextual, covariance, shrinkage
from lmm_bayes.results.estimates import identified, normal_equations
from lmm_bayes.api.fit import PoolingFit
from lmm_bayes.results.shrinkage import ESTIMATE_COLUMNS
from lmm_bayes.teaching import pooling_plots

FAST = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False}
RADON = "log_radon ~ floor + (1 | county)"
SLOPES = "Reaction ~ Days + (Days | Subject)"


# compare_pooling's gathered PSIS-LOO warning. The radon fits usually raise it (counties of 1-2
# houses drive their own no-pooling fit), but whether a k-hat crosses 0.7 depends on the draws, so
# the fixtures only silence it; test_high_pareto_k_is_one_warning_naming_the_poolings requires it.
PARETO_K = r"PSIS-LOO: some observations have a high Pareto k"


@pytest.fixture(scope="module")
def radon_cmp(radon):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PARETO_K, category=UserWarning)
        return lb.compare_pooling(RADON, radon, group="county", seed=1, **FAST)


@pytest.fixture(scope="module")
def radon_slopes_cmp(radon):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PARETO_K, category=UserWarning)
        return lb.compare_pooling(
            "log_radon ~ floor + (floor | county)", radon, group="county", seed=2, **FAST
        )


@pytest.fixture(scope="module")
def slopes_fit(sleepstudy):
    return lb.LMM(SLOPES, sleepstudy).fit(seed=3, **FAST)


@pytest.fixture(scope="module")
def contextual_data():
    """200 clusters of 2: between effect 2.0, within effect 0.5 (so the contextual effect is 1.5)."""
    rng = np.random.default_rng(8)
    n_clusters, size = 200, 2
    g = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(0, 1.5, n_clusters)[g] + rng.normal(0, 1.0, g.size)
    df = lb.within_between(pd.DataFrame({"cluster": [f"c{k:03d}" for k in g], "x": x}), "x", by="cluster")
    df["y"] = (
        1.0
        + 2.0 * df["x_between"]
        + 0.5 * df["x_within"]
        + rng.normal(0, 1.0, n_clusters)[g]
        + rng.normal(0, 1.0, g.size)
    )
    return df


@pytest.fixture(scope="module")
def decomposed_fit(contextual_data):
    return lb.LMM("y ~ x_within + x_between + (1 | cluster)", contextual_data).fit(seed=3, **FAST)


@pytest.fixture(scope="module")
def naive_fit(contextual_data):
    return lb.LMM("y ~ x + (1 | cluster)", contextual_data).fit(seed=3, **FAST)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _points(ax) -> dict[str, int]:
    """Number of scatter points per legend label on one axes."""
    return {
        c.get_label(): len(c.get_offsets())
        for c in ax.collections
        if hasattr(c, "get_offsets") and c.get_label() and not c.get_label().startswith("_")
    }


# ---------------------------------------------------------------- compare_pooling on radon


def test_partial_pooling_has_the_best_elpd(radon_cmp):
    loo = radon_cmp.loo
    assert set(loo.index) == {"no_pooling", "partial_pooling", "complete_pooling"}
    assert loo.index[0] == "partial_pooling"
    assert loo["elpd"].idxmax() == "partial_pooling"
    for col in ["rank", "elpd", "se", "elpd_diff", "dse", "weight"]:
        assert col in loo.columns
    assert loo.loc["partial_pooling", "elpd_diff"] == 0
    # each elpd is the fit's own PSIS-LOO, and elpd_diff its difference from the best (<= 0)
    for name, fit in radon_cmp.fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pareto k, as in the fixture
            assert loo.loc[name, "elpd"] == pytest.approx(az.loo(fit.idata).elpd, rel=1e-10), name
    np.testing.assert_allclose(loo["elpd_diff"], loo["elpd"] - loo["elpd"].max(), rtol=1e-10, atol=1e-10)
    assert loo.loc["no_pooling", "elpd_diff"] < 0 and loo.loc["complete_pooling", "elpd_diff"] < 0


def _loo_fit(heavy: bool, seed: int):
    """A stand-in fit holding only log-likelihood draws (2 chains x 200 draws, 20 observations).

    ``heavy``: observation 0's importance ratios exp(-log lik) have a Pareto tail of index
    1/4 (its -log lik is Exponential with mean 4), so its k-hat is about 4, far above 0.7
    (the smallest of 300 seeds was 1.98); the others' log lik barely vary (k-hat < 0.35).
    """
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    loglik = -1.0 + 0.01 * rng.normal(size=(2, 200, 20))
    if heavy:
        loglik[..., 0] = -rng.exponential(4.0, size=(2, 200))
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(2, 200)))}),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), loglik)}),
    })
    return SimpleNamespace(idata=tree)


def test_high_pareto_k_is_one_warning_naming_the_poolings():
    """ArviZ's per-fit Pareto-k warnings become one UserWarning that names the flagged poolings only."""
    from lmm_bayes.teaching.nested_pooling import loo_table

    fits = {"no_pooling": _loo_fit(True, 0), "partial_pooling": _loo_fit(False, 1)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = loo_table(fits)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1, messages
    assert messages[0].startswith("PSIS-LOO: some observations have a high Pareto k (no_pooling), so")
    assert table.loc["no_pooling", "diag_elpd"] and not table.loc["partial_pooling", "diag_elpd"]
    with warnings.catch_warnings(record=True) as caught:  # nothing to say when every k-hat is low
        warnings.simplefilter("always")
        loo_table({"no_pooling": _loo_fit(False, 2), "partial_pooling": _loo_fit(False, 3)})
    assert not [w for w in caught if "Pareto" in str(w.message)]


def test_estimates_layout(radon_cmp, radon):
    e = radon_cmp.estimates
    assert e.index.names == ["level", "effect"]
    assert list(e.columns) == ESTIMATE_COLUMNS
    assert e.shape == (85, 15)
    assert e.index[0] == ("AITKIN", "Intercept")
    assert e["n_obs"].sum() == len(radon)
    assert e.loc[("AITKIN", "Intercept"), "n_obs"] == (radon["county"] == "AITKIN").sum()
    # each pooling's estimate and interval are the mean and 94% HDI of that fit's own cluster draws
    for p in ["no_pooling", "partial_pooling", "complete_pooling"]:
        draws = radon_cmp.fits[p].coef_draws("county").sel(county_effect="Intercept")
        hdi = az.hdi(draws, prob=0.94, dim=["chain", "draw"])
        np.testing.assert_allclose(e[p], draws.mean(("chain", "draw")).values, rtol=1e-12)
        np.testing.assert_allclose(e[f"{p}_low"], hdi.sel(ci_bound="lower").values, rtol=1e-12)
        np.testing.assert_allclose(e[f"{p}_high"], hdi.sel(ci_bound="upper").values, rtol=1e-12)
    # complete pooling and the population value are one number for every county
    assert e["complete_pooling"].nunique() == 1 and e["population"].nunique() == 1
    partial = radon_cmp.fits["partial_pooling"]
    assert e["population"].iloc[0] == pytest.approx(partial.fixef().loc["Intercept", "mean"])
    complete = radon_cmp.fits["complete_pooling"]
    assert e["complete_pooling"].iloc[0] == pytest.approx(complete.fixef().loc["Intercept", "mean"])
    np.testing.assert_allclose(e["partial_pooling"], partial.coef("county")["mean"], rtol=1e-12)
    assert (e["note"] == "").all()


def test_shrinkage_decreases_with_cluster_size(radon_cmp):
    e = radon_cmp.estimates
    rho = spearmanr(e["n_obs"], e["shrinkage"], nan_policy="omit").statistic
    assert rho < -0.5
    # the smallest counties move most
    small, large = e[e["n_obs"] <= 2]["shrinkage"].median(), e[e["n_obs"] >= 20]["shrinkage"].median()
    assert small > 2 * large


def test_partial_pooling_lies_between_no_pooling_and_population(radon_cmp):
    e = radon_cmp.estimates
    partial = radon_cmp.fits["partial_pooling"]
    # tolerance: Monte Carlo error of each posterior mean
    mcse = az.mcse(partial.coef_draws("county")).values.ravel()
    lo = np.minimum(e["no_pooling"], e["population"]) - 3 * mcse
    hi = np.maximum(e["no_pooling"], e["population"]) + 3 * mcse
    inside = (e["partial_pooling"] >= lo) & (e["partial_pooling"] <= hi)
    assert inside.all(), e[~inside]
    # fraction_moved = (no - partial) / (no - population), by hand; in [0, 1] up to the same 3 MCSE,
    # and put on the bound it passed by less than that (Monte Carlo error, not a move past the target)
    gap = e["no_pooling"] - e["population"]
    hand = ((e["no_pooling"] - e["partial_pooling"]) / gap).to_numpy()
    np.testing.assert_allclose(e["fraction_moved"], np.clip(hand, 0, 1), rtol=1e-12)
    finite = e["fraction_moved"].dropna()
    assert len(finite) == 85
    slack = 3 * mcse / np.abs(gap.to_numpy())
    assert (hand >= -slack).all() and (hand <= 1 + slack).all()


def test_shrinkage_is_the_models_own_factor_by_hand(radon_cmp):
    """B_j = sigma^2 / (sigma^2 + n_j tau^2), per draw, averaged: the DESIGN's shrinkage factor."""
    e = radon_cmp.estimates
    post = radon_cmp.fits["partial_pooling"].posterior
    sigma2 = (post["sigma"] ** 2).values.ravel()
    tau2 = (post["county_sd"].sel(county_effect="Intercept") ** 2).values.ravel()
    n = e["n_obs"].to_numpy()
    by_hand = (sigma2[:, None] / (sigma2[:, None] + n[None, :] * tau2[:, None])).mean(axis=0)
    np.testing.assert_allclose(e["shrinkage"].to_numpy(), by_hand, rtol=1e-10)
    assert ((e["shrinkage"] > 0) & (e["shrinkage"] < 1)).all()
    # the realised fraction moved scatters around the model's factor (it is its noisy estimate)
    assert abs(float((e["fraction_moved"] - e["shrinkage"]).median())) < 0.1


def test_fixed_effect_se_shows_understated_uncertainty(radon_cmp, radon):
    se = radon_cmp.fixed_effect_se
    assert list(se.index) == ["Intercept", "floor"] and se.index.name == "coef"
    assert list(se.columns) == ["complete_pooling", "partial_pooling", "ratio"]
    # ignoring the counties makes the intercept look far more certain than it is
    assert se.loc["Intercept", "ratio"] > 1.3
    np.testing.assert_allclose(se["ratio"], se["partial_pooling"] / se["complete_pooling"])
    # the SDs are the two fits' posterior SDs of beta ...
    for p in ["complete_pooling", "partial_pooling"]:
        np.testing.assert_allclose(se[p], radon_cmp.fits[p].fixef()["sd"], rtol=1e-12)
    # ... and complete pooling's is the OLS standard error (weak priors; MC relative error of an SD at
    # ESS ~1000 is ~2%, so 10% is ~4.5 MC SEs)
    X = np.column_stack([np.ones(len(radon)), radon["floor"].to_numpy(float)])
    y = radon["log_radon"].to_numpy()
    _, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    ols_se = np.sqrt(rss[0] / (len(y) - 2) * np.diag(np.linalg.inv(X.T @ X)))
    np.testing.assert_allclose(se["complete_pooling"], ols_se, rtol=0.1)


def test_fits_are_readable(radon_cmp):
    fits = radon_cmp.fits
    assert list(fits) == ["no_pooling", "partial_pooling", "complete_pooling"]
    assert isinstance(fits["partial_pooling"], lb.Fit)
    no, complete = fits["no_pooling"], fits["complete_pooling"]
    assert isinstance(no, PoolingFit) and isinstance(complete, PoolingFit)
    for f in (no, complete):
        ll = f.idata["log_likelihood"]["y"]
        assert ll.dims == ("chain", "draw", "obs") and ll.sizes["obs"] == 919
        assert f.idata.attrs["pooling"] == f.pooling and f.idata.attrs["sampler"] == "nutpie"
        assert f.diagnostics()["divergences"] == 0
    assert no.posterior["county_coef"].dims == ("chain", "draw", "county", "county_effect")
    assert list(no.fixef().index) == ["floor"]
    assert list(complete.fixef().index) == ["Intercept", "floor"]
    assert complete.coef("county").shape == (85, 7)
    assert "PSIS-LOO" in repr(radon_cmp) and "no_pooling" in repr(no)
    # the no-pooling estimate of a county with many houses is close to its own least squares
    ls = fits["partial_pooling"].shrinkage("county")
    assert radon_cmp.estimates.loc[("HENNEPIN", "Intercept"), "no_pooling"] == pytest.approx(
        ls.loc[("HENNEPIN", "Intercept"), "no_pooling"], abs=0.05
    )


def test_pooling_fits_save_and_load(radon_cmp, tmp_path):
    for name in ("no_pooling", "complete_pooling"):
        fit = radon_cmp.fits[name]
        path = tmp_path / f"{name}.nc"
        fit.save(path)
        loaded = lb.load(path)
        assert isinstance(loaded, PoolingFit) and loaded.kind == "pooling"
        assert loaded.pooling == name and loaded.group == "county"
        assert loaded.model.formula == RADON and loaded.model.priors == fit.model.priors
        pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef())
        pd.testing.assert_frame_equal(loaded.coef("county"), fit.coef("county"))
        assert loaded.diagnostics() == fit.diagnostics()
        np.testing.assert_array_equal(loaded.idata["log_likelihood"]["y"], fit.idata["log_likelihood"]["y"])
        assert set(loaded.idata.children) == set(fit.idata.children)
    # complete pooling has no cluster dim; the design check accepts that
    assert "county" not in lb.load(tmp_path / "complete_pooling.nc").posterior.dims


def test_pooling_fit_log_likelihood_is_the_gaussian_of_its_mean(radon_cmp, radon):
    complete = radon_cmp.fits["complete_pooling"]
    post = complete.posterior
    X = np.column_stack([np.ones(len(radon)), radon["floor"].to_numpy(float)])
    mu = np.einsum("cdp,np->cdn", post["beta"].values, X)
    by_hand = norm.logpdf(radon["log_radon"].to_numpy(), loc=mu, scale=post["sigma"].values[..., None])
    np.testing.assert_allclose(complete.idata["log_likelihood"]["y"].values, by_hand, rtol=1e-10)


def test_random_slopes_comparison(radon_slopes_cmp, radon):
    cmp = radon_slopes_cmp
    e = cmp.estimates
    assert e.shape == (170, 15)
    assert list(e.index[:2]) == [("AITKIN", "Intercept"), ("AITKIN", "floor")]
    assert cmp.loo.index[0] == "partial_pooling"
    # a county of houses all on one floor cannot estimate its own floor effect: NaN, with a note
    floors = radon.groupby("county")["floor"].agg(["min", "max", "size"])
    one_floor = floors[floors["min"] == floors["max"]].index
    slope = e.xs("floor", level="effect")
    assert slope.loc[one_floor, "no_pooling"].isna().all()
    assert slope.loc[one_floor, "note"].str.startswith("not identified by the cluster's own data").all()
    assert slope.loc[one_floor, "partial_pooling"].notna().all()
    assert slope["no_pooling"].notna().sum() == len(floors) - len(one_floor)
    assert e["note"].str.startswith("not identified").sum() == e["no_pooling"].isna().sum()
    # a floor effect that varies between counties is less certain than one regression says
    assert cmp.fixed_effect_se.loc["floor", "ratio"] > 1


def test_arrows_plot_of_a_comparison(radon_slopes_cmp):
    e = radon_slopes_cmp.estimates
    both = e["no_pooling"].notna().groupby(level="level", sort=False).all()
    fig = radon_slopes_cmp.plot("arrows")
    (ax,) = fig.axes
    quiver = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
    assert quiver[0].N == both.sum() < 85
    assert _points(ax) == {"no pooling": both.sum(), "partial pooling": both.sum(), "population value": 1}
    assert ax.get_xlabel() == "Intercept" and ax.get_ylabel() == "floor"
    assert any("cannot identify both effects" in t.get_text() for t in ax.texts)
    fig = radon_slopes_cmp.plot("shrinkage")
    assert [a.get_ylabel() for a in fig.axes] == ["Intercept", "floor"]
    assert _points(fig.axes[1]) == {
        "no pooling": int(e.xs("floor", level="effect")["no_pooling"].notna().sum()),
        "partial pooling": 85,
    }


# ---------------------------------------------------------------- fit.shrinkage (least squares)


def test_fit_shrinkage_is_the_clusters_own_least_squares(radon_cmp, radon):
    partial = radon_cmp.fits["partial_pooling"]
    table = partial.shrinkage("county")
    assert list(table.columns) == ESTIMATE_COLUMNS and table.shape == (85, 15)
    floor = partial.fixef().loc["floor", "mean"]
    rows = radon[radon["county"] == "AITKIN"]
    by_hand = np.mean(rows["log_radon"] - floor * rows["floor"])
    assert table.loc[("AITKIN", "Intercept"), "no_pooling"] == pytest.approx(by_hand, rel=1e-10)
    ols = np.polyfit(radon["floor"], radon["log_radon"], 1)
    assert table["complete_pooling"].iloc[0] == pytest.approx(ols[1], rel=1e-10)
    rho = spearmanr(table["n_obs"], table["shrinkage"], nan_policy="omit").statistic
    assert rho < -0.5


def test_unidentified_effects_are_nan_with_a_note(radon):
    # with random floor slopes, counties of one house, or without basements, cannot fit their own slope
    g = lb.LMM("log_radon ~ floor + (floor | county)", radon).design.group("county")
    _, ok, notes = identified(g, normal_equations(g))
    counts = g.counts()
    one = int(np.flatnonzero(counts == 1)[0])
    assert not ok[one, 1]  # the slope; its intercept is identified only if that house has floor 0
    assert ok[one, 0] == (g.Z[g.codes == one, 1][0] == 0)
    assert "1 observation for 2 effects" in notes[one, 1]
    floor_by_county = pd.Series(g.Z[:, 1]).groupby(g.codes).agg(["min", "max"])
    all_ground = int(np.flatnonzero((floor_by_county["max"] == 0) & (counts > 1))[0])
    assert ok[all_ground, 0] and not ok[all_ground, 1]
    assert "floor does not vary" in notes[all_ground, 1]
    assert notes[ok].tolist() == [""] * int(ok.sum())


def test_shrinkage_with_random_slopes(slopes_fit):
    table = slopes_fit.shrinkage("Subject")
    assert table.shape == (36, 15)
    assert list(table.index.get_level_values("effect")[:2]) == ["Intercept", "Days"]
    assert table.attrs["group"] == "Subject"
    # every subject has 10 days: both effects identified, no-pooling = per-subject OLS
    sub = lb.datasets.load("sleepstudy").query("Subject == '308'")
    slope, intercept = np.polyfit(sub["Days"], sub["Reaction"], 1)
    assert table.loc[("308", "Intercept"), "no_pooling"] == pytest.approx(intercept, rel=1e-10)
    assert table.loc[("308", "Days"), "no_pooling"] == pytest.approx(slope, rel=1e-10)


# ---------------------------------------------------------------- within / between


def test_within_between_columns(contextual_data):
    df = contextual_data
    np.testing.assert_allclose(df["x_within"] + df["x_between"], df["x"])
    np.testing.assert_allclose(df.groupby("cluster")["x_within"].mean(), 0, atol=1e-12)
    assert df.groupby("cluster")["x_between"].nunique().eq(1).all()
    raw = pd.DataFrame({"g": ["a", "a", "b"], "x": [1.0, 2.0, 3.0]})
    out = lb.within_between(raw, "x", by=["g"])
    assert list(raw.columns) == ["g", "x"]  # the input is unchanged
    assert out["x_between"].tolist() == [1.5, 1.5, 3.0]


def test_contextual_effect_recovers_between_minus_within(decomposed_fit):
    ce = decomposed_fit.contextual_effect("x_within", "x_between")
    assert ce.index.tolist() == ["within", "between", "contextual"] and ce.index.name == "effect"
    assert list(ce.columns) == ["coef", "mean", "sd", "hdi_low", "hdi_high", "prob_positive"]
    assert ce["coef"].tolist() == ["x_within", "x_between", "x_between - x_within"]
    row = ce.loc["contextual"]
    # one z per quantity against the truth, |z| < 3.5 (two-sided false alarm 4.7e-4 each; the old
    # conjunction of three 94% intervals failed 17% of the time by chance); measured |z| <= 0.6
    for effect, truth in [("within", 0.5), ("between", 2.0), ("contextual", 1.5)]:
        z = (ce.loc[effect, "mean"] - truth) / ce.loc[effect, "sd"]
        assert abs(z) < 3.5, (effect, z)
    assert row["hdi_low"] > 0 and row["prob_positive"] == 1.0
    draws = contextual.contextual_effect_draws(decomposed_fit, "x_within", "x_between")
    assert draws.dims == ("chain", "draw") and draws.name == "contextual"
    beta = decomposed_fit.posterior["beta"]
    np.testing.assert_allclose(draws.values, (beta.sel(coef="x_between") - beta.sel(coef="x_within")).values,
                               rtol=1e-12)
    assert float(draws.mean()) == pytest.approx(row["mean"])
    assert row["prob_positive"] == pytest.approx(float((draws > 0).mean()))


def test_naive_model_recovers_neither_effect(naive_fit):
    fe = naive_fit.fixef().loc["x"]
    # one coefficient blending the two: it is neither the within (0.5) nor the between (2.0) effect
    assert not fe["hdi_low"] < 0.5 < fe["hdi_high"]
    assert not fe["hdi_low"] < 2.0 < fe["hdi_high"]
    assert 0.5 < fe["mean"] < 2.0


# ---------------------------------------------------------------- implied covariance


def test_implied_covariance_equals_zgz_plus_sigma2(slopes_fit):
    post = slopes_fit.posterior
    sd = post["Subject_sd"].values
    R = post["Subject_corr"].values
    G = np.mean(sd[..., :, None] * R * sd[..., None, :], axis=(0, 1))
    sigma2 = np.mean(post["sigma"].values ** 2)
    design = slopes_fit.design
    rows = list(range(25)) + [178, 179]
    Z = design.Z.toarray()[rows]
    big_G = np.kron(np.eye(design.groups[0].n_levels), G)
    by_hand = Z @ big_G @ Z.T + sigma2 * np.eye(len(rows))
    V = slopes_fit.implied_covariance(rows)
    assert list(V.index) == rows and list(V.columns) == rows
    np.testing.assert_allclose(V.to_numpy(), by_hand, rtol=0, atol=1e-10)
    # rows of different subjects covary 0; of one subject by t0^2 + t01 (x + x') + t1^2 x x'
    assert V.loc[0, 10] == 0.0 and V.loc[5, 178] == 0.0
    x, x2 = 2.0, 7.0
    assert V.loc[2, 7] == pytest.approx(G[0, 0] + G[0, 1] * (x + x2) + G[1, 1] * x * x2, rel=1e-12)
    assert V.loc[3, 3] == pytest.approx(G[0, 0] + 2 * G[0, 1] * 3 + G[1, 1] * 9 + sigma2, rel=1e-12)


def test_implied_covariance_of_a_dataframe(slopes_fit, sleepstudy):
    rows = sleepstudy.iloc[[0, 1, 10]]
    np.testing.assert_allclose(
        slopes_fit.implied_covariance(rows).to_numpy(),
        slopes_fit.implied_covariance([0, 1, 10]).to_numpy(),
        atol=1e-10,
    )
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0], "Subject": ["new", "new", "other"]}, index=["a", "b", "c"])
    V = slopes_fit.implied_covariance(new)
    assert list(V.index) == ["a", "b", "c"]
    assert V.loc["a", "b"] > 0 and V.loc["b", "c"] == 0.0
    C = slopes_fit.implied_covariance(new, kind="correlation")
    np.testing.assert_allclose(np.diag(C), 1.0)
    # by hand from E[G] and E[sigma^2]: rows a, b of one new subject at Days 0 and 5 (z = (1, 0), (1, 5))
    post = slopes_fit.posterior
    sd, R = post["Subject_sd"].values, post["Subject_corr"].values
    G = np.mean(sd[..., :, None] * R * sd[..., None, :], axis=(0, 1))
    s2 = float(np.mean(post["sigma"].values ** 2))
    v_ab, v_aa, v_bb = G[0, 0] + 5 * G[0, 1], G[0, 0] + s2, G[0, 0] + 10 * G[0, 1] + 25 * G[1, 1] + s2
    assert V.loc["a", "b"] == pytest.approx(v_ab, rel=1e-10)
    assert V.loc["a", "a"] == pytest.approx(v_aa, rel=1e-10) and V.loc["b", "b"] == pytest.approx(v_bb, rel=1e-10)
    assert C.loc["a", "b"] == pytest.approx(v_ab / np.sqrt(v_aa * v_bb), rel=1e-10)


def test_group_covariance(slopes_fit):
    G = covariance.group_covariance(slopes_fit, "Subject")
    assert list(G.index) == ["Intercept", "Days"] == list(G.columns)
    np.testing.assert_allclose(G.to_numpy(), G.to_numpy().T)
    post = slopes_fit.posterior
    sd, R = post["Subject_sd"].values, post["Subject_corr"].values
    np.testing.assert_allclose(G.to_numpy(), np.mean(sd[..., :, None] * R * sd[..., None, :], axis=(0, 1)), rtol=1e-12)
    assert np.sqrt(G.loc["Days", "Days"]) == pytest.approx(
        float(np.sqrt((slopes_fit.posterior["Subject_sd"].sel(Subject_effect="Days") ** 2).mean()))
    )


# ---------------------------------------------------------------- plots


def test_shrinkage_plot(radon_cmp):
    fig = radon_cmp.plot("shrinkage")
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes[:1]
    assert _points(ax) == {"no pooling": 85, "partial pooling": 85}
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "observations per county (log scale)"
    assert ax.get_ylabel() == "Intercept"
    assert {line.get_label() for line in ax.get_lines()} >= {"population value", "complete pooling"}


def test_forest_plot(radon_cmp):
    fig = radon_cmp.plot("forest")
    ax = fig.axes[0]
    assert _points(ax) == {"no pooling": 85, "partial pooling": 85, "complete pooling": 85}
    assert ax.get_xlabel() == "Intercept" and ax.get_ylabel() == "county"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 85 and labels[0] == "AITKIN (n=4)"
    fig = radon_cmp.plot("forest", levels=["ANOKA", "AITKIN"])
    assert _points(fig.axes[0]) == {"no pooling": 2, "partial pooling": 2, "complete pooling": 2}


def test_arrows_plot(slopes_fit):
    table = slopes_fit.shrinkage("Subject")
    fig = pooling_plots.plot_arrows(table, covariance.group_covariance(slopes_fit, "Subject"))
    (ax,) = fig.axes
    pts = _points(ax)
    assert pts["no pooling"] == 18 and pts["partial pooling"] == 18 and pts["population value"] == 1
    quiver = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
    assert len(quiver) == 1 and quiver[0].N == 18
    ellipses = [p for p in ax.patches if isinstance(p, matplotlib.patches.Ellipse)]
    assert len(ellipses) == 2
    assert ax.get_xlabel() == "Intercept" and ax.get_ylabel() == "Days"
    # both panels of a random-slope shrinkage plot
    fig = pooling_plots.plot_shrinkage(table)
    assert [a.get_ylabel() for a in fig.axes] == ["Intercept", "Days"]
    assert all(_points(a) == {"no pooling": 18, "partial pooling": 18} for a in fig.axes)


def test_arrows_need_two_effects(radon_cmp):
    with pytest.raises(ValueError, match="kind='arrows' needs two effects"):
        radon_cmp.plot("arrows")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "formula, kwargs, error, message",
    [
        (RADON, {"group": 1}, TypeError, "group must be a grouping factor's name"),
        (RADON, {"group": "County"}, ValueError, r"no grouping factor 'County'; the model has \['county'\]"),
        (
            "log_radon ~ floor + (1 | county/floor)",
            {"group": "county"},
            ValueError,
            "'county:floor' lies in 'county', not the other way round: give group='county:floor'",
        ),
        (RADON, {"group": "county", "draw": 100}, TypeError,
         r"compare_pooling\(\) got an unexpected keyword argument 'draw'; did you mean 'draws'\?"),
        (RADON, {"group": "county", "log_likelihood": False}, TypeError, "unexpected keyword argument 'log_likelihood'"),
        (
            RADON,
            {"group": "county", "no_pooling_scale": 0},
            ValueError,
            "no_pooling_scale must be a positive",
        ),
        (RADON, {"group": "county", "prob": 2}, ValueError, "prob must be strictly between"),
        (
            "log_radon ~ floor + log_uranium + (1 | county)",
            {"group": "county"},
            ValueError,
            r"\['log_uranium'\] do not vary within the clusters",
        ),
    ],
)
def test_compare_pooling_errors(radon, formula, kwargs, error, message):
    with pytest.raises(error, match=message):
        lb.compare_pooling(formula, radon, **kwargs)


def test_function_errors(slopes_fit, decomposed_fit, radon_cmp):
    with pytest.raises(TypeError, match=r"fit must be an lmm_bayes\.Fit"):
        shrinkage.shrinkage("fit", "Subject")
    with pytest.raises(ValueError, match="no grouping factor 'subject'"):
        slopes_fit.shrinkage("subject")
    with pytest.raises(TypeError, match="group must be"):
        slopes_fit.shrinkage(None)
    with pytest.raises(ValueError, match="prob must be strictly between 0 and 1"):
        slopes_fit.shrinkage("Subject", prob=94)
    with pytest.raises(TypeError, match="within must be a fixed effect's name"):
        decomposed_fit.contextual_effect(1, "x_between")
    with pytest.raises(
        ValueError, match=r"between='x_betwen' is not a fixed effect.*did you mean 'x_between'"
    ):
        decomposed_fit.contextual_effect("x_within", "x_betwen")
    with pytest.raises(ValueError, match="within and between are both"):
        decomposed_fit.contextual_effect("x_within", "x_within")
    with pytest.raises(TypeError, match="rows must be a list of row labels"):
        slopes_fit.implied_covariance("0")
    with pytest.raises(ValueError, match=r"rows \[999\] are not rows of the fitted data"):
        slopes_fit.implied_covariance([0, 999])
    with pytest.raises(ValueError, match="rows is empty"):
        slopes_fit.implied_covariance([])
    with pytest.raises(ValueError, match="kind must be one of"):
        slopes_fit.implied_covariance([0], kind="cov")
    with pytest.raises(ValueError, match="kind must be one of"):
        radon_cmp.plot("arrow")
    with pytest.raises(TypeError, match="estimates must be the DataFrame"):
        pooling_plots.plot_shrinkage([1, 2])
    with pytest.raises(ValueError, match=r"estimates lacks column\(s\)"):
        pooling_plots.plot_forest(radon_cmp.estimates.drop(columns="population"))
    with pytest.raises(ValueError, match=r"effects \['Days'\] are not in the estimates"):
        pooling_plots.plot_shrinkage(radon_cmp.estimates, effects="Days")
    with pytest.raises(ValueError, match=r"levels \['NOWHERE'\] are not clusters"):
        radon_cmp.plot("forest", levels=["NOWHERE"])
    table = slopes_fit.shrinkage("Subject")
    with pytest.raises(ValueError, match=r"effects \['Dayz'\] are not in the estimates"):
        pooling_plots.plot_arrows(
            table, covariance.group_covariance(slopes_fit, "Subject"), effects=["Intercept", "Dayz"]
        )
    with pytest.raises(ValueError, match="G must be a DataFrame labelled by effect"):
        pooling_plots.plot_arrows(table, pd.DataFrame())


@pytest.mark.parametrize(
    "data, column, by, error, message",
    [
        ("df", "x", "g", TypeError, "data must be a pandas DataFrame"),
        (None, 1, "g", TypeError, "column must be a column name"),
        (None, "x", 3, TypeError, "by must be a grouping column name"),
        (None, "z", "g", ValueError, r"within_between uses column\(s\) not in data: 'z'"),
        (None, "x", "x", ValueError, "is also a grouping column"),
        (None, "s", "g", ValueError, "column 's' must be numeric"),
        (None, "x_nan", "g", ValueError, "column 'x_nan' has 1 missing or infinite value"),
        (None, "x", "g_nan", ValueError, "column 'g_nan' has 1 missing"),
        (None, "v", "g", ValueError, r"already has column\(s\) \['v_within'\]"),
    ],
)
def test_within_between_errors(data, column, by, error, message):
    df = pd.DataFrame(
        {
            "g": ["a", "a", "b"],
            "g_nan": ["a", None, "b"],
            "x": [1.0, 2.0, 3.0],
            "x_nan": [1.0, np.nan, 3.0],
            "s": ["p", "q", "r"],
            "v": [1, 2, 3],
            "v_within": [0, 0, 0],
        }
    )
    with pytest.raises(error, match=message):
        lb.within_between(df if data is None else data, column, by)

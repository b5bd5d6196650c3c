"""Effects, trace, rank, pair, LOO-PIT and residual plots: the data drawn equal the numbers they show.

Each figure is read back (line and point data, titles, labels) and compared with the
draws or tables it should draw, computed here from the fit's own draws.
"""

import warnings

import matplotlib

matplotlib.use("Agg")

import arviz_stats as azs
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.teaching import check_plots
from lmm_bayes.teaching.effects_plot import plot_effects

SLOPES = "Reaction ~ Days + (Days | Subject)"
FAST = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}
LABELS = ["beta[Intercept]", "beta[Days]", "sigma", "Subject_sd[Intercept]", "Subject_sd[Days]",
          "Subject_corr[Intercept, Days]"]


@pytest.fixture(scope="module")
def fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(SLOPES, sleepstudy).fit(seed=9, **FAST)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _draws(fit, label):
    tree = check_plots.hyperparameter_tree(fit)
    return tree["posterior"][label].transpose("chain", "draw").values


def _points(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_effects_plot_draws_population_line_cluster_lines_band_and_data(fit):
    fig = fit.plot_effects("Days", group="Subject", n_points=12)
    (ax,) = fig.axes
    population, *clusters = ax.lines
    assert population.get_label() == "population" and len(clusters) == 18
    fixef = fit.fixef()["mean"]
    x = population.get_xdata()
    np.testing.assert_allclose(x, np.linspace(0, 9, 12))
    np.testing.assert_allclose(population.get_ydata(), fixef["Intercept"] + fixef["Days"] * x, rtol=1e-10)
    coef = fit.coef("Subject")["mean"].unstack("effect")
    for line, (level, row) in zip(clusters, coef.iterrows()):
        assert line.get_label() == f"_cluster {level}"
        np.testing.assert_allclose(line.get_ydata(), row["Intercept"] + row["Days"] * x, rtol=1e-10)
    (data,) = _points(ax)
    np.testing.assert_array_equal(data.get_offsets()[:, 1], fit.design.y)
    np.testing.assert_array_equal(data.get_offsets()[:, 0], fit.design.data["Days"].to_numpy(dtype=float))
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ce = fit.conditional_effects("Days", n_points=12)
    ys = band.get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([ys.min(), ys.max()], [ce["low"].min(), ce["high"].max()], rtol=1e-12)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["mean, 94% HDI", "population", "data", "Subject (18)"]
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"


def test_effects_plot_prediction_band_is_wider_and_population_only(fit):
    ax = plot_effects(fit, "Days", band="prediction", data=False, n_points=5).axes[0]
    assert len(ax.lines) == 1 and not _points(ax)
    assert "prediction, 94% HDI" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(TypeError, match="data must be True or False"):
        plot_effects(fit, "Days", data="yes")


def test_trace_plots_every_hyperparameter_chain_by_chain(fit):
    fig = fit.plot_trace()
    assert [ax.get_title() for ax in fig.axes] == LABELS
    ax = fig.axes[LABELS.index("sigma")]
    draws = _draws(fit, "sigma")
    traces = [line.get_ydata() for line in ax.lines if len(line.get_ydata()) == draws.shape[1]]
    assert len(traces) == 2
    for chain, y in enumerate(traces):
        np.testing.assert_array_equal(y, draws[chain])
    only = fit.plot_trace(var_names=["Subject_sd[Days]"])
    assert [ax.get_title() for ax in only.axes] == ["Subject_sd[Days]"]


def test_rank_plot_is_the_rank_ecdf_of_each_chain(fit):
    fig = fit.plot_rank()
    assert [ax.get_title() for ax in fig.axes] == LABELS
    label = "Subject_sd[Intercept]"
    ax = fig.axes[LABELS.index(label)]
    lines = [line for line in ax.lines if len(line.get_xdata()) == FAST["draws"]]
    assert len(lines) == 2  # one Δ-ECDF per chain
    # the fractional ranks of this parameter's own draws, pooled over chains, ECDF per chain (arviz-stats)
    draws = check_plots.hyperparameter_tree(fit)["posterior"].to_dataset()[[label]]
    ranks = draws.azstats.compute_ranks(dim=["chain", "draw"], relative=True)
    ecdf = ranks.azstats.ecdf(dim=["draw"], pit=True, npoints=FAST["draws"])[label]
    for chain, line in enumerate(lines):
        np.testing.assert_allclose(line.get_xdata(), ecdf.sel(plot_axis="x").isel(chain=chain).values, atol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), ecdf.sel(plot_axis="y").isel(chain=chain).values, atol=1e-12)


def test_pair_plot_pairs_the_sds_and_the_correlation(fit):
    fig = fit.plot_pair("Subject")
    names = ["Subject_sd[Intercept]", "Subject_sd[Days]", "Subject_corr[Intercept, Days]"]
    draws = {n: _draws(fit, n).ravel() for n in names}
    found = set()
    for ax in fig.axes:
        scatters = _points(ax)
        if not scatters:
            continue
        xy = np.concatenate([c.get_offsets() for c in scatters])
        match = [(a, b) for a in names for b in names
                 if a != b and np.array_equal(np.sort(xy[:, 0]), np.sort(draws[a]))
                 and np.array_equal(np.sort(xy[:, 1]), np.sort(draws[b]))]
        assert len(match) == 1
        found.add(match[0])
    assert found == {(names[0], names[1]), (names[0], names[2]), (names[1], names[2])}
    assert len(fig.axes) == 6  # the lower triangle of 3 x 3


def test_pair_plot_of_one_sd_adds_sigma(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = lb.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit(seed=1, **FAST)
    fig = small.plot_pair()
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()] == ["sigma", "Subject_sd[Intercept]"]
    (scatter,) = [ax for ax in fig.axes if _points(ax)]
    xy = np.concatenate([c.get_offsets() for c in _points(scatter)])
    np.testing.assert_array_equal(np.sort(xy[:, 0]), np.sort(_draws(small, "sigma").ravel()))


def test_loo_pit_plots_the_ecdf_of_arviz_loo_pit(fit):
    fig = fit.plot_loo_pit(seed=1)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "LOO-PIT" and ax.get_title() == "LOO-PIT: Reaction"
    assert "posterior_predictive" not in fit.idata.children  # drawn on a copy
    # the default method (pot_c) uses the Pareto-smoothed PIT
    pit = azs.loo_pit(fit.posterior_predictive(seed=1).idata, pareto_pit=True)["y"].values
    ecdf = max(ax.lines, key=lambda line: len(line.get_xdata()))
    x = np.asarray(ecdf.get_xdata(), dtype=float)
    expected = (pit[None, :] <= x[:, None]).mean(axis=1) - x
    np.testing.assert_allclose(ecdf.get_ydata(), expected, atol=1e-12)


def test_residual_plot_draws_residuals_and_qq_plots(fit):
    fig = fit.plot_residuals()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Residuals vs fitted", "QQ: residuals", "QQ: Subject b[Intercept]", "QQ: Subject b[Days]"]
    res = fit.residuals()
    (points,) = _points(fig.axes[0])
    np.testing.assert_allclose(points.get_offsets(), res[["fitted", "residual"]].to_numpy(), rtol=1e-12)
    (qq,) = _points(fig.axes[1])
    osm, osr = stats.probplot(res["standardized"].to_numpy(), dist="norm")[0]
    np.testing.assert_allclose(qq.get_offsets(), np.column_stack([osm, osr]), rtol=1e-12)
    ranef = fit.ranef("Subject")["mean"].unstack("effect")
    for ax, effect in zip(fig.axes[2:], ["Intercept", "Days"]):
        (qq,) = _points(ax)
        np.testing.assert_allclose(qq.get_offsets()[:, 1], np.sort(ranef[effect].to_numpy()), rtol=1e-12)
    # Filliben's normal order statistic medians: the middle of 18 clusters sits symmetric about 0
    x = _points(fig.axes[2])[0].get_offsets()[:, 0]
    np.testing.assert_allclose(x, -x[::-1], atol=1e-12)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda f: f.plot_trace(var_names=["sigmaa"]), ValueError, "not hyperparameters of this fit"),
        (lambda f: f.plot_rank(var_names=[1]), TypeError, "var_names must be a list"),
        (lambda f: f.plot_pair("Subjct"), ValueError, "Subjct"),
        (lambda f: f.plot_residuals(groups=["Subjct"]), ValueError, "Subjct"),
        (lambda f: check_plots.plot_trace("fit"), TypeError, "fit must be an lmm_bayes.Fit"),
    ],
)
def test_errors(fit, call, error, match):
    with pytest.raises(error, match=match):
        call(fit)


def test_loo_pit_needs_the_log_likelihood(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = lb.LMM(SLOPES, sleepstudy).fit(seed=3, log_likelihood=False, **FAST)
    with pytest.raises(ValueError, match="needs the pointwise log-likelihood"):
        bare.plot_loo_pit()


def test_a_model_without_groups_and_one_chain(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = lb.LMM("Reaction ~ Days", sleepstudy).fit(draws=100, tune=100, chains=1, seed=1, progressbar=False)
    with pytest.raises(ValueError, match="this model has none"):
        plain.plot_pair()
    with pytest.raises(ValueError, match="rank plots compare chains, and this fit has one chain"):
        plain.plot_rank()
    assert [ax.get_title() for ax in plain.plot_residuals().axes] == ["Residuals vs fitted", "QQ: residuals"]
    assert [ax.get_title() for ax in plain.plot_trace().axes] == ["beta[Intercept]", "beta[Days]", "sigma"]
    with pytest.raises(TypeError, match="var_names must be a list"):
        check_plots.hyperparameter_tree(plain, [])

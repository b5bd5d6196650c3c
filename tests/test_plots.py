"""Plots: checked on the figure's structure (axes, lines, points, labels), not by eye."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection

import lmm_bayes as lb
from lmm_bayes.results.predictive import cluster_stat_check
from lmm_bayes.teaching import plots

SLOPES = "Reaction ~ Days + (Days | Subject)"
FAST = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False, "method": "full"}
SUBJECTS = 18


@pytest.fixture(scope="module")
def fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(SLOPES, sleepstudy).fit(seed=11, **FAST)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _points(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def _segments(ax):
    return [c for c in ax.collections if isinstance(c, LineCollection)]


def test_ppc_density_overlay(fit):
    fig = fit.plot_ppc(num_samples=30, seed=1)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 30 + 1  # replicated data sets + the observed density
    assert ax.get_xlabel() == "Reaction"
    assert ax.get_title() == "Posterior predictive check: Reaction"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["posterior predictive (30 draws)", "observed"]
    # the fit is not changed: its posterior predictive was drawn on a copy
    assert "posterior_predictive" not in fit.idata.children


def test_ppc_density_is_reproducible_and_uses_an_existing_group(fit):
    pp_fit = fit.posterior_predictive(seed=4)
    a = pp_fit.plot_ppc(num_samples=5, seed=2).axes[0].lines[0].get_ydata()
    b = pp_fit.plot_ppc(num_samples=5, seed=2).axes[0].lines[0].get_ydata()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stat", ["mean", "sd"])
def test_ppc_cluster_statistic(fit, stat):
    fig = plots.plot_ppc(fit, kind="stat", stat=stat, group="Subject", seed=1)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    observed, replicated = None, None
    for c in _points(ax):
        if c.get_label() == "observed":
            observed = c
        elif c.get_label() == "replicated, mean":
            replicated = c
    assert len(observed.get_offsets()) == len(replicated.get_offsets()) == SUBJECTS
    (intervals,) = _segments(ax)
    assert len(intervals.get_segments()) == SUBJECTS
    assert ax.get_xlabel() == f"{stat} of Reaction per Subject"
    assert ax.get_ylabel() == "Subject"
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == sorted(fit.design.group("Subject").levels)
    assert ax.get_title().startswith(f"Per-Subject {stat}: ")
    assert f"of {SUBJECTS} observed outside the 94% interval" in ax.get_title()
    # observed points match the data's per-subject statistic
    check = cluster_stat_check(fit, "Subject", stat=stat, seed=1)
    np.testing.assert_allclose(np.sort(observed.get_offsets()[:, 0]), np.sort(check["observed"].values))


def test_ppc_stat_defaults_to_the_first_grouping_factor(fit):
    ax = fit.plot_ppc(kind="stat").axes[0]
    assert ax.get_ylabel() == "Subject"


def test_caterpillar(fit):
    fig = plots.plot_caterpillar(fit, "Subject")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["Intercept", "Days"]
    ranef = fit.ranef("Subject")
    for ax, effect in zip(fig.axes, ["Intercept", "Days"]):
        (points,) = _points(ax)
        assert len(points.get_offsets()) == SUBJECTS
        np.testing.assert_allclose(
            np.sort(points.get_offsets()[:, 0]), np.sort(ranef.xs(effect, level="effect")["mean"].to_numpy())
        )
        (intervals,) = _segments(ax)
        assert len(intervals.get_segments()) == SUBJECTS
        assert ax.get_xlabel() == "b (mean, 94% HDI)"
        assert ax.lines[0].get_xdata()[0] == 0  # reference line at 0
    # sorted by the intercept: y position k holds the k-th smallest mean
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(ranef.xs("Intercept", level="effect")["mean"].sort_values(kind="stable").index)
    assert fig.axes[0].get_ylabel() == "Subject"


def test_caterpillar_options(fit):
    fig = plots.plot_caterpillar(fit, "Subject", effects="Days", values="coef", prob=0.8, sort=False)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "Days" and ax.get_xlabel() == "β + b (mean, 80% HDI)"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(fit.design.group("Subject").levels)
    assert ax.lines[0].get_xdata()[0] == pytest.approx(fit.fixef().loc["Days", "mean"])


def test_variance_partition(fit):
    fig = plots.plot_variance_partition(fit, at={"Days": 9})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Subject", "Residual"]
    assert len(ax.patches) == 2  # one bar per component
    # each bar is that component's posterior mean share at Days=9, computed here from the draws:
    # z'Gz / (z'Gz + sigma^2) with z = (1, 9) and G from Subject_sd and Subject_corr (a chart of SD
    # shares, or of the shares at Days=0, gives other widths)
    post = fit.posterior.transpose("chain", "draw", ...)
    sd, R = post["Subject_sd"].values, post["Subject_corr"].values
    z = np.array([1.0, 9.0])
    zGz = np.einsum("i,cdi,cdij,cdj,j->cd", z, sd, R, sd, z)
    share = zGz / (zGz + post["sigma"].values ** 2)
    label_at = {float(t): label.get_text() for t, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    bars = {label_at[p.get_y() + p.get_height() / 2]: p.get_width() for p in ax.patches}
    assert bars == pytest.approx({"Subject": share.mean(), "Residual": 1 - share.mean()}, rel=1e-10)
    assert ax.get_title() == "Variance partition (evaluated at Days=9)"
    assert ax.get_xlabel() == "share of the total variance"


def test_prior_predictive_plot(sleepstudy):
    model = lb.LMM(SLOPES, sleepstudy)
    fig = plots.plot_prior_predictive(model, num_samples=20, draws=100, seed=1)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 20 + 1
    assert ax.get_title() == "Prior predictive check: Reaction"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["prior predictive (20 draws)", "observed"]
    tree = model.prior_predictive(draws=50, seed=2)
    fig = plots.plot_prior_predictive(tree, num_samples=100)
    assert len(fig.axes[0].lines) == 50 + 1  # capped at the draws there are


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda f: f.plot_ppc(kind="hist"), ValueError, r"kind must be one of \['density', 'stat'\]"),
        (lambda f: f.plot_ppc(kind="stat", stat="max"), ValueError, r"stat must be one of \['mean', 'sd'\]"),
        (lambda f: f.plot_ppc(kind="stat", group="subject"), ValueError, r"no grouping factor 'subject'"),
        (lambda f: f.plot_ppc(group=1), TypeError, r"group must be a grouping factor's name"),
        (lambda f: f.plot_ppc(num_samples=0), ValueError, r"num_samples must be at least 1"),
        (lambda f: plots.plot_ppc("fit"), TypeError, r"fit must be an lmm_bayes.Fit"),
        (lambda f: plots.plot_caterpillar(f, "Subj"), ValueError, r"no grouping factor 'Subj'"),
        (lambda f: plots.plot_caterpillar(f, "Subject", effects="x"), ValueError, r"\['x'\] are not effects"),
        (lambda f: plots.plot_caterpillar(f, "Subject", effects=[1]), TypeError, r"effects must be an effect name"),
        (lambda f: plots.plot_caterpillar(f, "Subject", values="b"), ValueError, r"values must be one of"),
        (lambda f: plots.plot_prior_predictive(f), TypeError, r"prior must be an lmm_bayes.LMM or the DataTree"),
        (lambda f: plots.plot_prior_predictive(f.idata), ValueError, r"must hold 'prior_predictive'"),
        (lambda f: plots.plot_variance_partition("fit"), TypeError, r"fit must be an lmm_bayes.Fit"),
        (lambda f: plots.plot_variance_partition(f, at={"Nights": 1}), ValueError, r"not random slopes"),
    ],
)
def test_bad_arguments_raise(fit, call, error, match):
    with pytest.raises(error, match=match):
        call(fit)


@pytest.fixture(scope="module")
def no_pooling_fit(sleepstudy):
    from lmm_bayes.inference.sampling import SamplerSettings
    from lmm_bayes.teaching.pooling_models import fit_no_pooling

    model = lb.LMM(SLOPES, sleepstudy)
    settings = SamplerSettings(draws=500, tune=500, chains=2, seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.PoolingFit.of(fit_no_pooling(model, "Subject", settings=settings))


def test_caterpillar_of_a_no_pooling_fit(no_pooling_fit):
    fig = no_pooling_fit.plot_caterpillar("Subject", values="coef")
    assert [ax.get_title() for ax in fig.axes] == ["Intercept", "Days"]
    coef = no_pooling_fit.coef("Subject")
    for ax, effect in zip(fig.axes, ["Intercept", "Days"]):
        (points,) = _points(ax)
        np.testing.assert_allclose(
            np.sort(points.get_offsets()[:, 0]), np.sort(coef.xs(effect, level="effect")["mean"].to_numpy())
        )
        assert len(_segments(ax)[0].get_segments()) == SUBJECTS
        assert ax.get_xlabel() == "coefficient (mean, 94% HDI)"
        assert not ax.lines  # every subject's own effects: no population value to mark
    assert fig.get_suptitle() == "Subject: cluster-specific effects (no pooling)"
    with pytest.raises(ValueError, match=r"values='ranef'.*a no-pooling fit does not have; pass values='coef'"):
        plots.plot_caterpillar(no_pooling_fit, "Subject")

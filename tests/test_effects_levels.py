"""Effects plots (issue 33): a GLMM's cluster lines on the response scale, and categorical predictors.

* A nested Poisson GLMM ``(1 | subject) + (1 | subject:neuron)``: a neuron's line is the
  posterior mean of ``exp(x beta + b_subject + b_neuron)``, i.e. ``predict(kind="mean")`` on
  the neuron's rows; a subject's line leaves the neurons out.
* A categorical predictor: one point per level, equal to ``contrasts``' level means, with
  the cluster points, the figure and the report's effects section.
"""

from __future__ import annotations

import html
import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.inference.layout import b_name
from lmm_bayes.results.effects import cluster_means, conditional_effects, reference_row
from lmm_bayes.results.predict import predict

FAST = {"draws": 200, "tune": 200, "chains": 2, "seed": 1, "progressbar": False}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _spikes() -> pd.DataFrame:
    """6 subjects x 4 neurons x 15 trials; subject and neuron effects of +-1 on the log scale."""
    rng = np.random.default_rng(33)
    n_s, n_n, n_t = 6, 4, 15
    subject_eff = np.array([-1.2, -0.6, 0.0, 0.5, 1.0, 1.5])
    neuron_eff = rng.normal(0.0, 0.9, n_s * n_n)
    s = np.repeat(np.arange(n_s), n_n * n_t)
    n = np.repeat(np.arange(n_s * n_n), n_t)
    x = rng.normal(0.0, 1.0, s.size)
    stim = np.where(rng.random(s.size) < 0.6, "on", "off")
    eta = 1.2 + 0.3 * x + 0.4 * (stim == "on") + subject_eff[s] + neuron_eff[n]
    return pd.DataFrame({
        "count": rng.poisson(np.exp(eta)), "x": x, "stim": stim,
        "subject": [f"S{i + 1}" for i in s], "neuron": [f"n{i % n_n + 1}" for i in n],
    })


@pytest.fixture(scope="module")
def spikes_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.GLMM("count ~ x + stim + (1 | subject) + (1 | subject:neuron)", _spikes(),
                       family="poisson").fit(**FAST)


def test_every_neuron_line_is_its_predicted_mean(spikes_fit):
    """The line of neuron S1:n2 is predict(kind="mean") on S1:n2's rows at the reference values, to 1e-10."""
    ce = spikes_fit.conditional_effects("x", group="subject:neuron", n_points=9)
    grid = ce["x"].values
    held = reference_row(spikes_fit.design.data.drop(columns="count"))
    data = spikes_fit.design.data
    checked = 0
    for label in ce["subject:neuron"].values:
        subject, neuron = label.split(":")
        rows = pd.DataFrame({"x": grid, "stim": held["stim"], "subject": subject, "neuron": neuron})
        want = predict(spikes_fit, rows, levels="existing", kind="mean").mean(("chain", "draw")).values
        line = ce["cluster"].sel({"subject:neuron": label}).values
        inside = np.isfinite(line)
        assert inside.sum() >= 2, label
        np.testing.assert_allclose(line[inside], want[inside], rtol=1e-10, err_msg=label)
        own = data[(data["subject"] == subject) & (data["neuron"] == neuron)]["x"]
        assert not np.isfinite(line[(grid < own.min() - 1e-9) | (grid > own.max() + 1e-9)]).any()
        checked += 1
    assert checked == 24


def test_a_subject_line_leaves_its_neurons_out(spikes_fit):
    """A subject's line: the posterior mean of exp(x beta + b_subject), no neuron's effect in it."""
    ce = spikes_fit.conditional_effects("x", group="subject", n_points=5)
    post = spikes_fit.posterior.transpose("chain", "draw", ...)
    beta = post["beta"]
    g = spikes_fit.design.group("subject")
    b = post[b_name(g)]
    on = spikes_fit.design.data["stim"].mode().iloc[0] == "on"
    grid = ce["x"].values
    eta = (beta.sel(coef="Intercept").values[..., None] + beta.sel(coef="x").values[..., None] * grid
           + (beta.sel(coef="stim[on]").values[..., None] if on else 0.0))
    for j, level in enumerate(g.levels):
        want = np.exp(eta + b.values[:, :, j, 0][..., None]).mean(axis=(0, 1))
        line = ce["cluster"].sel(subject=level).values
        inside = np.isfinite(line)
        assert inside.sum() >= 2, level
        np.testing.assert_allclose(line[inside], want[inside], rtol=1e-10, err_msg=level)


def test_glmm_level_points_are_contrast_means_and_predicted_means(spikes_fit):
    """A GLMM's categorical x: population points = contrasts' means; a neuron's points = its predicted mean."""
    ce = spikes_fit.conditional_effects("stim", group="subject:neuron")
    table = spikes_fit.contrasts("stim").xs("mean", level="kind")
    assert ce["stim"].values.tolist() == table.index.tolist() == ["off", "on"]
    np.testing.assert_allclose(ce["population"].values, table["mean"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ce["low"].values, table["hdi_low"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ce["high"].values, table["hdi_high"].to_numpy(), rtol=1e-10)
    x_mean = spikes_fit.design.data["x"].mean()
    rows = pd.DataFrame({"x": x_mean, "stim": ["off", "on"], "subject": "S5", "neuron": "n3"})
    want = predict(spikes_fit, rows, levels="existing", kind="mean").mean(("chain", "draw")).values
    np.testing.assert_allclose(ce["cluster"].sel({"subject:neuron": "S5:n3"}).values, want, rtol=1e-10)


# ---------------------------------------------------------------------------- a Gaussian condition experiment


def _conditions() -> pd.DataFrame:
    """12 subjects x 3 conditions x 4 trials; subject s01 never saw condition c; an unbalanced block."""
    rng = np.random.default_rng(5)
    rows = [(f"s{i + 1:02d}", c, t) for i in range(12) for c in "abc" for t in range(4)]
    df = pd.DataFrame(rows, columns=["subject", "cond", "trial"])
    df = df[~((df["subject"] == "s01") & (df["cond"] == "c"))].reset_index(drop=True)
    u = dict(zip(sorted(df["subject"].unique()), rng.normal(0.0, 8.0, 12)))
    df["block"] = np.where(rng.random(len(df)) < 0.7, "am", "pm")
    df["dose"] = rng.uniform(0.0, 2.0, len(df))
    effect = df["cond"].map({"a": 0.0, "b": 6.0, "c": 15.0})
    df["y"] = (100.0 + effect + 10.0 * (df["block"] == "pm") + 3.0 * df["dose"] + df["subject"].map(u)
               + rng.normal(0.0, 3.0, len(df)))
    return df.drop(columns="trial")


@pytest.fixture(scope="module")
def cond_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM("y ~ cond + block + dose + (1 | subject)", _conditions()).fit(**FAST)


def test_level_means_are_the_contrast_means(cond_fit):
    ce = cond_fit.conditional_effects("cond", ci="eti", prob=0.9)
    table = cond_fit.contrasts("cond", ci="eti", prob=0.9).xs("mean", level="kind")
    assert ce.attrs["x_type"] == "categorical" and ce.attrs["interval"] == "90% ETI"
    assert ce["cond"].values.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(ce["population"].values, table["mean"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ce["low"].values, table["eti_low"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ce["high"].values, table["eti_high"].to_numpy(), rtol=1e-10)
    assert (ce["low"] < ce["population"]).all() and (ce["population"] < ce["high"]).all()
    # the truth: c - a = 15, b - a = 6 (block averaged, dose at its mean)
    diffs = ce["population"].values - ce["population"].values[0]
    np.testing.assert_allclose(diffs[1:], [6.0, 15.0], atol=2.5)
    assert "block averaged over 2 levels" in ce.attrs["reference"] and "dose = " in ce.attrs["reference"]
    frame = ce[["population", "low", "high"]].to_dataframe()
    assert frame.index.tolist() == ["a", "b", "c"]


def test_prediction_band_is_wider(cond_fit):
    mean = cond_fit.conditional_effects("cond")
    new = cond_fit.conditional_effects("cond", band="prediction", seed=2)
    np.testing.assert_allclose(new["population"].values, mean["population"].values, rtol=1e-12)
    assert ((new["high"] - new["low"]) > 2 * (mean["high"] - mean["low"])).all()


def test_cluster_points_are_the_population_plus_the_cluster_effect(cond_fit):
    ce = cond_fit.conditional_effects("cond", group="subject")
    post = cond_fit.posterior
    b = post[b_name("subject")].mean(("chain", "draw")).values[:, 0]
    points = ce["cluster"].values
    assert points.shape == (12, 3)
    assert np.isnan(points[0, 2]) and np.isfinite(np.delete(points.ravel(), 2)).all()  # s01 never saw c
    want = ce["population"].values[None, :] + b[:, None]
    seen = np.isfinite(points)
    np.testing.assert_allclose(points[seen], want[seen], rtol=1e-10)
    # the same numbers from cluster_means directly (block at both levels, averaged)
    rows = pd.DataFrame({"cond": "b", "block": ["am", "pm"], "dose": _conditions()["dose"].mean(),
                         "subject": "s01"})
    np.testing.assert_allclose(cluster_means(cond_fit, "subject", rows).mean(axis=1), points[:, 1], rtol=1e-10)


def test_plot_effects_of_a_categorical_predictor(cond_fit):
    ce = conditional_effects(cond_fit, "cond", group="subject")
    ax = cond_fit.plot_effects("cond").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.lines[0].get_label() == "population"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ce["population"].values, rtol=1e-12)
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 1, 2])
    bars = [c for c in ax.collections if c.get_label().startswith("mean, ")]
    assert len(bars) == 1
    segments = bars[0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], np.c_[ce["low"].values, ce["high"].values])
    ax = cond_fit.plot_effects("cond", group="subject").axes[0]
    assert len(ax.lines) == 1 + 12
    np.testing.assert_allclose(ax.lines[1].get_ydata(), ce["cluster"].values[0], rtol=1e-12)
    assert "subject (12)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "block averaged over 2 levels" in ax.get_title()


def test_report_shows_the_effects_of_a_categorical_predictor(cond_fit):
    from lmm_bayes.app.report import report_html

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = report_html(cond_fit)
    caption = "Effects of dose by subject: population line and band, every subject's line, data"
    assert caption in html.unescape(page)  # a numeric predictor still comes first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only = lb.LMM("y ~ cond + (1 | subject)", _conditions()).fit(**FAST)
        page = report_html(only)
    caption = "Effects of cond by subject: population mean and interval per level, every subject's points, data"
    found = re.search(rf"<h3>{re.escape(html.escape(caption))}</h3>\s*<img alt='[^']*' src='data:image/png;base64,"
                      rf"([A-Za-z0-9+/=]{{100,}})'>", page)
    assert found, "no effects section for cond"

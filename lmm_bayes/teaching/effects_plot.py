"""The effects plot (brms ``conditional_effects``, the key sleepstudy figure): the response along one predictor.

Draws :func:`lmm_bayes.results.effects.conditional_effects` and the data. Along a
numeric predictor: the population line with its band, one thin line per cluster of
``group`` (over the range of ``x`` its data cover), and the observations. For a
categorical predictor: per level the population point with its interval as an error
bar, each cluster's points (joined by a thin line, so a cluster's own differences between
levels show), and the observations spread a little sideways. It computes no statistic
of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from lmm_bayes.results.effects import conditional_effects
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["plot_effects"]

_POPULATION = "black"
_BAND = "C0"
_CLUSTER = "C1"
_DATA = "grey"


def plot_effects(
    fit: Fit,
    x: str,
    *,
    group: str | None = None,
    band: Literal["mean", "prediction"] = "mean",
    ci: str = DEFAULT_CI,
    prob: float = DEFAULT_PROB,
    n_points: int = 50,
    data: bool = True,
    seed: int | None = 0,
) -> Figure:
    """The response along ``x``: population line and band, every cluster's line, and the data.

    Parameters
    ----------
    fit : Fit
    x : str
        A numeric predictor, e.g. ``"Days"``, or a categorical one (points per level).
    group : str, optional
        Grouping factor whose clusters get one line each; none if omitted.
    band : {"mean", "prediction"}
        Band of the expected response (``"mean"``) or of a new observation
        (``"prediction"``), an interval of kind ``ci`` and mass ``prob``.
    ci : {"hdi", "eti"}
    prob : float
    n_points : int
        Points of the grid along ``x``.
    data : bool
        Draw the observations as points.
    seed : int, optional
        Seeds the noise of the prediction band.

    Returns
    -------
    matplotlib.figure.Figure
        One axes. Its lines: the population line (label ``"population"``) first, then one
        per cluster (label ``"_cluster <level>"``, hidden from the legend but one
        legend entry ``"<group> (n)"``); the band is a ``PolyCollection``; the data a
        scatter labelled ``"data"``. For a categorical ``x`` the population line is the
        level points (markers only) at x positions 0, 1, ... (tick labels: the levels),
        its intervals a ``LineCollection`` (label ``"<mean or prediction>, <interval>"``),
        and each cluster line its points, shifted sideways a little per cluster. The
        numbers are those of :func:`lmm_bayes.results.effects.conditional_effects` with
        the same arguments.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> ax = fit.plot_effects("Days", group="Subject").axes[0]
    >>> ax.get_xlabel(), ax.get_ylabel(), len(ax.lines)
    ('Days', 'Reaction', 19)

    A categorical predictor gets points with error bars:

    >>> rfit = lb.LMM("log_radon ~ C(floor) + (1 | county)", lb.datasets.load("radon")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> ax = rfit.plot_effects("floor").axes[0]
    >>> [t.get_text() for t in ax.get_xticklabels()], ax.lines[0].get_label()
    (['0', '1'], 'population')
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fit = check_fit(fit)
    if not isinstance(data, bool):
        raise TypeError(f"data must be True or False, got {type(data).__name__}")
    ce = conditional_effects(fit, x, group=group, band=band, ci=ci, prob=prob, n_points=n_points, seed=seed)
    design = fit.design
    fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
    what = "mean" if band == "mean" else "prediction"
    if ce.attrs["x_type"] == "categorical":
        _draw_levels(ax, ce, design, x, f"{what}, {ce.attrs['interval']}", data)
        held = ce.attrs["reference"]
        held = "" if held == "no other predictors" else held
    else:
        _draw_lines(ax, ce, design, x, f"{what}, {ce.attrs['interval']}", data)
        held = "" if ce.attrs["reference"] == "{}" else ce.attrs["reference"]
    ax.set_xlabel(x)
    ax.set_ylabel(f"{design.response} per trial" if design.family.needs_trials else design.response)
    title = f"{design.response} along {x}" + (f" by {ce.attrs['group']}" if group else "")
    ax.set_title(f"{title}\nothers at {held}" if held else title, fontsize="medium")
    handles, labels = ax.get_legend_handles_labels()
    if group:
        handles.append(Line2D([], [], color=_CLUSTER, linewidth=0.8))
        labels.append(f"{ce.attrs['group']} ({ce.sizes[ce.attrs['group']]})")
    ax.legend(handles, labels, fontsize="small", loc="best")
    return fig


def _observed(design) -> np.ndarray:
    """The data on the scale of the lines: a binomial model's successes per trial (a proportion), else y."""
    trials = design.trials
    if design.family.needs_trials and trials is not None:
        return design.y / trials
    return design.y


def _draw_lines(ax, ce, design, x: str, band_label: str, data: bool) -> None:
    """A numeric ``x``: band, population line, cluster lines, data."""
    grid = ce[x].values
    ax.fill_between(grid, ce["low"].values, ce["high"].values, color=_BAND, alpha=0.25, label=band_label)
    ax.plot(grid, ce["population"].values, color=_POPULATION, linewidth=2.2, label="population", zorder=4)
    if "cluster" in ce:
        for level, line in zip(ce[ce.attrs["group"]].values, ce["cluster"].values):
            ax.plot(grid, line, color=_CLUSTER, linewidth=0.8, alpha=0.6, label=f"_cluster {level}", zorder=3)
    if data:
        ax.scatter(design.data[x].to_numpy(dtype=float), _observed(design), s=8, color=_DATA, alpha=0.6, label="data",
                   zorder=2)


def _draw_levels(ax, ce, design, x: str, band_label: str, data: bool) -> None:
    """A categorical ``x``: population points with error bars, each cluster's points, data, at 0, 1, ..."""
    levels = [str(v) for v in ce[x].values]
    pos = np.arange(len(levels), dtype=float)
    ax.plot(pos, ce["population"].values, linestyle="none", marker="o", markersize=7, color=_POPULATION,
            label="population", zorder=5)
    ax.vlines(pos, ce["low"].values, ce["high"].values, color=_BAND, linewidth=3, alpha=0.8, label=band_label,
              zorder=4)
    if "cluster" in ce:
        points = ce["cluster"].values
        shift = np.linspace(-0.2, 0.2, len(points)) if len(points) > 1 else np.zeros(1)
        for level, row, d in zip(ce[ce.attrs["group"]].values, points, shift):
            ax.plot(pos + d, row, color=_CLUSTER, linewidth=0.6, marker="o", markersize=2.5, alpha=0.6,
                    label=f"_cluster {level}", zorder=3)
    if data:
        where = {lev: i for i, lev in enumerate(levels)}
        at = np.array([where.get(str(v), np.nan) for v in design.data[x].to_numpy()], dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(at))
        ax.scatter(at + jitter, _observed(design), s=8, color=_DATA, alpha=0.4, label="data", zorder=2)
    ax.set_xticks(pos, levels)
    ax.set_xlim(-0.6, len(levels) - 0.4)

"""The effects plot (brms ``conditional_effects``, the key sleepstudy figure): the response along one predictor.

Draws :func:`lmm_bayes.results.effects.conditional_effects` and the data: the
population line with its band, one thin line per cluster of ``group`` (its own
coefficients, over the range of ``x`` its data cover), and the observations. It computes
no statistic of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.results.fit import Fit

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
        A numeric predictor, e.g. ``"Days"``.
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
        scatter labelled ``"data"``. The numbers are those of
        :func:`lmm_bayes.results.effects.conditional_effects` with the same arguments.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> ax = fit.plot_effects("Days", group="Subject").axes[0]
    >>> ax.get_xlabel(), ax.get_ylabel(), len(ax.lines)
    ('Days', 'Reaction', 19)
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from lmm_bayes.results.effects import conditional_effects

    fit = check_fit(fit)
    if not isinstance(data, bool):
        raise TypeError(f"data must be True or False, got {type(data).__name__}")
    ce = conditional_effects(fit, x, group=group, band=band, ci=ci, prob=prob, n_points=n_points, seed=seed)
    design = fit.design
    grid = ce[x].values
    fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
    what = "mean" if band == "mean" else "prediction"
    ax.fill_between(grid, ce["low"].values, ce["high"].values, color=_BAND, alpha=0.25,
                    label=f"{what}, {ce.attrs['interval']}")
    ax.plot(grid, ce["population"].values, color=_POPULATION, linewidth=2.2, label="population", zorder=4)
    if group:
        name = ce.attrs["group"]
        lines = ce["cluster"].values
        for level, line in zip(ce[name].values, lines):
            ax.plot(grid, line, color=_CLUSTER, linewidth=0.8, alpha=0.6, label=f"_cluster {level}", zorder=3)
    if data:
        ax.scatter(design.data[x].to_numpy(dtype=float), design.y, s=8, color=_DATA, alpha=0.6, label="data",
                   zorder=2)
    ax.set_xlabel(x)
    ax.set_ylabel(design.response)
    held = ce.attrs["reference"]
    title = f"{design.response} along {x}" + (f" by {ce.attrs['group']}" if group else "")
    ax.set_title(title if held == "{}" else f"{title}\nothers at {held}", fontsize="medium")
    handles, labels = ax.get_legend_handles_labels()
    if group:
        handles.append(Line2D([], [], color=_CLUSTER, linewidth=0.8))
        labels.append(f"{ce.attrs['group']} ({ce.sizes[ce.attrs['group']]})")
    ax.legend(handles, labels, fontsize="small", loc="best")
    return fig

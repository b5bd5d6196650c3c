"""Pictures of pooling: shrinkage against cluster size, arrows in the intercept–slope plane, forest.

Every function draws from a table made by :func:`lmm_bayes.compare_pooling`
(``.estimates``) or :func:`lmm_bayes.results.shrinkage.shrinkage` (``fit.shrinkage(group)``)
and computes no statistics of its own. Each returns a
:class:`matplotlib.figure.Figure`; the points of each pooling are one scatter
collection labelled ``"no pooling"``, ``"partial pooling"`` or ``"complete pooling"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["STYLE", "plot_arrows", "plot_forest", "plot_shrinkage"]

#: Colour and marker of each pooling.
STYLE = {
    "no_pooling": {"color": "#d95f02", "marker": "o", "label": "no pooling"},
    "partial_pooling": {"color": "#1b9e77", "marker": "o", "label": "partial pooling"},
    "complete_pooling": {"color": "#7570b3", "marker": "s", "label": "complete pooling"},
}
_NEEDED = [
    "n_obs",
    *(
        f"{p}{s}"
        for p in ("no_pooling", "partial_pooling", "complete_pooling")
        for s in ("", "_low", "_high")
    ),
    "population",
]


def _check_estimates(estimates: object) -> pd.DataFrame:
    if not isinstance(estimates, pd.DataFrame):
        raise TypeError(
            "estimates must be the DataFrame from compare_pooling(...).estimates or fit.shrinkage(group), "
            f"got {type(estimates).__name__}"
        )
    if list(estimates.index.names) != ["level", "effect"]:
        raise ValueError(
            f"estimates must be indexed by (level, effect), got {list(estimates.index.names)}; "
            "pass compare_pooling(...).estimates or fit.shrinkage(group)"
        )
    missing = [c for c in _NEEDED if c not in estimates.columns]
    if missing:
        raise ValueError(
            f"estimates lacks column(s) {missing}; pass compare_pooling(...).estimates "
            "or fit.shrinkage(group)"
        )
    if estimates.empty:
        raise ValueError("estimates has no rows")
    return estimates


def _axis_label(estimates: pd.DataFrame, effect: str) -> str:
    """The effect's name, with the scale of a generalized model's estimates (``attrs["scale"]``)."""
    scale = estimates.attrs.get("scale")
    return f"{effect} ({scale})" if scale else effect


def _effects(estimates: pd.DataFrame, effects: str | Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(estimates.index.get_level_values("effect")))
    if effects is None:
        return present
    chosen = [effects] if isinstance(effects, str) else list(effects)
    unknown = [e for e in chosen if e not in present]
    if unknown:
        raise ValueError(f"effects {unknown} are not in the estimates; effects: {present}")
    return chosen


def _subplots(n: int, figsize: tuple[float, float] | None, per: tuple[float, float]):
    import matplotlib.pyplot as plt

    size = figsize or (per[0] * n, per[1])
    fig, axes = plt.subplots(1, n, figsize=size, squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _errorbars(ax: Axes, x, y, lo, hi, color: str, *, horizontal: bool = False) -> None:
    ok = np.isfinite(y) & np.isfinite(lo) & np.isfinite(hi)
    if not ok.any():
        return
    err = np.vstack([y[ok] - lo[ok], hi[ok] - y[ok]])
    if horizontal:
        ax.errorbar(y[ok], x[ok], xerr=err, fmt="none", ecolor=color, alpha=0.45, lw=1)
    else:
        ax.errorbar(x[ok], y[ok], yerr=err, fmt="none", ecolor=color, alpha=0.45, lw=1)


def _log_axis(ax: Axes, n: np.ndarray) -> None:
    """Log x axis with plain tick labels (1, 2, 5, 10, ...), padded around the cluster sizes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = float(np.min(n)), float(np.max(n))
    ax.set_xlim(lo / 1.6, hi * 1.6)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_shrinkage(
    estimates: pd.DataFrame,
    *,
    effects: str | Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """No- and partial-pooling estimates against cluster size, one panel per effect.

    The x axis is the number of observations in the cluster (log scale); the
    dashed line is the population value and the dotted line complete pooling.
    Small clusters move most toward the population value.

    Parameters
    ----------
    estimates : pandas.DataFrame
        ``compare_pooling(...).estimates`` or ``fit.shrinkage(group)``.
    effects : str or list of str, optional
        Effects to draw (default all).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes per effect, with a scatter of the no-pooling estimates (those
        a cluster identifies) and one of every partial-pooling estimate.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.MultiIndex.from_tuples([("a", "Intercept"), ("b", "Intercept")], names=["level", "effect"])
    >>> est = pd.DataFrame({"n_obs": [2, 30], "population": [1.0, 1.0]}, index=idx)
    >>> for p, (m, lo, hi) in {"no_pooling": ([3.0, 1.2], [1.0, 1.0], [5.0, 1.4]),
    ...                        "partial_pooling": ([1.5, 1.15], [0.5, 0.9], [2.5, 1.4]),
    ...                        "complete_pooling": ([1.1, 1.1], [1.0, 1.0], [1.2, 1.2])}.items():
    ...     est[p], est[p + "_low"], est[p + "_high"] = m, lo, hi
    >>> fig = plot_shrinkage(est)
    >>> fig.axes[0].get_xscale(), fig.axes[0].get_ylabel()
    ('log', 'Intercept')
    """
    estimates = _check_estimates(estimates)
    chosen = _effects(estimates, effects)
    group = estimates.attrs.get("group", "cluster")
    fig, axes = _subplots(len(chosen), figsize, (5.0, 4.0))
    for ax, effect in zip(axes, chosen):
        e = estimates.xs(effect, level="effect")
        n = e["n_obs"].to_numpy(dtype=float)
        for name, shift in (("no_pooling", 0.96), ("partial_pooling", 1.04)):
            y = e[name].to_numpy(dtype=float)
            ok = np.isfinite(y)
            st = STYLE[name]
            _errorbars(
                ax,
                n * shift,
                y,
                e[f"{name}_low"].to_numpy(float),
                e[f"{name}_high"].to_numpy(float),
                st["color"],
            )
            ax.scatter(
                n[ok] * shift,
                y[ok],
                s=18,
                zorder=3,
                color=st["color"],
                marker=st["marker"],
                label=st["label"],
                facecolors="none" if name == "no_pooling" else st["color"],
            )
        ax.axhline(float(e["population"].iloc[0]), color="black", ls="--", lw=1, label="population value")
        ax.axhline(
            float(e["complete_pooling"].iloc[0]),
            color=STYLE["complete_pooling"]["color"],
            ls=":",
            lw=1.2,
            label="complete pooling",
        )
        _log_axis(ax, n)
        ax.set_xlabel(f"observations per {group} (log scale)")
        ax.set_ylabel(_axis_label(estimates, effect))
        ax.set_title(f"{effect}: shrinkage toward the population")
    axes[0].legend(fontsize="small")
    return fig


def _ellipse_axes(G: np.ndarray, prob: float) -> tuple[float, float, float]:
    from scipy.stats import chi2

    vals, vecs = np.linalg.eigh(G)
    vals = np.clip(vals, 0, None)
    c = chi2.ppf(prob, df=2)
    width, height = 2 * np.sqrt(c * vals[1]), 2 * np.sqrt(c * vals[0])
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    return float(width), float(height), angle


def plot_arrows(
    estimates: pd.DataFrame,
    G: pd.DataFrame,
    *,
    effects: Sequence[str] | None = None,
    probs: Sequence[float] = (0.5, 0.95),
    figsize: tuple[float, float] | None = (6.0, 5.5),
) -> Figure:
    """An arrow from each cluster's no-pooling to its partial-pooling estimate, in the plane of two effects.

    The ellipses are the population distribution of the clusters' effects,
    N(β, G) with the posterior mean of G, containing ``probs`` of the clusters.
    Partial pooling pulls every cluster toward the centre, most along the
    direction in which G is narrow and most for the clusters with least data.

    Parameters
    ----------
    estimates : pandas.DataFrame
        ``compare_pooling(...).estimates`` or ``fit.shrinkage(group)``, with at least two effects.
    G : pandas.DataFrame
        Posterior mean of G labelled by effect: :func:`lmm_bayes.results.covariance.group_covariance`.
    effects : pair of str, optional
        The x and y effects (default the first two, usually intercept and slope).
    probs : sequence of float
        Coverage of each ellipse.
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
        One axes: scatters of the no- and partial-pooling estimates of the
        clusters that identify both effects, one arrow per such cluster (a
        ``Quiver``), the population centre and the ellipses.

    Raises
    ------
    ValueError
        Fewer than two effects, effects not in ``G``, or no cluster identifies both effects.
    """
    from matplotlib.patches import Ellipse

    estimates = _check_estimates(estimates)
    present = list(dict.fromkeys(estimates.index.get_level_values("effect")))
    if effects is None:
        if len(present) < 2:
            raise ValueError(
                "kind='arrows' needs two effects per cluster (an intercept and a slope); "
                f"these estimates have only {present}. Use kind='shrinkage' or kind='forest'"
            )
        effects = present[:2]
    chosen = _effects(estimates, effects)
    if len(chosen) != 2 or chosen[0] == chosen[1]:
        raise ValueError(f"effects must name two different effects, got {list(effects)}")
    if not isinstance(G, pd.DataFrame) or any(e not in G.index or e not in G.columns for e in chosen):
        raise ValueError(
            f"G must be a DataFrame labelled by effect holding {chosen}; use lmm_bayes.results.covariance.group_covariance"
        )
    a, b = chosen
    ea, eb = estimates.xs(a, level="effect"), estimates.xs(b, level="effect")
    x0, y0 = ea["no_pooling"].to_numpy(float), eb["no_pooling"].to_numpy(float)
    x1, y1 = ea["partial_pooling"].to_numpy(float), eb["partial_pooling"].to_numpy(float)
    ok = np.isfinite(x0) & np.isfinite(y0)
    if not ok.any():
        raise ValueError(f"no cluster identifies both {a} and {b} on its own; there are no arrows to draw")
    group = estimates.attrs.get("group", "cluster")

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    centre = (float(ea["population"].iloc[0]), float(eb["population"].iloc[0]))
    G2 = G.loc[[a, b], [a, b]].to_numpy(dtype=float)
    for k, p in enumerate(sorted(probs)):
        w, h, angle = _ellipse_axes(G2, float(p))
        ax.add_patch(
            Ellipse(
                centre,
                w,
                h,
                angle=angle,
                fill=False,
                color="black",
                alpha=0.6 - 0.2 * k,
                lw=1.2,
                ls="-" if k == 0 else "--",
                label=f"population {p:.0%} (posterior mean G)",
            )
        )
    ax.quiver(
        x0[ok],
        y0[ok],
        x1[ok] - x0[ok],
        y1[ok] - y0[ok],
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.003,
        color="grey",
        alpha=0.8,
    )
    for name, xs, ys in (("no_pooling", x0[ok], y0[ok]), ("partial_pooling", x1[ok], y1[ok])):
        st = STYLE[name]
        ax.scatter(
            xs,
            ys,
            s=22,
            zorder=3,
            color=st["color"],
            label=st["label"],
            facecolors="none" if name == "no_pooling" else st["color"],
        )
    ax.scatter([centre[0]], [centre[1]], marker="X", s=80, color="black", zorder=4, label="population value")
    ax.set_xlabel(_axis_label(estimates, a))
    ax.set_ylabel(_axis_label(estimates, b))
    dropped = int((~ok).sum())
    ax.set_title(f"From no pooling to partial pooling, per {group}", fontsize="medium")
    if dropped:
        ax.text(
            0.01,
            0.01,
            f"{dropped} of {len(ok)} clusters cannot identify both effects; not drawn",
            transform=ax.transAxes,
            fontsize="x-small",
            color="grey",
            va="bottom",
        )
    ax.legend(fontsize="small")
    ax.autoscale_view()
    return fig


def plot_forest(
    estimates: pd.DataFrame,
    *,
    effects: str | Sequence[str] | None = None,
    levels: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The three poolings per cluster, with intervals, one panel per effect.

    Parameters
    ----------
    estimates : pandas.DataFrame
        ``compare_pooling(...).estimates`` or ``fit.shrinkage(group)``.
    effects : str or list of str, optional
        Effects to draw (default all).
    levels : list of str, optional
        Clusters to draw, in this order (default all, in the table's order).
    figsize : (float, float), optional
        Default grows with the number of clusters.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per effect with three scatters (no, partial, complete pooling);
        y tick labels are the clusters with their ``n_obs``.

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.MultiIndex.from_tuples([("a", "Intercept"), ("b", "Intercept")], names=["level", "effect"])
    >>> est = pd.DataFrame({"n_obs": [2, 30], "population": [1.0, 1.0]}, index=idx)
    >>> for p, (m, lo, hi) in {"no_pooling": ([3.0, 1.2], [1.0, 1.0], [5.0, 1.4]),
    ...                        "partial_pooling": ([1.5, 1.15], [0.5, 0.9], [2.5, 1.4]),
    ...                        "complete_pooling": ([1.1, 1.1], [1.0, 1.0], [1.2, 1.2])}.items():
    ...     est[p], est[p + "_low"], est[p + "_high"] = m, lo, hi
    >>> fig = plot_forest(est)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['a (n=2)', 'b (n=30)']
    """
    estimates = _check_estimates(estimates)
    chosen = _effects(estimates, effects)
    all_levels = list(dict.fromkeys(estimates.index.get_level_values("level")))
    if levels is None:
        shown = all_levels
    else:
        if isinstance(levels, str):
            raise TypeError(f"levels must be a list of cluster labels, e.g. [{levels!r}]")
        shown = [str(v) for v in levels]
        unknown = [v for v in shown if v not in all_levels]
        if unknown:
            raise ValueError(
                f"levels {unknown[:10]} are not clusters of the estimates (e.g. {all_levels[:3]})"
            )
    group = estimates.attrs.get("group", "cluster")
    height = max(3.0, 0.22 * len(shown) + 1.2)
    fig, axes = _subplots(len(chosen), figsize, (4.5, height))
    pos = np.arange(len(shown))[::-1].astype(float)
    for ax, effect in zip(axes, chosen):
        e = estimates.xs(effect, level="effect").loc[shown]
        for name, shift in (("no_pooling", 0.25), ("partial_pooling", 0.0), ("complete_pooling", -0.25)):
            x = e[name].to_numpy(float)
            ok = np.isfinite(x)
            st = STYLE[name]
            _errorbars(
                ax,
                pos + shift,
                x,
                e[f"{name}_low"].to_numpy(float),
                e[f"{name}_high"].to_numpy(float),
                st["color"],
                horizontal=True,
            )
            ax.scatter(
                x[ok],
                pos[ok] + shift,
                s=14,
                zorder=3,
                color=st["color"],
                marker=st["marker"],
                label=st["label"],
                facecolors="none" if name == "no_pooling" else st["color"],
            )
        ax.axvline(float(e["population"].iloc[0]), color="black", ls="--", lw=1, label="population value")
        ax.set_yticks(pos, [f"{lev} (n={int(n)})" for lev, n in zip(shown, e["n_obs"])])
        ax.set_ylim(-0.8, len(shown) - 0.2)
        ax.set_xlabel(_axis_label(estimates, effect))
        ax.set_ylabel(group)
        ax.set_title(f"{effect} per {group}")
    axes[0].legend(fontsize="small", loc="best")
    return fig

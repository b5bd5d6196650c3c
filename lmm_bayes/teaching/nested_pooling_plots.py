"""The picture of a nested pooling comparison: arrows level by level, coloured by parent.

:func:`plot_nested_arrows` draws from the tables of
:class:`~lmm_bayes.teaching.nested_pooling.NestedPoolingComparison` and computes no
statistics of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_nested_arrows"]


def _arrows(ax: Axes, x: np.ndarray, start: np.ndarray, end: np.ndarray, colors: list) -> None:
    """An arrow from ``start`` to ``end`` at each x (a dot where they coincide)."""
    for xi, a, b, c in zip(x, start, end, colors, strict=True):
        if np.isfinite(a) and abs(b - a) > 0:
            ax.annotate("", xy=(xi, b), xytext=(xi, a),
                        arrowprops={"arrowstyle": "->", "color": c, "lw": 0.9, "alpha": 0.8})
    ax.scatter(x, start, s=12, facecolors="none", edgecolors=colors, linewidths=0.8, label="own estimate", zorder=3)
    ax.scatter(x, end, s=12, c=colors, label="partial pooling", zorder=4)


def plot_nested_arrows(estimates: pd.DataFrame, parents: pd.DataFrame, *, effect: str | None = None,
                       figsize: tuple[float, float] | None = None) -> Figure:
    """Clusters toward their parent's line, and parents toward the population's, for one effect.

    Parameters
    ----------
    estimates : pandas.DataFrame
        :attr:`~lmm_bayes.teaching.nested_pooling.NestedPoolingComparison.estimates`.
    parents : pandas.DataFrame
        Indexed by (level, effect) of the parent factor; columns ``no_pooling`` (its own
        line), ``partial_pooling`` and ``population``.
    effect : str, optional
        Default: the first effect of the table.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the clusters (their arrows in one colour per parent, each parent's target
        line a short segment above its clusters) and the parents (the population line dashed).

    Examples
    --------
    >>> import pandas as pd
    >>> idx = pd.MultiIndex.from_tuples([("s1:n1", "Intercept"), ("s1:n2", "Intercept"), ("s2:n1", "Intercept")],
    ...                                 names=["level", "effect"])
    >>> est = pd.DataFrame({"parent": ["s1", "s1", "s2"], "no_pooling": [1.0, 3.0, 0.0],
    ...                     "partial_pooling": [1.5, 2.5, 0.4], "target": [2.0, 2.0, 0.5],
    ...                     "population": [1.0, 1.0, 1.0]}, index=idx)
    >>> par = pd.DataFrame({"no_pooling": [2.2, 0.3], "partial_pooling": [2.0, 0.5], "population": [1.0, 1.0]},
    ...                    index=pd.MultiIndex.from_product([["s1", "s2"], ["Intercept"]], names=["level", "effect"]))
    >>> fig = plot_nested_arrows(est, par)
    >>> [ax.get_title() for ax in fig.axes]
    ['clusters toward their parent line', 'parents toward the population']
    """
    import matplotlib.pyplot as plt  # at first use: `import lmm_bayes` stays light

    effects = list(dict.fromkeys(estimates.index.get_level_values("effect")))
    effect = effects[0] if effect is None else effect
    if effect not in effects:
        raise ValueError(f"effect {effect!r} is not in the table; its effects are {effects}")
    e = estimates.xs(effect, level="effect")
    p = parents.xs(effect, level="effect")
    order = list(dict.fromkeys(e["parent"]))
    cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    color_of = {lev: cmap(i % cmap.N) for i, lev in enumerate(order)}
    e = e.assign(_rank=e["parent"].map({lev: i for i, lev in enumerate(order)})).sort_values("_rank", kind="stable")
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize or (11, 4), width_ratios=(3, 1), sharey=True)
    x = np.arange(len(e))
    colors = [color_of[v] for v in e["parent"]]
    _arrows(left, x, e["no_pooling"].to_numpy(float), e["partial_pooling"].to_numpy(float), colors)
    for lev in order:
        at = x[(e["parent"] == lev).to_numpy()]
        left.hlines(float(e.loc[e["parent"] == lev, "target"].iloc[0]), at.min() - 0.4, at.max() + 0.4,
                    color=color_of[lev], lw=2)
    left.axhline(float(e["population"].iloc[0]), color="black", ls="--", lw=1, label="population")
    left.set_xticks([])
    left.set_xlabel(f"{len(e)} clusters, grouped and coloured by parent")
    scale = estimates.attrs.get("scale")
    left.set_ylabel(f"{effect}" + (f" ({scale})" if scale else ""))
    left.set_title("clusters toward their parent line")
    xp = np.arange(len(order))
    p = p.loc[order]
    _arrows(right, xp, p["no_pooling"].to_numpy(float), p["partial_pooling"].to_numpy(float),
            [color_of[v] for v in order])
    right.axhline(float(p["population"].iloc[0]), color="black", ls="--", lw=1, label="population")
    right.set_xticks([])
    right.set_xlabel(f"{len(order)} parents (own line: within pooling)")
    right.set_title("parents toward the population")
    left.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig

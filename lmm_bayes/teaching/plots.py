"""Pictures of a fit: posterior and prior predictive checks, caterpillar plots of cluster effects.

Every function returns a :class:`matplotlib.figure.Figure` and computes no statistic
of its own: draws come from :mod:`lmm_bayes.results.predict`, summaries from
:class:`~lmm_bayes.Fit` (or, for the caterpillar, any fitted model). Density overlays
use ArviZ's ``plot_ppc_dist``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from lmm_bayes.results.base import check_fitted
from lmm_bayes.results.fit import MixedModelFit, check_fit
from lmm_bayes.results.pooling_fit import PoolingModelFit
from lmm_bayes.results.predictive import STATS, cluster_stat_check, posterior_predictive, prior_predictive
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_columns, interval_label
from lmm_bayes.spec import validate
from lmm_bayes.spec.model import MixedModel

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.results.base import FittedModel

__all__ = ["plot_caterpillar", "plot_ppc", "plot_prior_predictive", "plot_variance_partition"]

PPC_KINDS = ("density", "stat")
#: above this many clusters, a plot's level labels are hidden (they would overlap)
MAX_LABELLED_LEVELS = 60

_OBSERVED = "black"
_PREDICTIVE = "C0"
_OUTSIDE = "C3"


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _thin(tree: xr.DataTree, group: str, num_samples: int, seed: Any) -> xr.Dataset:
    """``num_samples`` draws of ``y`` picked at random (arviz-base's ``extract``, seeded), as one chain."""
    import arviz_base as azb  # at first use: `import lmm_bayes` stays light

    rng = validate.check_seed(seed)
    n = tree[group].sizes["chain"] * tree[group].sizes["draw"]
    picked = azb.extract(
        tree, group=group, var_names=["y"], num_samples=min(num_samples, n), random_seed=rng, keep_dataset=True
    )
    # back to (chain, draw): extract leaves a stacked "sample" dim and says so in attrs
    picked = picked.drop_vars(["sample", "chain", "draw"]).rename(sample="draw").drop_attrs()
    return picked.transpose("draw", "obs").expand_dims(chain=[0]).assign_coords(draw=np.arange(picked.sizes["draw"]))


def _density_overlay(tree: xr.DataTree, group: str, *, num_samples: int, seed: Any, response: str, title: str):
    import arviz_plots as azp
    from matplotlib.lines import Line2D

    pred = _thin(tree, group, num_samples, seed)
    dt = xr.DataTree.from_dict({group: pred, "observed_data": tree["observed_data"].to_dataset()[["y"]]})
    pc = azp.plot_ppc_dist(
        dt,
        group=group,
        num_samples=pred.sizes["draw"],
        backend="matplotlib",
        visuals={
            "predictive_dist": {"color": _PREDICTIVE, "alpha": 0.3},
            "observed_dist": {"color": _OBSERVED, "linewidth": 2},
        },
    )
    fig = pc.viz["figure"].item()
    ax = pc.viz["plot"]["y"].item()
    ax.set_title(title)
    ax.set_xlabel(response)
    label = "posterior predictive" if group == "posterior_predictive" else "prior predictive"
    ax.legend(
        handles=[
            Line2D([], [], color=_PREDICTIVE, alpha=0.6, label=f"{label} ({pred.sizes['draw']} draws)"),
            Line2D([], [], color=_OBSERVED, linewidth=2, label="observed"),
        ],
        loc="best",
        fontsize="small",
    )
    return fig


def plot_ppc(
    fit: MixedModelFit,
    *,
    kind: Literal["density", "stat"] = "density",
    stat: Literal["mean", "sd"] = "mean",
    group: str | None = None,
    num_samples: int = 50,
    prob: float = 0.94,
    seed: int | None = 0,
) -> Figure:
    """Posterior predictive check.

    Parameters
    ----------
    fit : Fit
        Its ``posterior_predictive`` group is used, or drawn (with ``seed``) if absent.
    kind : {"density", "stat"}
        ``"density"``: the observed response's density over those of ``num_samples``
        replicated data sets (ArviZ ``plot_ppc_dist``). ``"stat"``: per cluster of
        ``group``, the observed statistic against the central ``prob`` interval of its
        replicated values (see :func:`lmm_bayes.results.predictive.cluster_stat_check`);
        clusters outside their interval are marked.
    stat : {"mean", "sd"}
        The per-cluster statistic, for ``kind="stat"``.
    group : str, optional
        Grouping factor for ``kind="stat"``; default the first one of the formula.
    num_samples : int
        Replicated data sets drawn in the density overlay.
    prob : float
        Interval mass for ``kind="stat"``.
    seed : int, optional
        Seeds which draws are shown and, if needed, the posterior predictive draws.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fig = fit.plot_ppc(kind="stat", stat="sd", group="Subject")
    >>> fig.axes[0].get_xlabel()
    'sd of Reaction per Subject'
    """
    fit = check_fit(fit)
    validate.check_choice(kind, PPC_KINDS, "kind")
    validate.check_choice(stat, STATS, "stat")
    num_samples = validate.check_positive_int(num_samples, "num_samples")
    prob = validate.check_probability(prob, "prob")
    if group is not None and not isinstance(group, str):
        raise TypeError(f"group must be a grouping factor's name (a string) or None, got {type(group).__name__}")
    design = fit.design
    if group is not None:
        design.group(group)  # ValueError listing the factors
    if "posterior_predictive" not in fit.idata.children:
        fit = posterior_predictive(fit, seed=seed)
    if kind == "density":
        return _density_overlay(
            fit.idata, "posterior_predictive", num_samples=num_samples, seed=seed,
            response=design.response, title=f"Posterior predictive check: {design.response}",
        )
    if group is None:
        if not design.groups:
            raise ValueError("kind='stat' needs a grouping factor, and this model has none; use kind='density'")
        group = design.groups[0].name
    check = cluster_stat_check(fit, group, stat=stat, prob=prob, seed=seed)
    return _plot_cluster_stat(check)


def _level_axis(ax, labels: Sequence[str], name: str) -> None:
    n = len(labels)
    ax.set_ylim(-0.7, n - 0.3)
    if n <= MAX_LABELLED_LEVELS:
        ax.set_yticks(np.arange(n))
        ax.set_yticklabels(labels, fontsize="small" if n > 25 else None)
        ax.set_ylabel(name)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{name} ({n} levels)")


def _height(n_levels: int) -> float:
    return float(np.clip(1.2 + 0.22 * min(n_levels, MAX_LABELLED_LEVELS), 3.0, 14.0))


def _plot_cluster_stat(check: xr.Dataset) -> Figure:
    plt = _pyplot()
    name = check.attrs["group"]
    keep = np.isfinite(check["observed"].values)
    ds = check.isel({name: np.flatnonzero(keep)})
    order = np.argsort(ds["predicted_mean"].values, kind="stable")
    ds = ds.isel({name: order})
    labels = [str(v) for v in ds[name].values]
    n = len(labels)
    y = np.arange(n)
    low, high = ds["predicted_low"].values, ds["predicted_high"].values
    obs = ds["observed"].values
    outside = (obs < low) | (obs > high)
    fig, ax = plt.subplots(figsize=(6.4, _height(n)), layout="constrained")
    pct = f"{check.attrs['prob']:.0%}"
    ax.hlines(y, low, high, color=_PREDICTIVE, linewidth=2, alpha=0.7, label=f"replicated, {pct} interval")
    ax.scatter(ds["predicted_mean"].values, y, s=18, facecolors="white", edgecolors=_PREDICTIVE, zorder=3,
               label="replicated, mean")
    ax.scatter(obs, y, s=22, c=np.where(outside, _OUTSIDE, _OBSERVED), zorder=4, label="observed")
    _level_axis(ax, labels, name)
    stat = check.attrs["stat"]
    ax.set_xlabel(f"{stat} of {check.attrs['response']} per {name}")
    dropped = int((~keep).sum())
    note = f"; {dropped} one-row cluster(s) left out" if dropped else ""
    ax.set_title(
        f"Per-{name} {stat}: {int(outside.sum())} of {n} observed outside the {pct} interval{note}",
        fontsize="medium",
    )
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_prior_predictive(
    prior: MixedModel | xr.DataTree,
    *,
    num_samples: int = 50,
    draws: int = 500,
    seed: int | None = 0,
) -> Figure:
    """What the priors imply for the response: prior predictive densities over the observed one.

    Parameters
    ----------
    prior : LMM or xarray.DataTree
        A model (its prior predictive is drawn, ``draws`` draws with ``seed``) or the
        result of :func:`lmm_bayes.results.predictive.prior_predictive`.
    num_samples : int
        Simulated data sets shown.
    draws : int
        Prior draws when ``prior`` is a model.
    seed : int, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> fig = plot_prior_predictive(model, num_samples=20, draws=100, seed=1)
    >>> fig.axes[0].get_title()
    'Prior predictive check: Reaction'
    """
    num_samples = validate.check_positive_int(num_samples, "num_samples")
    if isinstance(prior, MixedModel):
        tree = prior_predictive(prior, draws=draws, seed=seed)
        response = prior.design.response
    elif isinstance(prior, xr.DataTree):
        if "prior_predictive" not in prior.children or "observed_data" not in prior.children:
            raise ValueError(
                "prior must hold 'prior_predictive' and 'observed_data' groups, as returned by "
                "model.prior_predictive()"
            )
        tree = prior
        response = str(prior.attrs.get("response", "y"))
    else:
        raise TypeError(
            f"prior must be an lmm_bayes.LMM or the DataTree from model.prior_predictive(), got {type(prior).__name__}"
        )
    return _density_overlay(
        tree, "prior_predictive", num_samples=num_samples, seed=seed, response=response,
        title=f"Prior predictive check: {response}",
    )


def plot_caterpillar(
    fit: FittedModel,
    group: str,
    *,
    effects: str | Sequence[str] | None = None,
    values: Literal["ranef", "coef"] = "ranef",
    ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
    sort: bool = True,
) -> Figure:
    """Caterpillar plot: every cluster's effect with its HDI, one panel per effect.

    Parameters
    ----------
    fit : Fit or PoolingFit
        Any fitted model; a pooling fit (from :func:`lmm_bayes.compare_pooling`) has
        no deviations b, so it needs ``values="coef"``.
    group : str
        The grouping factor, e.g. ``"Subject"``.
    effects : str or sequence of str, optional
        Which effects (``"Intercept"``, ``"Days"``); default all.
    values : {"ranef", "coef"}
        ``"ranef"``: the deviations b (:meth:`lmm_bayes.Fit.ranef`, a line marks 0);
        ``"coef"``: the cluster-specific effects β + b (:meth:`lmm_bayes.Fit.coef`, a line
        marks the fixed effect's mean, or 0 for an effect without a fixed part;
        a no-pooling fit's own effects have no population value and no line).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.
    sort : bool
        Order clusters by the first panel's mean (else in level order).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per effect, sharing the cluster axis.

    Raises
    ------
    ValueError
        ``values="ranef"`` for a pooling fit; an unknown ``group`` or effect.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> [ax.get_title() for ax in plot_caterpillar(fit, "Subject").axes]
    ['Intercept']
    """
    fit = check_fitted(fit)
    g = validate.check_group(fit.design, group)
    validate.check_choice(values, ("ranef", "coef"), "values")
    if values == "ranef" and not isinstance(fit, MixedModelFit):
        what = fit.pooling.replace("_", "-") if isinstance(fit, PoolingModelFit) else fit.kind
        raise ValueError(
            f"values='ranef' plots the mixed model's deviations b, which a {what} fit does not have; "
            "pass values='coef' to plot every cluster's own effects"
        )
    if not isinstance(sort, bool):
        raise TypeError(f"sort must be True or False, got {type(sort).__name__}")
    if effects is None:
        chosen = list(g.effects)
    else:
        chosen = [effects] if isinstance(effects, str) else list(effects)
        if not chosen or not all(isinstance(e, str) for e in chosen):
            raise TypeError(f"effects must be an effect name or a list of them, from {list(g.effects)}")
        unknown = [e for e in chosen if e not in g.effects]
        if unknown:
            raise ValueError(f"effects {unknown} are not effects of {g.name!r}; it has {list(g.effects)}")
    table = fit.ranef(group, ci=ci, prob=prob) if values == "ranef" else fit.coef(group, ci=ci, prob=prob)
    first = table.xs(chosen[0], level="effect")
    levels = list(first.index)
    if sort:
        levels = list(first["mean"].sort_values(kind="stable").index)
    plt = _pyplot()
    n = len(levels)
    fig, axes = plt.subplots(
        1, len(chosen), figsize=(3.2 * len(chosen) + 1.2, _height(n)), sharey=True, squeeze=False,
        layout="constrained",
    )
    y = np.arange(n)
    low_col, high_col = interval_columns(ci)
    label = interval_label(*check_interval(ci, prob))
    fixef = fit.fixef(ci=ci, prob=prob)["mean"] if values == "coef" else None
    pooling = fit.pooling.replace("_", " ") if isinstance(fit, PoolingModelFit) else None
    symbol = "b" if values == "ranef" else ("β + b" if pooling is None else "coefficient")
    for k, (ax, effect) in enumerate(zip(axes[0], chosen)):
        rows = table.xs(effect, level="effect").loc[levels]
        ax.hlines(y, rows[low_col].to_numpy(), rows[high_col].to_numpy(), color=_PREDICTIVE, linewidth=1.5,
                  alpha=0.8)
        ax.scatter(rows["mean"].to_numpy(), y, s=14, color=_OBSERVED, zorder=3)
        if values == "ranef":
            ref = 0.0
        elif effect in fixef.index:
            ref = float(fixef[effect])
        else:  # no fixed part: the population value is 0, except for no pooling, which has none
            ref = None if pooling == "no pooling" else 0.0
        if ref is not None:
            ax.axvline(ref, color="grey", linestyle="--", linewidth=1)
        ax.set_title(effect)
        ax.set_xlabel(f"{symbol} (mean, {label})")
        if k == 0:
            _level_axis(ax, [str(v) for v in levels], g.name)
    what = "deviations from the fixed effects" if values == "ranef" else "cluster-specific effects"
    fig.suptitle(f"{g.name}: {what}" + (f" ({pooling})" if pooling else ""), fontsize="medium")
    return fig


def plot_variance_partition(fit: MixedModelFit, *, at: dict[str, float] | None = None, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> Figure:
    """Each level's share of the variance (the ICC table of :meth:`lmm_bayes.Fit.icc`) as a chart.

    One row per component (grouping factors, then the residual): the posterior mean share
    with its HDI. With random slopes the shares depend on x; the title says where they
    were evaluated (``at``, as in :meth:`lmm_bayes.Fit.icc`).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fig = plot_variance_partition(fit)
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['Subject', 'Residual']
    """
    table = check_fit(fit).icc(at=at, ci=ci, prob=prob)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(table) + 1.4))
    y = np.arange(len(table))[::-1]
    low_col, high_col = interval_columns(ci)
    err = [table["mean"] - table[low_col], table[high_col] - table["mean"]]
    ax.barh(y, table["mean"], color="C0", alpha=0.35)
    ax.errorbar(table["mean"], y, xerr=err, fmt="o", color="C0", capsize=4, label=f"mean, {interval_label(ci, prob)}")
    ax.set_yticks(y, list(table.index))
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the total variance")
    ax.set_title(f"Variance partition ({table.attrs['at']})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig

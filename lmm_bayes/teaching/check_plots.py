"""Checks of a fit, as pictures: trace, rank and pair plots of the hyperparameters, LOO-PIT, residuals.

The sampler checks (trace, rank, pair) and LOO-PIT are arviz-plots' own
(``plot_trace``, ``plot_rank``, ``plot_pair``, ``plot_loo_pit``, matplotlib backend) on
the hyperparameters that :meth:`lmm_bayes.Fit.diagnostics` judges: β, σ, every factor's
SDs and the correlations within its correlated blocks, one scalar variable each, named
as :func:`lmm_bayes.inference.layout.hyperparameters` labels them (``"sigma"``,
``"Subject_sd[Days]"``, ``"Subject_corr[Intercept, Days]"``). The residual plots draw
:func:`lmm_bayes.results.residuals.residuals` and :meth:`lmm_bayes.Fit.ranef`. Every
function returns a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference.layout import hyperparameter_draws, hyperparameters
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predictive import posterior_predictive
from lmm_bayes.results.residual_structure import residual_sd
from lmm_bayes.results.residuals import residuals
from lmm_bayes.spec import validate

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
stats = lazy.load("scipy.stats", suppress_warning=True)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = [
    "hyperparameter_tree", "plot_loo_pit", "plot_pair", "plot_rank", "plot_residual_sd", "plot_residuals", "plot_trace",
]

_POINTS = "C0"
_LINE = "grey"
#: width and height (inches) of one panel of the arviz-plots grids; keeps the report light
_PANEL = (3.0, 2.4)


def hyperparameter_tree(fit: Fit, var_names: Sequence[str] | None = None) -> xr.DataTree:
    """The hyperparameters' draws as one scalar variable each, in a tree arviz-plots reads.

    Parameters
    ----------
    fit : Fit
    var_names : sequence of str, optional
        Labels to keep (``"sigma"``, ``"Subject_sd[Days]"``, ...); default all.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (one variable per hyperparameter, dims chain, draw) and
        ``sample_stats`` (``diverging``, so the plots mark divergences).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> list(hyperparameter_tree(fit)["posterior"].data_vars)
    ['beta[Intercept]', 'beta[Days]', 'sigma', 'Subject_sd[Intercept]']
    """
    fit = check_fit(fit)
    params = hyperparameters(fit.design)
    labels = [p.label for p in params]
    if var_names is not None:
        chosen = [var_names] if isinstance(var_names, str) else list(var_names)
        if not chosen or not all(isinstance(v, str) for v in chosen):
            raise TypeError(f"var_names must be a list of hyperparameter labels, from {labels}")
        unknown = [v for v in chosen if v not in labels]
        if unknown:
            raise ValueError(f"var_names {unknown} are not hyperparameters of this fit; they are {labels}")
        params = tuple(p for p in params if p.label in chosen)
    draws = hyperparameter_draws(fit.posterior, params).transpose("chain", "draw", "parameter")
    posterior = draws.to_dataset(dim="parameter")
    tree = {"posterior": posterior}
    stats_ds = fit.idata["sample_stats"].to_dataset() if "sample_stats" in fit.idata.children else None
    if stats_ds is not None and "diverging" in stats_ds:
        tree["sample_stats"] = stats_ds[["diverging"]]
    return xr.DataTree.from_dict(tree)


def _grid_size(n: int, cols: int) -> tuple[float, float]:
    rows = -(-n // cols)
    return (_PANEL[0] * min(n, cols), _PANEL[1] * rows + 0.4)


def _figure(pc) -> Figure:
    """The figure of an arviz-plots collection, without the grid's unused panels."""
    fig = pc.viz["figure"].item()
    for ax in list(fig.axes):
        if not ax.has_data() and not ax.get_title():
            fig.delaxes(ax)
    fig.set_layout_engine("constrained")  # titles and labels clear of the panels around them
    return fig


def plot_trace(fit: Fit, *, var_names: Sequence[str] | None = None) -> Figure:
    """Trace plots (draw against iteration, one colour per chain) of the hyperparameters (arviz-plots).

    Parameters
    ----------
    fit : Fit
    var_names : sequence of str, optional
        Hyperparameter labels (see :func:`hyperparameter_tree`); default all.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per hyperparameter, titled with its label; one line per chain.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> [ax.get_title() for ax in fit.plot_trace(var_names=["sigma"]).axes]
    ['sigma']
    """
    import arviz_plots as azp

    tree = hyperparameter_tree(fit, var_names)
    n = len(tree["posterior"].data_vars)
    pc = azp.plot_trace(tree, backend="matplotlib", col_wrap=3, figure_kwargs={"figsize": _grid_size(n, 3)})
    return _figure(pc)


def plot_rank(fit: Fit, *, var_names: Sequence[str] | None = None) -> Figure:
    """Rank plots of the hyperparameters (arviz-plots ``plot_rank``: fractional rank ECDF per chain).

    Chains that mix well have rank ECDFs inside the simultaneous envelope; a chain
    stuck in one region leaves it.

    Parameters
    ----------
    fit : Fit
    var_names : sequence of str, optional
        Hyperparameter labels (see :func:`hyperparameter_tree`); default all.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per hyperparameter, titled with its label.

    Raises
    ------
    ValueError
        The fit has a single chain.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> [ax.get_title() for ax in fit.plot_rank().axes]
    ['beta[Intercept]', 'beta[Days]', 'sigma', 'Subject_sd[Intercept]']
    """
    import arviz_plots as azp

    tree = hyperparameter_tree(fit, var_names)
    chains = tree["posterior"].sizes["chain"]
    if chains < 2:
        raise ValueError(
            "rank plots compare chains, and this fit has one chain; fit with chains=2 or more, or use plot_trace"
        )
    n = len(tree["posterior"].data_vars)
    pc = azp.plot_rank(tree, backend="matplotlib", col_wrap=3, figure_kwargs={"figsize": _grid_size(n, 3)})
    return _figure(pc)


def _pair_names(fit: Fit, group: str | None) -> list[str]:
    design = fit.design
    if group is None:
        if not design.groups:
            raise ValueError("plot_pair shows a grouping factor's SDs and correlations, and this model has none")
        group = design.groups[0].name
    g = validate.check_group(design, group)
    names = [p.label for p in hyperparameters(design, fixed=False) if p.group == g.name]
    if len(names) < 2:  # one SD alone: pair it with sigma (a GLMM: its dispersion, or the intercept it trades off against)
        aux = design.family.aux
        partner = aux or ("beta[Intercept]" if "Intercept" in design.X_columns else None)
        names = [partner, *names] if partner else names
    return names


def plot_pair(fit: Fit, group: str | None = None) -> Figure:
    """Pair plot of one grouping factor's SDs and correlations (arviz-plots ``plot_pair``).

    Scatter of every pair of draws below the diagonal and each one's density on it: a
    funnel or a ridge between an SD and a correlation shows up here. A factor with a
    single SD is paired with σ.

    Parameters
    ----------
    fit : Fit
    group : str, optional
        The grouping factor; default the first of the formula.

    Returns
    -------
    matplotlib.figure.Figure
        The lower triangle of a k x k grid for k variables (k(k + 1)/2 panels).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fig = fit.plot_pair("Subject")
    >>> [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    ['sigma', 'Subject_sd[Intercept]']
    """
    import arviz_plots as azp

    fit = check_fit(fit)
    names = _pair_names(fit, group)
    tree = hyperparameter_tree(fit, names)
    k = len(names)
    pc = azp.plot_pair(
        tree, backend="matplotlib", figure_kwargs={"figsize": (2.4 * k + 0.6, 2.0 * k + 0.4)},
        visuals={"scatter": {"alpha": 0.3, "s": 6}},
    )
    return _figure(pc)


def plot_loo_pit(fit: Fit, *, seed: int | None = 0) -> Figure:
    """LOO-PIT calibration (arviz-plots ``plot_loo_pit``): the leave-one-out PIT ECDF minus the uniform one.

    A calibrated model keeps the difference inside the envelope; an S shape means the
    predictive distribution is too wide or too narrow.

    Parameters
    ----------
    fit : Fit
        Needs the pointwise log-likelihood; its ``posterior_predictive`` group is used, or
        drawn with ``seed`` if absent (the fit is not changed).
    seed : int, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit.plot_loo_pit(seed=1).axes[0].get_xlabel()
    'LOO-PIT'
    """
    import arviz_plots as azp

    fit = check_fit(fit)
    if "log_likelihood" not in fit.idata.children:
        raise ValueError(
            "plot_loo_pit needs the pointwise log-likelihood, which this fit does not hold: refit with "
            "log_likelihood=True (and keep_b='all' or 'float32')"
        )
    if "posterior_predictive" not in fit.idata.children:
        fit = posterior_predictive(fit, seed=seed)
    pc = azp.plot_loo_pit(fit.idata, backend="matplotlib", figure_kwargs={"figsize": (5.0, 2.6)})
    fig = _figure(pc)
    fig.axes[0].set_title(f"LOO-PIT: {fit.design.response}")
    return fig


def _qq(ax, values: np.ndarray, title: str, ylabel: str) -> None:
    (theory, ordered), (slope, intercept, _) = stats.probplot(values, dist="norm")
    ax.scatter(theory, ordered, s=10, color=_POINTS, alpha=0.7)
    ax.plot(theory, slope * theory + intercept, color=_LINE, linewidth=1)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("normal quantile")
    ax.set_ylabel(ylabel)


def plot_residuals(fit: Fit, *, groups: Sequence[str] | None = None, **kwargs: Any) -> Figure:
    """Residual checks: residuals against fitted values, a normal QQ plot of ε and one of every b.

    Parameters
    ----------
    fit : Fit
    groups : sequence of str, optional
        Grouping factors whose cluster effects get a QQ panel (one per effect); default all.
    **kwargs
        Passed to :func:`lmm_bayes.results.residuals.residuals` (``levels``).

    Returns
    -------
    matplotlib.figure.Figure
        Panels, in order: residual (posterior mean of y − μ) against fitted (posterior
        mean of μ), with a line at 0; QQ of the standardized residuals; QQ of the
        posterior means of each factor's b, one panel per effect.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> [ax.get_title() for ax in fit.plot_residuals().axes]
    ['Residuals vs fitted', 'QQ: residuals', 'QQ: Subject b[Intercept]']
    """
    import matplotlib.pyplot as plt

    fit = check_fit(fit)
    design = fit.design
    if groups is None:
        chosen = [g.name for g in design.groups]
    else:
        chosen = [groups] if isinstance(groups, str) else list(groups)
        for name in chosen:
            validate.check_group(design, name)
    table = residuals(fit, **kwargs)
    panels = 2 + sum(design.group(name).n_effects for name in chosen)
    cols = min(panels, 4)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.6 * rows), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    ax = flat[0]
    ax.scatter(table["fitted"], table["residual"], s=10, color=_POINTS, alpha=0.7)
    ax.axhline(0, color=_LINE, linewidth=1, linestyle="--")
    ax.set_title("Residuals vs fitted", fontsize="medium")
    ax.set_xlabel(f"fitted {design.response}")
    ax.set_ylabel("residual")
    gaussian = design.family.is_gaussian
    _qq(flat[1], table["standardized"].to_numpy(), "QQ: residuals" if gaussian else "QQ: Pearson residuals",
        "residual / σ" if gaussian else "(y − μ) / √Var(y | μ)")
    k = 2
    for name in chosen:
        ranef = fit.ranef(name)
        for effect in design.group(name).effects:
            means = ranef.xs(effect, level="effect")["mean"].to_numpy()
            _qq(flat[k], means, f"QQ: {name} b[{effect}]", "b (posterior mean)")
            k += 1
    for ax in flat[k:]:
        fig.delaxes(ax)
    return fig


def plot_residual_sd(fit: Fit, *, ax: Any = None) -> Figure:
    """The residual SD of every level and/or category (``sigma=``), sorted, with its interval.

    One point per row of :meth:`~lmm_bayes.Fit.residual_sd` (posterior mean, interval as a line), and a
    dashed line at the posterior mean of ``sigma`` (the reference category's SD at ``u = 0``).

    Parameters
    ----------
    fit : Fit
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> fig = plot_residual_sd(fit)
    >>> fig.axes[0].get_title(), len(fig.axes[0].collections[1].get_offsets())  # one point: no sigma=
    ('Residual SD', 1)
    """
    import matplotlib.pyplot as plt

    fit = check_fit(fit)
    table = residual_sd(fit).sort_values("mean")
    low, high = table.columns[2], table.columns[3]  # the interval's columns, after n, mean and sd
    labels = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, max(2.0, 0.22 * len(table) + 1)), layout="constrained")
    else:
        fig = ax.figure
    y = np.arange(len(table))
    ax.hlines(y, table[low], table[high], color=_POINTS, linewidth=1.5)
    ax.scatter(table["mean"], y, s=14, color=_POINTS, zorder=3)
    ax.axvline(float(fit.posterior["sigma"].mean()), color=_LINE, linewidth=1, linestyle="--")
    ax.set_yticks(y, labels, fontsize="small")
    ax.set_xlabel(f"residual SD ({table.attrs.get('interval', '')})")
    ax.set_title("Residual SD", fontsize="medium")
    return fig

"""No, complete and partial pooling side by side; shrinkage; within/between effects; implied covariance.

Three ways to treat clustered data:

* **complete pooling** ignores the clusters: one regression on the fixed part
  for everybody, as if all rows were independent;
* **no pooling** gives every cluster its own intercept (and slopes) with
  independent wide priors: nothing is learnt from the other clusters;
* **partial pooling** is the mixed model: each cluster's effects are drawn
  from a population distribution whose spread is estimated, so a cluster with
  little data borrows strength from the others.

:func:`compare_pooling` fits all three on the same rows and puts them side by
side; :func:`~lmm_bayes.results.shrinkage.shrinkage` does the table for one fitted mixed model, with each
cluster's own least-squares estimate as the no-pooling value.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import arviz as az
import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import BETA
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.results.covariance import group_covariance
from lmm_bayes.results.estimates import (
    ESTIMATE_COLUMNS,
    POOLINGS,
    estimates_table,
    identified,
    mean_interval,
    normal_equations,
    population_values,
    posterior_shrinkage,
)
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.glm_pooling import no_finite_estimate
from lmm_bayes.results.pooling_fit import PoolingFit
from lmm_bayes.results.shrinkage import glm_posterior_shrinkage, link_scale
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_label
from lmm_bayes.spec import validate
from lmm_bayes.teaching.pooling_models import check_separable, fit_complete_pooling, fit_no_pooling

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


__all__ = [
    "ESTIMATE_COLUMNS",
    "POOLINGS",
    "PoolingComparison",
    "PoolingFit",
    "compare_pooling",
]


PLOT_KINDS = ("shrinkage", "arrows", "forest")
#: the keyword arguments compare_pooling passes on: fit_model's
_FIT_ARGS = tuple(
    k for k, p in inspect.signature(fit_model).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
)
#: those that are sampler settings, shared by all three fits
_SETTINGS = tuple(f.name for f in dataclasses.fields(SamplerSettings))


# ====================================================================== the comparison


@dataclass(frozen=True, eq=False)
class PoolingComparison:
    """No, partial and complete pooling of one model, side by side (from :func:`compare_pooling`).

    Attributes
    ----------
    loo : pandas.DataFrame
        ArviZ's comparison table (PSIS-LOO), best first, one row per pooling:
        rank, elpd_diff, dse, p_worse, diag_diff, diag_elpd, p, elpd, se, weight.
    estimates : pandas.DataFrame
        Indexed by (``level``, ``effect``); columns :data:`ESTIMATE_COLUMNS`
        (posterior means and HDI bounds of each pooling, the population value
        and the shrinkage factor).
    fits : mapping
        ``"no_pooling"``, ``"partial_pooling"`` (a :class:`~lmm_bayes.Fit`) and
        ``"complete_pooling"`` (:class:`PoolingFit`\\ s).
    fixed_effect_se : pandas.DataFrame
        Posterior SD of every fixed effect under complete and partial pooling
        and their ratio: ignoring the clustering understates the uncertainty
        of effects that vary between clusters or are measured at cluster level.
    group : str
    formula : str

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> cmp = lb.compare_pooling("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"),
    ...                          group="Subject", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> sorted(cmp.fits)
    ['complete_pooling', 'no_pooling', 'partial_pooling']
    >>> fig = cmp.plot(kind="shrinkage")
    """

    loo: pd.DataFrame
    estimates: pd.DataFrame
    fits: Mapping[str, Any]
    fixed_effect_se: pd.DataFrame
    group: str
    formula: str

    def plot(self, kind: Literal["shrinkage", "arrows", "forest"] = "shrinkage", **kwargs: Any) -> Figure:
        """Draw the comparison.

        Parameters
        ----------
        kind : {"shrinkage", "arrows", "forest"}
            ``"shrinkage"``: no- and partial-pooling estimates against cluster
            size (log x axis), population line, intervals;
            ``"arrows"``: intercept–slope plane, an arrow from each no-pooling to
            its partial-pooling estimate, with the posterior G ellipses (needs
            two effects per cluster); ``"forest"``: the three poolings per cluster.
        **kwargs
            Passed to :func:`lmm_bayes.teaching.pooling_plots.plot_shrinkage`,
            :func:`~lmm_bayes.teaching.pooling_plots.plot_arrows` or
            :func:`~lmm_bayes.teaching.pooling_plots.plot_forest`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from lmm_bayes.teaching import pooling_plots

        validate.check_choice(kind, PLOT_KINDS, "kind")
        if kind == "shrinkage":
            return pooling_plots.plot_shrinkage(self.estimates, **kwargs)
        if kind == "forest":
            return pooling_plots.plot_forest(self.estimates, **kwargs)
        G = group_covariance(self.fits["partial_pooling"], self.group)
        return pooling_plots.plot_arrows(self.estimates, G, **kwargs)

    def __repr__(self) -> str:
        loo = self.loo[["rank", "elpd", "se", "elpd_diff", "dse", "weight"]]
        n = self.estimates.index.get_level_values("level").nunique()
        return "\n".join(
            [
                f"PoolingComparison: {self.formula} ({n} clusters of {self.group!r})",
                "",
                "PSIS-LOO (best first):",
                loo.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                "Posterior SD of the fixed effects:",
                self.fixed_effect_se.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                "Per-cluster estimates: .estimates; pictures: .plot('shrinkage' | 'arrows' | 'forest')",
            ]
        )


def compare_pooling(
    formula: str,
    data: pd.DataFrame,
    *,
    group: str,
    priors: Mapping[str, Any] | None = None,
    na_action: str = "raise",
    family: str | None = None,
    link: str | None = None,
    trials: str | int | None = None,
    ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
    no_pooling_scale: float = 10.0,
    **fit_kwargs: Any,
) -> PoolingComparison:
    """Fit a model with no, partial and complete pooling and compare them.

    * **complete pooling**: the fixed part only, one regression for everybody,
      with the mixed model's priors on β and σ;
    * **no pooling**: every cluster gets its own intercept (and its own slopes,
      where the formula has them) with independent wide priors
      Normal(mean(y) or 0, ``no_pooling_scale`` · s_y / s_x), nothing shared
      between clusters; the other fixed effects stay shared with the mixed
      model's priors;
    * **partial pooling**: the mixed model itself.

    All three are fitted on the same rows and compared by PSIS-LOO on the same
    observations.

    With ``family`` (counts, choices, k of n: :class:`~lmm_bayes.GLMM`'s families and
    arguments) all three keep the family, link, offset and trials: complete pooling is the
    GLM without groups, no pooling the GLM with each cluster as a fixed effect (its own
    intercept and slopes, priors Normal(link of the pooled mean or 0,
    ``no_pooling_scale`` / s_x) on the link scale), partial pooling the GLMM. Estimates,
    intervals and pictures are on the link scale (``estimates.attrs["scale"]``, the axis
    labels); the shrinkage factor is the GLMM's Laplace one
    (:func:`~lmm_bayes.results.shrinkage.shrinkage`); a cluster whose own likelihood has
    no finite maximum (all counts 0, all choices 0 or all 1) gets NaN for no pooling and a
    note, as its no-pooling posterior there is only its prior.

    Parameters
    ----------
    formula : str
        lme4 syntax with exactly one grouping factor, e.g.
        ``"log_radon ~ floor + (floor | county)"``.
    data : pandas.DataFrame
    group : str
        The grouping factor (must be the formula's).
    priors : mapping, optional
        Prior overrides of the mixed model (:func:`lmm_bayes.spec.priors.resolve_priors`);
        complete and no pooling use its fixed-effect and residual priors.
    na_action : {"raise", "drop"}
    family, link, trials : optional
        A generalized model: as for :class:`~lmm_bayes.GLMM` (``None``: the Gaussian :class:`~lmm_bayes.LMM`).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.
    no_pooling_scale : float
        Prior SD of each cluster's own coefficients in the no-pooling model, in
        units of s_y / s_x (10: nearly least squares).
    **fit_kwargs
        Sampler settings for all three fits (``draws``, ``tune``, ``chains``,
        ``sampler``, ``seed``, ``target_accept``, ``progressbar``); ``method``
        and ``centered`` apply to the mixed model. See :func:`lmm_bayes.results.fitting.fit_model`.

    Returns
    -------
    PoolingComparison

    Raises
    ------
    TypeError
        ``group`` is not a string, or an unknown sampler setting is given.
    ValueError
        The formula has not exactly one grouping factor, ``group`` is not it,
        ``log_likelihood=False`` is asked for (LOO needs it), or a fixed effect
        is constant within every cluster (a cluster-level predictor, which a
        no-pooling model cannot tell apart from the clusters' own intercepts).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> cmp = lb.compare_pooling("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"),
    ...                          group="Subject", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> sorted(cmp.loo.index)
    ['complete_pooling', 'no_pooling', 'partial_pooling']
    >>> cmp.estimates.shape
    (18, 14)
    >>> bool(cmp.fixed_effect_se.loc["Intercept", "ratio"] > 1)
    True
    """
    from lmm_bayes.spec.glmm import GLMM
    from lmm_bayes.spec.model import LMM

    if not isinstance(group, str):
        raise TypeError(f"group must be a grouping factor's name (a string), got {type(group).__name__}")
    ci, prob = check_interval(ci, prob)
    no_pooling_scale = validate.check_positive_number(no_pooling_scale, "no_pooling_scale")
    unknown = sorted(set(fit_kwargs) - set(_FIT_ARGS))
    if unknown:
        raise TypeError(f"compare_pooling got unknown sampler setting(s) {unknown}; known: {list(_FIT_ARGS)}")
    if fit_kwargs.get("log_likelihood", True) is False:
        raise ValueError(
            "compare_pooling compares the poolings by LOO, which needs log_likelihood; "
            "leave log_likelihood out"
        )
    settings = SamplerSettings(**{k: v for k, v in fit_kwargs.items() if k in _SETTINGS})
    if family is None:
        if link is not None or trials is not None:
            raise ValueError("link= and trials= are for a generalized model: give family= too (e.g. family='binomial')")
        model = LMM(formula, data, priors=priors, na_action=na_action)
    else:
        model = GLMM(formula, data, family=family, link=link, trials=trials, priors=priors, na_action=na_action)
    design = model.design
    if len(design.groups) != 1:
        raise ValueError(
            f"compare_pooling needs a formula with exactly one grouping factor; {model.formula!r} has "
            f"{len(design.groups)}: {[h.name for h in design.groups]}"
        )
    g = design.group(group)
    check_separable(design, g)

    partial = fit_model(model, **{**fit_kwargs, "log_likelihood": True})
    no = fit_no_pooling(model, g.name, scale=no_pooling_scale, settings=settings)
    complete = fit_complete_pooling(model, g.name, settings=settings)
    fits = {"no_pooling": no, "partial_pooling": partial, "complete_pooling": complete}

    loo = _loo_table(fits)
    A = normal_equations(g)
    _, ok, notes = identified(g, A)
    fam = design.family
    if not fam.is_gaussian:  # a cluster whose own likelihood has no finite maximum: its posterior is its prior
        empty = no_finite_estimate(fam, design.y, g.codes, g.n_levels, design.trials)
        for j in np.flatnonzero(empty != ""):
            notes[j] = [n or f"{empty[j]} (its no-pooling posterior is its prior)" for n in notes[j]]
            ok[j] = False
    np_m, np_lo, np_hi = mean_interval(no.coef_draws(g.name), ci=ci, prob=prob)
    beta = pd.Series(
        partial.posterior[BETA].mean(("chain", "draw")).values, index=list(design.X_columns), dtype=float
    )
    estimates = estimates_table(
        g,
        no=(np.where(ok, np_m, np.nan), np.where(ok, np_lo, np.nan), np.where(ok, np_hi, np.nan)),
        partial=mean_interval(partial.coef_draws(g.name), ci=ci, prob=prob),
        complete=mean_interval(complete.coef_draws(g.name), ci=ci, prob=prob),
        population=population_values(beta, g.effects),
        factor=posterior_shrinkage(partial.posterior, g, A) if fam.is_gaussian else glm_posterior_shrinkage(partial, g),
        notes=notes,
        intervals=f"{interval_label(ci, prob)} of each pooling's posterior",
    )
    if not fam.is_gaussian:
        estimates.attrs["scale"] = link_scale(fam)
    sd_cp = complete.posterior[BETA].std(("chain", "draw"), ddof=1).values
    sd_pp = partial.posterior[BETA].std(("chain", "draw"), ddof=1).values
    fixed_se = pd.DataFrame(
        {"complete_pooling": sd_cp, "partial_pooling": sd_pp, "ratio": sd_pp / sd_cp},
        index=pd.Index(list(design.X_columns), name="coef"),
    )
    return PoolingComparison(
        loo=loo,
        estimates=estimates,
        fits=MappingProxyType(fits),
        fixed_effect_se=fixed_se,
        group=g.name,
        formula=model.formula,
    )


def _loo_table(fits: Mapping[str, Any]) -> pd.DataFrame:
    """ArviZ's compare table; Pareto-k warnings are gathered into one that names the poolings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = az.compare({k: f.idata for k, f in fits.items()}, round_to="none")
    pareto = [str(w.message) for w in caught if "Pareto" in str(w.message)]
    for w in caught:
        if "Pareto" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if pareto:
        flagged = [
            k for k in table.index if isinstance(table.loc[k, "diag_elpd"], str) and table.loc[k, "diag_elpd"]
        ]
        warnings.warn(
            f"PSIS-LOO: some observations have a high Pareto k ({', '.join(flagged) or 'see .loo'}), so "
            "their elpd estimates are less reliable. Such observations strongly influence their own "
            "cluster's estimate, typical of small clusters without pooling; see the diag_elpd column of .loo",
            UserWarning,
            stacklevel=3,
        )
    return table

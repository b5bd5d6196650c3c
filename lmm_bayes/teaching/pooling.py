"""No, complete and partial pooling side by side; shrinkage; within/between effects; implied covariance.

Three ways to treat clustered data:

* **complete pooling** ignores the clusters: one regression on the fixed part
  for everybody, as if all rows were independent;
* **no pooling** gives every cluster its own intercept (and slopes) with
  independent wide priors: nothing is learnt from the other clusters;
* **partial pooling** is the mixed model: each cluster's effects are drawn
  from a population distribution whose spread is estimated, so a cluster with
  little data borrows strength from the others.

:func:`lmm_bayes.compare_pooling` fits all three on the same rows and puts them side by
side; :func:`~lmm_bayes.results.shrinkage.shrinkage` does the table for one fitted mixed model, with each
cluster's own least-squares estimate as the no-pooling value.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

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
    mean_mcse,
    normal_equations,
    population_values,
    posterior_shrinkage,
)
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.glm_pooling import no_finite_estimate
from lmm_bayes.results.pooling_fit import check_separable
from lmm_bayes.results.shrinkage import glm_posterior_shrinkage, link_scale
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_label
from lmm_bayes.spec import validate
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.teaching import pooling_plots
from lmm_bayes.teaching.nested_pooling import (
    NestedPoolingComparison,
    loo_table,
    nested_pooling_comparison,
    partial_pooling_fit,
    progress,
)
from lmm_bayes.teaching.pooling_models import fit_complete_pooling, fit_no_pooling

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


__all__ = [
    "ESTIMATE_COLUMNS",
    "POOLINGS",
    "PoolingComparison",
    "pooling_comparison",
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
    """No, partial and complete pooling of one model, side by side (from :func:`lmm_bayes.compare_pooling`).

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
        ``"complete_pooling"`` (:class:`~lmm_bayes.PoolingFit`\\ s).
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


def pooling_comparison(
    build_model: Callable[[], MixedModel],
    *,
    group: str,
    ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
    no_pooling_scale: float = 10.0,
    **fit_kwargs: Any,
) -> PoolingComparison | NestedPoolingComparison:
    """No, partial and complete pooling of the model ``build_model()`` makes, fitted and compared.

    For a factor nested in others (``subject:neuron`` of a subject / neuron hierarchy) four
    poolings: :func:`~lmm_bayes.teaching.nested_pooling.nested_pooling_comparison`.

    The work of :func:`lmm_bayes.compare_pooling`, which documents the arguments and builds the
    model; the arguments are checked before the model is built, so a wrong setting is reported
    before the data are read.

    Parameters
    ----------
    build_model : callable
        Returns the :class:`~lmm_bayes.spec.model.MixedModel` to compare the poolings of.
    group, ci, prob, no_pooling_scale, **fit_kwargs
        As for :func:`lmm_bayes.compare_pooling`.

    Returns
    -------
    PoolingComparison
        Its fits are the results stage's (:class:`~lmm_bayes.results.fit.MixedModelFit`,
        :class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`).
    """
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
    if fit_kwargs.get("keep_b") == "none":
        raise ValueError(
            "compare_pooling needs the draws of b (each cluster's estimate, and LOO); leave keep_b out"
        )
    settings = SamplerSettings(**{k: v for k, v in fit_kwargs.items() if k in _SETTINGS})
    model = build_model()
    design = model.design
    if not design.groups:
        raise ValueError(f"compare_pooling needs a grouping factor; {model.formula!r} has none")
    g = design.group(group)
    if len(design.groups) > 1:  # a factor in a hierarchy: four poolings (teaching/nested_pooling.py)
        return nested_pooling_comparison(model, g, ci=ci, prob=prob, no_pooling_scale=no_pooling_scale,
                                         settings=settings, fit_kwargs=fit_kwargs)
    check_separable(design, g)

    progress(settings, 1, 3, "partial pooling (the mixed model)")
    partial = partial_pooling_fit(model, fit_kwargs)
    progress(settings, 2, 3, f"no pooling (each {g.name} its own regression)")
    no = fit_no_pooling(model, g.name, scale=no_pooling_scale, settings=settings)
    progress(settings, 3, 3, "complete pooling (the fixed part only)")
    complete = fit_complete_pooling(model, g.name, settings=settings)
    fits = {"no_pooling": no, "partial_pooling": partial, "complete_pooling": complete}

    loo = loo_table(fits, n_obs=design.n, seed=settings.seed)
    A = normal_equations(g)
    _, ok, notes = identified(g, A)
    fam = design.family
    if not fam.is_gaussian:  # a cluster whose own likelihood has no finite maximum: its posterior is its prior
        empty = no_finite_estimate(fam, design.y, g.codes, g.n_levels, design.trials)
        for j in np.flatnonzero(empty != ""):
            notes[j] = [n or f"{empty[j]} (its no-pooling posterior is its prior)" for n in notes[j]]
            ok[j] = False
    np_m, np_lo, np_hi = mean_interval(no.coef_draws(g.name), ci=ci, prob=prob)
    mcse = np.hypot(mean_mcse(no.coef_draws(g.name)), mean_mcse(partial.coef_draws(g.name)))
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
        mcse=mcse,
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

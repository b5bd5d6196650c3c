"""The user's pooling comparison: :func:`compare_pooling` builds the model and hands it to the teaching stage.

The comparison itself (the three fits, LOO, the per-cluster estimates, the pictures) is
:func:`lmm_bayes.teaching.pooling.pooling_comparison`; the fits come back as the user's
:class:`~lmm_bayes.Fit` and :class:`~lmm_bayes.PoolingFit`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd

from lmm_bayes.api.fit import Fit, PoolingFit
from lmm_bayes.api.model import GLMM, LMM
from lmm_bayes.api.signatures import checked_function
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB
from lmm_bayes.teaching.nested_pooling import NestedPoolingComparison
from lmm_bayes.teaching.pooling import PoolingComparison, pooling_comparison

__all__ = ["compare_pooling"]

#: where the package lives: a warning is attributed to the first caller outside it
PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


@checked_function
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
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "nutpie",
    method: str = "auto",
    target_accept: float = 0.9,
    seed: int | None = None,
    progressbar: bool = True,
    centered: bool = False,
    adaptation: str = "auto",
) -> PoolingComparison | NestedPoolingComparison:
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

    **A hierarchy** (``y ~ x + (1 + x | subject) + (1 | subject:neuron)``, ``group=
    "subject:neuron"``): four poolings of the neurons
    (:class:`~lmm_bayes.teaching.nested_pooling.NestedPoolingComparison`): no pooling (each
    neuron its own regression of its whole line: its own effects and its subject's), within
    pooling (each subject its own line, unpooled; the neurons pooled around it), partial
    pooling (the hierarchy) and complete pooling. Each neuron's estimate is its whole line;
    partial pooling pulls it toward its subject's line (``target``), which is pulled toward the
    population's. ``shrinkage_by_level`` gives the model's B_j of every level. The other
    grouping factors must all be factors ``group`` lies in. One line on stderr names each fit
    as it starts (``progressbar=False`` silences it).

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
        lme4 syntax with one grouping factor, e.g. ``"log_radon ~ floor + (floor | county)"``,
        or a hierarchy (``"y ~ x + (1 + x | subject) + (1 | subject:neuron)"``).
    data : pandas.DataFrame
    group : str
        The grouping factor (must be the formula's); in a hierarchy, the level to compare
        (the finest: ``"subject:neuron"``).
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
    draws, tune, chains, sampler, target_accept, seed, progressbar, adaptation
        Sampler settings for every fit, as for :meth:`lmm_bayes.LMM.fit`
        (:func:`lmm_bayes.results.fitting.fit_model`); ``progressbar`` also prints one line as
        each fit starts. A Gaussian model's no- and complete-pooling fits are exact draws and use
        only ``draws``, ``chains`` and ``seed``.
    method, centered
        For the mixed model (partial pooling), as for :meth:`lmm_bayes.LMM.fit`.

    Returns
    -------
    PoolingComparison or NestedPoolingComparison

    Raises
    ------
    TypeError
        ``group`` is not a string, or an unknown keyword is given.
    ValueError
        The formula has no grouping factor, ``group`` is not one of its factors, another
        factor is not one ``group`` lies in (crossed factors), or a fixed effect
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
    (18, 15)
    >>> bool(cmp.fixed_effect_se.loc["Intercept", "ratio"] > 1)
    True
    """

    def build_model() -> LMM:
        if family is None:
            if link is not None or trials is not None:
                raise ValueError(
                    "link= and trials= are for a generalized model: give family= too (e.g. family='binomial')")
            return LMM(formula, data, priors=priors, na_action=na_action)
        return GLMM(formula, data, family=family, link=link, trials=trials, priors=priors, na_action=na_action)

    # the fits' warnings (sampler health, LOO) are said at the user's call, not inside the package
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparison = pooling_comparison(
            build_model, group=group, ci=ci, prob=prob, no_pooling_scale=no_pooling_scale, draws=draws, tune=tune,
            chains=chains, sampler=sampler, method=method, target_accept=target_accept, seed=seed,
            progressbar=progressbar, centered=centered, adaptation=adaptation)
    for w in caught:
        warnings.warn(w.message, w.category, skip_file_prefixes=(PACKAGE_DIR,))
    fits = {name: (Fit if name == "partial_pooling" else PoolingFit).of(fit)
            for name, fit in comparison.fits.items()}
    return dataclasses.replace(comparison, fits=MappingProxyType(fits))

"""The user's models: :class:`LMM` and :class:`GLMM`, a model's definition plus what is done with it.

A model's definition (formula, design, priors) is :class:`~lmm_bayes.spec.model.MixedModel`
(:class:`~lmm_bayes.spec.glmm.GeneralizedMixedModel` for a GLMM) in the ``spec`` stage; the
classes here add the verbs, each handing the work to the stage that does it: ``fit``
(:func:`lmm_bayes.results.fitting.fit_model`, whose draws come back as a :class:`~lmm_bayes.Fit`),
``pymc_model`` (the graphs of :mod:`lmm_bayes.inference`) and ``prior_predictive``
(:func:`lmm_bayes.results.predictive.prior_predictive`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import xarray as xr

from lmm_bayes.api.fit import Fit
from lmm_bayes.api.signatures import check_keywords, forwards
from lmm_bayes.inference.model_graph import model_graph
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.predictive import prior_predictive
from lmm_bayes.spec.glmm import GeneralizedMixedModel
from lmm_bayes.spec.model import MixedModel

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from lmm_bayes.inference.standardize import WorkingScales

__all__ = ["GLMM", "LMM"]


@check_keywords
class LMM(MixedModel):
    """A Bayesian linear mixed-effects model ``y = X beta + Z b + e``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame or dask.dataframe.DataFrame
        Holds every column the formula names; other columns are ignored. A Dask DataFrame
        (data beyond memory) is reduced partition by partition to the sums the collapsed
        method needs, on the active Dask scheduler, and only a random sample of
        ``sample_rows`` rows is kept (:mod:`lmm_bayes.spec.dask_data`); see also :meth:`from_parquet`.
    priors : mapping, optional
        Overrides of the default priors; see :func:`lmm_bayes.spec.priors.resolve_priors`.
    na_action : {"raise", "drop"}
        Rows with NaN/inf in a used column raise by default; ``"drop"`` drops them
        with a warning that says how many.
    center_predictors : bool, optional
        True (the default, as rstanarm and brms do): the intercept's prior, and in a
        correlated block ``(1 + x | g)`` the priors of its SDs and correlations, apply at
        the means of the predictors, so shifting a predictor (``Days + 100``) leaves the
        posterior of every slope, SD and correlation unchanged. False: they apply to the raw
        intercept (the response at x = 0), to match a brms model prior for prior. Either
        way every table reports the coefficients of the formula as written, and the
        sampler works on centred, scaled columns (:mod:`lmm_bayes.inference.standardize`).
        None: a whole :class:`~lmm_bayes.spec.priors.Priors` given as ``priors`` keeps its
        own setting, else True.
    sample_rows, sample_seed, progress
        Dask input only: the rows kept in memory (for posterior predictive checks, LOO, R² and
        ``predict()`` without data), the seed that draws them, and whether to show progress.
    sigma, ar : str, optional
        Residuals beyond ``sigma^2 I`` (:mod:`lmm_bayes.spec.residual`): ``sigma="~ (1 | neuron)"``, a
        residual SD per neuron (log sigma_j = log sigma + u_j, u_j ~ N(0, tau^2)); ``sigma="~ cond"`` (or
        ``"~ cond + (1 | neuron)"``), one per category of ``cond`` too; ``ar="trial | neuron"``, AR(1) errors
        over the whole-number column ``trial`` within each neuron. By the formula's one grouping factor;
        fitted by :mod:`lmm_bayes.inference.methods.structured`; ``fit.residual_sd()``, ``fit.varcorr()`` and
        ``fit.residual_acf()`` report them.

    Attributes
    ----------
    spec : ModelSpec
    design : Design
    priors : Priors

    Raises
    ------
    TypeError
        ``formula`` is not a string, ``data`` not a DataFrame.
    FormulaError
        A formula that cannot be read or evaluated (a ``ValueError``; a caret marks the term),
        including ``x ** 2`` outside ``I(...)``, which would silently mean ``x``.
    ValueError
        A missing column or NaN/inf; a transformation giving NaN/inf (``log(x)`` with
        ``x <= 0``); grouping values that would merge (``1`` and ``"1"`` in one column,
        clusters of ``a:b`` that print alike; see :mod:`lmm_bayes.spec.labels`); a column
        named like the package's own things (``Intercept`` as a predictor, a grouping
        factor named ``chain``, ``obs``, ``beta`` ...; see
        :func:`lmm_bayes.spec.validate.check_names`).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> print(model)  # doctest: +NORMALIZE_WHITESPACE
    LMM: Reaction ~ Days + (Days | Subject)
      response:      Reaction
      fixed effects: Intercept, Days
      random effects:
        Subject: 18 levels; effects Intercept, Days (correlated)
      rows used:     180
    """

    def pymc_model(self, *, method: str = "full", centered: bool = False, standardized: bool = False) -> pm.Model:
        """The PyMC model, to read or to extend.

        ``method="full"`` (default): every cluster's b is a parameter (non-centered
        unless ``centered``); ``"collapsed"``: b integrated out, the likelihood a
        potential on the sufficient statistics.

        ``standardized=False`` (default): the graph on the data as given, each prior on the
        parameter it names, the intercept's on the raw intercept (the model of
        ``center_predictors=False``). ``standardized=True``: the graph a fit samples, on
        centred, scaled columns with the priors mapped to them (:mod:`lmm_bayes.inference.standardize`;
        ``Standardization.to_user`` maps its draws back); with the default
        ``center_predictors=True`` its intercept prior sits at the means of the predictors.

        Parameters
        ----------
        method : {"full", "collapsed"}
            Every cluster's b a parameter, or b integrated out.
        centered : bool
            The full model's centered parameterization (b ~ Normal(0, G)) instead of b = sd · z.
        standardized : bool
            The graph on centred, scaled columns that a fit samples, instead of the data as given.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
        >>> sorted(rv.name for rv in model.pymc_model().free_RVs)  # non-centered: b = sd * z
        ['Subject_sd_indep', 'Subject_z', 'beta', 'sigma']
        >>> sorted(rv.name for rv in model.pymc_model(method="collapsed").free_RVs)  # b integrated out
        ['Subject_sd_indep', 'beta', 'sigma']
        """
        return model_graph(self, method=method, centered=centered, standardized=standardized)

    @forwards(fit_model)
    def fit(self, *, draws: int = 1000, tune: int = 1000, chains: int = 4, sampler: str = "nutpie",
            method: str = "auto", target_accept: float = 0.9, seed: int | None = None, progressbar: bool = True,
            centered: bool = False, log_likelihood: bool | Literal["auto"] = "auto", keep_b: str = "all",
            adaptation: str = "auto", scales: WorkingScales | None = None) -> Fit:
        """Sample the posterior; see :func:`lmm_bayes.results.fitting.fit_model`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.method, fit.sampler
        ('collapsed', 'nutpie')
        """
        return Fit.of(fit_model(self, draws=draws, tune=tune, chains=chains, sampler=sampler, method=method,
                                target_accept=target_accept, seed=seed, progressbar=progressbar,
                                centered=centered, log_likelihood=log_likelihood, keep_b=keep_b,
                                adaptation=adaptation, scales=scales))

    @forwards(prior_predictive)
    def prior_predictive(self, *, draws: int = 500, seed: int | None = None) -> xr.DataTree:
        """Draw from the prior predictive; see :func:`lmm_bayes.results.predictive.prior_predictive`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
        >>> prior = model.prior_predictive(draws=100, seed=1)
        >>> list(prior.children), prior["prior_predictive"]["y"].shape
        (['prior', 'prior_predictive', 'observed_data'], (1, 100, 180))
        """
        return prior_predictive(self, draws=draws, seed=seed)


@check_keywords
class GLMM(GeneralizedMixedModel, LMM):
    """A Bayesian generalized linear mixed model ``g(E[y]) = X beta + Z b + offset``.

    Parameters
    ----------
    formula : str
        lme4 syntax, plus ``cbind(successes, failures)`` as the response and ``offset(...)`` terms.
    data : pandas.DataFrame
    family : {"poisson", "negativebinomial", "bernoulli", "binomial", "gaussian"} or Family
    link : str, optional
        The family's canonical link by default; ``"probit"`` for Bernoulli and binomial.
    trials : str or int, optional
        Binomial only, when the response is the successes: the column of trials, or one
        number for every row.
    priors : mapping, optional
        Overrides of the link-scale defaults (:mod:`lmm_bayes.spec.priors`); the
        negative binomial's ``"dispersion"`` (1/√alpha) among them.
    na_action : {"raise", "drop"}
        Also covers the trials' and offsets' columns.
    center_predictors : bool, optional
        As for :class:`~lmm_bayes.LMM`: the intercept's prior applies at the means of the
        predictors (default), or to the raw intercept (False).

    Raises
    ------
    TypeError, ValueError, FormulaError
        As :class:`~lmm_bayes.LMM`; a response the family cannot take (the column and the
        first bad rows named); ``trials`` with a family other than binomial, or binomial
        without trials.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"k": [2, 3, 4, 0, 1, 3], "n": [5, 6, 8, 4, 5, 6], "g": list("aabbcc")})
    >>> m = lb.GLMM("cbind(k, n - k) ~ 1 + (1 | g)", df, family="binomial")
    >>> m.family, m.design.trials.tolist()
    (Family(name='binomial', link='logit'), [5.0, 6.0, 8.0, 4.0, 5.0, 6.0])
    >>> lb.GLMM("k ~ 1 + (1 | g)", df.assign(k=[1, 0, 2, 0, 1, 1]), family="bernoulli")
    Traceback (most recent call last):
    ...
    ValueError: the response 'k' must be 0 or 1 for family='bernoulli', but 1 of 6 rows are not (first: row 2 = 2); recode it (e.g. correct = 1, incorrect = 0), or use family='binomial' for k of n trials
    """

"""``MixedModelFit``: the tables of a fitted mixed model (tables are pandas, draws are xarray).

Summaries are computed from ``fit.idata`` (an ArviZ DataTree); nothing here samples
(:func:`lmm_bayes.results.fitting.fit_model` does, and wraps the draws in a ``MixedModelFit``).
The user's :class:`lmm_bayes.Fit` (:mod:`lmm_bayes.api.fit`) is its subclass, which adds the
methods whose work lives in other modules (``predict``, ``shrinkage``, plots, ``save``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import (
    b_draws,
    coef_name,
    covariance_values,
    hyperparameter_draws,
    hyperparameters,
    line_draws,
    population_effects,
)
from lmm_bayes.inference.standardize import standardize
from lmm_bayes.results import comparison, hypothesis
from lmm_bayes.results.base import FittedModel, check_fitted
from lmm_bayes.results.glm import describe, ratio_table, residual_variance_draws
from lmm_bayes.results.residual_structure import refuse_structured, residual_sd, residual_table
from lmm_bayes.results.summary import (
    DEFAULT_CI,
    DEFAULT_PROB,
    PosteriorTable,
    Summary,
    check_interval,
    interval_label,
    ridge_tip,
    summarize_draws,
)
from lmm_bayes.spec.priors import Priors
from lmm_bayes.spec.residual import RHO, SIGMA_BETA, SIGMA_SD, posterior_names

__all__ = ["MixedModelFit", "at_number", "check_fit", "data_range"]


def at_number(name: str, value: object, *, hint: str = "") -> float:
    """An ``at=`` value of a numeric predictor as a finite float, or a clear error naming it.

    ``hint`` (e.g. "the data run from 0 to 9") ends the message of a value that is not finite.

    Examples
    --------
    >>> at_number("Days", 5)
    5.0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"at[{name!r}] must be a number, got {type(value).__name__} {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = float("inf") if value > 0 else float("-inf")
    if not np.isfinite(number):
        raise ValueError(f"at[{name!r}] = {number:g} is not a finite number; give the value of {name!r} to "
                         f"evaluate at as a finite number{'; ' + hint if hint else ''}")
    return number


def data_range(name: str, values: np.ndarray) -> str:
    """``"Days from 0 to 9 in the fitted rows"``: where a predictor's data lie, for a message."""
    return f"{name} from {np.min(values):.4g} to {np.max(values):.4g} in the fitted rows"


class MixedModelFit(FittedModel):
    """A fitted mixed model: the draws (``idata``), the model, and readable summaries.

    The user's :class:`lmm_bayes.Fit`, from :meth:`lmm_bayes.LMM.fit` or :func:`lmm_bayes.load`,
    is this class plus the methods of :mod:`lmm_bayes.api.fit`; every function of the results
    stage takes either.

    Attributes
    ----------
    idata : xarray.DataTree
        posterior, sample_stats, observed_data, constant_data, log_likelihood.
    model : LMM

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit
    <lmm_bayes.Fit 'Reaction ~ Days + (1 | Subject)': method=collapsed, sampler=nutpie, 2 chains x 500 draws>
    """

    @property
    def priors(self) -> Priors:
        """The priors the fit used."""
        return Priors.from_dict(json.loads(self._idata.attrs["priors"]))

    def __repr__(self) -> str:
        a = self._idata.attrs
        return (
            f"<lmm_bayes.Fit {a['formula']!r}: method={a['method']}, sampler={a['sampler']}, "
            f"{a['chains']} chains x {a['draws']} draws>"
        )

    def health_parameters(self) -> list[xr.DataArray]:
        """β, σ, the SDs and the within-block correlations (:func:`~lmm_bayes.inference.layout.hyperparameters`).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> [p.sizes["parameter"] for p in fit.health_parameters()]  # beta (2), sigma, sd(Intercept)
        [4]
        """
        extra = [self.posterior[v] for v in posterior_names(self.design.residual) if v in (RHO, SIGMA_SD, SIGMA_BETA)]
        return [hyperparameter_draws(self.posterior, hyperparameters(self.design)), *extra]  # rho, tau: sigma=/ar=

    def _reliability_tips(self) -> list[str]:
        tips = super()._reliability_tips()
        ridge = self._ridge_tip()
        if ridge:  # more draws do not help: say what does
            return [ridge, *(t for t in tips if not t.startswith("more draws"))]
        if self.method == "gibbs":  # no NUTS: target_accept does not apply
            return ["more draws and tuning (draws=4000, tune=2000)", "method='collapsed' (NUTS on the exact marginal)"]
        if self.method != "full":
            return tips
        if self.design.family.is_gaussian:
            return ["method='collapsed' (no funnel)", *tips]
        if not self._idata.attrs.get("centered", 0):  # a GLMM: clusters with much data mix better centred
            return ["centered=True (hierarchical centering: for clusters that hold much data)", *tips]
        return tips

    def _ridge_tip(self) -> str | None:
        """:func:`~lmm_bayes.results.summary.ridge_tip` on this fit's β, on the sampler's scale."""
        if self.design.X.shape[1] < 2:
            return None
        table = self.fixef()
        slow = table.index[(table["r_hat"] > 1.01) | (table["ess_bulk"] < 400)].tolist()
        working = standardize(self.design, centered=self.priors.centered)
        return ridge_tip(working.to_working(self.posterior[["beta"]])["beta"], slow)

    def fixef(self, *, exponentiate: bool = False, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Fixed effects β, on the link scale, or as rate / odds ratios (``exponentiate=True``).

        Parameters
        ----------
        exponentiate : bool
            ``exp(beta)`` draw by draw, then summarised (``df.attrs["scale"]`` says "rate ratio"
            for a log link, "odds ratio" for a logit link; other links raise ``ValueError``).
        ci, prob
            As for every table.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.fixef(ci="eti", prob=0.95).columns[:4].tolist()
        ['mean', 'sd', 'eti_low', 'eti_high']
        """
        if not isinstance(exponentiate, bool):
            raise TypeError(f"exponentiate must be True or False, got {type(exponentiate).__name__}")
        if exponentiate:
            return PosteriorTable.of(ratio_table(self, ci=ci, prob=prob))
        return super().fixef(ci=ci, prob=prob)

    # ---------------------------------------------------------------- tables
    def varcorr(self, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Variance components as SDs and correlations, plus the residual SD, with the variances.

        Each row summarises the posterior of one SD or correlation; the ``variance``
        column is the posterior mean of the SD squared (the variance lme4 prints next
        to the SD; not the mean SD squared), empty on correlation rows.

        Parameters
        ----------
        ci : {"hdi", "eti"}
            Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
        prob : float
            Probability mass of every interval.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``group``, ``term``): ``sd(Intercept)``, ``corr(Intercept,Days)``,
            and (``Residual``, ``sigma``); columns mean, variance, sd, the interval, R-hat, ESS.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> vc = fit.varcorr(ci="eti", prob=0.95)
        >>> vc.index.tolist(), vc.columns[:5].tolist()
        ([('Subject', 'sd(Intercept)'), ('Residual', 'sigma')], ['mean', 'variance', 'sd', 'eti_low', 'eti_high'])
        """
        params = hyperparameters(self.design, fixed=False)
        # the residual last, as lme4 prints it
        params = (*[p for p in params if p.group != "Residual"], *[p for p in params if p.group == "Residual"])
        draws = hyperparameter_draws(self.posterior, params)
        table = summarize_draws(draws, ci=ci, prob=prob)
        is_sd = np.array([p.term in ("sigma", "dispersion") or p.term.startswith("sd(") for p in params])
        variance = (draws**2).mean(("chain", "draw")).values
        table.insert(1, "variance", np.where(is_sd, variance, np.nan))
        table.index = pd.MultiIndex.from_tuples([(p.group, p.term) for p in params], names=["group", "term"])
        if self.design.residual is not None:  # sigma= / ar=: tau and rho after sigma (the SD at u = 0)
            table = pd.concat([table, residual_table(self, ci=ci, prob=prob)]).rename_axis(["group", "term"])
        return PosteriorTable.of(table)

    def residual_sd(self, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """The residual SD per level of a model with ``sigma="~ (1 | g)"`` (one row ``"(all)"`` otherwise).

        See :func:`lmm_bayes.results.residual_structure.residual_sd`; ``varcorr()`` holds
        ``sd(log sigma)`` and ``rho``.

        Parameters
        ----------
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.residual_sd().index.tolist()  # one residual SD: fit with sigma="~ (1 | Subject)" for one per subject
        ['(all)']
        """
        return residual_sd(self, ci=ci, prob=prob)

    def ranef(self, group: str | None = None, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Cluster deviations b of one grouping factor, or of every factor (``group=None``, as lme4).

        Parameters
        ----------
        group : str, optional
            A grouping factor; None (the default) stacks every factor's table.
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``level``, ``effect``); with ``group=None`` by (``group``, ``level``, ``effect``).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.ranef("Subject").shape  # 18 subjects x 2 effects; mean, sd, HDI, R-hat, ESS
        (36, 7)
        >>> fit.ranef().index.names
        FrozenList(['group', 'level', 'effect'])
        """
        if group is None:
            return self._every_group(self.ranef, ci=ci, prob=prob)
        g = self._group(group)
        table = summarize_draws(b_draws(self.posterior, g, "ranef"), ci=ci, prob=prob)
        table.index = table.index.set_names(["level", "effect"])
        return table

    def coef_draws(self, group: str, *, include_parents: bool = False) -> xr.DataArray:
        """Draws of the cluster-specific effects β + b, dims (chain, draw, level, effect).

        With ``include_parents=True``, a nested cluster's whole line: β + the b of the
        clusters it lies in + its own b, over its own effects and theirs (a neuron's slope
        is its subject's); the same as β + b for a factor nested in nothing.

        Parameters
        ----------
        group : str
            A grouping factor.
        include_parents : bool
            The whole lines (see above).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.coef_draws("Subject").dims
        ('chain', 'draw', 'Subject', 'Subject_effect')
        """
        g = self._group(group)
        post = self.posterior
        if include_parents:
            return line_draws(post, self.design, g, needed_by="coef")
        b = b_draws(post, g, "coef").transpose("chain", "draw", g.name, g.effect_dim)
        return (b + population_effects(post, g)).transpose("chain", "draw", g.name, g.effect_dim).rename(coef_name(g))

    def variance_draws(self, *, at: Mapping[str, float] | None = None) -> xr.DataArray:
        """Per-draw variance of each factor's contribution at predictor values ``at``, and σ².

        dims (chain, draw, component) with components the factor names and ``"Residual"``.
        For a generalized model every part is on the latent (link) scale and the residual is
        the family's distribution-specific variance (:func:`lmm_bayes.results.glm.residual_variance_draws`:
        π²/3 for logit, 1 for probit, log(1 + 1/lambda) for Poisson counts).

        Parameters
        ----------
        at : mapping, optional
            Values of the random-slope effects, e.g. ``{"Days": 5}``; every slope at 0 by default.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.variance_draws(at={"Days": 5}).coords["component"].values.tolist()
        ['Subject', 'Residual']
        """
        refuse_structured(self.design, "the variance partition (ICC)")
        post = self.posterior
        ranges = {e: data_range(e, g.Z[:, k]) for g in self.design.groups for k, e in enumerate(g.effects)}
        at = {e: at_number(e, v, hint=ranges.get(e, "")) for e, v in dict(at or {}).items()}
        parts, names = [], []
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by name
            for g in self.design.groups:
                z = np.array([1.0 if e == "Intercept" else at.get(e, 0.0) for e in g.effects])
                parts.append(np.einsum("i,cdij,j->cd", z, covariance_values(post, g), z))
                names.append(g.name)
            parts.append(residual_variance_draws(self, at))
            names.append("Residual")
            values = np.stack(parts, axis=-1)
            finite = np.isfinite(values).all() and np.isfinite(values.sum(axis=-1)).all()
        if not finite:
            where = ", ".join(f"{e} = {v:g}" for e, v in at.items())
            raise ValueError(
                f"the variances are not finite in every draw at {where}: z'Gz overflows a float at a value this "
                f"far out; evaluate at values near the data ({'; '.join(ranges[e] for e in at if e in ranges)})"
            )
        return xr.DataArray(values, dims=("chain", "draw", "component"), coords={"component": names})

    def icc(self, *, at: Mapping[str, float] | None = None, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Intraclass correlation / variance partition, per draw then summarised.

        Each row is a component's share of the total variance at predictor values
        ``at`` (default: every slope's variable at 0, the intercept at 1), so shares
        sum to 1 in every draw. With one random-intercept factor, its share is the
        ICC σ_b² / (σ_b² + σ²). With random slopes the variance depends on x, and
        ``df.attrs["at"]`` says at which values it was evaluated.

        Parameters
        ----------
        at : mapping, optional
            Values of the random-slope effects, e.g. ``{"Days": 5}``.
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``component`` (factors, then ``Residual``); mean, sd, hdi_low, hdi_high.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> table = fit.icc()  # lme4's REML estimate of the Subject share: 0.59
        >>> table.index.tolist(), bool(0.4 < table.loc["Subject", "mean"] < 0.8)
        (['Subject', 'Residual'], True)
        """
        if at is not None and not isinstance(at, Mapping):
            raise TypeError(f"at must be a dict of effect values like {{'Days': 5}}, got {type(at).__name__}")
        effects = {e for g in self.design.groups for e in g.effects if e != "Intercept"}
        unknown = set(at or {}) - effects
        if unknown:
            raise ValueError(f"at names {sorted(unknown)}, which are not random slopes; slopes: {sorted(effects)}")
        v = self.variance_draws(at=at)
        share = (v / v.sum("component")).rename("share")
        table = summarize_draws(share, ci=ci, prob=prob, diagnostics=False)
        table.index.name = "component"
        slopes = sorted(effects)
        where = {e: float((at or {}).get(e, 0.0)) for e in slopes}
        table.attrs["at"] = (
            f"evaluated at {', '.join(f'{k}={v:g}' for k, v in where.items())}" if slopes else "no random slopes"
        )
        return PosteriorTable.of(table)

    # ---------------------------------------------------------------- summary
    def loo(self) -> Any:
        """PSIS-LOO of this fit (:func:`lmm_bayes.results.comparison.loo`).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.loo().kind  # warns here: two observations have a Pareto k above 0.7
        'loo'
        """
        return comparison.loo(self)

    def hypothesis(self, hypotheses: str | list[str], *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Hypotheses about the fixed effects, e.g. ``"Days > 5"`` (:func:`lmm_bayes.results.hypothesis.hypothesis`).

        Parameters
        ----------
        hypotheses : str or list of str
            Inequalities or equalities of the fixed effects, e.g. ``"Days > 5"``, ``"a - b = 0"``.
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> float(fit.hypothesis("Days > 5").loc["Days > 5", "post_prob"])
        1.0
        """
        return hypothesis.hypothesis(self, hypotheses, ci=ci, prob=prob)

    def r2(self, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Marginal and conditional R² with posterior intervals (:func:`lmm_bayes.results.comparison.r2`).

        Nakagawa & Schielzeth's; for a GLMM on the latent (link) scale with the family's
        distribution-specific variance (Nakagawa, Johnson & Schielzeth 2017).

        Parameters
        ----------
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.r2().index.tolist()
        ['marginal', 'conditional']
        """
        return comparison.r2(self, ci=ci, prob=prob)

    def summary(self, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> Summary:
        """lme4-style overview: formula, rows, groups, variance components, fixed effects, diagnostics.

        Parameters
        ----------
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> print(str(fit.summary()).splitlines()[0])
        Bayesian linear mixed model fit by nutpie (method: collapsed)
        """
        a = self._idata.attrs
        d = self.design
        groups = ", ".join(f"{g.name} {g.n_levels}" for g in d.groups) or "none"
        diag = self.diagnostics()
        ci, prob = check_interval(ci, prob)
        if d.reduction is not None:  # built from Dask: the checks and LOO see a sample
            groups += f"; a random sample of {d.n:,} rows kept for checks and LOO"
        header = (
            f"{describe(self)} fit by {a['sampler']} (method: {a['method']})\n"
            f"Formula: {a['formula']}\n"
            f"Rows: {d.n_rows}; groups: {groups}; intervals: {interval_label(ci, prob)}"
        )
        footer = (
            f"{a['chains']} chains x {a['draws']} draws ({a['tune']} tuning); "
            f"divergences {diag['divergences']}; max R-hat {diag['max_r_hat']:.3f}; "
            f"min bulk ESS {diag['min_ess_bulk']:.0f}; min tail ESS {diag['min_ess_tail']:.0f}"
        )
        if "laplace_pareto_k" in a:  # the Laplace method's importance check (inference/laplace.py)
            verdict = "passed" if a["laplace_check_passed"] else "FAILED: refit with method='full'"
            footer += (f"\nLaplace check {verdict}: Pareto k {a['laplace_pareto_k']:.2f}, largest shift of a "
                       f"mean under the weights {a['laplace_max_shift']:.1f} standard errors")
        return Summary(
            header=header,
            varcorr=self.varcorr(ci=ci, prob=prob),
            fixef=self.fixef(ci=ci, prob=prob),
            diagnostics=diag,
            footer=footer,
        )


def check_fit(fit: Any) -> MixedModelFit:
    """``fit`` must be an :class:`lmm_bayes.Fit` (a fitted mixed model); returns it."""
    return check_fitted(fit, MixedModelFit)

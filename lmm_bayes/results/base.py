"""The base of every fitted model: draws, model, shared tables, health and saving.

:class:`FittedModel` holds an ArviZ DataTree (``idata``) and the :class:`~lmm_bayes.LMM`
it came from, and gives every kind of fit (the mixed model's :class:`~lmm_bayes.Fit`,
the no- and complete-pooling fits of a pooling comparison) the same reading API:
``posterior``, ``fixef``, ``coef``, ``coef_draws``, ``diagnostics``, ``save`` and
the caterpillar plot. A subclass says which draws are its clusters' effects
(:meth:`~FittedModel.coef_draws`) and which parameters its health is judged on
(:meth:`~FittedModel.health_parameters`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

from lmm_bayes.errors import SamplingWarning
from lmm_bayes.results.summary import (
    DEFAULT_CI,
    DEFAULT_PROB,
    PosteriorTable,
    diagnose,
    reliability_problems,
    summarize_draws,
)
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel as LMM

__all__ = ["FittedModel", "check_fitted"]


def check_fitted(fit: Any, kind: type | None = None) -> Any:
    """``fit`` must be a fitted model (of ``kind``, default any); returns it.

    Examples
    --------
    >>> check_fitted("not a fit")
    Traceback (most recent call last):
    ...
    TypeError: fit must be an lmm_bayes.Fit, got str; get one from model.fit(...) or lb.load(...)
    """
    kind = kind or FittedModel
    if not isinstance(fit, kind):
        raise TypeError(
            f"fit must be an lmm_bayes.Fit, got {type(fit).__name__}; get one from model.fit(...) or lb.load(...)"
        )
    return fit


class FittedModel:
    """Draws (``idata``) of a model fitted to ``model``'s design.

    Attributes
    ----------
    idata : xarray.DataTree
        posterior, sample_stats, observed_data, and more by kind of fit.
    model : LMM

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> isinstance(fit, lb.FittedModel), fit.fixef().index.tolist()
    (True, ['Intercept', 'Days'])
    """

    #: the fit's kind, stored in saved files so :func:`lmm_bayes.load` rebuilds it
    kind = "mixed"

    def __init__(self, idata: xr.DataTree, model: LMM):
        self._idata = idata
        self._model = model

    # ---------------------------------------------------------------- basics
    @property
    def idata(self) -> xr.DataTree:
        """The ArviZ ``DataTree``: posterior, sample stats, observed data, and provenance in its attributes."""
        return self._idata

    @property
    def model(self) -> LMM:
        """The :class:`~lmm_bayes.LMM` that was fitted."""
        return self._model

    @property
    def design(self) -> Design:
        """The model's :class:`~lmm_bayes.Design` (y, X and the random-effects design)."""
        return self._model.design

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an ``xarray.Dataset`` with dims (``chain``, ``draw``, ...)."""
        return self._idata["posterior"].to_dataset()

    @property
    def method(self) -> str:
        """The method that sampled the fit: ``"full"`` or ``"collapsed"``."""
        return str(self._idata.attrs["method"])

    @property
    def sampler(self) -> str:
        """The NUTS implementation that sampled the fit, e.g. ``"nutpie"``."""
        return str(self._idata.attrs["sampler"])

    def _group(self, group: str) -> GroupDesign:
        return validate.check_group(self.design, group)

    def _every_group(self, table: Any, **interval: Any) -> pd.DataFrame:
        """``table(group)`` of every grouping factor, stacked under a ``group`` index level."""
        if not self.design.groups:
            raise ValueError("this model has no grouping factors, so it has no cluster effects")
        parts = {g.name: table(g.name, **interval) for g in self.design.groups}
        out = pd.concat(parts, names=["group"])
        out.attrs = dict(next(iter(parts.values())).attrs)
        return out

    # ---------------------------------------------------------------- tables
    def fixef(self, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Fixed effects β (the coefficients shared by all clusters): one row per coefficient.

        Parameters
        ----------
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``coef``; columns mean, sd, hdi_low, hdi_high, r_hat, ess_bulk, ess_tail.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.fixef().index.tolist()
        ['Intercept', 'Days']
        >>> bool(9 < fit.fixef().loc["Days", "mean"] < 12)
        True
        """
        table = summarize_draws(self.posterior["beta"], ci=ci, prob=prob)
        table.index.name = "coef"
        return PosteriorTable.of(table)

    def coef_draws(self, group: str) -> xr.DataArray:
        """Draws of every cluster's own effects, dims (chain, draw, level, effect).

        Parameters
        ----------
        group : str
            A grouping factor.
        """
        raise NotImplementedError  # pragma: no cover - every kind of fit defines it

    def coef(self, group: str | None = None, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
             include_parents: bool = False) -> pd.DataFrame:
        """Cluster-specific effects (β + b for the mixed model; an effect without a fixed part is b alone),
        of one grouping factor or of every factor (``group=None``, as lme4).

        As lme4's ``coef``, a nested cluster's effects are β + its own b. With
        ``include_parents=True`` (a mixed model's fit) they are its whole line: β + the b of
        the clusters it lies in + its own b, over their effects and its own (a neuron's
        slope is its subject's), the line it is pulled toward being its parent's.

        Parameters
        ----------
        group : str, optional
            A grouping factor; None (the default) stacks every factor's table.
        ci, prob
            The interval: ``"hdi"`` (highest density) or ``"eti"`` (equal-tailed), and its probability mass.
        include_parents : bool
            The clusters' whole lines (a nested factor's): see above.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``level``, ``effect``); with ``group=None`` by (``group``, ``level``, ``effect``).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.coef("Subject").loc["308"].index.tolist()
        ['Intercept', 'Days']
        >>> fit.coef().index.names  # every grouping factor, as lme4's coef()
        FrozenList(['group', 'level', 'effect'])
        """
        if group is None:
            return self._every_group(self.coef, ci=ci, prob=prob, include_parents=include_parents)
        draws = self.coef_draws(group, include_parents=True) if include_parents else self.coef_draws(group)
        table = summarize_draws(draws, ci=ci, prob=prob)
        table.index = table.index.set_names(["level", "effect"])
        return table

    # ---------------------------------------------------------------- health
    def health_parameters(self) -> list[xr.DataArray]:
        """The draws whose R-hat and ESS :meth:`diagnostics` reports."""
        raise NotImplementedError  # pragma: no cover - every kind of fit defines it

    def diagnostics(self) -> dict[str, Any]:
        """Sampler health: divergences, max R-hat, min bulk/tail ESS, min BFMI, tree-depth hits.

        R-hat and ESS are taken over :meth:`health_parameters` (for the mixed model β, σ,
        the SDs and the correlations, not the clusters' b).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> d = fit.diagnostics()
        >>> sorted(d)
        ['divergences', 'max_r_hat', 'min_bfmi', 'min_ess_bulk', 'min_ess_tail', 'treedepth_hits']
        >>> d["divergences"]
        0
        """
        return diagnose(self.health_parameters(), self._idata["sample_stats"].to_dataset())

    def _reliability_tips(self) -> list[str]:
        return ["more draws and tuning (draws=2000, tune=2000)", "target_accept=0.95"]

    def warn_if_unreliable(self, *, what: str = "the draws", stacklevel: int = 4) -> None:
        """Warn (:class:`~lmm_bayes.errors.SamplingWarning`) on divergences, R-hat > 1.01 or bulk ESS < 400.

        Parameters
        ----------
        what : str
            What the warning says may not be reliable.
        stacklevel : int
            Passed to ``warnings.warn``, so the warning points at the user's line.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.warn_if_unreliable()  # silent: no divergences, R-hat <= 1.01, bulk ESS >= 400
        """
        problems = reliability_problems(self.diagnostics())
        if problems:
            warnings.warn(
                f"{what} may not be reliable: {', '.join(problems)}. Try {'; '.join(self._reliability_tips())}; "
                "see fit.diagnostics()",
                SamplingWarning,
                stacklevel=stacklevel,
            )

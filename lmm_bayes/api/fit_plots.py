"""The pictures of a fitted mixed model, as methods of :class:`~lmm_bayes.Fit` (a mixin of it).

Each states the keywords of the teaching stage's function it hands the fit to (and that function's
Parameters entries, :func:`~lmm_bayes.api.signatures.forwards`): predictive checks, the effects plot,
and the checks of the draws and the residuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from lmm_bayes.api.signatures import forwards
from lmm_bayes.results.residuals import residuals
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB
from lmm_bayes.teaching.check_plots import (
    plot_loo_pit,
    plot_pair,
    plot_rank,
    plot_residual_sd,
    plot_residuals,
    plot_trace,
)
from lmm_bayes.teaching.effects_plot import plot_effects
from lmm_bayes.teaching.plots import plot_ppc

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["FitPictures"]


class FitPictures:
    """The pictures of :class:`~lmm_bayes.Fit`; every method takes the fit as ``self``."""

    @forwards(plot_ppc)
    def plot_ppc(self, *, kind: Literal["density", "stat"] = "density", stat: Literal["mean", "sd"] = "mean",
                 group: str | None = None, num_samples: int = 50, prob: float = DEFAULT_PROB,
                 seed: int | None = 0) -> Figure:
        """Posterior predictive check plot; see :func:`lmm_bayes.teaching.plots.plot_ppc`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fig = fit.plot_ppc()
        >>> fig.axes[0].get_xlabel()
        'Reaction'
        """
        return plot_ppc(self, kind=kind, stat=stat, group=group, num_samples=num_samples, prob=prob, seed=seed)

    @forwards(plot_effects)
    def plot_effects(self, x: str, *, group: str | None = None, band: Literal["mean", "prediction"] = "mean",
                     ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB, n_points: int = 50, data: bool = True,
                     seed: int | None = 0) -> Figure:
        """Effects plot (brms ``conditional_effects``); see :func:`lmm_bayes.teaching.effects_plot.plot_effects`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.plot_effects("Days", group="Subject").axes[0].get_xlabel()
        'Days'
        """
        return plot_effects(self, x, group=group, band=band, ci=ci, prob=prob, n_points=n_points, data=data,
                            seed=seed)

    @forwards(plot_residuals, residuals)
    def plot_residuals(self, *, groups: Sequence[str] | None = None,
                       levels: Literal["existing", "population"] = "existing", ci: str = DEFAULT_CI,
                       prob: float = DEFAULT_PROB) -> Figure:
        """Residuals vs fitted, QQ of ε and of b; see :func:`lmm_bayes.teaching.check_plots.plot_residuals`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> len(fit.plot_residuals().axes) >= 3
        True
        """
        return plot_residuals(self, groups=groups, levels=levels, ci=ci, prob=prob)

    @forwards(plot_residual_sd)
    def plot_residual_sd(self, *, ax: Any = None) -> Figure:
        """The residual SD per level and/or category of ``sigma=``; see
        :func:`lmm_bayes.teaching.check_plots.plot_residual_sd`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.plot_residual_sd().axes[0].get_title()
        'Residual SD'
        """
        return plot_residual_sd(self, ax=ax)

    @forwards(plot_trace)
    def plot_trace(self, *, var_names: Sequence[str] | None = None) -> Figure:
        """Trace plots of the hyperparameters; see :func:`lmm_bayes.teaching.check_plots.plot_trace`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_trace()).__name__
        'Figure'
        """
        return plot_trace(self, var_names=var_names)

    @forwards(plot_rank)
    def plot_rank(self, *, var_names: Sequence[str] | None = None) -> Figure:
        """Rank plots of the hyperparameters; see :func:`lmm_bayes.teaching.check_plots.plot_rank`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_rank()).__name__
        'Figure'
        """
        return plot_rank(self, var_names=var_names)

    @forwards(plot_pair)
    def plot_pair(self, group: str | None = None) -> Figure:
        """Pair plot of a factor's SDs and correlations; see :func:`lmm_bayes.teaching.check_plots.plot_pair`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_pair("Subject")).__name__
        'Figure'
        """
        return plot_pair(self, group)

    @forwards(plot_loo_pit)
    def plot_loo_pit(self, *, seed: int | None = 0) -> Figure:
        """LOO-PIT calibration plot; see :func:`lmm_bayes.teaching.check_plots.plot_loo_pit`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_loo_pit()).__name__
        'Figure'
        """
        return plot_loo_pit(self, seed=seed)

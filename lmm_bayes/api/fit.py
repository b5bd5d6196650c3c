"""The user's fits: :class:`Fit` (a mixed model's) and :class:`PoolingFit` (a no- or complete-pooling one).

The tables are the results stage's (:class:`~lmm_bayes.results.fit.MixedModelFit`,
:class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`); the classes here add, as methods,
everything a user does with a fit that lives in its own module: saving, prediction, residuals,
shrinkage, contrasts, G and Var(y), the GLMM checks, and every picture (the teaching stage).
Each method hands the work to the function it names, which takes the fit as its first argument.
"""

from __future__ import annotations

from typing import Any, Self

import pandas as pd
import xarray as xr

from lmm_bayes.results.base import FittedModel
from lmm_bayes.results.contextual import contextual_effect
from lmm_bayes.results.contrasts import contrasts
from lmm_bayes.results.covariance import group_covariance, implied_covariance
from lmm_bayes.results.effects import conditional_effects
from lmm_bayes.results.fit import MixedModelFit
from lmm_bayes.results.glm_checks import binned_calibration, rootogram
from lmm_bayes.results.io import save
from lmm_bayes.results.pooling_fit import PoolingModelFit
from lmm_bayes.results.predict import predict, predict_summary
from lmm_bayes.results.predictive import posterior_predictive
from lmm_bayes.results.residuals import fitted, residual_acf, residuals
from lmm_bayes.results.shrinkage import shrinkage
from lmm_bayes.teaching.check_plots import (
    plot_loo_pit,
    plot_pair,
    plot_rank,
    plot_residual_sd,
    plot_residuals,
    plot_trace,
)
from lmm_bayes.teaching.effects_plot import plot_effects
from lmm_bayes.teaching.plots import plot_caterpillar, plot_ppc

__all__ = ["Fit", "PoolingFit"]


class _Saved:
    """What every user's fit does alike: come from a lower stage's fit, save itself, draw its caterpillar plot."""

    @classmethod
    def of(cls, fit: FittedModel) -> Self:
        """The user's fit of the same draws and model as a fit from a lower stage.

        A function of the results or teaching stage that fits or loads returns the stage's own
        fit (:class:`~lmm_bayes.results.fit.MixedModelFit`, a no- or complete-pooling
        :class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`); this gives it every method of
        the user's class it is called on.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> from lmm_bayes.inference.sampling import SamplerSettings
        >>> from lmm_bayes.results.fitting import fit_model
        >>> from lmm_bayes.teaching.pooling_models import fit_complete_pooling
        >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
        >>> fit = lb.Fit.of(fit_model(model, draws=200, tune=200, chains=2, seed=1, progressbar=False))
        >>> settings = SamplerSettings(draws=200, tune=200, chains=2, seed=1, progressbar=False)
        >>> pooled = lb.PoolingFit.of(fit_complete_pooling(model, "Subject", settings=settings))
        >>> type(fit).__name__, fit.posterior["beta"].shape, type(pooled).__name__, pooled.pooling
        ('Fit', (2, 200, 2), 'PoolingFit', 'complete_pooling')
        """
        return cls(idata=fit.idata, model=fit.model)

    def save(self, path: Any) -> None:
        """Write the fit to one netCDF file; see :func:`lmm_bayes.results.io.save`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleep.nc"
        >>> fit.save(path)
        >>> lb.load(path).fixef().index.tolist()
        ['Intercept', 'Days']
        """
        save(self, path)

    def plot_caterpillar(self, group: str, **kwargs: Any):
        """Caterpillar plot of every cluster's effects; see :func:`lmm_bayes.teaching.plots.plot_caterpillar`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fig = fit.plot_caterpillar("Subject")
        >>> [ax.get_title() for ax in fig.axes]
        ['Intercept']
        """
        return plot_caterpillar(self, group, **kwargs)


class Fit(_Saved, MixedModelFit):
    """A fitted mixed model: the draws (``idata``), the model, and readable summaries.

    Obtain one from :meth:`lmm_bayes.LMM.fit` or :func:`lmm_bayes.load`. The tables
    (``fixef``, ``varcorr``, ``ranef``, ``coef``, ``icc``, ``summary``, ...) are
    :class:`~lmm_bayes.results.fit.MixedModelFit`'s; the other methods hand the fit to the
    function they name.

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


    def contrasts(self, variable: str, **kwargs: Any) -> pd.DataFrame:
        """Population means of a categorical predictor's levels and their pairwise differences.

        See :func:`lmm_bayes.results.contrasts.contrasts`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("log_radon ~ C(floor) + (1 | county)", lb.datasets.load("radon")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.contrasts("floor").index.tolist()
        [('mean', '0'), ('mean', '1'), ('difference', '1 - 0')]
        """
        return contrasts(self, variable, **kwargs)

    def shrinkage(self, group: str, **kwargs: Any) -> pd.DataFrame:
        """No- vs partial-pooling estimates per cluster; see :func:`lmm_bayes.results.shrinkage.shrinkage`.

        For a GLMM on the link scale, with the model's approximate (Laplace) shrinkage factor.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.shrinkage("Subject").columns[:4].tolist()
        ['n_obs', 'no_pooling', 'no_pooling_low', 'no_pooling_high']
        """
        return shrinkage(self, group, **kwargs)

    def contextual_effect(self, within: str, between: str, **kwargs: Any) -> pd.DataFrame:
        """Between-minus-within effect; see :func:`lmm_bayes.results.contextual.contextual_effect`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> radon = lb.within_between(lb.datasets.load("radon"), "floor", by="county")
        >>> fit = lb.LMM("log_radon ~ floor_within + floor_between + (1 | county)", radon).fit(
        ...     draws=1000, tune=1000, chains=2, seed=1, progressbar=False)
        >>> fit.contextual_effect("floor_within", "floor_between").index.tolist()
        ['within', 'between', 'contextual']
        """
        return contextual_effect(self, within, between, **kwargs)

    def G(self, group: str, **kwargs: Any) -> pd.DataFrame:  # noqa: N802 - the model's own symbol
        """Posterior mean of one factor's G (or its correlations); see :func:`lmm_bayes.results.covariance.group_covariance`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.G("Subject").shape
        (2, 2)
        """
        return group_covariance(self, group, **kwargs)

    def implied_covariance(self, rows: Any, **kwargs: Any) -> pd.DataFrame:
        """Model-implied Var(y) = Z (I_J ⊗ G) Zᵀ + σ² I; see :func:`lmm_bayes.results.covariance.implied_covariance`.

        Gaussian models only: a GLMM's Var(y) has no such closed form, and the error says what to read instead.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> cov = fit.implied_covariance([0, 1, 10])  # rows 0 and 1: subject 308; row 10: subject 309
        >>> cov.shape, bool(cov.iloc[0, 1] > 0), float(cov.iloc[0, 2])
        ((3, 3), True, 0.0)
        """
        family = self.design.family
        if not family.is_gaussian:
            raise ValueError(
                f"the implied covariance of y, Z G Zᵀ + σ² I, is a Gaussian model's: for family={family.name!r} "
                "the random effects act on the link scale, so Var(y) depends on each row's mean through "
                "the inverse link and has no such closed form (nor is it the same for every draw of b). "
                "Read the covariance of the cluster effects on the link scale with fit.G(group), the "
                "latent-scale variance partition with fit.icc(), or Var(y) by simulation from "
                "fit.predict(kind='response')"
            )
        return implied_covariance(self, rows, **kwargs)

    def predict(self, data: pd.DataFrame | None = None, **kwargs: Any) -> xr.DataArray:
        """Draws of predictions; see :func:`lmm_bayes.results.predict.predict`.

        Examples
        --------
        >>> import pandas as pd, lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "a new subject"]})
        >>> fit.predict(new, levels="new", seed=1).dims
        ('chain', 'draw', 'obs')
        """
        return predict(self, data, **kwargs)

    def predict_summary(self, data: pd.DataFrame | None = None, **kwargs: Any) -> pd.DataFrame:
        """Mean and interval of predictions per row; see :func:`lmm_bayes.results.predict.predict_summary`.

        Examples
        --------
        >>> import pandas as pd, lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "a new subject"]})
        >>> fit.predict_summary(new, levels="new", seed=1).columns.tolist()
        ['mean', 'sd', 'hdi_low', 'hdi_high']
        """
        return predict_summary(self, data, **kwargs)

    def posterior_predictive(self, **kwargs: Any) -> Fit:
        """Add a posterior_predictive group; see :func:`lmm_bayes.results.predictive.posterior_predictive`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> "posterior_predictive" in fit.posterior_predictive(seed=1).idata.children
        True
        """
        return posterior_predictive(self, **kwargs)

    def rootogram(self, **kwargs: Any) -> pd.DataFrame:
        """Observed and expected frequency of each count (a GLMM of counts); see :func:`lmm_bayes.results.glm_checks.rootogram`.

        Examples
        --------
        >>> import numpy as np, pandas as pd, lmm_bayes as lb
        >>> rng = np.random.default_rng(1)
        >>> df = pd.DataFrame({"g": np.repeat(np.arange(20), 10)})
        >>> df["y"] = rng.poisson(np.exp(1 + rng.normal(0, 0.3, 20)[df["g"]]))
        >>> fit = lb.GLMM("y ~ 1 + (1 | g)", df, family="poisson").fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False, centered=True)
        >>> table = fit.rootogram(max_count=6)
        >>> int(table["observed"].sum()) <= 200
        True
        """
        return rootogram(self, **kwargs)

    def binned_calibration(self, **kwargs: Any) -> pd.DataFrame:
        """Observed vs predicted proportions by bin (a Bernoulli or binomial GLMM); see
        :func:`lmm_bayes.results.glm_checks.binned_calibration`.

        Examples
        --------
        >>> import numpy as np, pandas as pd, lmm_bayes as lb
        >>> rng = np.random.default_rng(2)
        >>> df = pd.DataFrame({"g": np.repeat(np.arange(20), 10), "x": rng.normal(size=200)})
        >>> df["y"] = rng.binomial(1, 1 / (1 + np.exp(-(df["x"] + rng.normal(0, 0.5, 20)[df["g"]]))))
        >>> fit = lb.GLMM("y ~ x + (1 | g)", df, family="bernoulli").fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> len(fit.binned_calibration(bins=5))
        5
        """
        return binned_calibration(self, **kwargs)

    def plot_ppc(self, **kwargs: Any):
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
        return plot_ppc(self, **kwargs)

    # ------------------------------------------------ fitted, residuals, effects and checks (issue 15)
    def fitted(self, **kwargs: Any) -> pd.DataFrame:
        """Posterior mean and interval of X β + Z b per fitted row; see :func:`lmm_bayes.results.residuals.fitted`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.fitted().shape
        (180, 4)
        """
        return fitted(self, **kwargs)

    def residuals(self, **kwargs: Any) -> pd.DataFrame:
        """y − fitted per row; see :func:`lmm_bayes.results.residuals.residuals`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> res = fit.residuals()
        >>> bool(((res["residual"] - (res["observed"] - res["fitted"])).abs() < 1e-9).all())
        True
        """
        return residuals(self, **kwargs)

    def residual_acf(self, **kwargs: Any) -> pd.DataFrame:
        """Autocorrelation of the standardized residuals within clusters; see
        :func:`lmm_bayes.results.residuals.residual_acf`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.residual_acf(max_lag=3, order="Days").index.tolist()
        [1, 2, 3]
        """
        return residual_acf(self, **kwargs)

    def conditional_effects(self, x: str, **kwargs: Any) -> xr.Dataset:
        """Population and per-cluster lines along ``x``; see :func:`lmm_bayes.results.effects.conditional_effects`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> sorted(fit.conditional_effects("Days", group="Subject").data_vars)
        ['cluster', 'high', 'low', 'population']
        """
        return conditional_effects(self, x, **kwargs)

    def plot_effects(self, x: str, **kwargs: Any):
        """Effects plot (brms ``conditional_effects``); see :func:`lmm_bayes.teaching.effects_plot.plot_effects`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.plot_effects("Days", group="Subject").axes[0].get_xlabel()
        'Days'
        """
        return plot_effects(self, x, **kwargs)

    def plot_residuals(self, **kwargs: Any):
        """Residuals vs fitted, QQ of ε and of b; see :func:`lmm_bayes.teaching.check_plots.plot_residuals`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> len(fit.plot_residuals().axes) >= 3
        True
        """
        return plot_residuals(self, **kwargs)

    def plot_residual_sd(self, **kwargs: Any):
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
        return plot_residual_sd(self, **kwargs)

    def plot_trace(self, **kwargs: Any):
        """Trace plots of the hyperparameters; see :func:`lmm_bayes.teaching.check_plots.plot_trace`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_trace()).__name__
        'Figure'
        """
        return plot_trace(self, **kwargs)

    def plot_rank(self, **kwargs: Any):
        """Rank plots of the hyperparameters; see :func:`lmm_bayes.teaching.check_plots.plot_rank`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_rank()).__name__
        'Figure'
        """
        return plot_rank(self, **kwargs)

    def plot_pair(self, group: str | None = None, **kwargs: Any):
        """Pair plot of a factor's SDs and correlations; see :func:`lmm_bayes.teaching.check_plots.plot_pair`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_pair("Subject")).__name__
        'Figure'
        """
        return plot_pair(self, group, **kwargs)

    def plot_loo_pit(self, **kwargs: Any):
        """LOO-PIT calibration plot; see :func:`lmm_bayes.teaching.check_plots.plot_loo_pit`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> type(fit.plot_loo_pit()).__name__
        'Figure'
        """
        return plot_loo_pit(self, **kwargs)


class PoolingFit(_Saved, PoolingModelFit):
    """A no- or complete-pooling fit, made by :func:`lmm_bayes.compare_pooling`.

    Read like a :class:`Fit`; see :class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`
    for its draws and attributes.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> cmp = lb.compare_pooling("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"),
    ...                          group="Subject", draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> fit = cmp.fits["no_pooling"]
    >>> type(fit).__name__, fit.pooling, fit.coef("Subject").shape
    ('PoolingFit', 'no_pooling', (18, 7))
    """


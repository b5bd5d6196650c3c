"""The user's fits: :class:`Fit` (a mixed model's) and :class:`PoolingFit` (a no- or complete-pooling one).

The tables are the results stage's (:class:`~lmm_bayes.results.fit.MixedModelFit`,
:class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`); the classes here add, as methods,
everything a user does with a fit that lives in its own module: saving, prediction, residuals,
shrinkage, contrasts, G and Var(y), the GLMM checks, and every picture (the teaching stage).
Each method hands the work to the function it names, which takes the fit as its first argument.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.api.fit_plots import FitPictures
from lmm_bayes.api.signatures import check_keywords, forwards
from lmm_bayes.results.base import FittedModel
from lmm_bayes.results.contextual import contextual_effect
from lmm_bayes.results.contrasts import contrasts
from lmm_bayes.results.covariance import group_covariance, implied_covariance
from lmm_bayes.results.draws import draws_table
from lmm_bayes.results.effects import conditional_effects
from lmm_bayes.results.fit import MixedModelFit
from lmm_bayes.results.glm_checks import binned_calibration, rootogram
from lmm_bayes.results.io import save
from lmm_bayes.results.pooling_fit import PoolingModelFit
from lmm_bayes.results.predict import Kind, Levels, predict, predict_summary
from lmm_bayes.results.predictive import posterior_predictive
from lmm_bayes.results.residuals import fitted, residual_acf, residuals
from lmm_bayes.results.shrinkage import shrinkage
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB
from lmm_bayes.teaching.explorer import ExplorerPage, fit_explorer
from lmm_bayes.teaching.plots import plot_caterpillar

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

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

        Parameters
        ----------
        fit : FittedModel
            A lower stage's fit; its draws and model are shared, not copied.

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

    @forwards(save)
    def save(self, path: str | os.PathLike) -> None:
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

    @forwards(plot_caterpillar)
    def plot_caterpillar(self, group: str, *, effects: str | Sequence[str] | None = None,
                         values: Literal["ranef", "coef"] = "ranef", ci: str = DEFAULT_CI,
                         prob: float = DEFAULT_PROB, sort: bool = True) -> Figure:
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
        return plot_caterpillar(self, group, effects=effects, values=values, ci=ci, prob=prob, sort=sort)


@check_keywords
class Fit(_Saved, FitPictures, MixedModelFit):
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


    @forwards(contrasts)
    def contrasts(self, variable: str, *, at: Mapping[str, Any] | None = None, ci: str = DEFAULT_CI,
                  prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return contrasts(self, variable, at=at, ci=ci, prob=prob)

    @forwards(shrinkage)
    def shrinkage(self, group: str, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return shrinkage(self, group, ci=ci, prob=prob)

    @forwards(contextual_effect)
    def contextual_effect(self, within: str, between: str, *, ci: str = DEFAULT_CI,
                          prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return contextual_effect(self, within, between, ci=ci, prob=prob)

    @forwards(group_covariance)
    def G(self, group: str, *, kind: Literal["covariance", "correlation"] = "covariance") -> pd.DataFrame:  # noqa: N802 - the model's own symbol
        """Posterior mean of one factor's G (or its correlations); see :func:`lmm_bayes.results.covariance.group_covariance`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.G("Subject").shape
        (2, 2)
        """
        return group_covariance(self, group, kind=kind)

    @forwards(implied_covariance)
    def implied_covariance(self, rows: Any, *,
                           kind: Literal["covariance", "correlation"] = "covariance") -> pd.DataFrame:
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
        return implied_covariance(self, rows, kind=kind)

    @forwards(predict)
    def predict(self, data: pd.DataFrame | None = None, *, levels: Levels = "existing", kind: Kind = "mean",
                seed: int | np.random.Generator | None = None) -> xr.DataArray:
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
        return predict(self, data, levels=levels, kind=kind, seed=seed)

    @forwards(predict, predict_summary)
    def predict_summary(self, data: pd.DataFrame | None = None, *, levels: Levels = "existing",
                        kind: Kind = "mean", seed: int | np.random.Generator | None = None,
                        ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return predict_summary(self, data, levels=levels, kind=kind, seed=seed, ci=ci, prob=prob)

    @forwards(posterior_predictive)
    def posterior_predictive(self, *, seed: int | np.random.Generator | None = None) -> Fit:
        """Add a posterior_predictive group; see :func:`lmm_bayes.results.predictive.posterior_predictive`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> "posterior_predictive" in fit.posterior_predictive(seed=1).idata.children
        True
        """
        return posterior_predictive(self, seed=seed)

    @forwards(rootogram)
    def rootogram(self, *, max_count: int | None = None, ci: str = DEFAULT_CI,
                  prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return rootogram(self, max_count=max_count, ci=ci, prob=prob)

    @forwards(binned_calibration)
    def binned_calibration(self, *, bins: int = 10, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
                           seed: int | np.random.Generator | None = None) -> pd.DataFrame:
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
        return binned_calibration(self, bins=bins, ci=ci, prob=prob, seed=seed)

    @forwards(fitted)
    def fitted(self, *, levels: Literal["existing", "population"] = "existing", ci: str = DEFAULT_CI,
               prob: float = DEFAULT_PROB) -> pd.DataFrame:
        """Posterior mean and interval of X β + Z b per fitted row; see :func:`lmm_bayes.results.residuals.fitted`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.fitted().shape
        (180, 4)
        """
        return fitted(self, levels=levels, ci=ci, prob=prob)

    @forwards(residuals)
    def residuals(self, *, levels: Literal["existing", "population"] = "existing", ci: str = DEFAULT_CI,
                  prob: float = DEFAULT_PROB) -> pd.DataFrame:
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
        return residuals(self, levels=levels, ci=ci, prob=prob)

    @forwards(residual_acf)
    def residual_acf(self, *, max_lag: int = 5, order: Any = None) -> pd.DataFrame:
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
        return residual_acf(self, max_lag=max_lag, order=order)

    @forwards(conditional_effects)
    def conditional_effects(self, x: str, *, group: str | None = None, band: Literal["mean", "prediction"] = "mean",
                            ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB, n_points: int = 50,
                            seed: int | None = 0) -> xr.Dataset:
        """Population and per-cluster lines along ``x``; see :func:`lmm_bayes.results.effects.conditional_effects`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> sorted(fit.conditional_effects("Days", group="Subject").data_vars)
        ['cluster', 'high', 'low', 'population']
        """
        return conditional_effects(self, x, group=group, band=band, ci=ci, prob=prob, n_points=n_points, seed=seed)
    @forwards(draws_table)
    def draws(self, *, b: bool = False) -> pd.DataFrame:
        """The posterior as a tidy table, one row per chain and draw (brms ``as_draws_df``).

        See :func:`lmm_bayes.results.draws.draws_table`: columns ``chain``, ``draw`` and one per
        scalar parameter (``beta[Days]``, ``sigma``, ``Subject_sd[Intercept]``, ...).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> table = fit.draws()
        >>> len(table), float(table["beta[Days]"].mean()) == float(fit.posterior["beta"].sel(coef="Days").mean())
        (1000, True)
        """
        return draws_table(self, b=b)

    def explore(self, path: str | os.PathLike | None = None) -> ExplorerPage:
        """A self-contained page to explore partial pooling in this fit (a Gaussian model with one random intercept).

        Every cluster's arrow from its own estimate to the model's (hover for its n_j, estimates
        and shrinkage factor B_j; click to load it into the sliders), and the one-cluster
        explorer of :func:`lmm_bayes.explore_pooling` started at the posterior means of τ and σ.
        Other models raise ``ValueError`` saying what to read instead
        (:func:`lmm_bayes.teaching.explorer.fit_explorer`).

        Parameters
        ----------
        path : str or pathlib.Path, optional
            Also write the page there (open it in any browser; it needs no server or network).

        Returns
        -------
        ExplorerPage
            ``.html`` is the page; in a notebook it displays itself.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> page = fit.explore()
        >>> page.html.count('"level": '), "Partial pooling of Subject" in page.html
        (18, True)
        """
        return fit_explorer(self, path)


@check_keywords
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


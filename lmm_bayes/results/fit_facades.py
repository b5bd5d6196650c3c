"""The facade methods of :class:`~lmm_bayes.Fit` whose work lives in other modules.

Shrinkage, contextual effects, G and Var(y), prediction, fitted values and residuals, the
effects plot and the checks: each method imports its module inside the call, so the
results stage does not import the teaching stage at load time (the import-linter
contract lists these imports as the facade exceptions), and ``Fit`` stays about its tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit

# mixed into Fit and documented there (the API pages list its methods under Fit)
__all__: list[str] = []


class FitFacades:
    """Methods of :class:`~lmm_bayes.Fit` that hand the work to another module (mixed into ``Fit``)."""

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
        from lmm_bayes.results.shrinkage import shrinkage

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
        from lmm_bayes.results.contextual import contextual_effect

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
        from lmm_bayes.results.covariance import group_covariance

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
        from lmm_bayes.results.covariance import implied_covariance

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
        from lmm_bayes.results.predict import predict

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
        from lmm_bayes.results.predict import predict_summary

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
        from lmm_bayes.results.predictive import posterior_predictive

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
        from lmm_bayes.results.glm_checks import rootogram

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
        from lmm_bayes.results.glm_checks import binned_calibration

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
        from lmm_bayes.teaching.plots import plot_ppc

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
        from lmm_bayes.results.residuals import fitted

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
        from lmm_bayes.results.residuals import residuals

        return residuals(self, **kwargs)

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
        from lmm_bayes.results.effects import conditional_effects

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
        from lmm_bayes.teaching.effects_plot import plot_effects

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
        from lmm_bayes.teaching.check_plots import plot_residuals

        return plot_residuals(self, **kwargs)

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
        from lmm_bayes.teaching.check_plots import plot_trace

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
        from lmm_bayes.teaching.check_plots import plot_rank

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
        from lmm_bayes.teaching.check_plots import plot_pair

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
        from lmm_bayes.teaching.check_plots import plot_loo_pit

        return plot_loo_pit(self, **kwargs)

"""Fitted values and residuals of the fitted rows, as brms' ``fitted()`` and ``residuals()`` give them.

* :func:`fitted_draws`: ``mu = X beta + Z b`` on every fitted row for every posterior
  draw (the clusters' own b, or ``X beta`` alone with ``levels="population"``);
* :func:`fitted`: its posterior mean, SD and HDI per row;
* :func:`residuals`: ``y - mu`` per row: mean, SD and HDI over the draws, the fitted
  mean beside it, and the residual divided by the posterior mean of sigma.

The residual's mean is ``y`` minus the fitted mean (the mean is linear), so a
residual-versus-fitted plot reads both columns from one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import SIGMA
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit

__all__ = ["FITTED_LEVELS", "fitted", "fitted_draws", "residuals"]

#: what ``levels`` may be: the clusters' own effects, or the fixed effects alone
FITTED_LEVELS = ("existing", "population")


def fitted_draws(fit: Fit, *, levels: Literal["existing", "population"] = "existing") -> xr.DataArray:
    """Draws of the expected response on every fitted row: dims (chain, draw, obs).

    ``levels="existing"`` gives ``X beta + Z b`` (each row's own clusters);
    ``"population"`` gives ``X beta``. ``obs`` holds the data's row labels.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fitted_draws(fit).shape
    (2, 500, 180)
    """
    fit = check_fit(fit)
    validate.check_choice(levels, FITTED_LEVELS, "levels")
    return predict(fit, None, levels=levels, kind="mean")  # the fitted rows: the design's own X and Z


def fitted(
    fit: Fit, *, levels: Literal["existing", "population"] = "existing", hdi_prob: float = 0.94
) -> pd.DataFrame:
    """Posterior mean, SD and HDI of the expected response on every fitted row (brms ``fitted``).

    Parameters
    ----------
    fit : Fit
    levels : {"existing", "population"}
        With the clusters' own effects (``X beta + Z b``, default) or without them (``X beta``).
    hdi_prob : float

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted data; columns ``mean``, ``sd``, ``hdi_low``, ``hdi_high``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> table = fit.fitted()
    >>> table.shape, table.columns.tolist()
    ((180, 4), ['mean', 'sd', 'hdi_low', 'hdi_high'])
    """
    hdi_prob = validate.check_probability(hdi_prob, "hdi_prob")
    draws = fitted_draws(fit, levels=levels)
    table = summarize_draws(draws, hdi_prob=hdi_prob, diagnostics=False)
    table.index = fit.design.index
    table.attrs.update({"levels": levels, "hdi_prob": hdi_prob})
    return table


def residuals(
    fit: Fit, *, levels: Literal["existing", "population"] = "existing", hdi_prob: float = 0.94
) -> pd.DataFrame:
    """Residuals ``y - mu`` of every fitted row, with the fitted value beside them (brms ``residuals``).

    Parameters
    ----------
    fit : Fit
    levels : {"existing", "population"}
        Residuals from ``X beta + Z b`` (the conditional residuals, default) or from
        ``X beta`` (the marginal residuals, which still hold the cluster effects).
    hdi_prob : float

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted data. ``observed`` (y), ``fitted`` (the posterior mean of
        mu), ``residual`` (the posterior mean of y - mu, equal to observed - fitted),
        ``sd``, ``hdi_low``, ``hdi_high`` (of y - mu over the draws) and ``standardized``
        (``residual`` divided by the posterior mean of sigma).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> res = fit.residuals()
    >>> res.columns.tolist()
    ['observed', 'fitted', 'residual', 'sd', 'hdi_low', 'hdi_high', 'standardized']
    >>> bool(abs(res["residual"].mean()) < 1)
    True
    """
    hdi_prob = validate.check_probability(hdi_prob, "hdi_prob")
    mu = fitted_draws(fit, levels=levels)
    y = fit.design.y
    resid = (xr.DataArray(y, dims="obs", coords={"obs": mu["obs"].values}) - mu).transpose("chain", "draw", "obs")
    spread = summarize_draws(resid, hdi_prob=hdi_prob, diagnostics=False)
    mu_mean = mu.mean(("chain", "draw")).values
    sigma = float(fit.posterior[SIGMA].mean())
    table = pd.DataFrame(
        {
            "observed": y,
            "fitted": mu_mean,
            "residual": spread["mean"].to_numpy(),
            "sd": spread["sd"].to_numpy(),
            "hdi_low": spread["hdi_low"].to_numpy(),
            "hdi_high": spread["hdi_high"].to_numpy(),
        },
        index=fit.design.index,
    )
    table["standardized"] = table["residual"] / sigma
    table.attrs.update({"levels": levels, "hdi_prob": hdi_prob, "sigma": sigma, "response": fit.design.response})
    return table

"""The residual structure of a fit with ``sigma=`` or ``ar=`` (:mod:`lmm_bayes.spec.residual`): its tables,
and the one refusal every result that assumes ``sigma^2 I`` makes.

``sigma_j = sigma exp(u_j)`` per level (:func:`residual_sd`), ``rho`` and ``tau`` (:func:`residual_table`);
:func:`refuse_structured` is called by the results that assume one residual SD and independent rows
(LOO and the pointwise log-likelihood, R², the ICC and variance partition, implied covariance, posterior
predictive draws, predictions of the response, shrinkage factors), so none of them gives a silently
wrong number for such a fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import SIGMA
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, summarize_draws
from lmm_bayes.spec.residual import RHO, SIGMA_SD, SIGMA_U

__all__ = ["refuse_structured", "residual_sd", "residual_table", "row_sigma", "sigma_draws"]


def refuse_structured(design: Any, what: str) -> None:
    """``ValueError`` when ``design`` has ``sigma=`` or ``ar=``: ``what`` assumes one sigma and independent rows."""
    res = getattr(design, "residual", None)
    if res is None:
        return
    given = ", ".join(f"{k}={v!r}" for k, v in res.spec.kwargs().items())
    raise ValueError(f"{what} assumes one residual SD and independent rows, and this model has {given}: it is not "
                     "computed for such a model yet (fit.residual_sd() and fit.varcorr() give the residual "
                     "structure; fit.predict(kind='mean') and the tables of beta and b use it)")


def sigma_draws(fit: Any) -> xr.DataArray:
    """``sigma_j`` per draw and level of the residual factor (chain, draw, level); one level without ``sigma=``."""
    post, res = fit.posterior, fit.design.residual
    sigma = post[SIGMA]
    if res is None or not res.sigma_by:
        return sigma.expand_dims({"level": ["(all)"]}, axis=-1)
    return (sigma * np.exp(post[SIGMA_U])).transpose("chain", "draw", res.group)


def row_sigma(fit: Any) -> np.ndarray:
    """The posterior mean of each fitted row's residual SD (its level's ``sigma_j``; Var(e_i) under a
    stationary AR(1) too)."""
    res = fit.design.residual
    draws = sigma_draws(fit).mean(("chain", "draw")).values
    if res is None or not res.sigma_by:
        return np.full(fit.design.n, float(draws[0]))
    return draws[fit.design.group(res.group).codes]


def residual_sd(fit: Any, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """The residual SD of every level, ``sigma_j = sigma exp(u_j)``, with its rows and interval.

    Indexed by the level (one row ``"(all)"`` without ``sigma=``); columns ``n`` (rows), then the
    summary (mean, sd, interval, R-hat, ESS) and ``ratio`` (the posterior mean of ``sigma_j / sigma``,
    ``sigma`` the SD at ``u = 0``, the median level under the prior).
    """
    res = fit.design.residual
    draws = sigma_draws(fit)
    table = summarize_draws(draws, ci=ci, prob=prob)
    if res is not None and res.sigma_by:
        g = fit.design.group(res.group)
        table.insert(0, "n", g.counts())
        table["ratio"] = np.exp(fit.posterior[SIGMA_U]).mean(("chain", "draw")).values
    else:
        table.insert(0, "n", fit.design.n)
        table["ratio"] = 1.0
    table.index.name = res.group if res is not None and res.sigma_by else "level"
    return table


def residual_table(fit: Any, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """Rows ``("Residual", "sd(log sigma)")`` (tau) and ``("Residual", "rho")`` (AR(1)) where the model has them."""
    res = fit.design.residual
    rows = [(t, v) for t, v, on in (("sd(log sigma)", SIGMA_SD, res is not None and res.sigma_by),
                                    ("rho", RHO, res is not None and res.ar)) if on]
    if not rows:
        return pd.DataFrame()
    draws = xr.concat([fit.posterior[v] for _, v in rows], dim="parameter").assign_coords(
        parameter=[t for t, _ in rows]).transpose("chain", "draw", "parameter")
    table = summarize_draws(draws, ci=ci, prob=prob)
    table.index = pd.MultiIndex.from_tuples([("Residual", t) for t, _ in rows], names=["group", "term"])
    return table

"""The residual structure of a fit with ``sigma=`` or ``ar=`` (:mod:`lmm_bayes.spec.residual`): its tables,
and the one refusal every result that assumes ``sigma^2 I`` makes.

``sigma_j = sigma exp(u_j)`` per level (:func:`residual_sd`), ``rho`` and ``tau`` (:func:`residual_table`);
:func:`refuse_structured` is called by the results that assume one residual SD and independent rows
(R², the ICC and variance partition, implied covariance, posterior predictive draws, predictions of the
response, shrinkage factors; LOO under ``ar=`` only: with ``sigma=`` alone the rows are independent given
b and the pointwise log-likelihood uses each row's SD), so none of them gives a silently wrong number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import SIGMA
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, summarize_draws
from lmm_bayes.spec.residual import RHO, SIGMA_BETA, SIGMA_COEF, SIGMA_SD, SIGMA_U

__all__ = ["refuse_structured", "residual_sd", "residual_table", "row_sigma", "sigma_draws"]


def refuse_structured(design: Any, what: str, *, ar_only: bool = False) -> None:
    """``ValueError`` when ``design`` has ``sigma=`` or ``ar=`` (``ar_only``: ``ar=``): ``what`` assumes one sigma
    and independent rows (``ar_only``: independent rows given b)."""
    res = getattr(design, "residual", None)
    if res is None or (ar_only and not res.ar):
        return
    given = ", ".join(f"{k}={v!r}" for k, v in res.spec.kwargs().items())
    raise ValueError(f"{what} assumes one residual SD and independent rows, and this model has {given}: it is not "
                     "computed for such a model yet (fit.residual_sd() and fit.varcorr() give the residual "
                     "structure; fit.predict(kind='mean') and the tables of beta and b use it)")


def _log_ratio(fit: Any) -> xr.DataArray:
    """``log(sigma_(j,c) / sigma) = u_j + gamma_c`` per draw, on the residual factor's dim and/or ``category``."""
    post, res = fit.posterior, fit.design.residual
    out = xr.zeros_like(post[SIGMA])
    if res is not None and res.sigma_by:
        out = out + post[SIGMA_U]
    if res is not None and res.sigma_fixed:
        gamma = post[SIGMA_BETA].rename({SIGMA_COEF: "category"})
        zero = xr.zeros_like(gamma.isel(category=[0])).assign_coords(category=[res.categories[0]])
        out = out + xr.concat([zero, gamma], dim="category")
    if res is None or not (res.sigma_by or res.sigma_fixed):
        out = out.expand_dims({"level": ["(all)"]}, axis=-1)
    return out.transpose("chain", "draw", ...)


def sigma_draws(fit: Any) -> xr.DataArray:
    """The residual SD per draw and level of the residual factor and/or category (``sigma=``'s terms)."""
    return (fit.posterior[SIGMA] * np.exp(_log_ratio(fit))).transpose("chain", "draw", ...)


def row_sigma(fit: Any) -> np.ndarray:
    """The posterior mean of each fitted row's residual SD (its level's and category's ``sigma``; Var(e_i)
    under a stationary AR(1) too)."""
    res, d = fit.design.residual, fit.design
    mean = sigma_draws(fit).mean(("chain", "draw"))
    if res is None or not (res.sigma_by or res.sigma_fixed):
        return np.full(d.n, float(mean.values[0]))
    index = {}
    if res.sigma_by:
        index[res.group] = xr.DataArray(d.group(res.group).codes, dims="row")
    if res.sigma_fixed:
        index["category"] = xr.DataArray(res.category, dims="row")
    return mean.isel(index).values


def residual_sd(fit: Any, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """The residual SD of every level (``sigma="~ (1 | g)"``) and/or category (``sigma="~ cond"``).

    Indexed by the level, the category, or both (one row ``"(all)"`` without either); columns ``n``
    (rows), then the summary (mean, sd, interval, R-hat, ESS) and ``ratio`` (the posterior mean of
    ``sigma_(j,c) / sigma``, ``sigma`` the SD of the reference category at ``u = 0``).
    """
    res, d = fit.design.residual, fit.design
    draws = sigma_draws(fit)
    table = summarize_draws(draws, ci=ci, prob=prob)
    dims = [x for x in draws.dims if x not in ("chain", "draw")]
    by = {"level": np.zeros(d.n, dtype=np.int64)}
    if res is not None and res.sigma_by:
        by = {res.group: d.group(res.group).codes}
    if res is not None and res.sigma_fixed:
        by = {**(by if res.sigma_by else {}), "category": res.category}
    sizes = [draws.sizes[x] for x in dims]
    flat = np.ravel_multi_index([by[x] for x in dims], sizes)
    table.insert(0, "n", np.bincount(flat, minlength=int(np.prod(sizes))))
    table["ratio"] = np.exp(_log_ratio(fit)).mean(("chain", "draw")).values.ravel()
    return table


def residual_table(fit: Any, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """Rows ``("Residual", "log(sigma[c] / sigma[ref])")`` per category, ``("Residual", "sd(log sigma)")`` (tau)
    and ``("Residual", "rho")`` (AR(1)) where the model has them."""
    res, post = fit.design.residual, fit.posterior
    parts = []
    if res is not None and res.sigma_fixed:  # one row per category but the reference
        parts += [(f"log(sigma[{c}] / sigma[{res.categories[0]}])", post[SIGMA_BETA].sel({SIGMA_COEF: c}, drop=True))
                  for c in res.categories[1:]]
    parts += [(t, post[v]) for t, v, on in (("sd(log sigma)", SIGMA_SD, res is not None and res.sigma_by),
                                            ("rho", RHO, res is not None and res.ar)) if on]
    rows = [t for t, _ in parts]
    if not rows:
        return pd.DataFrame()
    draws = xr.concat([v for _, v in parts], dim="parameter").assign_coords(
        parameter=rows).transpose("chain", "draw", "parameter")
    table = summarize_draws(draws, ci=ci, prob=prob)
    table.index = pd.MultiIndex.from_tuples([("Residual", t) for t in rows], names=["group", "term"])
    return table

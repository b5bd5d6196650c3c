"""Fitted values and residuals of the fitted rows, as brms' ``fitted()`` and ``residuals()`` give them.

* :func:`fitted_draws`: ``mu = X beta + Z b`` on every fitted row for every posterior
  draw (the clusters' own b, or ``X beta`` alone with ``levels="population"``);
* :func:`fitted`: its posterior mean, SD and HDI per row;
* :func:`residuals`: ``y - mu`` per row: mean, SD and HDI over the draws, the fitted
  mean beside it, and the residual divided by the posterior mean of sigma (of the row's own
  sigma with ``sigma=``);
* :func:`residual_acf`: their autocorrelation within clusters over the trials' order.

For a generalized model (:class:`~lmm_bayes.GLMM`) ``mu`` is the expected response of the
row, ``E[y] = g⁻¹(eta)`` (times the trials for binomial data, so it is on the scale of
the successes), and ``standardized`` is the Pearson residual, the posterior mean of
``(y - mu) / sqrt(Var(y | mu))`` with the family's variance: ``mu`` (Poisson),
``mu + mu² / alpha`` (negative binomial), ``n p (1 - p)`` (Bernoulli, binomial).

The residual's mean is ``y`` minus the fitted mean (the mean is linear), so a
residual-versus-fitted plot reads both columns from one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import xarray as xr

import numpy as np

from lmm_bayes.inference.layout import SIGMA
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predict import predict
from lmm_bayes.results.residual_structure import row_sigma
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_columns, summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["FITTED_LEVELS", "fitted", "fitted_draws", "residual_acf", "residuals"]

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
    mu = predict(fit, None, levels=levels, kind="mean")  # the fitted rows: the design's own X and Z
    trials = fit.design.trials
    return mu if trials is None else mu * xr.DataArray(trials, dims="obs", coords={"obs": mu["obs"].values})


def fitted(
    fit: Fit, *, levels: Literal["existing", "population"] = "existing", ci: str = DEFAULT_CI,
    prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    """Posterior mean, SD and interval of the expected response on every fitted row (brms ``fitted``).

    Parameters
    ----------
    fit : Fit
    levels : {"existing", "population"}
        With the clusters' own effects (``X beta + Z b``, default) or without them (``X beta``).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted data; columns ``mean``, ``sd``, ``{ci}_low``, ``{ci}_high``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> table = fit.fitted()
    >>> table.shape, table.columns.tolist()
    ((180, 4), ['mean', 'sd', 'hdi_low', 'hdi_high'])
    """
    ci, prob = check_interval(ci, prob)
    draws = fitted_draws(fit, levels=levels)
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    table.index = fit.design.index
    table.attrs.update({"levels": levels})
    return table


def residuals(
    fit: Fit, *, levels: Literal["existing", "population"] = "existing", ci: str = DEFAULT_CI,
    prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    """Residuals ``y - mu`` of every fitted row, with the fitted value beside them (brms ``residuals``).

    Parameters
    ----------
    fit : Fit
    levels : {"existing", "population"}
        Residuals from ``X beta + Z b`` (the conditional residuals, default) or from
        ``X beta`` (the marginal residuals, which still hold the cluster effects).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed like the fitted data. ``observed`` (y), ``fitted`` (the posterior mean of
        mu), ``residual`` (the posterior mean of y - mu, equal to observed - fitted),
        ``sd``, ``{ci}_low``, ``{ci}_high`` (of y - mu over the draws) and ``standardized``
        (``residual`` divided by the posterior mean of sigma; for a GLMM the Pearson
        residual, module docstring).

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
    ci, prob = check_interval(ci, prob)
    mu = fitted_draws(fit, levels=levels)
    y = fit.design.y
    resid = (xr.DataArray(y, dims="obs", coords={"obs": mu["obs"].values}) - mu).transpose("chain", "draw", "obs")
    spread = summarize_draws(resid, ci=ci, prob=prob, diagnostics=False)
    low, high = interval_columns(ci)
    mu_mean = mu.mean(("chain", "draw")).values
    family = fit.design.family
    if family.is_gaussian and fit.design.residual is not None:  # each row's sigma_j (Var e_i under AR(1) too)
        sigma = float(fit.posterior[SIGMA].mean())
        standardized = spread["mean"].to_numpy() / row_sigma(fit)
    elif family.is_gaussian:
        sigma = float(fit.posterior[SIGMA].mean())
        standardized = spread["mean"].to_numpy() / sigma
    else:
        sigma = float("nan")
        standardized = (resid / np.sqrt(_variance(fit, mu))).mean(("chain", "draw")).values
    table = pd.DataFrame(
        {
            "observed": y,
            "fitted": mu_mean,
            "residual": spread["mean"].to_numpy(),
            "sd": spread["sd"].to_numpy(),
            low: spread[low].to_numpy(),
            high: spread[high].to_numpy(),
        },
        index=fit.design.index,
    )
    table["standardized"] = standardized
    table.attrs.update({"levels": levels, "interval": spread.attrs["interval"], "sigma": sigma, "response": fit.design.response})
    return table


def _variance(fit: Fit, mu: xr.DataArray) -> xr.DataArray:
    """Var(y | mu) per draw and row for a generalized model's expected responses ``mu``."""
    family = fit.design.family
    aux = fit.posterior[family.aux].transpose("chain", "draw") if family.aux else None
    n = xr.DataArray(np.ones(fit.design.n) if fit.design.trials is None else fit.design.trials,
                     dims="obs", coords={"obs": mu["obs"].values})
    return family.variance(mu, aux, n)


def residual_acf(fit: Fit, *, max_lag: int = 5, order: Any = None) -> pd.DataFrame:
    """Autocorrelation of the standardized residuals within clusters, over the rows' order (issue 31's check).

    The conditional residuals ``y - (X beta + Z b)`` (posterior means) of each cluster of the model's one
    grouping factor, divided by each row's residual SD, sorted by the ordering column: ``ar=``'s, or
    ``order`` (a column of the fitted data, or one value per fitted row) for a fit without ``ar=`` —
    the check that says whether ``ar=`` is needed.

    Parameters
    ----------
    max_lag : int
        Lags 1 to ``max_lag``, in rows of the sorted cluster (a gap in the order counts as one step).
    order : str or array-like, optional
        Without ``ar=``: the column (or values) that orders the rows within each cluster.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``lag``: ``standardized`` (the mean over clusters of the lag's autocorrelation),
        ``clusters`` (those with more than ``lag + 1`` rows); with ``ar=`` also ``innovations`` (the same
        for ``(r_i - phi_i r_(i-1)) / sqrt(1 - phi_i^2)``, ``phi_i = rho^gap`` at rho's posterior mean: near 0
        when AR(1) describes the residuals) and ``ar1`` (rho^lag, what AR(1) predicts for ``standardized``
        with unit gaps).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> df = lb.datasets.load("sleepstudy")
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", df).fit(draws=300, tune=300, chains=2, seed=1,
    ...                                                        progressbar=False)
    >>> acf = fit.residual_acf(max_lag=2, order="Days")
    >>> acf.columns.tolist(), acf.index.tolist()
    (['standardized', 'clusters'], [1, 2])
    """
    fit = check_fit(fit)
    max_lag = validate.check_positive_int(max_lag, "max_lag")
    d, res = fit.design, fit.design.residual
    if len(d.groups) != 1:
        raise ValueError(f"residual_acf orders rows within the clusters of one grouping factor; this model has "
                         f"{[g.name for g in d.groups]}")
    codes = d.groups[0].codes
    table = residuals(fit)
    z = table["standardized"].to_numpy()  # by each row's own sigma under sigma=
    if res is not None and res.ar:
        if order is not None:
            raise ValueError(f"order= is for a fit without ar=; this fit orders its rows by {res.spec.ar_time!r}")
        sort, gap = res.order, res.gap
    else:
        if order is None:
            raise ValueError("residual_acf needs the order of the rows within each cluster: give order='trial' (a "
                             "column of the fitted data) or one value per row, or fit with ar='trial | g'")
        values = np.asarray(d.data[order] if isinstance(order, str) and order in d.data else order, dtype=float)
        if values.shape != (d.n,):
            raise ValueError(f"order must name a column of the fitted data {list(d.data.columns)} or hold one value "
                             f"per fitted row ({d.n}), got {order!r}")
        sort, gap = np.lexsort((values, codes)), None
    series = {"standardized": z}
    if gap is not None:
        rho = float(fit.posterior["rho"].mean())
        zs, gs = z[sort], gap[sort]
        phi = np.where(gs > 0, rho ** gs.astype(float), 0.0)
        prev = np.concatenate([[0.0], zs[:-1]])
        series["innovations"] = np.empty_like(z)
        series["innovations"][sort] = (zs - phi * prev) / np.sqrt(1 - phi**2)
    cs = codes[sort]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    ends = np.r_[starts[1:], len(cs)]
    out: dict[str, list[float]] = {k: [] for k in series}
    counts = []
    for lag in range(1, max_lag + 1):
        long = [(a, b) for a, b in zip(starts, ends) if b - a > lag + 1]
        counts.append(len(long))
        for name, values in series.items():
            vs = values[sort]
            acfs = []
            for a, b in long:
                x = vs[a:b] - vs[a:b].mean()
                acfs.append(float((x[lag:] * x[:-lag]).sum() / (x * x).sum()))
            out[name].append(float(np.mean(acfs)) if acfs else float("nan"))
    frame = pd.DataFrame({"standardized": out["standardized"], "clusters": counts},
                         index=pd.Index(range(1, max_lag + 1), name="lag"))
    if gap is not None:
        frame.insert(1, "innovations", out["innovations"])
        frame["ar1"] = float(fit.posterior["rho"].mean()) ** frame.index.to_numpy()
    return frame

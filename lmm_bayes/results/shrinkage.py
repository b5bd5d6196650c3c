"""Shrinkage: how far each cluster's partial-pooling estimate moved from its own estimate.

The no-pooling value is the cluster's own least-squares estimate, the population value
the fixed effect; the shrinkage factor is 0 (not moved) to 1 (moved all the way).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from lmm_bayes.results.fit import Fit, check_fit
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover

    from lmm_bayes.spec.design import Design, GroupDesign

__all__ = ["ESTIMATE_COLUMNS", "POOLINGS", "shrinkage"]

#: The three poolings, in the order of the estimates' columns.
POOLINGS = ("no_pooling", "partial_pooling", "complete_pooling")

#: Columns of :attr:`lmm_bayes.teaching.pooling.PoolingComparison.estimates` and of :func:`shrinkage`.
ESTIMATE_COLUMNS = [
    "n_obs",
    *(f"{p}{suffix}" for p in POOLINGS for suffix in ("", "_low", "_high")),
    "population",
    "shrinkage",
    "note",
]


# ====================================================================== checks


def _check_coef_name(name: Any, columns: Sequence[str], arg: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{arg} must be a fixed effect's name (a string), got {type(name).__name__}")
    if name not in columns:
        close = difflib.get_close_matches(name, list(columns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{arg}={name!r} is not a fixed effect of the model{hint}; fixed effects: {list(columns)}"
        )
    return name


def _check_positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


# ====================================================================== small statistics


def _mean_hdi(da: xr.DataArray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and HDI bounds over (chain, draw), as arrays of the remaining dims."""
    hdi = az.hdi(da, prob=prob, dim=["chain", "draw"])
    return (
        da.mean(("chain", "draw")).values,
        hdi.sel(ci_bound="lower").values,
        hdi.sel(ci_bound="upper").values,
    )


def _normal_equations(g: GroupDesign) -> np.ndarray:
    """Per-cluster ``Z_jᵀ Z_j``, shape (levels, effects, effects)."""
    A = np.zeros((g.n_levels, g.n_effects, g.n_effects))
    np.add.at(A, g.codes, g.Z[:, :, None] * g.Z[:, None, :])
    return A


def _identified(g: GroupDesign, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-inverses of ``Z_jᵀZ_j``, which effects each cluster identifies, and a note per (level, effect).

    Effect k is identified by cluster j's own data when ``e_k`` lies in the row
    space of ``Z_j`` (one observation cannot identify a slope; nor can a
    cluster in which the slope's variable never changes).
    """
    Ainv = np.linalg.pinv(A, rcond=1e-10, hermitian=True)
    P = Ainv @ A
    ok = np.all(np.abs(P - np.eye(g.n_effects)) < 1e-6, axis=2)
    n = g.counts()
    notes = np.full(ok.shape, "", dtype=object)
    for j, k in zip(*np.nonzero(~ok)):
        if n[j] < g.n_effects:
            notes[j, k] = (
                f"not identified by the cluster's own data: {n[j]} observation{'s' if n[j] != 1 else ''} "
                f"for {g.n_effects} effects"
            )
        else:
            notes[j, k] = (
                f"not identified by the cluster's own data: {g.effects[k]} does not vary apart from "
                "the other effects within the cluster"
            )
    return Ainv, ok, notes


def _shrinkage_factor(no: np.ndarray, partial: np.ndarray, population: np.ndarray) -> np.ndarray:
    """(no − partial) / (no − population); NaN where no pooling is missing or equals the population."""
    gap = no - population
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (no - partial) / gap
    tiny = 1e-12 * (1.0 + np.abs(population))
    return np.where(np.isfinite(no) & (np.abs(gap) > tiny), out, np.nan)


def _population(fit_beta_mean: pd.Series, effects: Sequence[str]) -> np.ndarray:
    """The population value of each effect: its fixed effect, 0 where it has no fixed part."""
    return np.array([float(fit_beta_mean.get(e, 0.0)) for e in effects])


def _estimates_table(
    g: GroupDesign,
    group: str,
    *,
    no: tuple[np.ndarray, np.ndarray, np.ndarray],
    partial: tuple[np.ndarray, np.ndarray, np.ndarray],
    complete: tuple[np.ndarray, np.ndarray, np.ndarray],
    population: np.ndarray,
    notes: np.ndarray,
    intervals: str,
) -> pd.DataFrame:
    J, q = g.n_levels, g.n_effects
    pop = np.broadcast_to(population, (J, q))
    cols: dict[str, Any] = {"n_obs": np.repeat(g.counts(), q)}
    for name, (m, lo, hi) in zip(POOLINGS, (no, partial, complete)):
        cols[name] = np.broadcast_to(m, (J, q)).ravel().astype(float)
        cols[f"{name}_low"] = np.broadcast_to(lo, (J, q)).ravel().astype(float)
        cols[f"{name}_high"] = np.broadcast_to(hi, (J, q)).ravel().astype(float)
    cols["population"] = pop.ravel().astype(float)
    cols["shrinkage"] = _shrinkage_factor(cols["no_pooling"], cols["partial_pooling"], cols["population"])
    cols["note"] = notes.ravel().astype(str)
    index = pd.MultiIndex.from_product([list(g.levels), list(g.effects)], names=["level", "effect"])
    table = pd.DataFrame(cols, index=index)[ESTIMATE_COLUMNS]
    table.attrs["group"] = group
    table.attrs["intervals"] = intervals
    return table


# ====================================================================== shrinkage for one fit


def shrinkage(fit: Fit, group: str, *, hdi_prob: float = 0.94) -> pd.DataFrame:
    """No-, partial- and complete-pooling estimates of every cluster's effects, and the shrinkage.

    * **no pooling**: the cluster's own least-squares estimate of its effects,
      with everything else in the model (fixed effects that do not vary by
      ``group``, other grouping factors) held at the fit's posterior means.
      Where the cluster's own data cannot identify an effect (one observation
      for a slope; a slope whose variable never changes in the cluster) the
      estimate is NaN and ``note`` says why. Its interval is the normal
      interval with the fit's residual SD.
    * **partial pooling**: the fit's posterior of β + b (mean and HDI).
    * **complete pooling**: ordinary least squares of the fixed part on all rows
      ignoring the clusters (t interval); an effect without a fixed part is 0.

    ``shrinkage`` is how far the partial-pooling estimate moved from the
    no-pooling estimate toward the population value (the fixed effect):
    ``(no_pooling − partial_pooling) / (no_pooling − population)``, 0 for none
    and 1 for all. With one effect per cluster it lies in [0, 1] up to Monte
    Carlo error (clusters whose own estimate is close to the population value
    give unstable ratios); with correlated effects a matrix shrinks the vector,
    so one coordinate can move outside [0, 1].

    Parameters
    ----------
    fit : Fit
    group : str
        The grouping factor, e.g. ``"Subject"``.
    hdi_prob : float
        Coverage of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``level``, ``effect``); columns :data:`ESTIMATE_COLUMNS`:
        ``n_obs``, ``no_pooling``, ``no_pooling_low``, ``no_pooling_high``, the
        same for ``partial_pooling`` and ``complete_pooling``, ``population``,
        ``shrinkage``, ``note``.

    Raises
    ------
    TypeError
        ``fit`` is not a Fit, or ``group`` is not a string.
    ValueError
        ``group`` is not a grouping factor of the model.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> table = fit.shrinkage("Subject")
    >>> int(table.loc[("308", "Intercept"), "n_obs"])
    10
    >>> bool(0 < table["shrinkage"].median() < 1)
    True
    """
    check_fit(fit)
    hdi_prob = validate.check_probability(hdi_prob, "hdi_prob")
    design = fit.design
    g = validate.check_group(design, group)
    post = fit.posterior
    beta = pd.Series(post["beta"].mean(("chain", "draw")).values, index=list(design.X_columns), dtype=float)

    # the cluster's own least squares, everything else held at the posterior means
    shared = [k for k, c in enumerate(design.X_columns) if c not in g.effects]
    offset = design.X[:, shared] @ beta.iloc[shared].to_numpy() if shared else np.zeros(design.n)
    for h in design.groups:
        if h.name != g.name:
            b = post[f"{h.name}_b"].mean(("chain", "draw")).values
            offset = offset + np.sum(h.Z * b[h.codes], axis=1)
    r = design.y - offset
    A = _normal_equations(g)
    c = np.zeros((g.n_levels, g.n_effects))
    np.add.at(c, g.codes, g.Z * r[:, None])
    Ainv, ok, notes = _identified(g, A)
    est = np.einsum("jkl,jl->jk", Ainv, c)
    sigma = float(post["sigma"].mean())
    z = stats.norm.ppf(0.5 + hdi_prob / 2)
    se = sigma * np.sqrt(np.clip(np.diagonal(Ainv, axis1=1, axis2=2), 0, None))
    est = np.where(ok, est, np.nan)
    no = (est, np.where(ok, est - z * se, np.nan), np.where(ok, est + z * se, np.nan))

    partial = _mean_hdi(fit.coef_draws(g.name), hdi_prob)
    complete = _ols_coefficients(design, g.effects, hdi_prob)
    return _estimates_table(
        g,
        g.name,
        no=no,
        partial=partial,
        complete=complete,
        population=_population(beta, g.effects),
        notes=notes,
        intervals=(
            f"{hdi_prob:.0%}: no pooling normal interval with the fitted residual SD; partial pooling HDI; "
            "complete pooling OLS t interval"
        ),
    )


def _ols_coefficients(design: Design, effects: Sequence[str], prob: float):
    """OLS of y on X ignoring the clusters: estimate and t interval per effect (0 if no fixed part)."""
    X, y = design.X, design.y
    q = len(effects)
    m, lo, hi = np.zeros(q), np.zeros(q), np.zeros(q)
    if X.shape[1] == 0:
        return m, lo, hi
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = X.shape[0] - X.shape[1]
    if dof > 0:
        s2 = float(np.sum((y - X @ coef) ** 2) / dof)
        se = np.sqrt(s2 * np.diag(np.linalg.pinv(X.T @ X)))
        t = stats.t.ppf(0.5 + prob / 2, dof)
    else:
        se, t = np.full(X.shape[1], np.nan), np.nan
    for k, e in enumerate(effects):
        if e in design.X_columns:
            j = design.X_columns.index(e)
            m[k], lo[k], hi[k] = coef[j], coef[j] - t * se[j], coef[j] + t * se[j]
    return m, lo, hi

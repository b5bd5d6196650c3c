"""Condition means and pairwise contrasts of a categorical predictor, at the population level.

What emmeans and marginaleffects give an lme4 user, on the posterior draws: the expected
response at each level of a categorical predictor (a "marginal mean": the fixed effects
alone, ``x β``, as for an average cluster) and every pairwise difference between levels,
each with its posterior interval. The answer does not depend on the coding (treatment or
sum, :data:`lmm_bayes.spec.formula.CODINGS`), which only changes what the coefficients mean.

The reference grid, as emmeans builds it: every level of the predictor, crossed with every
level of the other categorical predictors (averaged with equal weights), with the numeric
predictors at their mean over the fitted rows. ``at=`` fixes any of them instead (a
value for a numeric column, one level for a categorical one).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations, product
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.results.fit import at_number, check_fit, data_range
from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_label, summarize_draws
from lmm_bayes.spec.matrices import categorical_columns

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["contrast_draws", "contrasts", "reference_grid"]


def _levels(column: pd.Series) -> list[Any]:
    """A categorical column's levels in formulae's order: a Categorical's own, else sorted."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.dropna().unique())
        return [c for c in column.cat.categories if c in present]
    return sorted(column.dropna().unique().tolist())


def _show(value: Any) -> str:
    """A grid value as a table note shows it: numbers to 4 significant digits, levels quoted."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        return f"{value:.4g}"
    return repr(str(value))


def reference_grid(fit: Fit, variable: str, *, at: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The rows :func:`contrasts` predicts: each level of ``variable`` × the other categorical predictors.

    Parameters
    ----------
    fit : Fit
    variable : str
        A categorical predictor of the fixed part (text, a pandas Categorical, bool, or a
        column inside ``C(...)``).
    at : mapping, optional
        Values that replace the defaults: a number for a numeric column (default: its mean
        over the fitted rows), one level for a categorical one (default: every level,
        averaged with equal weights).

    Returns
    -------
    pandas.DataFrame
        One row per combination; its index is meaningless.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> radon = lb.datasets.load("radon")
    >>> fit = lb.LMM("log_radon ~ C(floor) + (1 | county)", radon).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> reference_grid(fit, "floor")
       floor
    0      0
    1      1
    """
    fit = check_fit(fit)
    design = fit.design
    spec = design.spec
    data = design.data
    grouping = {f for t in spec.random for f in t.factors}
    predictors = [v for v in spec.predictor_variables if v not in grouping]
    categorical = categorical_columns(spec, data[predictors])
    if not isinstance(variable, str):
        raise TypeError(f"variable must be a column name (str), got {type(variable).__name__}")
    if variable not in predictors:
        raise ValueError(
            f"{variable!r} is not a predictor of the fixed part of {spec.formula!r}; "
            f"its predictors are {predictors}"
        )
    if variable not in categorical:
        raise ValueError(
            f"{variable!r} is numeric, so it has no levels to compare; contrasts are for categorical "
            f"predictors (write C({variable}) in the formula to treat it as one), or use "
            f"fit.hypothesis(...) for a slope"
        )
    if at is not None and not isinstance(at, Mapping):
        raise TypeError(f"at must be a dict like {{'x': 1.5}}, got {type(at).__name__}")
    at = dict(at or {})
    unknown = set(at) - set(predictors) | ({variable} & set(at))
    if unknown:
        raise ValueError(
            f"at names {sorted(unknown)}, which are not other predictors of the fixed part; "
            f"choose among {[p for p in predictors if p != variable]}"
        )
    columns: dict[str, list[Any]] = {}
    for col in predictors:
        if col == variable:
            columns[col] = _levels(data[col])
        elif col in at:
            value = at[col]
            if col in categorical and value not in set(data[col].unique()):
                raise ValueError(f"at[{col!r}] = {value!r} is not a level of {col!r}; levels: {_levels(data[col])}")
            if col not in categorical:
                value = at_number(col, value, hint=data_range(col, data[col].to_numpy()))
            columns[col] = [value]
        elif col in categorical:
            columns[col] = _levels(data[col])
        else:
            columns[col] = [float(data[col].mean())]
    grid = pd.DataFrame(list(product(*columns.values())), columns=list(columns))
    for col in categorical:
        if isinstance(data[col].dtype, pd.CategoricalDtype):
            grid[col] = pd.Categorical(grid[col], categories=data[col].cat.categories)
        else:
            grid[col] = grid[col].astype(data[col].dtype)
    return grid


def contrast_draws(fit: Fit, variable: str, *, at: Mapping[str, Any] | None = None) -> xr.DataArray:
    """Draws of each level's population mean and of every pairwise difference.

    Returns
    -------
    xarray.DataArray
        dims (``chain``, ``draw``, ``contrast``); ``contrast`` holds the level labels
        (as text), then ``"b - a"`` for every pair with ``b`` after ``a``; coordinate
        ``kind`` on ``contrast`` says ``"mean"`` or ``"difference"``; ``attrs["grid"]``
        says where the other predictors were held.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> radon = lb.datasets.load("radon")
    >>> fit = lb.LMM("log_radon ~ C(floor) + (1 | county)", radon).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> d = contrast_draws(fit, "floor")
    >>> d["contrast"].values.tolist()
    ['0', '1', '1 - 0']
    >>> bool(abs(d.sel(contrast="1 - 0") - fit.posterior["beta"].sel(coef="C(floor)[1]")).max() < 1e-12)
    True
    """
    grid = reference_grid(fit, variable, at=at)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by name
        mu = predict(fit, grid, levels="population", kind="mean")  # (chain, draw, obs)
    if not np.isfinite(mu.values).all():
        raise _overflow_error(fit, grid, variable, at, "the population means overflow")
    labels = grid[variable].astype(str).to_numpy()
    order = list(dict.fromkeys(labels))
    means = [mu.isel(obs=np.flatnonzero(labels == lev)).mean("obs") for lev in order]
    pairs = list(combinations(range(len(order)), 2))
    parts = means + [means[j] - means[i] for i, j in pairs]
    names = order + [f"{order[j]} - {order[i]}" for i, j in pairs]
    kinds = ["mean"] * len(order) + ["difference"] * len(pairs)
    out = xr.concat(parts, dim="contrast", coords="minimal", compat="override")
    out = out.assign_coords(contrast=names, kind=("contrast", kinds)).transpose("chain", "draw", "contrast")
    out.attrs = {"grid": _grid_note(grid, variable)}
    if not np.isfinite(out.values).all():  # a difference of two huge means of opposite signs
        raise _overflow_error(fit, grid, variable, at, "a difference overflows")
    return out.rename(f"contrasts of {variable}")


def _overflow_error(fit: Fit, grid: pd.DataFrame, variable: str, at: Mapping[str, Any] | None,
                    what: str) -> ValueError:
    """A float overflowed (``what``): name the numeric values the grid held, and where the data lie."""
    data = fit.design.data
    numeric = [c for c in grid.columns if c != variable and c in (at or {}) and grid[c].dtype.kind in "iuf"]
    where = ", ".join(f"{c} = {grid[c].iloc[0]:g}" for c in numeric) or "the reference grid"
    ranges = "; ".join(data_range(c, data[c].to_numpy()) for c in numeric)
    return ValueError(
        f"the contrasts of {variable!r} at {where} are not all finite ({what}): a float overflows at values "
        "this far out; hold the predictors near the data" + (f" ({ranges})" if ranges else "")
    )


def _grid_note(grid: pd.DataFrame, variable: str) -> str:
    """Where the reference grid holds the predictors other than ``variable``."""
    return "; ".join(
        f"{c} averaged over {grid[c].nunique()} levels" if grid[c].nunique() > 1 else f"{c} = {_show(grid[c].iloc[0])}"
        for c in grid.columns if c != variable
    ) or "no other predictors"


def contrasts(
    fit: Fit,
    variable: str,
    *,
    at: Mapping[str, Any] | None = None,
    ci: str = DEFAULT_CI,
    prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    """Population mean of the response at each level of ``variable``, and every pairwise difference.

    As emmeans' ``emmeans(fit, pairwise ~ variable)``: the means are ``x β`` on the
    reference grid (:func:`reference_grid`; other categorical predictors averaged with
    equal weights, numeric ones at their mean), so they describe an average cluster,
    not any fitted one. Differences are later level minus earlier (``"b - a"``).

    Parameters
    ----------
    fit : Fit
    variable : str
        A categorical predictor of the fixed part.
    at : mapping, optional
        Fix other predictors (see :func:`reference_grid`).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``kind``, ``contrast``), kind ``"mean"`` or ``"difference"``; columns
        mean, sd, the interval, and ``prob_positive`` (the posterior probability that
        the difference is above 0; empty for means). ``attrs`` say the interval and the grid.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> radon = lb.datasets.load("radon")
    >>> fit = lb.LMM("log_radon ~ C(floor) + (1 | county)", radon).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> table = fit.contrasts("floor", ci="eti", prob=0.95)
    >>> table.index.tolist()
    [('mean', '0'), ('mean', '1'), ('difference', '1 - 0')]
    >>> bool(table.loc[("difference", "1 - 0"), "eti_high"] < 0)    # basements have more radon
    True
    """
    ci, prob = check_interval(ci, prob)
    draws = contrast_draws(fit, variable, at=at)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by name
        table = summarize_draws(draws.drop_vars("kind"), ci=ci, prob=prob, diagnostics=False)
    if not np.isfinite(table.to_numpy(dtype=float)).all():  # the SD of draws near 1e160 overflows
        raise _overflow_error(fit, reference_grid(fit, variable, at=at), variable, at, "their SD overflows")
    kinds = draws["kind"].values
    table["prob_positive"] = np.where(kinds == "difference", (draws > 0).mean(("chain", "draw")).values, np.nan)
    table.index = pd.MultiIndex.from_arrays([kinds, draws["contrast"].values], names=["kind", "contrast"])
    table.attrs["interval"] = interval_label(ci, prob)
    table.attrs["grid"] = draws.attrs["grid"]
    return table

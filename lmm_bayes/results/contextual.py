"""Within- and between-cluster effects of a predictor, and the contextual effect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from lmm_bayes.inference.layout import BETA
from lmm_bayes.results.estimates import mean_interval
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_columns, interval_label
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["contextual_effect", "contextual_effect_draws", "within_between"]


# ====================================================================== within / between


def within_between(data: pd.DataFrame, column: str, by: str | Sequence[str]) -> pd.DataFrame:
    """Split a predictor into its within-cluster and between-cluster parts.

    Returns a copy of ``data`` with two new columns: ``{column}_between``, the
    cluster mean of ``column``, and ``{column}_within``, each row's deviation
    from its cluster mean (so within + between = the original column). Fit
    ``y ~ x_within + x_between + (1 | g)`` and read the between-minus-within
    difference with :meth:`Fit.contextual_effect <lmm_bayes.Fit.contextual_effect>`.

    The ecological fallacy is to read an association between cluster averages
    (clusters with larger mean x have larger mean y) as if it held within a
    cluster (a unit whose x rises sees its y rise by as much), or the reverse.
    The two effects can differ in size and even sign, and a model on the raw x
    blends them into one coefficient that answers neither question; the
    decomposition estimates each and their difference, the contextual effect.

    Parameters
    ----------
    data : pandas.DataFrame
    column : str
        A numeric column without missing values.
    by : str or list of str
        The grouping column(s) that define the clusters.

    Returns
    -------
    pandas.DataFrame
        A copy of ``data`` with ``{column}_within`` and ``{column}_between``; ``data`` is unchanged.

    Raises
    ------
    TypeError
        ``data`` is not a DataFrame, or ``column``/``by`` are not column names.
    ValueError
        A column is missing, ``column`` is not numeric or has missing values,
        ``by`` has missing values, ``column`` is one of ``by``, or an output
        column already exists.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"g": ["a", "a", "b", "b"], "x": [1.0, 3.0, 10.0, 14.0]})
    >>> lb.within_between(df, "x", by="g")
       g     x  x_within  x_between
    0  a   1.0      -1.0        2.0
    1  a   3.0       1.0        2.0
    2  b  10.0      -2.0       12.0
    3  b  14.0       2.0       12.0
    """
    validate.check_dataframe(data)
    if not isinstance(column, str):
        raise TypeError(f"column must be a column name (a string), got {type(column).__name__}")
    if isinstance(by, str):
        by_cols = [by]
    elif isinstance(by, Sequence) and by and all(isinstance(b, str) for b in by):
        by_cols = list(by)
    else:
        raise TypeError(f"by must be a grouping column name or a non-empty list of them, got {by!r}")
    validate.check_columns(data, [column, *by_cols], context="within_between")
    if column in by_cols:
        raise ValueError(f"column {column!r} is also a grouping column in by={by!r}; pick a predictor")
    x = data[column]
    if not pd.api.types.is_numeric_dtype(x) or pd.api.types.is_bool_dtype(x):
        raise ValueError(
            f"column {column!r} must be numeric, got dtype {x.dtype}; convert it with pandas.to_numeric"
        )
    for col in [column, *by_cols]:
        n_bad = int(validate.bad_mask(data[col]).sum())
        if n_bad:
            raise ValueError(
                f"column {col!r} has {n_bad} missing or infinite value{'s' if n_bad > 1 else ''}; "
                "cluster means "
                "would silently skip them: drop or fill those rows first"
            )
    within, between = f"{column}_within", f"{column}_between"
    clash = [c for c in (within, between) if c in data.columns]
    if clash:
        raise ValueError(
            f"data already has column(s) {clash}; drop or rename them before splitting {column!r}"
        )
    out = data.copy()
    means = data.groupby(by_cols, sort=False, observed=True)[column].transform("mean").astype(float)
    out[within] = x.astype(float) - means
    out[between] = means
    return out


def contextual_effect_draws(fit: Fit, within: str, between: str) -> xr.DataArray:
    """Posterior draws of the contextual effect β_between − β_within, dims (chain, draw).

    See :func:`contextual_effect` for the summary.
    """
    check_fit(fit)
    columns = fit.design.X_columns
    within = validate.check_coef_name(within, columns, "within")
    between = validate.check_coef_name(between, columns, "between")
    if within == between:
        raise ValueError(
            f"within and between are both {within!r}; pass the two parts, e.g. 'x_within', 'x_between'"
        )
    beta = fit.posterior[BETA]
    draws = beta.sel(coef=between, drop=True) - beta.sel(coef=within, drop=True)
    draws.attrs["description"] = f"{between} - {within}"
    return draws.rename("contextual")


def contextual_effect(fit: Fit, within: str, between: str, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """The contextual effect: how much more the cluster mean of x predicts than a within-cluster change.

    With ``x_within`` and ``x_between`` from :func:`within_between` in the model,
    β_between is the association of y with the cluster mean of x, β_within the
    effect of x changing within a cluster, and β_between − β_within the
    contextual effect: what belonging to a cluster with higher mean x adds,
    holding the row's own x fixed (0 when the two effects agree).

    Parameters
    ----------
    fit : Fit
    within, between : str
        Fixed-effect names of the within and between parts, e.g. ``"x_within"``, ``"x_between"``.
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Rows ``within``, ``between`` and ``contextual`` (between − within);
        columns ``coef`` (the coefficients involved), ``mean``, ``sd``,
        ``{ci}_low``, ``{ci}_high``, ``prob_positive``. The draws are
        :func:`contextual_effect_draws`.

    Raises
    ------
    TypeError
        ``within`` or ``between`` is not a string.
    ValueError
        Either is not a fixed effect of the model, or they are the same.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(20), 6)
    >>> x = rng.normal(size=20)[g] * 2 + rng.normal(size=120)
    >>> df = lb.within_between(pd.DataFrame({"g": g, "x": x}), "x", by="g")
    >>> noise = rng.normal(0, 0.5, 20)[g] + rng.normal(size=120)
    >>> df["y"] = 2.0 * df["x_between"] + 0.5 * df["x_within"] + noise
    >>> fit = lb.LMM("y ~ x_within + x_between + (1 | g)", df).fit(draws=500, tune=500, chains=2, seed=1,
    ...                                                              progressbar=False)
    >>> ce = fit.contextual_effect("x_within", "x_between")
    >>> ce.index.tolist(), ce.loc["contextual", "coef"]
    (['within', 'between', 'contextual'], 'x_between - x_within')
    >>> bool(ce.loc["contextual", "hdi_low"] > 0)
    True
    """
    ci, prob = check_interval(ci, prob)
    diff = contextual_effect_draws(fit, within, between)
    beta = fit.posterior[BETA]
    parts = [beta.sel(coef=within, drop=True), beta.sel(coef=between, drop=True), diff]
    low, high = interval_columns(ci)
    rows = []
    for da in parts:
        m, lo, hi = mean_interval(da, ci=ci, prob=prob)
        rows.append(
            {
                "mean": float(m),
                "sd": float(da.std(("chain", "draw"), ddof=1)),
                low: float(lo),
                high: float(hi),
                "prob_positive": float((da > 0).mean()),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(["within", "between", "contextual"], name="effect"))
    table.insert(0, "coef", [within, between, f"{between} - {within}"])
    table.attrs["interval"] = interval_label(ci, prob)
    return table

"""The numbers behind an effects plot (brms ``conditional_effects``): the response along one predictor.

:func:`conditional_effects` evaluates, on a grid of one numeric predictor ``x`` with
every other predictor held at a reference value (numeric columns at their mean, other
columns at their most common value, as brms does):

* the population line: the posterior mean of ``x beta`` and its band, of the mean
  (``band="mean"``) or of a new observation (``band="prediction"``, adding sigma);
* one line per cluster of ``group``: the posterior mean of ``x beta + z b_j``, that is
  the cluster's own coefficients (``coef()``) along ``x``, drawn over the range of
  ``x`` the cluster's data cover (NaN elsewhere).

Every number comes from :func:`lmm_bayes.results.predict.predict`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import b_draws
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, interval_columns, interval_label, summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit

__all__ = ["BANDS", "conditional_effects", "reference_row"]

#: what ``band`` may be: the band of the expected response, or of a new observation
BANDS = ("mean", "prediction")


def reference_row(data: pd.DataFrame) -> dict[str, object]:
    """Reference value of every column: the mean of a numeric column, the most common value otherwise.

    Examples
    --------
    >>> reference_row(pd.DataFrame({"x": [1.0, 2.0, 6.0], "g": ["a", "b", "b"]}))
    {'x': 3.0, 'g': 'b'}
    """
    out: dict[str, object] = {}
    for col in data.columns:
        values = data[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            out[col] = float(values.mean())
        else:
            out[col] = values.mode(dropna=True).iloc[0]
    return out


def _check_x(fit: Fit, x: object) -> str:
    design = fit.design
    if not isinstance(x, str):
        raise TypeError(f"x must be the name of a numeric predictor (a string), got {type(x).__name__}")
    columns = [c for c in design.data.columns if c != design.response]
    if x not in columns:
        raise ValueError(
            f"x={x!r} is not a predictor column of this model; its columns are {columns}"
            f"{validate.did_you_mean(x, columns)}"
        )
    values = design.data[x]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise ValueError(f"x={x!r} must be a numeric column to draw lines along it; it holds {values.dtype}")
    return x


def conditional_effects(
    fit: Fit,
    x: str,
    *,
    group: str | None = None,
    band: Literal["mean", "prediction"] = "mean",
    ci: str = DEFAULT_CI,
    prob: float = DEFAULT_PROB,
    n_points: int = 50,
    seed: int | None = 0,
) -> xr.Dataset:
    """The expected response along predictor ``x``: population line and band, and every cluster's line.

    Parameters
    ----------
    fit : Fit
    x : str
        A numeric predictor column, e.g. ``"Days"``.
    group : str, optional
        A grouping factor whose clusters each get a line; none if omitted.
    band : {"mean", "prediction"}
        ``"mean"``: the interval of ``x beta`` (where the population line lies);
        ``"prediction"``: the interval of a new observation around the population line
        (``x beta`` plus ``N(0, sigma^2)``; the cluster effects are not in it).
    ci : {"hdi", "eti"}
        Highest density or equal-tailed band (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Mass of the band.
    n_points : int
        Grid points between the smallest and largest observed ``x``.
    seed : int, optional
        Seeds the noise of ``band="prediction"``.

    Returns
    -------
    xarray.Dataset
        On dim ``x`` (the grid, named after ``x``): ``population`` (posterior mean line),
        ``low`` and ``high`` (the band); with ``group``, ``cluster`` on (level, ``x``):
        each cluster's posterior mean line, NaN outside the cluster's observed range of
        ``x``. Attributes: ``x``, ``group``, ``band``, ``prob``, ``interval``, ``response`` and
        ``reference`` (the values other predictors were held at).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> ce = fit.conditional_effects("Days", group="Subject", n_points=10)
    >>> dict(ce.sizes)
    {'Days': 10, 'Subject': 18}
    """
    fit = check_fit(fit)
    x = _check_x(fit, x)
    validate.check_choice(band, BANDS, "band")
    ci, prob = check_interval(ci, prob)
    n_points = validate.check_positive_int(n_points, "n_points", minimum=2)
    g = None if group is None else validate.check_group(fit.design, group)
    design = fit.design
    data = design.data.drop(columns=[design.response], errors="ignore")
    values = data[x].to_numpy(dtype=float)
    grid = np.linspace(values.min(), values.max(), n_points)
    reference = reference_row(data)
    rows = pd.DataFrame({**{k: [v] * n_points for k, v in reference.items()}, x: grid})
    kind = "mean" if band == "mean" else "response"
    draws = predict(fit, rows, levels="population", kind=kind, seed=seed)
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    low, high = interval_columns(ci)
    mean_line = predict(fit, rows, levels="population", kind="mean").mean(("chain", "draw")).values
    out = xr.Dataset(
        {
            "population": (x, mean_line),
            "low": (x, table[low].to_numpy()),
            "high": (x, table[high].to_numpy()),
        },
        coords={x: grid},
    )
    if g is not None:
        out["cluster"] = ((g.name, x), _cluster_lines(fit, g, rows, x, values))
        out = out.assign_coords({g.name: list(g.levels)})
    factors = {f for h in design.groups for f in h.factors}
    shown = {k: (v if isinstance(v, str) else round(float(v), 4)) for k, v in reference.items()
             if k != x and k not in factors}
    out.attrs.update(
        {"x": x, "group": "" if g is None else g.name, "band": band, "prob": prob, "interval": interval_label(ci, prob),
         "response": design.response, "reference": repr(shown)}
    )
    return out


def _cluster_lines(fit: Fit, g, rows: pd.DataFrame, x: str, values: np.ndarray) -> np.ndarray:
    """(levels, grid) posterior mean of ``x beta + z b_j`` for each cluster j, NaN outside its own x range."""
    design = fit.design
    n_points = len(rows)
    first = np.array([np.flatnonzero(g.codes == j)[0] for j in range(g.n_levels)])
    # each cluster's identifying columns from one of its own rows; the other predictors stay at the reference
    keys = design.data.iloc[first][list(g.factors)].reset_index(drop=True)
    grid = rows.drop(columns=list(g.factors), errors="ignore")
    block = keys.loc[keys.index.repeat(n_points)].reset_index(drop=True)
    table = pd.concat([pd.concat([grid] * g.n_levels, ignore_index=True), block], axis=1)
    other = [h for h in design.groups if h.name != g.name]
    if other:
        # only g's deviations: the other factors' b would move the line by another cluster's effect
        pop = predict(fit, table, levels="population", kind="mean")
        post = fit.posterior.transpose("chain", "draw", ...)
        Z = design.evaluate(table).Z[g.name]
        b = b_draws(post, g, "the per-cluster lines").values  # (chain, draw, level, effect)
        codes = np.repeat(np.arange(g.n_levels), n_points)
        mean = pop.mean(("chain", "draw")).values + np.einsum("nq,nq->n", Z, b.mean(axis=(0, 1))[codes])
    else:
        mean = predict(fit, table, levels="existing", kind="mean").mean(("chain", "draw")).values
    lines = mean.reshape(g.n_levels, n_points)
    grid_x = rows[x].to_numpy()
    low = np.array([values[g.codes == j].min() for j in range(g.n_levels)])
    high = np.array([values[g.codes == j].max() for j in range(g.n_levels)])
    eps = 1e-9 * max(1.0, float(np.abs(grid_x).max()))
    inside = (grid_x[None, :] >= low[:, None] - eps) & (grid_x[None, :] <= high[:, None] + eps)
    return np.where(inside, lines, np.nan)

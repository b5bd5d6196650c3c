"""The numbers behind an effects plot (brms ``conditional_effects``): the response along one predictor.

:func:`conditional_effects` answers for one predictor ``x`` of either kind:

* a numeric ``x``: on a grid of ``x`` with every other predictor held at a reference
  value (numeric columns at their mean, other columns at their most common value, as
  brms does), the population line (the posterior mean of the expected response at
  ``x beta``) and its band, and one line per cluster of ``group``, drawn over the range
  of ``x`` the cluster's data cover (NaN elsewhere);
* a categorical ``x`` (text, Categorical, bool, or inside ``C(...)``): per level, the
  population point and its interval, and one point per cluster of ``group`` (NaN at a
  level the cluster has no data at). The other predictors are held where
  :func:`lmm_bayes.results.contrasts.contrasts` holds them (its
  :func:`~lmm_bayes.results.contrasts.reference_grid`: numeric ones at their mean, the
  other categorical ones averaged over their levels with equal weights), so the
  population points are the level means of ``fit.contrasts(x)``.

A cluster's value is the posterior mean of its expected response: per draw, the inverse
link of its full linear predictor (``x beta`` plus its own effects and those of every
factor it is nested in, e.g. a neuron's subject), then averaged over the draws. Factors
it is not nested in (a neuron of a subject line, a crossed factor) are held at zero,
the population. Where the cluster's own factors are all the model has, the value is
:func:`lmm_bayes.results.predict.predict` with ``levels="existing"`` on the cluster's rows.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import b_draws, linear_predictor
from lmm_bayes.results.contrasts import reference_grid
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import (
    DEFAULT_CI,
    DEFAULT_PROB,
    check_interval,
    interval_columns,
    interval_label,
    summarize_draws,
)
from lmm_bayes.spec import validate
from lmm_bayes.spec.matrices import categorical_columns

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["BANDS", "cluster_means", "conditional_effects", "is_categorical", "reference_row"]

#: what ``band`` may be: the band of the expected response, or of a new observation
BANDS = ("mean", "prediction")
_CHUNK = 4_000_000  # values of (draws x rows) predicted at once by cluster_means


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


def _held(fit: Fit) -> dict[str, object]:
    """Where the columns not varied are held: :func:`reference_row`, but a binomial's trials columns (and the
    response, which ``cbind(k, n - k)`` reads) from one observed row with the most common number of trials,
    since trials must be whole numbers."""
    design = fit.design
    held = reference_row(design.data)
    terms = () if design.trials is None else design.trials_terms  # trials: a GLMM's design (GLMDesign)
    if terms:
        predictors = set(design.spec.predictor_variables)
        reads = [c for c in design.data.columns
                 if c not in predictors and any(re.search(rf"\b{re.escape(c)}\b", t) for t in terms)]
        values, counts = np.unique(design.trials, return_counts=True)
        row = int(np.flatnonzero(design.trials == values[np.argmax(counts)])[0])
        held.update({c: design.data[c].iloc[row] for c in reads})
    return held


def _new_observations(fit: Fit, rows: pd.DataFrame, seed) -> xr.DataArray:
    """Draws of a new observation of the population at each row, on the scale of the mean (a binomial's
    successes per trial)."""
    draws = predict(fit, rows, levels="population", kind="response", seed=seed)
    if fit.design.family.needs_trials:
        draws = draws / fit.design.trials_for(rows)
    return draws


def is_categorical(fit: Fit, x: str) -> bool:
    """Whether the model codes column ``x`` as categories (text, Categorical, bool, or inside ``C(...)``).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> is_categorical(fit, "Days"), is_categorical(fit, "Subject")
    (False, True)
    """
    return x in categorical_columns(fit.design.spec, fit.design.data[[x]])


def _show(value: object) -> str:
    """A held value as text: a number to 4 significant digits, a level quoted."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        return f"{value:.4g}"
    return repr(str(value))


def _check_x(fit: Fit, x: object) -> str:
    design = fit.design
    if not isinstance(x, str):
        raise TypeError(f"x must be the name of a numeric predictor or a categorical one (a string), "
                        f"got {type(x).__name__}")
    columns = [c for c in design.data.columns if c != design.response]
    if x not in columns:
        raise ValueError(
            f"x={x!r} is not a predictor column of this model; its columns are {columns}"
            f"{validate.did_you_mean(x, columns)}"
        )
    if x in {f for g in design.groups for f in g.factors} and is_categorical(fit, x):
        raise ValueError(
            f"x={x!r} is a grouping factor, whose clusters an effects plot draws with group={x!r}; "
            "x must be a numeric column or a categorical predictor of the fixed part"
        )
    return x


def cluster_means(fit: Fit, group: str, rows: pd.DataFrame) -> np.ndarray:
    """(levels, rows): each cluster's posterior mean expected response at every row of ``rows``.

    Row ``i`` of cluster ``j`` is ``rows.iloc[i]`` with the grouping columns of ``group``
    set to cluster j's. Per draw: the inverse link of ``x beta`` (offset included) plus the
    effects of ``group`` and of every factor it is nested in (those whose columns are
    among ``group``'s), then the mean over the draws. Where those are all of the model's
    factors this is ``predict(levels="existing", kind="mean")`` itself.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> m = cluster_means(fit, "Subject", pd.DataFrame({"Days": [0.0, 9.0], "Subject": "308"}))
    >>> m.shape
    (18, 2)
    >>> coef = fit.coef("Subject")["mean"].xs("Intercept", level="effect")
    >>> bool(abs(m[:, 0] - coef.to_numpy()).max() < 1e-8)
    True
    """
    design = fit.design
    g = validate.check_group(design, group)
    n_rows = len(rows)
    first = np.array([np.flatnonzero(g.codes == j)[0] for j in range(g.n_levels)])
    keys = design.data.iloc[first][list(g.factors)].reset_index(drop=True)  # each cluster's own labels
    common = rows.drop(columns=list(g.factors), errors="ignore").reset_index(drop=True)
    own = [h for h in design.groups if set(h.factors) <= set(g.factors)]  # g and the factors it is nested in
    n_draws = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    step = max(1, _CHUNK // max(1, n_draws * n_rows))
    out = np.empty((g.n_levels, n_rows))
    for start in range(0, g.n_levels, step):
        block = keys.iloc[start:start + step]
        labels = block.loc[block.index.repeat(n_rows)].reset_index(drop=True)
        table = pd.concat([pd.concat([common] * len(block), ignore_index=True), labels], axis=1)
        out[start:start + len(block)] = _posterior_mean(fit, table, own).reshape(len(block), n_rows)
    return out


def _posterior_mean(fit: Fit, table: pd.DataFrame, own: list) -> np.ndarray:
    """Posterior mean of the inverse link of ``x beta + offset + sum over own of z b`` for each row of ``table``."""
    design = fit.design
    if len(own) == len(design.groups):
        return predict(fit, table, levels="existing", kind="mean").mean(("chain", "draw")).values
    eta = predict(fit, table, levels="population", kind="link").values  # x beta + offset, (chain, draw, row)
    coded = design.evaluate(table)
    post = fit.posterior.transpose("chain", "draw", ...)
    terms = [(coded.Z[h.name], coded.codes[h.name], b_draws(post, h, "the per-cluster lines").values) for h in own]
    eta = eta + linear_predictor(np.zeros((len(table), 0)), None, terms)
    return design.family.inverse_link(eta).mean(axis=(0, 1))


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
    """The expected response along predictor ``x``: population line (or points) and band, and every cluster's.

    Parameters
    ----------
    fit : Fit
    x : str
        A predictor column: numeric (e.g. ``"Days"``: lines on a grid) or categorical
        (e.g. ``"cond"``: one point per level).
    group : str, optional
        A grouping factor whose clusters each get a line (or points); none if omitted.
    band : {"mean", "prediction"}
        ``"mean"``: the interval of the expected response (where the population line
        lies); ``"prediction"``: the interval of a new observation of the population
        (residual noise or the family's draw; the cluster effects are not in it). For a
        categorical ``x`` averaged over other categorical predictors, the new
        observation's cell is one of theirs, each equally likely.
    ci : {"hdi", "eti"}
        Highest density or equal-tailed band (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Mass of the band.
    n_points : int
        Grid points between the smallest and largest observed ``x`` (numeric ``x`` only).
    seed : int, optional
        Seeds the noise of ``band="prediction"``.

    Returns
    -------
    xarray.Dataset
        On dim ``x`` (named after ``x``; the grid, or the levels as text in the model's
        order, as :func:`~lmm_bayes.results.contrasts.contrasts` labels them):
        ``population`` (posterior mean of the expected response), ``low`` and ``high``
        (the band); with ``group``, ``cluster`` on (level of ``group``, ``x``): each
        cluster's posterior mean, NaN outside the cluster's observed range of ``x`` (a
        level it has no data at). As a table: ``ce[["population", "low", "high"]].to_dataframe()``
        (one row per grid point or level) and ``ce["cluster"].to_pandas()`` (clusters by
        ``x``). Attributes: ``x``, ``x_type`` (``"numeric"`` or ``"categorical"``),
        ``group``, ``band``, ``prob``, ``interval`` (e.g. ``"94% HDI"``), ``response``
        and ``reference`` (where the other predictors were held).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> ce = fit.conditional_effects("Days", group="Subject", n_points=10)
    >>> dict(ce.sizes)
    {'Days': 10, 'Subject': 18}

    A categorical predictor: one point per level, equal to the level means of ``contrasts``.

    >>> radon = lb.datasets.load("radon")
    >>> rfit = lb.LMM("log_radon ~ C(floor) + (1 | county)", radon).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> ce = rfit.conditional_effects("floor", group="county")
    >>> ce["floor"].values.tolist(), ce.attrs["x_type"], dict(ce["cluster"].sizes)
    (['0', '1'], 'categorical', {'county': 85, 'floor': 2})
    >>> means = rfit.contrasts("floor").xs("mean", level="kind")["mean"]
    >>> bool(abs(ce["population"].values - means.to_numpy()).max() < 1e-10)
    True
    """
    fit = check_fit(fit)
    x = _check_x(fit, x)
    validate.check_choice(band, BANDS, "band")
    ci, prob = check_interval(ci, prob)
    n_points = validate.check_positive_int(n_points, "n_points", minimum=2)
    g = None if group is None else validate.check_group(fit.design, group)
    if is_categorical(fit, x):
        out = _level_effects(fit, x, g, band, ci, prob, seed)
    else:
        out = _line_effects(fit, x, g, band, ci, prob, n_points, seed)
    out.attrs.update({"x": x, "group": "" if g is None else g.name, "band": band, "prob": prob,
                      "interval": interval_label(ci, prob), "response": fit.design.response})
    return out


def _line_effects(fit: Fit, x: str, g, band: str, ci: str, prob: float, n_points: int, seed) -> xr.Dataset:
    """A numeric ``x``: lines on a grid, the other columns held at :func:`reference_row` (see :func:`_held`)."""
    design = fit.design
    values = design.data[x].to_numpy(dtype=float)
    grid = np.linspace(values.min(), values.max(), n_points)
    reference = _held(fit)
    rows = pd.DataFrame({**{k: [v] * n_points for k, v in reference.items()}, x: grid})
    mean = predict(fit, rows, levels="population", kind="mean")
    draws = mean if band == "mean" else _new_observations(fit, rows, seed)
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    low, high = interval_columns(ci)
    mean_line = mean.mean(("chain", "draw")).values
    out = xr.Dataset(
        {"population": (x, mean_line), "low": (x, table[low].to_numpy()), "high": (x, table[high].to_numpy())},
        coords={x: grid},
    )
    if g is not None:
        lines = cluster_means(fit, g.name, rows)
        lo = np.array([values[g.codes == j].min() for j in range(g.n_levels)])
        hi = np.array([values[g.codes == j].max() for j in range(g.n_levels)])
        eps = 1e-9 * max(1.0, float(np.abs(grid).max()))
        inside = (grid[None, :] >= lo[:, None] - eps) & (grid[None, :] <= hi[:, None] + eps)
        out["cluster"] = ((g.name, x), np.where(inside, lines, np.nan))
        out = out.assign_coords({g.name: list(g.levels)})
    factors = {f for h in design.groups for f in h.factors}
    shown = {k: (v if isinstance(v, str) else round(float(v), 4)) for k, v in reference.items()
             if k not in (x, design.response) and k not in factors}
    out.attrs.update({"x_type": "numeric", "reference": repr(shown)})
    return out


def _level_effects(fit: Fit, x: str, g, band: str, ci: str, prob: float, seed) -> xr.Dataset:
    """A categorical ``x``: points per level on :func:`~lmm_bayes.results.contrasts.reference_grid`."""
    design = fit.design
    grid = reference_grid(fit, x)
    rest = {k: v for k, v in _held(fit).items() if k not in grid.columns}  # grouping, offset, trials columns
    rows = grid.assign(**rest)
    labels = grid[x].astype(str).to_numpy()
    order = list(dict.fromkeys(labels))
    at = [np.flatnonzero(labels == lev) for lev in order]  # the same number of rows per level
    mu = predict(fit, rows, levels="population", kind="mean")
    means = xr.concat([mu.isel(obs=i).mean("obs") for i in at], dim=x).assign_coords({x: order})
    if band == "mean":
        spread = means.transpose("chain", "draw", x)
    else:  # every row of the level a cell a new observation may come from, equally likely
        new = _new_observations(fit, rows, seed).values
        n_chain = new.shape[0]
        pooled = np.stack([new[:, :, i].reshape(n_chain, -1) for i in at], axis=-1)
        spread = xr.DataArray(pooled, dims=("chain", "draw", x), coords={x: order})
    table = summarize_draws(spread, ci=ci, prob=prob, diagnostics=False)
    low, high = interval_columns(ci)
    out = xr.Dataset(
        {"population": (x, means.mean(("chain", "draw")).transpose(x).values),
         "low": (x, table[low].to_numpy()), "high": (x, table[high].to_numpy())},
        coords={x: order},
    )
    if g is not None:
        per_row = cluster_means(fit, g.name, rows)
        points = np.stack([per_row[:, i].mean(axis=1) for i in at], axis=1)
        seen = pd.crosstab(g.codes, design.data[x].astype(str).to_numpy()).reindex(
            index=range(g.n_levels), columns=order, fill_value=0).to_numpy() > 0
        out["cluster"] = ((g.name, x), np.where(seen, points, np.nan))
        out = out.assign_coords({g.name: list(g.levels)})
    note = "; ".join(
        f"{c} averaged over {grid[c].nunique()} levels" if grid[c].nunique() > 1 else f"{c} = {_show(grid[c].iloc[0])}"
        for c in grid.columns if c != x) or "no other predictors"
    out.attrs.update({"x_type": "categorical", "reference": note})
    return out

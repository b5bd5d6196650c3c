"""Per-cluster estimates of the three poolings, in one table: the helpers shrinkage and compare_pooling share.

:func:`lmm_bayes.results.shrinkage.shrinkage` (one fitted mixed model, the clusters' own
least squares as no pooling) and :func:`lmm_bayes.compare_pooling` (three fitted models)
both end in the same table, :func:`estimates_table`, with columns :data:`ESTIMATE_COLUMNS`.
Both need to know which effects a cluster's own data identify (:func:`identified`, from
the per-cluster normal equations :func:`normal_equations`), and both summarise draws
as a posterior mean and an interval (:func:`mean_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, interval_bounds

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from lmm_bayes.spec.design import GroupDesign

__all__ = [
    "ESTIMATE_COLUMNS",
    "POOLINGS",
    "estimates_table",
    "identified",
    "mean_interval",
    "normal_equations",
    "population_values",
    "shrinkage_factor",
]

#: The three poolings, in the order of the estimates' columns.
POOLINGS = ("no_pooling", "partial_pooling", "complete_pooling")

#: Columns of :attr:`lmm_bayes.teaching.pooling.PoolingComparison.estimates` and of
#: :func:`lmm_bayes.results.shrinkage.shrinkage`.
ESTIMATE_COLUMNS = [
    "n_obs",
    *(f"{p}{suffix}" for p in POOLINGS for suffix in ("", "_low", "_high")),
    "population",
    "shrinkage",
    "note",
]

#: (mean, HDI low, HDI high) of one pooling, each an array over (level, effect) or broadcastable to it
Interval = tuple[np.ndarray, np.ndarray, np.ndarray]


def mean_interval(da: xr.DataArray, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> Interval:
    """Posterior mean and interval bounds (HDI or ETI) over (chain, draw), as arrays of the remaining dims.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.random.default_rng(0).normal(size=(2, 500, 3)), dims=("chain", "draw", "k"))
    >>> m, low, high = mean_interval(da, ci="eti", prob=0.9)
    >>> m.shape, bool((low < m).all() and (m < high).all())
    ((3,), True)
    """
    low, high = interval_bounds(da, ci=ci, prob=prob)
    return da.mean(("chain", "draw")).values, low.values, high.values


def normal_equations(g: GroupDesign) -> np.ndarray:
    """Per-cluster ``Z_jᵀ Z_j``, shape (levels, effects, effects).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> g = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design.group("Subject")
    >>> normal_equations(g)[0].tolist()      # 10 days, 0..9
    [[10.0, 45.0], [45.0, 285.0]]
    """
    A = np.zeros((g.n_levels, g.n_effects, g.n_effects))
    np.add.at(A, g.codes, g.Z[:, :, None] * g.Z[:, None, :])
    return A


def identified(g: GroupDesign, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-inverses of ``Z_jᵀZ_j``, which effects each cluster identifies, and a note per (level, effect).

    Effect k is identified by cluster j's own data when ``e_k`` lies in the row
    space of ``Z_j`` (one observation cannot identify a slope; nor can a
    cluster in which the slope's variable never changes).

    Parameters
    ----------
    g : GroupDesign
    A : ndarray (levels, effects, effects)
        :func:`normal_equations` of ``g``.

    Returns
    -------
    Ainv : ndarray (levels, effects, effects)
    ok : ndarray of bool (levels, effects)
    notes : ndarray of str (levels, effects)
        ``""`` where identified, else why not.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> g = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design.group("Subject")
    >>> _, ok, notes = identified(g, normal_equations(g))
    >>> bool(ok.all()), set(notes.ravel())
    (True, {''})
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


def shrinkage_factor(no: np.ndarray, partial: np.ndarray, population: np.ndarray) -> np.ndarray:
    """(no − partial) / (no − population); NaN where no pooling is missing or equals the population.

    Examples
    --------
    >>> shrinkage_factor(np.array([3.0, 1.0, np.nan]), np.array([2.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]))
    array([0.5, nan, nan])
    """
    gap = no - population
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (no - partial) / gap
    tiny = 1e-12 * (1.0 + np.abs(population))
    return np.where(np.isfinite(no) & (np.abs(gap) > tiny), out, np.nan)


def population_values(beta_mean: Mapping[str, float] | pd.Series, effects: Sequence[str]) -> np.ndarray:
    """The population value of each effect: its fixed effect, 0 where it has no fixed part.

    Examples
    --------
    >>> population_values(pd.Series({"Intercept": 250.0}), ["Intercept", "Days"])
    array([250.,   0.])
    """
    return np.array([float(beta_mean.get(e, 0.0)) for e in effects])


def estimates_table(
    g: GroupDesign,
    *,
    no: Interval,
    partial: Interval,
    complete: Interval,
    population: np.ndarray,
    notes: np.ndarray,
    intervals: str,
) -> pd.DataFrame:
    """The per-cluster table of the three poolings, with the shrinkage factor.

    Parameters
    ----------
    g : GroupDesign
        The grouping factor whose clusters are the rows.
    no, partial, complete : (mean, low, high)
        Each pooling's estimate and interval bounds, arrays broadcastable to (levels, effects).
    population : ndarray (effects,)
        :func:`population_values`.
    notes : ndarray of str (levels, effects)
    intervals : str
        What the intervals are, stored in ``table.attrs["intervals"]``.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``level``, ``effect``); columns :data:`ESTIMATE_COLUMNS`;
        ``attrs["group"]`` is the factor's name.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> g = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design.group("Subject")
    >>> one = (np.full((18, 1), 3.0), np.full((18, 1), 2.0), np.full((18, 1), 4.0))
    >>> half = (np.full((18, 1), 2.0), np.full((18, 1), 1.0), np.full((18, 1), 3.0))
    >>> t = estimates_table(g, no=one, partial=half, complete=half, population=np.array([1.0]),
    ...                     notes=np.full((18, 1), ""), intervals="made up")
    >>> t.shape, float(t["shrinkage"].iloc[0])
    ((18, 13), 0.5)
    """
    J, q = g.n_levels, g.n_effects
    pop = np.broadcast_to(population, (J, q))
    cols: dict[str, Any] = {"n_obs": np.repeat(g.counts(), q)}
    for name, (m, lo, hi) in zip(POOLINGS, (no, partial, complete)):
        cols[name] = np.broadcast_to(m, (J, q)).ravel().astype(float)
        cols[f"{name}_low"] = np.broadcast_to(lo, (J, q)).ravel().astype(float)
        cols[f"{name}_high"] = np.broadcast_to(hi, (J, q)).ravel().astype(float)
    cols["population"] = pop.ravel().astype(float)
    cols["shrinkage"] = shrinkage_factor(cols["no_pooling"], cols["partial_pooling"], cols["population"])
    cols["note"] = notes.ravel().astype(str)
    index = pd.MultiIndex.from_product([list(g.levels), list(g.effects)], names=["level", "effect"])
    table = pd.DataFrame(cols, index=index)[ESTIMATE_COLUMNS]
    table.attrs["group"] = g.name
    table.attrs["intervals"] = intervals
    return table

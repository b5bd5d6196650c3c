"""Per-cluster estimates of the three poolings, in one table: the helpers shrinkage and compare_pooling share.

:func:`lmm_bayes.results.shrinkage.shrinkage` (one fitted mixed model, the clusters' own
least squares as no pooling) and :func:`lmm_bayes.compare_pooling` (three fitted models)
both end in the same table, :func:`estimates_table`, with columns :data:`ESTIMATE_COLUMNS`.
Its ``shrinkage`` column is the model's own shrinkage factor (:func:`model_shrinkage`,
B_j = σ²/(σ² + n_j τ²) for a random intercept); the empirical fraction an estimate moved
(:func:`shrinkage_factor`) is only the secondary column ``fraction_moved``.
Both need to know which effects a cluster's own data identify (:func:`identified`, from
the per-cluster normal equations :func:`normal_equations`), and both summarise draws
as a posterior mean and an interval (:func:`mean_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import SIGMA, covariance_values
from lmm_bayes.spec.residual import RHO, SIGMA_U
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, interval_bounds

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from lmm_bayes.spec.design import GroupDesign

__all__ = [
    "ESTIMATE_COLUMNS",
    "FRACTION_SLACK",
    "bounded_fraction",
    "POOLINGS",
    "estimates_table",
    "identified",
    "mean_interval",
    "mean_mcse",
    "model_shrinkage",
    "posterior_shrinkage",
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
    "target",
    "shrinkage",
    "fraction_moved",
    "note",
]

#: how far past its bounds [0, 1] a fraction moved may lie and still count as on them (rounding)
FRACTION_SLACK = 1e-9

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


def mean_mcse(da: xr.DataArray) -> np.ndarray:
    """Monte Carlo SE of the posterior mean over (chain, draw), as an array of the remaining dims.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 1000, 2)), dims=("chain", "draw", "k"))
    >>> bool(np.allclose(mean_mcse(da), 1 / np.sqrt(4000), rtol=0.2))
    True
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    return np.asarray(azs.mcse(da, method="mean").values)


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


def model_shrinkage(A: np.ndarray, sigma: np.ndarray, G: np.ndarray, *, max_draws: int = 1000) -> np.ndarray:
    """The model's shrinkage factor of every cluster's effects, averaged over the posterior.

    For cluster j with normal equations ``A_j = Z_jᵀZ_j``, and given σ and G, the
    cluster's effects have conditional covariance ``C_j = (A_j / σ² + G⁻¹)⁻¹`` (given the
    other factors' effects), and ``B_j = C_j G⁻¹`` is the matrix that pulls the cluster's
    own estimate toward the population value: ``E[b_j | y] = (I − B_j) b̂_j``. For a
    random intercept it is ``σ² / (σ² + n_j τ²)``: 0 for a cluster that keeps its own
    estimate, 1 for one pulled all the way; smooth in n_j and in τ²/σ², always in [0, 1].
    The diagonal of ``B_j`` is returned, one factor per effect, averaged over (at most
    ``max_draws`` evenly spaced) posterior draws.

    Parameters
    ----------
    A : ndarray (levels, effects, effects)
        :func:`normal_equations` of the factor.
    sigma : ndarray (draws,)
        Draws of the residual SD.
    G : ndarray (draws, effects, effects)
        Draws of the factor's covariance.

    Returns
    -------
    ndarray (levels, effects)

    Examples
    --------
    >>> A = np.array([[[1.0]], [[10.0]]])                   # clusters of 1 and 10 rows
    >>> model_shrinkage(A, np.array([2.0]), np.array([[[1.0]]]))    # sigma^2 = 4, tau^2 = 1
    array([[0.8       ],
           [0.28571429]])
    """
    n = len(sigma)
    keep = np.unique(np.linspace(0, n - 1, min(n, max_draws)).round().astype(int))
    total = np.zeros(A.shape[:2])
    for s in keep:
        Ginv = np.linalg.inv(G[s])
        C = np.linalg.inv(A / sigma[s] ** 2 + Ginv)          # (levels, q, q)
        total += np.diagonal(C @ Ginv, axis1=1, axis2=2)
    return total / len(keep)


def posterior_shrinkage(posterior: xr.Dataset, g: GroupDesign, A: np.ndarray) -> np.ndarray:
    """:func:`model_shrinkage` of factor ``g`` from a mixed model's posterior (its σ and G draws).

    ``A`` is the factor's :func:`normal_equations`, which the callers already hold.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> g = fit.design.group("Subject")
    >>> B = posterior_shrinkage(fit.posterior, g, normal_equations(g))
    >>> B.shape, bool(((0 < B) & (B < 1)).all())
    ((18, 1), True)
    """
    if RHO in posterior or SIGMA_U in posterior:  # sigma= or ar=: B_j = sigma^2 (...) assumes sigma^2 I
        raise ValueError("the shrinkage factors assume one residual SD and independent rows; this fit has sigma= "
                         "or ar=: they are not computed for such a model yet")
    q = g.n_effects
    G = covariance_values(posterior, g).reshape(-1, q, q)
    sigma = posterior[SIGMA].transpose("chain", "draw").values.reshape(-1)
    return model_shrinkage(A, sigma, G)


def shrinkage_factor(no: np.ndarray, partial: np.ndarray, population: np.ndarray) -> np.ndarray:
    """(no − partial) / (no − population); NaN where no pooling is missing or equals the population.

    The *empirical* fraction the partial-pooling estimate moved toward the population
    value: noisy and unbounded when a cluster's own estimate is near the population
    value, so tables show it only as ``fraction_moved`` beside the model's
    :func:`model_shrinkage`.

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
    factor: np.ndarray,
    notes: np.ndarray,
    intervals: str,
    target: str = "population",
    mcse: np.ndarray | None = None,
) -> pd.DataFrame:
    """The per-cluster table of the three poolings, with the shrinkage factor.

    ``fraction_moved`` (:func:`shrinkage_factor`) is a fraction of the way from the
    cluster's own estimate to its target: where it comes out below 0 (the estimate moved
    away from the target) or above 1 (past it), which a cluster's effects correlated with
    its other effects or another factor's can cause, it is NaN and the note says which.

    Parameters
    ----------
    g : GroupDesign
        The grouping factor whose clusters are the rows.
    no, partial, complete : (mean, low, high)
        Each pooling's estimate and interval bounds, arrays broadcastable to (levels, effects).
    population : ndarray (effects,) or (levels, effects)
        The value each cluster is pulled toward: :func:`population_values`, or for a
        nested factor each cluster's parent line.
    factor : ndarray (levels, effects)
        The model's shrinkage factor, :func:`model_shrinkage`.
    notes : ndarray of str (levels, effects)
    intervals : str
        What the intervals are, stored in ``table.attrs["intervals"]``.
    target : str
        What ``population`` is, in the ``target`` column: ``"population"``, or for a
        nested factor ``"subject line"`` (its parent's).
    mcse : ndarray (levels, effects), optional
        Monte Carlo SE of the gap between the no- and partial-pooling estimates: a fraction
        moved past a bound by less than 3 of them is put on the bound, not refused.

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
    ...                     factor=np.full((18, 1), 0.4), notes=np.full((18, 1), ""), intervals="made up")
    >>> t.shape, float(t["shrinkage"].iloc[0]), float(t["fraction_moved"].iloc[0])
    ((18, 15), 0.4, 0.5)
    """
    J, q = g.n_levels, g.n_effects
    pop = np.broadcast_to(population, (J, q))
    cols: dict[str, Any] = {"n_obs": np.repeat(g.counts(), q)}
    for name, (m, lo, hi) in zip(POOLINGS, (no, partial, complete)):
        cols[name] = np.broadcast_to(m, (J, q)).ravel().astype(float)
        cols[f"{name}_low"] = np.broadcast_to(lo, (J, q)).ravel().astype(float)
        cols[f"{name}_high"] = np.broadcast_to(hi, (J, q)).ravel().astype(float)
    cols["population"] = pop.ravel().astype(float)
    cols["target"] = np.full(J * q, target, dtype=object)
    cols["shrinkage"] = np.broadcast_to(factor, (J, q)).ravel().astype(float)
    moved = shrinkage_factor(cols["no_pooling"], cols["partial_pooling"], cols["population"])
    slack = None if mcse is None else 3 * np.broadcast_to(mcse, (J, q)).ravel() / np.abs(
        cols["no_pooling"] - cols["population"])
    cols["fraction_moved"], cols["note"] = bounded_fraction(moved, notes.ravel().astype(object), target, slack=slack)
    index = pd.MultiIndex.from_product([list(g.levels), list(g.effects)], names=["level", "effect"])
    table = pd.DataFrame(cols, index=index)[ESTIMATE_COLUMNS]
    table.attrs["group"] = g.name
    table.attrs["intervals"] = intervals
    table.attrs["target"] = target
    return table


def bounded_fraction(moved: np.ndarray, notes: np.ndarray, target: str, *,
                     slack: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fractions moved on [0, 1]; NaN, with a note, where they fall outside by more than ``slack``.

    ``slack`` (per value; default :data:`FRACTION_SLACK`, rounding) is how far past a bound
    a fraction may lie and be put on it: 3 Monte Carlo SEs of a posterior mean, say.

    Examples
    --------
    >>> moved, notes = bounded_fraction(np.array([0.5, 1.2, -0.1]), np.array(["", "", ""], dtype=object), "population")
    >>> moved.tolist()
    [0.5, nan, nan]
    >>> print(notes[1])
    fraction_moved undefined: the partial-pooling estimate moved past its target (population)
    """
    out = moved.copy()
    notes = notes.copy()
    tol = FRACTION_SLACK if slack is None else np.maximum(np.nan_to_num(slack, nan=0.0), FRACTION_SLACK)
    low, high = moved < -tol, moved > 1 + tol
    out[low | high] = np.nan
    for i in np.flatnonzero(low | high):
        how = "away from" if low[i] else "past"
        said = f"fraction_moved undefined: the partial-pooling estimate moved {how} its target ({target})"
        notes[i] = f"{notes[i]}; {said}" if notes[i] else said
    return np.clip(out, 0.0, 1.0), notes.astype(str)

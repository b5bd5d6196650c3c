"""Per-cluster sufficient statistics of a nested LMM, computed in one vectorised pass.

The collapsed likelihood (:mod:`lmm_bayes.inference.methods.collapsed.likelihood`) needs, per cluster of each factor
of a nesting chain (``subject > subject:neuron > ...``), ``Z'Z``, ``Z'X``, ``Z'y`` and the
cross-products with the ancestors' effects, plus ``X'X``, ``X'y`` and ``y'y``. They are
built with bincounts over the rows of the finest factor and summed up the chain: no
Python loop over rows or clusters, so 10^6 rows take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.reduction import crossproducts

__all__ = ["Level", "SufficientStats", "ancestor_maps", "nesting_chain", "require_chain", "sufficient_statistics"]


# ---------------------------------------------------------------------------- structure


def nesting_chain(design: Design) -> tuple[GroupDesign, ...]:
    """The grouping factors ordered top first, each nested in the previous one.

    Raises
    ------
    ValueError
        When the factors do not form such a chain (crossed factors), saying which.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> [g.name for g in nesting_chain(d)]
    ['Subject']
    """
    groups = design.groups
    if not groups:
        return ()
    by_name = {g.name: g for g in groups}
    roots = [g for g in groups if g.parent not in by_name]
    if len(roots) > 1:
        names = " and ".join(repr(g.name) for g in roots[:2])
        raise ValueError(f"grouping factors {names} are crossed (neither is nested in the other)")
    children: dict[str, list[GroupDesign]] = {}
    for g in groups:
        if g.parent in by_name:
            children.setdefault(g.parent, []).append(g)
    chain = [roots[0]]
    while chain[-1].name in children:
        kids = children[chain[-1].name]
        if len(kids) > 1:
            names = " and ".join(repr(k.name) for k in kids[:2])
            raise ValueError(
                f"grouping factors {names} are both nested in {chain[-1].name!r} but crossed with each other"
            )
        chain.append(kids[0])
    return tuple(chain)


def require_chain(design: Design) -> tuple[GroupDesign, ...]:
    """:func:`nesting_chain`, with an error that says where crossed designs go instead."""
    try:
        return nesting_chain(design)
    except ValueError as err:
        raise ValueError(
            f"these statistics need one factor or a chain of nested factors: {err}; crossed designs are "
            "integrated out by lmm_bayes.inference.methods.crossed.system.CrossedSystem (fit with method='collapsed' or 'auto')"
        ) from None


# ---------------------------------------------------------------------------- sufficient statistics


@dataclass(frozen=True, eq=False)
class Level:
    """Sufficient statistics of one grouping factor of the chain (L clusters, q effects).

    Attributes
    ----------
    name : str
    ZtZ : ndarray, shape (L, q, q)
    ZtA : ndarray, shape (L, q, Q)
        Cross products with the effects of all factors above, top first (Q = their total).
    ZtX : ndarray, shape (L, q, p)
    Zty : ndarray, shape (L, q)
    parent : ndarray of int, shape (L,)
        Index of each cluster's parent cluster (zeros for the top factor).
    """

    name: str
    ZtZ: np.ndarray
    ZtA: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    parent: np.ndarray

    @property
    def n_clusters(self) -> int:
        return self.ZtZ.shape[0]

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]


@dataclass(frozen=True, eq=False)
class SufficientStats:
    """Everything the marginal likelihood needs: global cross products and one :class:`Level` per factor.

    ``chain`` holds the grouping factors top first (one per level) and ``maps`` their
    :func:`ancestor_maps`, computed once with the statistics.
    """

    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    levels: tuple[Level, ...]
    chain: tuple[GroupDesign, ...] = ()
    maps: tuple[tuple[np.ndarray, ...], ...] = ()


def ancestor_maps(chain: Sequence[GroupDesign]) -> list[list[np.ndarray]]:
    """``maps[k][j]``: for each cluster of factor k, the index of its ancestor in factor j <= k."""
    maps: list[list[np.ndarray]] = []
    for k, g in enumerate(chain):
        own = np.arange(g.n_levels)
        if k == 0:
            maps.append([own])
            continue
        to_parent = np.asarray(g.parent_codes, dtype=np.int64)
        maps.append([m[to_parent] for m in maps[k - 1]] + [own])
    return maps


def _aggregate(x: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Sum rows of x (leading axis) that share an index."""
    out = np.zeros((size,) + x.shape[1:])
    np.add.at(out, index, x)
    return out


def sufficient_statistics(design: Design, chain: Sequence[GroupDesign] | None = None) -> SufficientStats:
    """Per-cluster cross products of ``[Z_1, …, Z_K, X, y]`` in one vectorised pass.

    The products are summed per cluster of the finest factor (bincount over the
    rows) and then up the nesting chain (over clusters, not rows). ``chain`` is the
    design's :func:`nesting_chain`, found here unless given.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> s = sufficient_statistics(d)
    >>> s.n, s.levels[0].ZtZ.shape, s.levels[0].ZtZ[0]
    (180, (18, 2, 2), array([[ 10.,  45.],
           [ 45., 285.]]))
    """
    chain = require_chain(design) if chain is None else tuple(chain)
    p = design.X.shape[1]
    if design.reduction is not None:
        leaf, n = _reduced_leaf(design, chain), design.reduction.n
    else:
        X, y = design.X, design.y
        F = np.asfortranarray(np.hstack([g.Z for g in chain] + [X, y[:, None]]))  # contiguous columns
        leaf_codes = chain[-1].codes if chain else np.zeros(design.n, dtype=np.int64)
        leaf = crossproducts(F, leaf_codes, chain[-1].n_levels if chain else 1)
        n = design.n
    D = leaf.shape[1]
    total = leaf.sum(axis=0)
    xcols = slice(D - 1 - p, D - 1)
    maps = ancestor_maps(chain)
    levels = []
    start = 0
    for k, g in enumerate(chain):
        q = g.n_effects
        own = slice(start, start + q)
        cp = leaf if k == len(chain) - 1 else _aggregate(leaf, maps[-1][k], g.n_levels)
        parent = np.zeros(g.n_levels, dtype=np.int64) if k == 0 else np.asarray(g.parent_codes, dtype=np.int64)
        levels.append(
            Level(
                name=g.name,
                ZtZ=cp[:, own, own].copy(),
                ZtA=cp[:, own, :start].copy(),
                ZtX=cp[:, own, xcols].copy(),
                Zty=cp[:, own, -1].copy(),
                parent=parent,
            )
        )
        start += q
    return SufficientStats(
        n=n, XtX=total[xcols, xcols].copy(), Xty=total[xcols, -1].copy(), yty=float(total[-1, -1]),
        levels=tuple(levels), chain=chain, maps=tuple(tuple(m) for m in maps),
    )


def _reduced_leaf(design: Design, chain: Sequence[GroupDesign]) -> np.ndarray:
    """The reduction's per-cluster raw ``F'F`` (:mod:`lmm_bayes.spec.reduction`), columns in chain order.

    The collapsed likelihood is written for products about zero: a reduction taken about another
    reference point gives them by :meth:`~lmm_bayes.spec.reduction.Reduction.products_about` (exactly
    the stored products when its reference is zero, as a standardized reduction's is).
    """
    red = design.reduction
    finest = chain[-1].name if chain else None
    if red.leaf != finest:
        raise ValueError(
            f"the design's reduced statistics are indexed by {red.leaf!r}, not by the finest factor of the "
            f"chain {finest!r}; build the model again"
        )
    offsets, start = {}, 0
    for g in design.groups:
        offsets[g.name] = start
        start += g.n_effects
    order = [offsets[g.name] + k for g in chain for k in range(g.n_effects)]
    D = red.products.shape[1]
    order += list(range(start, D))
    return red.products_about(np.zeros(D), np.ones(D))[:, order][:, :, order]

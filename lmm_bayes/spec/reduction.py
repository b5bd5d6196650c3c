"""Row-level data reduced to cross products: what a design built from Dask keeps instead of rows.

A nested LMM needs its rows only through the per-cluster cross products of
``F = [Z_1 ... Z_K, X, y]`` summed over the rows of each cluster of the finest factor
(:mod:`lmm_bayes.inference.sufficient` sums them up the nesting chain), and, for the
default priors, each column's mean, SD and whether it is constant. Both are sums over
rows, so they are a map-reduce: :func:`crossproducts` is the map (one partition, or all
rows in memory), ``+`` the reduce. :class:`Reduction` holds the result in the design
(:attr:`lmm_bayes.Design.reduction`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Reduction", "crossproducts"]


def crossproducts(F: np.ndarray, codes: np.ndarray, n_leaves: int) -> np.ndarray:
    """Per-cluster ``F'F``, shape (n_leaves, D, D): one bincount per column pair, no loop over rows.

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
    >>> crossproducts(F, np.array([0, 0, 1]), 2)[0]
    array([[ 2.,  5.],
           [ 5., 13.]])
    """
    D = F.shape[1]
    out = np.empty((n_leaves, D, D))
    for a in range(D):
        for b in range(a + 1):
            s = np.bincount(codes, weights=F[:, a] * F[:, b], minlength=n_leaves)
            out[:, a, b] = s
            out[:, b, a] = s
    return out


@dataclass(frozen=True, eq=False)
class Reduction:
    """Sums over every used row of a data set too large to hold (see the module docstring).

    Attributes
    ----------
    n : int
        Rows used (after ``na_action="drop"``).
    leaf : str or None
        The finest grouping factor, whose clusters index ``products`` (None without factors).
    products : ndarray, shape (n_leaves, D, D)
        Per-cluster ``F'F`` with ``F = [Z_g for g in design.groups] + [X, y]`` (the design's
        factor order).
    sums, mins, maxs : ndarray, shape (D,)
        Each column's sum, smallest and largest value.
    source : str
        Where the rows came from, for display (``"a Dask DataFrame of 12 partitions"``).
    sample_seed : int
        Seed of the random sample of rows the design keeps (``Design.y``, ``X``, ...).
    dropped : int
        Rows dropped for missing or infinite values (``na_action="drop"``).
    skeleton : pandas.DataFrame or None
        The first row of every cluster and category (the used columns, as read): the design
        built on it has the whole data's levels and codings (:mod:`lmm_bayes.spec.dask_data`).

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[1.0, 2.0], [1.0, 4.0]])
    >>> r = Reduction(n=2, leaf=None, products=crossproducts(F, np.zeros(2, int), 1), sums=F.sum(axis=0),
    ...               mins=F.min(axis=0), maxs=F.max(axis=0), source="two rows", sample_seed=0)
    >>> r.mean(1), r.sd(1), r.constant(0)
    (3.0, 1.0, True)
    """

    n: int
    leaf: str | None
    products: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    source: str
    sample_seed: int
    dropped: int = 0
    skeleton: pd.DataFrame | None = None

    def total(self) -> np.ndarray:
        """``F'F`` over every row, (D, D)."""
        return self.products.sum(axis=0)

    def mean(self, column: int) -> float:
        return float(self.sums[column] / self.n)

    def sd(self, column: int) -> float:
        """The population SD (``np.std``'s, ddof 0) of one column of F."""
        second = float(self.products[:, column, column].sum()) / self.n
        return float(np.sqrt(max(second - self.mean(column) ** 2, 0.0)))

    def constant(self, column: int) -> bool:
        """Whether a column holds one value (to ``np.allclose``'s tolerance, as in memory)."""
        return bool(np.isclose(self.maxs[column], self.mins[column]))

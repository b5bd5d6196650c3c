"""Row-level data reduced to cross products: what a design built from Dask keeps instead of rows.

A nested LMM needs its rows only through the per-cluster cross products of
``F = [Z_1 ... Z_K, X, y]`` summed over the rows of each cluster of the finest factor
(:mod:`lmm_bayes.inference.methods.collapsed.sufficient` sums them up the nesting chain), and, for the
default priors, each column's mean, SD and whether it is constant. Both are sums over
rows, so they are a map-reduce: :func:`partial_sums` is the map (one partition, or all
rows in memory), :func:`add_partial_sums` the reduce. :class:`Reduction` holds the result
in the design (:attr:`lmm_bayes.Design.reduction`).

Precision: the products are taken about a reference point ``ρ`` inside the data's range,
``Σ (f − ρ)(f − ρ)'``, with the per-cluster sums ``Σ (f − ρ)`` and row counts beside them.
Raw products ``Σ f f'`` lose a column's variation once it carries a large offset (``y + 1e9``:
``Σ y²`` is about ``n·1e18``, whose rounding, about ``n·1e2``, swamps a variance of 1); about
``ρ`` the offset cancels row by row, before any sum. Products about any other point, and those
of a shifted and scaled ``F`` (:meth:`Reduction.products_about`, :meth:`Reduction.standardized`),
follow exactly from them: ``Σ (f − a)(f − a)' = P − δ s' − s δ' + n δ δ'`` with ``δ = a − ρ``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lmm_bayes.spec.distribution import is_constant

__all__ = ["Reduction", "add_partial_sums", "crossproducts", "partial_sums"]


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
        Per-cluster ``Σ (f − ρ)(f − ρ)'`` over the rows ``f`` of ``F = [Z_g for g in
        design.groups] + [X, y]`` (the design's factor order), ``ρ`` the :attr:`reference`.
    sums, mins, maxs : ndarray, shape (D,)
        Each column's sum, smallest and largest value (of ``F`` itself, not about ``ρ``).
    source : str
        Where the rows came from, for display (``"a Dask DataFrame of 12 partitions"``).
    sample_seed : int
        Seed of the random sample of rows the design keeps (``Design.y``, ``X``, ...).
    dropped : int
        Rows dropped for missing or infinite values (``na_action="drop"``).
    skeleton : pandas.DataFrame or None
        The first row of every cluster and category (the used columns, as read): the design
        built on it has the whole data's levels and codings (:mod:`lmm_bayes.spec.dask_data`).
    reference : ndarray of shape (D,), or None
        The point ``ρ`` the products are taken about; None means zeros (raw products, as
        reductions made before references existed hold).
    cluster_sums : ndarray of shape (n_leaves, D), or None
        Per-cluster ``Σ (f − ρ)``; None in reductions made before it existed.
    counts : ndarray of shape (n_leaves,), or None
        Rows per cluster; None in reductions made before it existed.

    Without ``cluster_sums`` and ``counts`` (an old file), products about another point
    than ``ρ`` are found from a column of ones of ``F`` (an intercept, in ``Z`` or ``X``)
    when ``ρ`` is zero, since its products with every column are those sums and counts;
    otherwise :meth:`products_about` raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[1.0, 2.0], [1.0, 4.0]])
    >>> r = Reduction(n=2, leaf=None, products=crossproducts(F, np.zeros(2, int), 1), sums=F.sum(axis=0),
    ...               mins=F.min(axis=0), maxs=F.max(axis=0), source="two rows", sample_seed=0)
    >>> r.mean(1), r.sd(1), r.constant(0)
    (3.0, 1.0, True)

    The same rows 10^12 higher, products about the column means (:meth:`from_rows`):

    >>> big = Reduction.from_rows(F + [0.0, 1e12], np.zeros(2, int), 1)
    >>> big.sd(1), big.products[0]
    (1.0, array([[0., 0.],
           [0., 2.]]))
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
    reference: np.ndarray | None = None
    cluster_sums: np.ndarray | None = None
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.products)
        L, D = (shape[0], shape[1]) if len(shape) == 3 else (None, None)
        for name, want in (("reference", (D,)), ("cluster_sums", (L, D)), ("counts", (L,))):
            value = getattr(self, name)
            if value is not None and np.shape(value) != want:
                raise ValueError(
                    f"the reduction's {name} has shape {np.shape(value)}; products of shape {shape} "
                    f"need {want}"
                )

    @classmethod
    def from_rows(cls, F: np.ndarray, codes: np.ndarray, n_leaves: int, *,
                  reference: np.ndarray | None = None, leaf: str | None = None,
                  source: str = "rows in memory", sample_seed: int = 0) -> Reduction:
        """The reduction of rows held in memory (:func:`partial_sums`), about ``reference``
        (default: the column means of ``F``).

        Examples
        --------
        >>> import numpy as np
        >>> r = Reduction.from_rows(np.array([[1.0, 2.0], [1.0, 4.0]]), np.zeros(2, int), 1)
        >>> r.reference, r.products[0], r.total()
        (array([1., 3.]), array([[0., 0.],
               [0., 2.]]), array([[ 2.,  6.],
               [ 6., 20.]]))
        """
        F = np.asarray(F, dtype=float)
        reference = F.mean(axis=0) if reference is None else np.asarray(reference, dtype=float)
        return cls(n=len(F), leaf=leaf, source=source, sample_seed=sample_seed, reference=reference,
                   **partial_sums(F, np.asarray(codes), n_leaves, reference))

    @property
    def _origin(self) -> np.ndarray:
        """:attr:`reference` as an array (zeros when it is None), shape (D,)."""
        D = self.products.shape[1]
        return np.zeros(D) if self.reference is None else np.asarray(self.reference, dtype=float)

    def _cluster_totals(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-cluster ``Σ (f − ρ)`` and row counts: stored, or from a column of ones when ``ρ`` is 0."""
        if self.cluster_sums is not None and self.counts is not None:
            return np.asarray(self.cluster_sums, float), np.asarray(self.counts, float)
        if np.any(self._origin != 0):
            return None
        ones = np.flatnonzero((np.asarray(self.mins) == 1.0) & (np.asarray(self.maxs) == 1.0))
        if not len(ones):
            return None
        j = ones[0]  # Σ 1·f per cluster: the sums; Σ 1·1: the counts
        return np.array(self.products[:, j, :], dtype=float), np.array(self.products[:, j, j], dtype=float)

    def _vector(self, value: np.ndarray, name: str) -> np.ndarray:
        v = np.asarray(value, dtype=float)
        D = self.products.shape[1]
        if v.shape != (D,):
            raise ValueError(f"{name} must have shape ({D},) (one value per column of F), got {v.shape}")
        return v

    def products_about(self, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Per-cluster ``Σ ((f − shift)/scale)((f − shift)/scale)'``, shape (n_leaves, D, D).

        Exact algebra on the stored products, ``P − δ s' − s δ' + n_c δ δ'`` with
        ``δ = shift − ρ``, then divided by ``outer(scale, scale)``: as precise as ``P`` when
        ``shift`` lies near ``ρ`` or inside the data's range.

        Parameters
        ----------
        shift, scale : array_like, shape (D,)
            Subtracted from and dividing each column of ``F``.

        Raises
        ------
        ValueError
            Wrong shapes; or ``shift`` differs from ``ρ`` in a reduction without cluster sums
            and counts that has no column of ones to give them (see the class docstring).

        Examples
        --------
        >>> import numpy as np
        >>> F = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 9.0]])
        >>> r = Reduction.from_rows(F, np.array([0, 0, 1]), 2)
        >>> r.products_about(np.zeros(2), np.ones(2))[0]  # raw: F'F of cluster 0
        array([[ 2.,  6.],
               [ 6., 20.]])
        >>> r.products_about(np.array([0.0, 3.0]), np.array([1.0, 2.0]))[0]
        array([[2. , 0. ],
               [0. , 0.5]])
        """
        shift, scale = self._vector(shift, "shift"), self._vector(scale, "scale")
        delta = shift - self._origin
        out = np.array(self.products, dtype=float)
        if np.any(delta != 0):
            totals = self._cluster_totals()
            if totals is None:
                raise ValueError(
                    "this reduction has no per-cluster sums and counts (it was saved before they existed) "
                    "and no column of ones to give them, so its products are known only about its "
                    "reference point; build the model from the data again"
                )
            s, counts = totals
            cross = s[:, :, None] * delta[None, None, :]
            out -= cross + np.swapaxes(cross, 1, 2)
            out += counts[:, None, None] * np.outer(delta, delta)[None]
        return out / np.outer(scale, scale)[None]

    def standardized(self, shift: np.ndarray, scale: np.ndarray) -> Reduction:
        """The reduction of ``F_w = (F − shift) / scale`` (columnwise), its products about zero.

        ``products`` are :meth:`products_about` ``(shift, scale)``, the reference zeros, the
        cluster sums ``(s − n_c δ) / scale`` and the sums, minima and maxima mapped alike;
        rows, factor, source, seed, dropped rows and skeleton are kept.

        Parameters
        ----------
        shift : array_like, shape (D,)
        scale : array_like, shape (D,)
            Every entry positive.

        Raises
        ------
        ValueError
            A scale is not positive; see :meth:`products_about`.

        Examples
        --------
        >>> import numpy as np
        >>> F = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 9.0]]) + [0.0, 1e9]
        >>> r = Reduction.from_rows(F, np.array([0, 0, 1]), 2)
        >>> w = r.standardized(np.array([0.0, r.mean(1)]), np.array([1.0, r.sd(1)]))
        >>> round(w.mean(1), 12), round(w.sd(1), 12), float(w.products.sum(axis=0)[1, 1])
        (0.0, 1.0, 3.0)
        """
        shift, scale = self._vector(shift, "shift"), self._vector(scale, "scale")
        if not np.all(scale > 0):
            raise ValueError(f"every scale must be positive (columns are divided by it), got {scale}")
        products = self.products_about(shift, scale)
        delta = shift - self._origin
        totals = self._cluster_totals()
        cluster_sums = counts = None
        if totals is None:  # δ = 0 here (else products_about raised): the sums of F − ρ are unknown
            sums = (np.asarray(self.sums, float) - self.n * shift) / scale
        else:
            s, counts = totals
            cluster_sums = (s - counts[:, None] * delta[None, :]) / scale[None, :]
            sums = (s.sum(axis=0) - self.n * delta) / scale  # Σ (f − ρ) − n δ: no offset to cancel
        return replace(
            self, products=products, sums=sums, mins=(np.asarray(self.mins, float) - shift) / scale,
            maxs=(np.asarray(self.maxs, float) - shift) / scale, reference=np.zeros(len(shift)),
            cluster_sums=cluster_sums, counts=None if counts is None else np.rint(counts).astype(np.int64),
        )

    def total(self) -> np.ndarray:
        """Raw ``F'F`` over every row (about zero, whatever the reference), (D, D)."""
        D = self.products.shape[1]
        return self.products_about(np.zeros(D), np.ones(D)).sum(axis=0)

    def mean(self, column: int) -> float:
        """The mean of one column of F: ``ρ + Σ (f − ρ) / n`` (``sums / n`` without cluster sums)."""
        if self.cluster_sums is None:
            return float(self.sums[column] / self.n)
        return float(self._origin[column] + np.sum(self.cluster_sums[:, column]) / self.n)

    def sd(self, column: int) -> float:
        """The population SD (``np.std``'s, ddof 0) of one column of F, from the products about ``ρ``.

        ``sqrt(Σ (f − ρ)² / n − (mean − ρ)²)``: with ``ρ`` inside the data's range the two terms
        are of the variance's size, so a large offset of the column does not cancel.
        """
        second = float(self.products[:, column, column].sum()) / self.n
        if self.cluster_sums is not None:
            centre = float(np.sum(self.cluster_sums[:, column])) / self.n
        else:
            centre = self.mean(column) - float(self._origin[column])
        return float(np.sqrt(max(second - centre**2, 0.0)))

    def constant(self, column: int) -> bool:
        """Whether a column holds one value, up to rounding in its last bits (as in memory:
        :func:`lmm_bayes.spec.distribution.is_constant`; ``Days + 1e6`` is not constant)."""
        return is_constant(np.array([self.mins[column], self.maxs[column]], dtype=float))


def partial_sums(F: np.ndarray, codes: np.ndarray, n_leaves: int, reference: np.ndarray,
                 ) -> dict[str, np.ndarray]:
    """The map of the module docstring: the sums of :class:`Reduction` over some rows ``F``.

    Per cluster (``codes``) the products and sums of ``F − reference`` and the row counts,
    and the columns' raw sums, minima and maxima (``inf``/``-inf`` without rows). Two
    results add with :func:`add_partial_sums` when taken about the same ``reference``.

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 7.0]])
    >>> s = partial_sums(F, np.array([0, 0, 1]), 2, reference=np.array([1.0, 4.0]))
    >>> s["cluster_sums"], s["counts"], s["products"][1]
    (array([[ 0., -3.],
           [ 0.,  3.]]), array([2, 1]), array([[0., 0.],
           [0., 9.]]))
    """
    F = np.asarray(F, dtype=float)
    D = F.shape[1]
    if not len(F):
        return {"products": np.zeros((n_leaves, D, D)), "cluster_sums": np.zeros((n_leaves, D)),
                "counts": np.zeros(n_leaves, dtype=np.int64), "sums": np.zeros(D), "mins": np.full(D, np.inf),
                "maxs": np.full(D, -np.inf)}
    G = np.asfortranarray(F - np.asarray(reference, dtype=float)[None, :])  # the offsets cancel row by row
    sums = [np.bincount(codes, weights=G[:, a], minlength=n_leaves) for a in range(D)]
    return {
        "products": crossproducts(G, codes, n_leaves), "cluster_sums": np.stack(sums, axis=1),
        "counts": np.bincount(codes, minlength=n_leaves),
        "sums": F.sum(axis=0), "mins": F.min(axis=0), "maxs": F.max(axis=0),
    }


def add_partial_sums(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reduce of the module docstring: two :func:`partial_sums` (about one reference) combined."""
    out = {k: a[k] + b[k] for k in ("products", "cluster_sums", "counts", "sums")}
    return {**out, "mins": np.minimum(a["mins"], b["mins"]), "maxs": np.maximum(a["maxs"], b["maxs"])}

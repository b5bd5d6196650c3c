"""The per-cluster sums of the structured residual likelihood, computed once in a pass over the rows.

With ``w_i = [Z_i, X_i, y_i]`` (k = q + p + 1 columns) and each cluster's rows sorted by time
(:class:`~lmm_bayes.spec.residual.ResidualDesign`), the AR(1) quadratic form of cluster j is

    u' A_j^-1 v = u_1 v_1 + sum_(i >= 2) (u_i - phi_i u_(i-1)) (v_i - phi_i v_(i-1)) / (1 - phi_i^2),

``phi_i = rho^(t_i - t_(i-1))`` (:mod:`lmm_bayes.inference.methods.structured.likelihood`). Grouping
the rows by their gap c (one of the few distinct ``t_i - t_(i-1)``) it needs, for every pair of
columns, only

* ``first``: ``w_1 w_1'`` (without ``ar=``: the sum over every row, the ``sigma^2 I`` case);
* ``cur[c]``: ``sum w_i w_i'`` over the rows i >= 2 whose gap is c;
* ``prev[c]``: ``sum w_(i-1) w_(i-1)'`` over the same rows;
* ``lag[c]``: ``sum (w_i w_(i-1)' + w_(i-1) w_i')`` over the same rows;
* ``count[c]``: how many such rows (``log|A_j| = sum_c count[c] log(1 - phi_c^2)``).

With unit gaps only this is the three-sum form ``[S0 + rho^2 S_int - rho S1] / (1 - rho^2)``:
``first + cur = S0``, ``prev - (first row) = S_int``, ``lag = S1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmm_bayes.spec.design import Design

__all__ = ["ResidualSums", "residual_sums"]


@dataclass(frozen=True, eq=False)
class ResidualSums:
    """Per-cluster sums of ``w w'`` (J clusters, C gap lengths, k = q + p + 1 columns of ``[Z, X, y]``).

    Attributes
    ----------
    n : ndarray, shape (J,)
        Rows per cluster.
    first : ndarray, shape (J, K, k, k)
        By the category (of ``sigma="~ cond"``; K = 1 without) of the row.
    cur, prev : ndarray, shape (J, C, K, k, k)
        By gap and the category of row i (``cur``) or of row i - 1 (``prev``).
    lag : ndarray, shape (J, C, K, K, k, k)
        By gap and the categories of rows i and i - 1.
    count : ndarray, shape (J, C)
    ncat : ndarray, shape (J, K)
        Rows per cluster and category.
    gaps : ndarray of int, shape (C,)
        The gap lengths (empty without ``ar=``).
    q, p : int
        Random effects and fixed effects (the column blocks of ``w``).
    """

    n: np.ndarray
    first: np.ndarray
    cur: np.ndarray
    prev: np.ndarray
    lag: np.ndarray
    count: np.ndarray
    ncat: np.ndarray
    gaps: np.ndarray
    q: int
    p: int


def _pair_sums(a: np.ndarray, b: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """``sum a_i b_i'`` by ``index`` (rows x k each) -> (size, k, k)."""
    k = a.shape[1]
    out = np.empty((size, k, k))
    for s in range(k):
        for t in range(k):
            out[:, s, t] = np.bincount(index, weights=a[:, s] * b[:, t], minlength=size)
    return out


def residual_sums(design: Design) -> ResidualSums:
    """The sums of :class:`ResidualSums` for a design with a residual structure (its one factor).

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5], "g": list("aaabb"), "trial": [1, 2, 4, 1, 2]})
    >>> s = residual_sums(lb.LMM("y ~ 1 + (1 | g)", df, ar="trial | g").design)
    >>> s.gaps.tolist(), s.count.tolist(), s.first[:, 0, 2, 2].tolist(), s.lag[0, :, 0, 0, 2, 2].tolist()
    ([1, 2], [[1.0, 1.0], [1.0, 0.0]], [1.0, 16.0], [4.0, 12.0])
    """
    res = design.residual
    g = design.group(res.group)
    J, K = g.n_levels, len(res.categories)
    w = np.column_stack([g.Z, design.X, design.y]).astype(float)
    codes, cat = g.codes, res.category
    n = np.bincount(codes, minlength=J).astype(float)
    ncat = np.bincount(codes * K + cat, minlength=J * K).reshape(J, K).astype(float)
    gaps = res.gap_values
    C = len(gaps)
    k = w.shape[1]
    q, p = g.n_effects, design.X.shape[1]
    if not res.ar:
        first = _pair_sums(w, w, codes * K + cat, J * K).reshape(J, K, k, k)
        e4, e5 = np.zeros((J, 0, K, k, k)), np.zeros((J, 0, K, K, k, k))
        return ResidualSums(n, first, e4, e4, e5, np.zeros((J, 0)), ncat, gaps, q, p)
    order = res.order
    ws, cs, gs, ks = w[order], codes[order], res.gap[order], cat[order]
    head = gs == 0  # a cluster's first row
    first = _pair_sums(ws[head], ws[head], cs[head] * K + ks[head], J * K).reshape(J, K, k, k)
    later = np.flatnonzero(~head)
    cur_w, prev_w = ws[later], ws[later - 1]  # sorted by cluster, then time: the row before is the previous
    at = cs[later] * C + np.searchsorted(gaps, gs[later])  # (cluster, gap)
    now, before = ks[later], ks[later - 1]
    cur = _pair_sums(cur_w, cur_w, at * K + now, J * C * K).reshape(J, C, K, k, k)
    prev = _pair_sums(prev_w, prev_w, at * K + before, J * C * K).reshape(J, C, K, k, k)
    cross = _pair_sums(cur_w, prev_w, (at * K + now) * K + before, J * C * K * K).reshape(J, C, K, K, k, k)
    lag = cross + np.swapaxes(cross, -1, -2)
    count = np.bincount(at, minlength=J * C).reshape(J, C).astype(float)
    return ResidualSums(n, first, cur, prev, lag, count, ncat, gaps, q, p)

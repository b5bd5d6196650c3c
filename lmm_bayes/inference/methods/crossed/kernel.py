"""Compiled loops of the crossed collapsed method (:mod:`lmm_bayes.inference.methods.crossed.system`).

The blocked Cholesky's per-cluster work, compiled once per machine by numba (``cache=True``)
and run without the GIL: :func:`schur` eliminates the block-diagonal factor and forms the
dense Schur complement, :func:`moments` turns its inverse into the posterior means and the
summed second moments of every b, :func:`draw_block` draws the block-diagonal factor's b
given the dense effects. The dense factorisation itself is LAPACK's (scipy).

Notation (arrays passed in): the block-diagonal factor has L clusters of q effects; cluster
j's coupling to the m dense effects is stored by rows ``t in ptr[j]:ptr[j+1]``: dense
effect ``col[t]`` with ``Bv[t, a] = (Z_j[:, a])' Z_dense[:, col[t]]``. ``rest`` holds one row
``(first effect, levels, effects)`` per dense factor, ``Grest`` its ``sigma^2 G^-1``.

This module uses nothing of :mod:`lmm_bayes.inference.methods.collapsed.kernel`: numba checks its cache against
each function's own file, so the two compiled files never run stale code of each other.
Importing it compiles or loads every function (a tiny call at the bottom), so the loader's
notice covers it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["assemble", "draw_block", "factor_small", "moments", "schur"]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _small_cholesky(S, q, L):
    """Lower Cholesky factor of the q x q matrix S into L; False when S is not positive definite."""
    for j in range(q):
        acc = S[j, j]
        for m in range(j):
            acc -= L[j, m] * L[j, m]
        if not acc > 0.0:
            return False
        L[j, j] = math.sqrt(acc)
        for i in range(j + 1, q):
            acc = S[i, j]
            for m in range(j):
                acc -= L[i, m] * L[j, m]
            L[i, j] = acc / L[j, j]
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def schur(A0, Gs, ptr, col, Bv, cs, cr, D0, rest, Grest, dense):
    """Eliminate the block-diagonal factor.

    ``A_j = A0_j + Gs`` (``Gs = sigma^2 G^-1`` of that factor). Returns ``(ok, S, LA, Ainv,
    logdet_A, P, a_s, rhs)``: the Schur complement ``S = D0 + sigma^2 Lambda_dense^-1 - B'A^-1B``,
    each cluster's Cholesky factor and inverse, ``sum log|A_j|``, ``P = A^-1 B`` (rows as
    ``Bv``), ``a_s = A^-1 c_s`` and ``rhs = c_r - B'a_s``. With ``dense`` the caller
    subtracts ``B'A^-1 B`` itself (one BLAS product when most clusters couple to most
    dense effects): S is returned without it.
    """
    L, q = A0.shape[0], A0.shape[1]
    S = D0.copy()
    for r in range(rest.shape[0]):
        first, levels, qk = rest[r, 0], rest[r, 1], rest[r, 2]
        for level in range(levels):
            at = first + level * qk
            for a in range(qk):
                for c in range(qk):
                    S[at + a, at + c] += Grest[r, a, c]
    LA = np.zeros((L, q, q))
    Ainv = np.empty((L, q, q))
    P = np.empty(Bv.shape)
    a_s = np.empty(L * q)
    rhs = cr.copy()
    A = np.empty((q, q))
    logdet = 0.0
    for j in range(L):
        for a in range(q):
            for c in range(q):
                A[a, c] = A0[j, a, c] + Gs[a, c]
        if not _small_cholesky(A, q, LA[j]):
            return False, S, LA, Ainv, logdet, P, a_s, rhs
        for a in range(q):
            logdet += 2.0 * math.log(LA[j, a, a])
        for c in range(q):  # column c of A^-1: forward then backward substitution
            for i in range(q):
                acc = 1.0 if i == c else 0.0
                for t in range(i):
                    acc -= LA[j, i, t] * Ainv[j, t, c]
                Ainv[j, i, c] = acc / LA[j, i, i]
            for i in range(q - 1, -1, -1):
                acc = Ainv[j, i, c]
                for t in range(i + 1, q):
                    acc -= LA[j, t, i] * Ainv[j, t, c]
                Ainv[j, i, c] = acc / LA[j, i, i]
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += Ainv[j, a, c] * cs[j * q + c]
            a_s[j * q + a] = acc
        for t in range(ptr[j], ptr[j + 1]):
            acc = 0.0
            for a in range(q):
                v = 0.0
                for c in range(q):
                    v += Ainv[j, a, c] * Bv[t, c]
                P[t, a] = v
                acc += Bv[t, a] * a_s[j * q + a]
            rhs[col[t]] -= acc
        if dense:
            continue
        for t1 in range(ptr[j], ptr[j + 1]):
            c1 = col[t1]
            for t2 in range(ptr[j], ptr[j + 1]):
                acc = 0.0
                for a in range(q):
                    acc += Bv[t1, a] * P[t2, a]
                S[c1, col[t2]] -= acc
    return True, S, LA, Ainv, logdet, P, a_s, rhs


@numba.njit(cache=True, nogil=True, error_model="numpy")
def moments(Sinv, rhs, ptr, col, P, Ainv, a_s, rest, s2, dense):
    """Posterior means and summed second moments from ``Sinv`` (lower triangle of ``S^-1``).

    Returns ``(ur, us, B_s, B_rest)``: the dense and block-diagonal effects' means
    (``M^-1 c``), and ``sum_j E[b_j b_j' | y]`` for the block-diagonal factor (q x q) and for
    each dense factor (``(R, qmax, qmax)``), with ``Cov(b | y) = sigma^2 M^-1``. With
    ``dense`` B_s leaves out ``sigma^2 sum_j P_j S^-1 P_j'``, which the caller adds (BLAS).
    """
    m = rhs.size
    L, q = Ainv.shape[0], Ainv.shape[1]
    full = np.empty((m, m))  # S^-1 from its lower triangle, read column by column (LAPACK's order)
    for k in range(m):
        for i in range(k, m):
            v = Sinv[i, k]
            full[i, k] = v
            full[k, i] = v
    ur = full @ rhs
    us = np.empty(L * q)
    B_s = np.zeros((q, q))
    width = 1
    for j in range(L):
        width = max(width, ptr[j + 1] - ptr[j])
    inner = np.empty((width, q))
    for j in range(L):
        t0, t1 = ptr[j], ptr[j + 1]
        for a in range(q):
            acc = a_s[j * q + a]
            for t in range(t0, t1):
                acc -= P[t, a] * ur[col[t]]
            us[j * q + a] = acc
        if dense:
            for a in range(q):
                for c in range(q):
                    B_s[a, c] += us[j * q + a] * us[j * q + c] + s2 * Ainv[j, a, c]
            continue
        for u in range(t1 - t0):  # inner = S^-1[C_j, C_j] P_j', then P_j S^-1 P_j' = P_j inner
            row = full[col[t0 + u]]
            for c in range(q):
                inner[u, c] = 0.0
            for t in range(t0, t1):
                v = row[col[t]]
                for c in range(q):
                    inner[u, c] += v * P[t, c]
        for a in range(q):
            for c in range(q):
                spread = 0.0
                for u in range(t1 - t0):
                    spread += P[t0 + u, a] * inner[u, c]
                B_s[a, c] += us[j * q + a] * us[j * q + c] + s2 * (Ainv[j, a, c] + spread)
    qmax = 1
    for r in range(rest.shape[0]):
        qmax = max(qmax, rest[r, 2])
    B_rest = np.zeros((rest.shape[0], qmax, qmax))
    for r in range(rest.shape[0]):
        first, levels, qk = rest[r, 0], rest[r, 1], rest[r, 2]
        for level in range(levels):
            at = first + level * qk
            for a in range(qk):
                for c in range(qk):
                    i, k = at + a, at + c
                    B_rest[r, a, c] += ur[i] * ur[k] + s2 * full[i, k]
    return ur, us, B_s, B_rest


@numba.njit(cache=True, nogil=True, error_model="numpy")
def draw_block(ur, cs, ptr, col, Bv, LA, Ainv, sigma, z):
    """The block-diagonal factor's b given the dense effects ``ur``:
    ``b_j = A_j^-1 (c_j - B_j ur) + sigma LA_j^-T z_j``."""
    L, q = Ainv.shape[0], Ainv.shape[1]
    out = np.empty(L * q)
    r = np.empty(q)
    w = np.empty(q)
    for j in range(L):
        for a in range(q):
            acc = cs[j * q + a]
            for t in range(ptr[j], ptr[j + 1]):
                acc -= Bv[t, a] * ur[col[t]]
            r[a] = acc
        for a in range(q - 1, -1, -1):  # LA^-T z
            acc = z[j * q + a]
            for t in range(a + 1, q):
                acc -= LA[j, t, a] * w[t]
            w[a] = acc / LA[j, a, a]
        for a in range(q):
            acc = sigma * w[a]
            for c in range(q):
                acc += Ainv[j, a, c] * r[c]
            out[j * q + a] = acc
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def factor_small(A0, Gs, ptr, col, Bv, cs, cr, D0, rest, Grest, Bd2, s2):
    """The whole elimination for a small dense block, LAPACK called from here (no GIL held).

    ``Bd2`` is the coupling as a dense ``(L q, m)`` array, or ``(0, m)`` to eliminate it cluster
    by cluster. Returns ``(ok, log|M|, ur, us, B_s, B_rest, a_s, rhs)`` (:func:`moments`).
    """
    L, q = A0.shape[0], A0.shape[1]
    m = D0.shape[0]
    dense = Bd2.shape[0] > 0
    ok, S, LA, Ainv, logdet, P, a_s, rhs = schur(A0, Gs, ptr, col, Bv, cs, cr, D0, rest, Grest, dense)
    failed = (False, 0.0, rhs, a_s, np.zeros((q, q)), np.zeros((1, 1, 1)), a_s, rhs)
    if not ok:
        return failed
    Pd = np.zeros((L * q if dense else 0, m))
    if dense:  # S -= B'A^-1 B as one BLAS product
        for j in range(L):
            for t in range(ptr[j], ptr[j + 1]):
                for a in range(q):
                    Pd[j * q + a, col[t]] = P[t, a]
        S -= np.dot(Bd2.T, Pd)
    try:
        LS = np.linalg.cholesky(S)
    except Exception:  # not positive definite
        return failed
    for i in range(m):
        logdet += 2.0 * math.log(LS[i, i])
    Sinv = np.linalg.inv(S)
    ur, us, B_s, B_rest = moments(Sinv, rhs, ptr, col, P, Ainv, a_s, rest, s2, dense)
    if dense:  # + sigma^2 sum_j P_j S^-1 P_j'
        T = np.dot(Pd, Sinv)
        for j in range(L):
            for a in range(q):
                for c in range(q):
                    acc = 0.0
                    for t in range(m):
                        acc += T[j * q + a, t] * Pd[j * q + c, t]
                    B_s[a, c] += s2 * acc
    return True, logdet, ur, us, B_s, B_rest, a_s, rhs


@numba.njit(cache=True, nogil=True, error_model="numpy")
def assemble(beta, s2, Ginv, logdet_G, logdet_M, cs, a_s, rhs, ur, us, B_s, B_rest, s, shapes, XtX, Xty, yty,
             ZsX, ZrX, n):
    """The marginal log-likelihood and its gradient from the elimination's results (Fisher's
    identity, as in the kernel). ``shapes`` holds (levels, effects) per factor in design order,
    ``s`` the block-diagonal one. Returns ``(ll, d/dbeta, d/dsigma, d/dG)``."""
    p = beta.size
    reduction = 0.0
    for i in range(cs.size):
        reduction += cs[i] * a_s[i]
    for i in range(rhs.size):
        reduction += rhs[i] * ur[i]
    rtr = yty
    for a in range(p):
        acc = 0.0
        for c in range(p):
            acc += XtX[a, c] * beta[c]
        rtr += beta[a] * (acc - 2.0 * Xty[a])
    quad = rtr - reduction
    q_total = 0.0
    trace = 0.0
    lam_term = 0.0
    gG = np.zeros(Ginv.shape)
    r = 0
    for k in range(shapes.shape[0]):
        L, q = shapes[k, 0], shapes[k, 1]
        Bk = B_s if k == s else B_rest[r, :q, :q]
        if k != s:
            r += 1
        Gi = Ginv[k, :q, :q]
        q_total += L * q
        lam_term += L * (logdet_G[k] - q * math.log(s2))
        GB = np.zeros((q, q))
        for a in range(q):
            for c in range(q):
                trace += Gi[a, c] * Bk[c, a]
                for t in range(q):
                    GB[a, c] += Gi[a, t] * Bk[t, c]
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for t in range(q):
                    acc += GB[a, t] * Gi[t, c]
                gG[k, a, c] = 0.5 * (acc - L * Gi[a, c])
    ll = -0.5 * (n * math.log(2.0 * math.pi) + n * math.log(s2) + lam_term + logdet_M + quad / s2)
    g_beta = np.empty(p)
    for a in range(p):
        acc = Xty[a]
        for i in range(us.size):
            acc -= ZsX[i, a] * us[i]
        for i in range(ur.size):
            acc -= ZrX[i, a] * ur[i]
        for c in range(p):
            acc -= XtX[a, c] * beta[c]
        g_beta[a] = acc / s2
    sigma = math.sqrt(s2)
    g_sigma = -n / sigma + (quad + s2 * (q_total - trace)) / (s2 * sigma)
    return ll, g_beta, g_sigma, gG


def _compile_now() -> None:
    """Compile (or load from the cache) every function with the types a fit passes."""
    A0 = np.ones((1, 1, 1))
    ptr, col = np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64)
    Bv = np.ones((1, 1))
    rest = np.array([[0, 1, 1]], dtype=np.int64)
    ok, S, LA, Ainv, _, P, a_s, rhs = schur(A0, np.eye(1), ptr, col, Bv, np.ones(1), np.ones(1), np.eye(1) * 2,
                                            rest, np.ones((1, 1, 1)), False)
    for dense in (False, True):
        ur, us, B_s, B_rest = moments(np.asfortranarray(S), rhs, ptr, col, P, Ainv, a_s, rest, 1.0, dense)
        factor_small(A0, np.eye(1), ptr, col, Bv, np.ones(1), np.ones(1), np.eye(1) * 2, rest, np.ones((1, 1, 1)),
                     np.ones((1 if dense else 0, 1)), 1.0)
    assemble(np.ones(1), 1.0, np.ones((2, 1, 1)), np.zeros(2), 0.0, np.ones(1), a_s, rhs, ur, us, B_s, B_rest, 0,
             np.ones((2, 2), dtype=np.int64), np.eye(1), np.ones(1), 1.0, np.ones((1, 1)), np.ones((1, 1)), 1)
    draw_block(np.ones(1), np.ones(1), ptr, col, Bv, LA, Ainv, 1.0, np.ones(1))


_compile_now()

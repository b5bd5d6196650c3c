"""The collapsed log-density and its exact gradient, compiled once per machine by numba.

Importing this module loads the compiled kernel from numba's on-disk cache, or, the first
time on a machine (or after the file changed), compiles it: import it through
:func:`lmm_bayes.inference.methods.kernel_loader.load`, which says so on screen.

The model's structure (fixed effects, factors of the nesting chain, clusters, effects per
factor, correlated blocks, prior families) is passed as *data*: two flat arrays ``ints``
and ``floats`` laid out by :mod:`lmm_bayes.inference.methods.collapsed.packing`. So one machine code serves
every formula and data set, and numba's on-disk cache (``cache=True``) makes a new
process load it in a fraction of a second instead of compiling a PyMC graph for ~30 s.

Unconstrained parameters, in this order:

* ``beta`` (p), as is;
* ``log sigma``;
* per correlated or single block of each factor, top factor first: the log SDs of its m
  effects, then ``m(m-1)/2`` unconstrained canonical partial correlations (Stan's
  ``cholesky_corr`` transform: ``tanh``, then rows of the correlation's Cholesky factor).

The prior is that of the PyMC graph (:mod:`lmm_bayes.inference.graph`): SDs with their own
families, correlations LKJ(eta), independent of the SDs, as ``LKJCholeskyCov`` defines them.

The gradient of the marginal likelihood is exact without differentiating the
factorisation: by Fisher's identity, ``d log p(y | theta) = E[d log p(y, b | theta) | y]``,
and for a Gaussian model that expectation needs only the posterior means ``m_j`` and
covariances ``V_j`` of every cluster's b, which the same elimination gives in one more pass
down the chain:

* ``d/d beta = (X'y - X'X beta - sum_j (Z_j'X)' m_j) / sigma^2``;
* ``d/d G_k = (G_k^-1 B_k G_k^-1 - L_k G_k^-1) / 2`` with ``B_k = sum_j (m_j m_j' + V_j)``;
* ``d/d sigma = -n / sigma + (r'r - (W'r)'M^-1(W'r) + sigma^2 (sum_k L_k q_k - sum_k tr(G_k^-1 B_k))) / sigma^3``.

Crossed designs (:mod:`lmm_bayes.inference.methods.crossed.system`) get ``m_j`` and ``V_j`` from another
factorisation and share the rest: :func:`density_start` and :func:`density_finish`.

Cost: a batch of tiny Choleskys per factor above the finest; the finest factor, when it has
one effect (neurons in subjects), is summed per group of clusters sharing a parent and
``Z'Z`` (one group per parent in a balanced design), so 10^5 neurons cost what their subjects
cost. :func:`draw_effects` draws every b exactly afterwards, top factor first.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "BLOCK_FIELDS",
    "BLOCK_WIDTH",
    "FAMILY_CODES",
    "HEADER",
    "LEVEL_FIELDS",
    "LEVEL_WIDTH",
    "constrain",
    "density_finish",
    "density_start",
    "draw_effects",
    "expand_cfunc",
    "expand_flat",
    "log_density",
    "logp_cfunc",
]

#: prior family -> code in ``ints``; parameters are stored as (nu, mu, scale) in ``floats``
FAMILY_CODES = {"Normal": 0, "StudentT": 1, "HalfNormal": 2, "Exponential": 3, "HalfStudentT": 4, "HalfCauchy": 5}
#: positions of the header fields at the start of ``ints``
HEADER = (
    "p", "K", "n_blocks", "n", "levels", "blocks", "effects", "parents", "families",
    "yty", "XtX", "Xty", "priors", "eta",
)
# numba reads module-level ints as constants (not a dict): here, as its cache checks this file only
(_P, _K, _NB, _N, _LEV, _BLK, _EFF, _PAR, _FAM, _YTY, _XTX, _XTY, _PRI, _ETA) = range(len(HEADER))
#: a level table row (one per factor, top first; packing writes it by name): q, the effects Q above,
#: clusters, first cluster, offsets into floats of Z'Z, Z'A, Z'X, Z'y, 1 for correlated effects, then
#: for a finest factor with one effect its groups (below): count, offsets of their parents in ints
#: and of their (count, Z'Z, W) records in floats
LEVEL_FIELDS = ("q", "q_above", "n_clusters", "first_cluster", "ZtZ", "ZtA", "ZtX", "Zty", "correlated",
                "n_groups", "group_parents", "group_records")
(_L_Q, _L_Q_ABOVE, _L_N_CLUSTERS, _L_FIRST_CLUSTER, _L_ZTZ, _L_ZTA, _L_ZTX, _L_ZTY, _L_CORRELATED,
 _L_N_GROUPS, _L_GROUP_PARENTS, _L_GROUP_RECORDS) = range(len(LEVEL_FIELDS))
LEVEL_WIDTH = _LEVEL_WIDTH = len(LEVEL_FIELDS)
#: the fields of a row of the block table: factor, size, first effect (in the effects list), first x, first prior
BLOCK_FIELDS = ("factor", "size", "first_effect", "first_x", "first_prior")
(_B_FACTOR, _B_SIZE, _B_FIRST_EFFECT, _B_FIRST_X, _B_FIRST_PRIOR) = range(len(BLOCK_FIELDS))
BLOCK_WIDTH = _BLOCK_WIDTH = len(BLOCK_FIELDS)
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@numba.njit(cache=True, error_model="numpy")
def _prior(code, nu, mu, scale, value):
    """Log density and its derivative for one prior family."""
    if code == 0 or code == 2:  # Normal, HalfNormal
        z = (value - mu) / scale
        lp = -0.5 * z * z - math.log(scale) - 0.5 * _LOG_2PI
        return lp + (_LOG_2 if code == 2 else 0.0), -z / scale
    if code == 1 or code == 4:  # StudentT, HalfStudentT
        t = (value - mu) / scale
        lp = (math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
              - math.log(scale) - 0.5 * (nu + 1.0) * math.log1p(t * t / nu))
        return lp + (_LOG_2 if code == 4 else 0.0), -(nu + 1.0) * t / (scale * (nu + t * t))
    if code == 3:  # Exponential(lam = scale)
        return math.log(scale) - scale * value, -scale
    # HalfCauchy(beta = scale)
    return _LOG_2 - math.log(math.pi * scale) - math.log1p((value / scale) ** 2), -2.0 * value / (scale**2 + value**2)


@numba.njit(cache=True, error_model="numpy")
def _matmul(A, B):
    """A @ B for tiny matrices (no BLAS call, any memory layout)."""
    n, r = A.shape
    c = B.shape[1]
    out = np.zeros((n, c))
    for i in range(n):
        for t in range(r):
            a = A[i, t]
            for j in range(c):
                out[i, j] += a * B[t, j]
    return out


@numba.njit(cache=True, error_model="numpy")
def _corr_cholesky(y, m):
    """Cholesky factor of a correlation matrix from unconstrained y, and log|Jacobian| (Stan's transform)."""
    L = np.zeros((m, m))
    L[0, 0] = 1.0
    logjac = 0.0
    k = 0
    for i in range(1, m):
        z = math.tanh(y[k])
        logjac += math.log1p(-z * z)
        L[i, 0] = z
        k += 1
        total = z * z
        for j in range(1, i):
            z = math.tanh(y[k])
            logjac += math.log1p(-z * z) + 0.5 * math.log1p(-total)
            L[i, j] = z * math.sqrt(1.0 - total)
            total += L[i, j] * L[i, j]
            k += 1
        L[i, i] = math.sqrt(1.0 - total)
    return L, logjac


@numba.njit(cache=True, error_model="numpy")
def _corr_cholesky_grad(y, m, gL):
    """Gradient wrt y of ``sum(gL * L(y)) + log|Jacobian|`` (reverse mode through :func:`_corr_cholesky`)."""
    gy = np.zeros(y.size)
    k = 0
    for i in range(1, m):
        z = np.empty(i)
        w = np.empty(i + 1)  # w[j]: sum of squares of the row's entries before j
        x = np.empty(i)
        w[0] = 0.0
        for j in range(i):
            z[j] = math.tanh(y[k + j])
            x[j] = z[j] if j == 0 else z[j] * math.sqrt(1.0 - w[j])
            w[j + 1] = w[j] + x[j] * x[j]
        gx = np.empty(i)
        for j in range(i):
            gx[j] = gL[i, j]
        gw = gL[i, i] * (-0.5 / math.sqrt(1.0 - w[i]))  # diagonal sqrt(1 - w_i)
        for j in range(i - 1, 0, -1):
            gx[j] += 2.0 * x[j] * gw  # w_{j+1} = w_j + x_j^2
            root = math.sqrt(1.0 - w[j])
            gz = gx[j] * root
            gw += -gx[j] * z[j] * 0.5 / root - 0.5 / (1.0 - w[j])  # x_j, and the Jacobian's 0.5 log(1 - w_j)
            gy[k + j] = gz * (1.0 - z[j] * z[j]) - 2.0 * z[j]
        gx[0] += 2.0 * x[0] * gw
        gy[k] = gx[0] * (1.0 - z[0] * z[0]) - 2.0 * z[0]
        k += i
    return gy


@numba.njit(cache=True, error_model="numpy")
def constrain(x, ints, floats):
    """``(sigma, sds (K, qmax), correlations (K, qmax, qmax))`` at the unconstrained point x."""
    p, K, n_blocks = ints[_P], ints[_K], ints[_NB]
    lev, blk, eff = ints[_LEV], ints[_BLK], ints[_EFF]
    qmax = 1
    for k in range(K):
        qmax = max(qmax, ints[lev + k * _LEVEL_WIDTH + _L_Q])
    sd = np.zeros((K, qmax))
    R = np.zeros((K, qmax, qmax))
    for b in range(n_blocks):
        row = blk + b * _BLOCK_WIDTH
        k, m, e0, x0 = ints[row + _B_FACTOR], ints[row + _B_SIZE], ints[row + _B_FIRST_EFFECT], ints[row + _B_FIRST_X]
        for a in range(m):
            sd[k, ints[eff + e0 + a]] = math.exp(x[x0 + a])
        LR, _ = _corr_cholesky(x[x0 + m : x0 + m + m * (m - 1) // 2], m)
        for a in range(m):
            for c in range(m):
                acc = 0.0
                for t in range(min(a, c) + 1):
                    acc += LR[a, t] * LR[c, t]
                R[k, ints[eff + e0 + a], ints[eff + e0 + c]] = acc
    return math.exp(x[p]), sd, R


@numba.njit(cache=True, error_model="numpy")
def expand_flat(x, ints, floats, out):
    """Write the named variables at x into ``out``: beta, sigma, then per factor its SDs and correlations."""
    p, K, lev = ints[_P], ints[_K], ints[_LEV]
    sigma, sd, R = constrain(x, ints, floats)
    out[:p] = x[:p]
    out[p] = sigma
    at = p + 1
    for k in range(K):
        q = ints[lev + k * _LEVEL_WIDTH + _L_Q]
        out[at : at + q] = sd[k, :q]
        at += q
        if ints[lev + k * _LEVEL_WIDTH + _L_CORRELATED]:
            for a in range(q):
                for c in range(q):
                    out[at] = R[k, a, c]
                    at += 1


@numba.njit(cache=True, error_model="numpy")
def _cholesky_into(S, q, L):
    """Lower Cholesky factor of ``S[:q, :q]`` into ``L[:q, :q]``; False when S is not positive definite."""
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


@numba.njit(cache=True, error_model="numpy")
def _solve_into(L, C, q, r, out):
    """``out[:q, :r] = (L L')^-1 C[:q, :r]`` (forward then backward substitution, in place)."""
    for c in range(r):
        for i in range(q):
            acc = C[i, c]
            for m in range(i):
                acc -= L[i, m] * out[m, c]
            out[i, c] = acc / L[i, i]
        for i in range(q - 1, -1, -1):
            acc = out[i, c]
            for m in range(i + 1, q):
                acc -= L[m, i] * out[m, c]
            out[i, c] = acc / L[i, i]


@numba.njit(cache=True, error_model="numpy")
def _cluster_system(ints, floats, row, j, p, beta, s2, Ginv_k, delta, D, S, C, L):
    """Cluster j of a level (table row ``row``): ``S = Z'Z + sigma^2 G^-1 - corrections``, its
    Cholesky factor into L, and ``C = [Z'r, Z'A] - corrections``; False when S is not positive
    definite. ``D`` is the offset of the cluster's corrections in ``delta``, -1 for none.
    """
    q, Q = ints[row + _L_Q], ints[row + _L_Q_ABOVE]
    zz, za, zx, zy = ints[row + _L_ZTZ], ints[row + _L_ZTA], ints[row + _L_ZTX], ints[row + _L_ZTY]
    d = 1 + Q + q
    for a in range(q):
        at = D + (1 + Q + a) * d
        for c in range(q):
            S[a, c] = floats[zz + (j * q + a) * q + c] + s2 * Ginv_k[a, c] - (delta[at + 1 + Q + c] if D >= 0 else 0.0)
        acc = floats[zy + j * q + a]
        for c in range(p):
            acc -= floats[zx + (j * q + a) * p + c] * beta[c]
        C[a, 0] = acc - (delta[at] if D >= 0 else 0.0)
        for c in range(Q):
            C[a, 1 + c] = floats[za + (j * q + a) * Q + c] - (delta[at + 1 + c] if D >= 0 else 0.0)
    return _cholesky_into(S, q, L)


# A finest factor with one effect (a random intercept of neurons in subjects) needs no loop
# over its clusters: with S_j = z_j + lambda (z_j = Z_j'Z_j, lambda = sigma^2 / g) and
# w_j = [Z_j'y, Z_j'X, Z_j'A], every sum the elimination needs is a quadratic form in
# W = sum_j w_j w_j' over the clusters sharing a parent and z_j (their "group"), so a
# balanced design costs one group per parent, whatever the number of clusters.


@numba.njit(cache=True, error_model="numpy")
def _groups_up(ints, floats, row, p, beta, lam, delta, parent_base, logdet_M, reduction):
    """Up pass of a grouped finest factor: log|S| terms and the corrections sent to the parents."""
    Q, n_groups = ints[row + _L_Q_ABOVE], ints[row + _L_N_GROUPS]
    gpar, grec = ints[row + _L_GROUP_PARENTS], ints[row + _L_GROUP_RECORDS]
    w, dc = 1 + p + Q, 1 + Q
    We = np.empty(w)
    for g in range(n_groups):
        at = grec + g * (2 + w * w)
        count, S = floats[at], floats[at + 1] + lam
        if not S > 0.0:
            return logdet_M, reduction, False
        logdet_M += count * math.log(S)
        W = floats[at + 2 : at + 2 + w * w]
        for i in range(w):  # W e with e = [1, -beta, 0]: the residual part of w_j
            acc = W[i * w]
            for c in range(p):
                acc -= W[i * w + 1 + c] * beta[c]
            We[i] = acc
        ee = We[0]
        for c in range(p):
            ee -= beta[c] * We[1 + c]
        if parent_base < 0:
            reduction += ee / S
            continue
        base = parent_base + ints[gpar + g] * dc * dc
        delta[base] += ee / S
        for a in range(Q):
            v = We[1 + p + a] / S
            delta[base + 1 + a] += v
            delta[base + (1 + a) * dc] += v
            for c in range(Q):
                delta[base + (1 + a) * dc + 1 + c] += W[(1 + p + a) * w + 1 + p + c] / S
    return logdet_M, reduction, True


@numba.njit(cache=True, error_model="numpy")
def _groups_down(ints, floats, row, p, beta, s2, lam, stack_m, stack_V, ztxm):
    """Down pass of a grouped finest factor: adds to ``ztxm`` and returns ``sum_j E[b_j^2 | y]``."""
    Q, n_groups = ints[row + _L_Q_ABOVE], ints[row + _L_N_GROUPS]
    gpar, grec = ints[row + _L_GROUP_PARENTS], ints[row + _L_GROUP_RECORDS]
    w = 1 + p + Q
    f = np.empty(w)
    Wf = np.empty(w)
    total = 0.0
    for g in range(n_groups):
        at = grec + g * (2 + w * w)
        count, S = floats[at], floats[at + 1] + lam
        W = floats[at + 2 : at + 2 + w * w]
        pj = ints[gpar + g] if Q else 0
        f[0] = 1.0  # m_j = f . w_j / S with f = [1, -beta, -m_parent]
        for c in range(p):
            f[1 + c] = -beta[c]
        for c in range(Q):
            f[1 + p + c] = -stack_m[pj * Q + c]
        fWf = 0.0
        for i in range(w):
            acc = 0.0
            for c in range(w):
                acc += W[i * w + c] * f[c]
            Wf[i] = acc
            fWf += f[i] * acc
        for c in range(p):
            ztxm[c] += Wf[1 + c] / S
        spread = 0.0  # sum_j a_j' V_parent a_j with a_j = Z_j'A / S
        for a in range(Q):
            for c in range(Q):
                spread += stack_V[pj * Q * Q + a * Q + c] * W[(1 + p + a) * w + 1 + p + c]
        total += fWf / (S * S) + count * s2 / S + spread / (S * S)
    return total


@numba.njit(cache=True, error_model="numpy")
def _invert_into(G, q, Ginv_k):
    """``Ginv_k[:q, :q] = G^-1`` of the q x q covariance G; returns log|G| (NaN when not positive definite)."""
    LG = np.zeros((q, q))
    if not _cholesky_into(G, q, LG):
        return np.nan
    Gi = np.empty((q, q))
    _solve_into(LG, np.eye(q), q, q, Gi)
    Ginv_k[:q, :q] = Gi
    logdet = 0.0
    for a in range(q):
        logdet += 2.0 * math.log(LG[a, a])
    return logdet


@numba.njit(cache=True, error_model="numpy")
def _stored_or_rebuilt(ints, floats, row, k, K, j, p, beta, s2, Ginv_k, delta, Ls, Cs, l_off, c_off, S, C, L):
    """Cluster j's Cholesky factor and right-hand side into L and C: saved by :func:`_eliminate`
    above the finest factor, recomputed for the finest (which has no corrections from children)."""
    q, dc = ints[row + _L_Q], 1 + ints[row + _L_Q_ABOVE]
    if k == K - 1:
        _cluster_system(ints, floats, row, j, p, beta, s2, Ginv_k, delta, -1, S, C, L)
        return
    lo, co = l_off[k] + j * q * q, c_off[k] + j * q * dc
    for a in range(q):
        for c in range(a + 1):
            L[a, c] = Ls[lo + a * q + c]
        for c in range(dc):
            C[a, c] = Cs[co + a * dc + c]


@numba.njit(cache=True, error_model="numpy")
def _workspace(ints):
    """Offsets of each level's saved factors, right-hand sides and corrections from its children.

    The finest level has no children and recomputes its factors on the way down, so these
    buffers scale with the clusters above the leaves, not with the leaves.
    """
    K, lev = ints[_K], ints[_LEV]
    l_off = np.zeros(K + 1, dtype=np.int64)
    c_off = np.zeros(K + 1, dtype=np.int64)
    d_off = np.zeros(K + 1, dtype=np.int64)
    dmax = 1
    for k in range(K):
        row = lev + k * _LEVEL_WIDTH
        q, Q, nc = ints[row + _L_Q], ints[row + _L_Q_ABOVE], ints[row + _L_N_CLUSTERS]
        stored = nc if k < K - 1 else 0
        l_off[k + 1] = l_off[k] + stored * q * q
        c_off[k + 1] = c_off[k] + stored * q * (1 + Q)
        d_off[k + 1] = d_off[k] + stored * (1 + Q + q) ** 2
        dmax = max(dmax, 1 + Q + q)
    return l_off, c_off, d_off, dmax


@numba.njit(cache=True, error_model="numpy")
def _eliminate(ints, floats, p, beta, s2, Ginv, Ls, Cs, delta, l_off, c_off, d_off, dmax):
    """Factorise M from the finest factor up; returns (log|M|, (W'r)'M^-1(W'r), ok).

    Saves the Cholesky factor and right-hand side of every cluster above the finest factor
    into ``Ls`` and ``Cs`` (the finest recomputes its own on the way down).
    """
    K, lev, par = ints[_K], ints[_LEV], ints[_PAR]
    S = np.empty((dmax, dmax))
    L = np.zeros((dmax, dmax))
    C = np.empty((dmax, dmax))
    U = np.empty((dmax, dmax))
    logdet_M = 0.0
    reduction = 0.0
    for k in range(K - 1, -1, -1):
        row = lev + k * _LEVEL_WIDTH
        q, Q, nc = ints[row + _L_Q], ints[row + _L_Q_ABOVE], ints[row + _L_N_CLUSTERS]
        first = ints[row + _L_FIRST_CLUSTER]
        d, dc = 1 + Q + q, 1 + Q
        leaf = k == K - 1
        if ints[row + _L_N_GROUPS]:
            logdet_M, reduction, ok = _groups_up(ints, floats, row, p, beta, s2 * Ginv[k, 0, 0], delta,
                                                 d_off[k - 1] if k else -1, logdet_M, reduction)
            if not ok:
                return logdet_M, reduction, False
            continue
        for j in range(nc):
            D = -1 if leaf else d_off[k] + j * d * d  # this cluster's correction, layout [r, ancestors, own]
            if not _cluster_system(ints, floats, row, j, p, beta, s2, Ginv[k], delta, D, S, C, L):
                return logdet_M, reduction, False
            for c in range(dc):  # U = L^-1 C
                for i in range(q):
                    acc = C[i, c]
                    for m in range(i):
                        acc -= L[i, m] * U[m, c]
                    U[i, c] = acc / L[i, i]
            for a in range(q):
                logdet_M += 2.0 * math.log(L[a, a])
            if not leaf:
                lo, co = l_off[k] + j * q * q, c_off[k] + j * q * dc
                for a in range(q):
                    for c in range(a + 1):
                        Ls[lo + a * q + c] = L[a, c]
                    for c in range(dc):
                        Cs[co + a * dc + c] = C[a, c]
            if k == 0:
                acc = 0.0 if leaf else delta[D]
                for a in range(q):
                    acc += U[a, 0] * U[a, 0]
                reduction += acc
            else:
                base = d_off[k - 1] + ints[par + first + j] * dc * dc
                for a in range(dc):
                    for c in range(a + 1):
                        acc = 0.0 if leaf else delta[D + a * d + c]
                        for t in range(q):
                            acc += U[t, a] * U[t, c]
                        delta[base + a * dc + c] += acc
                        if c != a:
                            delta[base + c * dc + a] += acc
    return logdet_M, reduction, True


@numba.njit(cache=True, error_model="numpy")
def _marginal(beta, s2, Ginv, logdet_G, ints, floats):
    """Marginal log-likelihood and its gradient wrt beta, sigma and each G_k (module docstring).

    Every cluster's work runs in preallocated scratch arrays: no allocation per cluster,
    so 10^5 clusters cost ~10^5 small loops, not 10^6 array allocations.
    """
    p, K, n = ints[_P], ints[_K], ints[_N]
    lev, par = ints[_LEV], ints[_PAR]
    yty = floats[ints[_YTY]]
    xtx, xty = ints[_XTX], ints[_XTY]
    rtr = yty
    for a in range(p):
        acc = 0.0
        for c in range(p):
            acc += floats[xtx + a * p + c] * beta[c]
        rtr += beta[a] * (acc - 2.0 * floats[xty + a])
    l_off, c_off, d_off, dmax = _workspace(ints)
    Ls = np.zeros(l_off[K])
    Cs = np.empty(c_off[K])
    delta = np.zeros(d_off[K])
    logdet_M, reduction, ok = _eliminate(ints, floats, p, beta, s2, Ginv, Ls, Cs, delta, l_off, c_off, d_off, dmax)
    if not ok:
        return -np.inf, np.zeros(p), 0.0, np.zeros(Ginv.shape)
    S = np.empty((dmax, dmax))
    L = np.zeros((dmax, dmax))
    C = np.empty((dmax, dmax))
    # down the chain: posterior means and covariances of every cluster's b
    B = np.zeros(Ginv.shape)
    ztxm = np.zeros(p)
    A = np.empty((dmax, dmax))
    Sinv = np.empty((dmax, dmax))
    eye = np.eye(dmax)
    m = np.empty(dmax)
    cov = np.empty((dmax, dmax))
    AV = np.empty((dmax, dmax))
    stack_m = np.zeros(0)
    stack_V = np.zeros(0)
    for k in range(K):
        row = lev + k * _LEVEL_WIDTH
        q, Q, nc = ints[row + _L_Q], ints[row + _L_Q_ABOVE], ints[row + _L_N_CLUSTERS]
        first, zx = ints[row + _L_FIRST_CLUSTER], ints[row + _L_ZTX]
        dc, s = 1 + Q, Q + q
        keep = k < K - 1
        if ints[row + _L_N_GROUPS]:
            B[k, 0, 0] += _groups_down(ints, floats, row, p, beta, s2, s2 * Ginv[k, 0, 0], stack_m, stack_V, ztxm)
            continue
        new_m = np.empty(nc * s if keep else 0)
        new_V = np.empty(nc * s * s if keep else 0)
        for j in range(nc):
            _stored_or_rebuilt(ints, floats, row, k, K, j, p, beta, s2, Ginv[k], delta, Ls, Cs, l_off, c_off, S, C, L)
            _solve_into(L, C, q, dc, A)  # S^-1 [c, coupling]
            _solve_into(L, eye, q, q, Sinv)
            pj = ints[par + first + j] if k else 0
            pm, pv = pj * Q, pj * Q * Q
            for a in range(q):
                acc = A[a, 0]
                for t in range(Q):
                    acc -= A[a, 1 + t] * stack_m[pm + t]
                m[a] = acc
                for c in range(Q):  # AV = A_coupling V_ancestors
                    acc = 0.0
                    for t in range(Q):
                        acc += A[a, 1 + t] * stack_V[pv + t * Q + c]
                    AV[a, c] = acc
            for a in range(q):
                for c in range(q):
                    acc = s2 * Sinv[a, c]
                    for t in range(Q):
                        acc += AV[a, t] * A[c, 1 + t]
                    cov[a, c] = acc
                    B[k, a, c] += m[a] * m[c] + acc
                for c in range(p):
                    ztxm[c] += floats[zx + (j * q + a) * p + c] * m[a]
            if keep:
                mo, vo = j * s, j * s * s
                for a in range(Q):
                    new_m[mo + a] = stack_m[pm + a]
                    for c in range(Q):
                        new_V[vo + a * s + c] = stack_V[pv + a * Q + c]
                for a in range(q):
                    new_m[mo + Q + a] = m[a]
                    for c in range(Q):
                        new_V[vo + (Q + a) * s + c] = -AV[a, c]
                        new_V[vo + c * s + Q + a] = -AV[a, c]
                    for c in range(q):
                        new_V[vo + (Q + a) * s + Q + c] = cov[a, c]
        stack_m, stack_V = new_m, new_V
    q_total = 0.0
    trace = 0.0
    lam_term = 0.0
    gG = np.zeros(Ginv.shape)
    for k in range(K):
        row = lev + k * _LEVEL_WIDTH
        q, nc = ints[row + _L_Q], ints[row + _L_N_CLUSTERS]
        Gi = Ginv[k, :q, :q]
        Bk = B[k, :q, :q]
        q_total += nc * q
        lam_term += nc * (logdet_G[k] - q * math.log(s2))
        for a in range(q):
            for c in range(q):
                trace += Gi[a, c] * Bk[c, a]
        gG[k, :q, :q] = 0.5 * (_matmul(_matmul(Gi, Bk), Gi) - nc * Gi)
    quad = rtr - reduction
    ll = -0.5 * (n * _LOG_2PI + n * math.log(s2) + lam_term + logdet_M + quad / s2)
    g_beta = np.empty(p)
    for a in range(p):
        acc = floats[xty + a] - ztxm[a]
        for c in range(p):
            acc -= floats[xtx + a * p + c] * beta[c]
        g_beta[a] = acc / s2
    sigma = math.sqrt(s2)
    g_sigma = -n / sigma + (quad + s2 * (q_total - trace)) / (s2 * sigma)
    return ll, g_beta, g_sigma, gG


@numba.njit(cache=True, error_model="numpy")
def draw_effects(betas, sigmas, G, ints, floats, z, out):
    """Exact draws of every cluster's b from ``b | beta, sigma, G, y``, one per posterior draw.

    ``betas`` (D, p), ``sigmas`` (D,), ``G`` (D, K, qmax, qmax); ``z`` and ``out`` are (D, E)
    with E the effects of all factors, top factor first, cluster by cluster. Top level first,
    each cluster given its ancestors' draws: ``b = L^-T (L^-1 (c - coupling b_ancestors) + sigma z)``
    with ``S = L L'`` its block of the eliminated system. A finest factor with one effect needs
    no factorisation: ``b_j = (c_j - Z_j'A b_parent) / S_j + sigma z_j / sqrt(S_j)``.
    """
    p, K, lev, par = ints[_P], ints[_K], ints[_LEV], ints[_PAR]
    l_off, c_off, d_off, dmax = _workspace(ints)
    Ls = np.zeros(l_off[K])
    Cs = np.empty(c_off[K])
    delta = np.zeros(d_off[K])
    S = np.empty((dmax, dmax))
    L = np.zeros((dmax, dmax))
    C = np.empty((dmax, dmax))
    rhs = np.empty(dmax)
    anc = np.empty(dmax)
    e_off = np.zeros(K + 1, dtype=np.int64)
    for k in range(K):
        row = lev + k * _LEVEL_WIDTH
        e_off[k + 1] = e_off[k] + ints[row + _L_N_CLUSTERS] * ints[row + _L_Q]
    for d in range(betas.shape[0]):
        beta, s2 = betas[d], sigmas[d] ** 2
        Ginv = np.zeros(G.shape[1:])
        for k in range(K):
            _invert_into(G[d, k], ints[lev + k * _LEVEL_WIDTH + _L_Q], Ginv[k])
        delta[:] = 0.0
        _eliminate(ints, floats, p, beta, s2, Ginv, Ls, Cs, delta, l_off, c_off, d_off, dmax)
        for k in range(K):
            row = lev + k * _LEVEL_WIDTH
            q, Q, nc = ints[row + _L_Q], ints[row + _L_Q_ABOVE], ints[row + _L_N_CLUSTERS]
            zz, za, zx, zy = ints[row + _L_ZTZ], ints[row + _L_ZTA], ints[row + _L_ZTX], ints[row + _L_ZTY]
            for j in range(nc):
                # the ancestors' draws, top first (the layout of Z'A)
                at, cluster = Q, j
                for kk in range(k - 1, -1, -1):
                    cluster = ints[par + ints[lev + (kk + 1) * _LEVEL_WIDTH + _L_FIRST_CLUSTER] + cluster]
                    qk = ints[lev + kk * _LEVEL_WIDTH + _L_Q]
                    at -= qk
                    for a in range(qk):
                        anc[at + a] = out[d, e_off[kk] + cluster * qk + a]
                if k == K - 1 and q == 1:
                    acc = floats[zy + j]
                    for c in range(p):
                        acc -= floats[zx + j * p + c] * beta[c]
                    for c in range(Q):
                        acc -= floats[za + j * Q + c] * anc[c]
                    Sj = floats[zz + j] + s2 * Ginv[k, 0, 0]
                    out[d, e_off[k] + j] = acc / Sj + math.sqrt(s2 / Sj) * z[d, e_off[k] + j]
                    continue
                _stored_or_rebuilt(ints, floats, row, k, K, j, p, beta, s2, Ginv[k], delta, Ls, Cs, l_off, c_off,
                                   S, C, L)
                for a in range(q):  # rhs = c - coupling b_ancestors, then L^-1 rhs + sigma z
                    acc = C[a, 0]
                    for c in range(Q):
                        acc -= C[a, 1 + c] * anc[c]
                    for m in range(a):
                        acc -= L[a, m] * rhs[m]
                    rhs[a] = acc / L[a, a]
                for a in range(q):
                    rhs[a] += math.sqrt(s2) * z[d, e_off[k] + j * q + a]
                for a in range(q - 1, -1, -1):  # L^-T
                    acc = rhs[a]
                    for m in range(a + 1, q):
                        acc -= L[m, a] * out[d, e_off[k] + j * q + m]
                    out[d, e_off[k] + j * q + a] = acc / L[a, a]


@numba.njit(cache=True, error_model="numpy")
def density_start(x, ints, floats):
    """The parts of the log density that do not depend on how b is integrated out.

    Returns ``(lp, grad, sigma, sd, R, Ginv, logdet_G)``: the priors of beta and sigma with
    the log-sigma Jacobian, each factor's covariance inverted (``logdet_G`` NaN where it is
    not positive definite). :func:`density_finish` adds the SD priors, the LKJ priors and the
    chain rule from the marginal likelihood's gradient wrt each G.
    """
    p, K, lev = ints[_P], ints[_K], ints[_LEV]
    fam, pri = ints[_FAM], ints[_PRI]
    grad = np.zeros(x.size)
    lp = 0.0
    # fixed effects, then sigma (log scale): prior entries 0..p
    for i in range(p):
        v, g = _prior(ints[fam + i], floats[pri + 3 * i], floats[pri + 3 * i + 1], floats[pri + 3 * i + 2], x[i])
        lp += v
        grad[i] += g
    sigma = math.exp(x[p])
    v, g = _prior(ints[fam + p], floats[pri + 3 * p], floats[pri + 3 * p + 1], floats[pri + 3 * p + 2], sigma)
    lp += v + x[p]
    grad[p] += g * sigma + 1.0
    _, sd, R = constrain(x, ints, floats)
    qmax = sd.shape[1]
    Ginv = np.zeros((K, qmax, qmax))
    logdet_G = np.zeros(K)
    for k in range(K):
        q = ints[lev + k * _LEVEL_WIDTH + _L_Q]
        G = np.empty((q, q))
        for a in range(q):
            for c in range(q):
                G[a, c] = sd[k, a] * sd[k, c] * R[k, a, c]
        logdet_G[k] = _invert_into(G, q, Ginv[k])
    return lp, grad, sigma, sd, R, Ginv, logdet_G


@numba.njit(cache=True, error_model="numpy")
def density_finish(x, ints, floats, sd, R, gG, lp, grad):
    """Add the SD priors (log scale), the LKJ priors and the chain rule from ``gG`` (the
    marginal likelihood's gradient wrt each G) to ``lp`` and ``grad``; returns lp."""
    n_blocks, blk, eff = ints[_NB], ints[_BLK], ints[_EFF]
    fam, pri, eta_at = ints[_FAM], ints[_PRI], ints[_ETA]
    for b in range(n_blocks):
        row = blk + b * _BLOCK_WIDTH
        k, m, e0 = ints[row + _B_FACTOR], ints[row + _B_SIZE], ints[row + _B_FIRST_EFFECT]
        x0, f0 = ints[row + _B_FIRST_X], ints[row + _B_FIRST_PRIOR]
        for a in range(m):
            e = ints[eff + e0 + a]
            s = sd[k, e]
            i = f0 + a
            v, g = _prior(ints[fam + i], floats[pri + 3 * i], floats[pri + 3 * i + 1], floats[pri + 3 * i + 2], s)
            lp += v + x[x0 + a]
            # dG_ec / ds_e = s_c R_ec on both sides of the symmetric G
            acc = 0.0
            for c in range(m):
                ec = ints[eff + e0 + c]
                acc += 2.0 * gG[k, e, ec] * R[k, e, ec] * sd[k, ec]
            grad[x0 + a] += (g + acc) * s + 1.0
        if m == 1:
            continue
        y = x[x0 + m : x0 + m + m * (m - 1) // 2]
        LR, logjac = _corr_cholesky(y, m)
        eta = floats[eta_at + b]
        lp += logjac
        H = np.empty((m, m))  # dll/dR_ac
        for a in range(m):
            for c in range(m):
                ea, ec = ints[eff + e0 + a], ints[eff + e0 + c]
                H[a, c] = gG[k, ea, ec] * sd[k, ea] * sd[k, ec]
        gL = _matmul(H + H.T, LR)
        for i in range(1, m):
            coef = m - i - 1 + 2.0 * eta - 2.0  # LKJ on the Cholesky factor (Stan's lkj_corr_cholesky)
            lp += coef * math.log(LR[i, i])
            gL[i, i] += coef / LR[i, i]
        grad[x0 + m : x0 + m + m * (m - 1) // 2] += _corr_cholesky_grad(y, m, gL)
    return lp


@numba.njit(cache=True, error_model="numpy")
def log_density(x, ints, floats):
    """Log posterior density (up to a constant) at unconstrained x, and its gradient."""
    p = ints[_P]
    lp, grad, sigma, sd, R, Ginv, logdet_G = density_start(x, ints, floats)
    for k in range(logdet_G.size):
        if not np.isfinite(logdet_G[k]):
            return -np.inf, grad
    ll, g_beta, g_sigma, gG = _marginal(x[:p].copy(), sigma * sigma, Ginv, logdet_G, ints, floats)
    if not np.isfinite(ll):
        return -np.inf, grad
    grad[:p] += g_beta
    grad[p] += g_sigma * sigma
    return density_finish(x, ints, floats, sd, R, gG, lp + ll, grad), grad


# ---------------------------------------------------------------------------- C entry points
# nutpie calls these without going through Python, with the signatures its own numba backend
# uses: ``logp(dim, x*, grad*, logp*, user_data*)`` and ``expand(dim, n_expanded, x*, out*,
# user_data*)``, returning 0 on success. ``user_data`` points at four int64 numbers: the
# address and length of the model's ``ints`` and of its ``floats``. Chains call them from
# several threads at once; they only read the model's arrays. They live in this file with
# the kernel because numba's cache is checked against each file's own source: one file, so
# an edited kernel can never run under stale C entry points.

_LOGP_SIGNATURE = types.int64(
    types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.CPointer(types.double),
    types.voidptr,
)
_EXPAND_SIGNATURE = types.int64(
    types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.voidptr
)


@intrinsic
def _as_pointer(typingctx, address):
    """An integer address as a void pointer."""
    signature = types.voidptr(address)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return signature, codegen


@numba.njit(cache=True, error_model="numpy")
def _model_arrays(user_data):
    header = numba.carray(user_data, (4,), np.int64)
    ints = numba.carray(_as_pointer(header[0]), (header[1],), np.int64)
    floats = numba.carray(_as_pointer(header[2]), (header[3],), np.float64)
    return ints, floats


@numba.cfunc(_LOGP_SIGNATURE, cache=True, error_model="numpy")
def logp_cfunc(dim, x_, grad_, logp_, user_data):
    ints, floats = _model_arrays(user_data)
    x = numba.carray(x_, (dim,))
    grad = numba.carray(grad_, (dim,))
    logp = numba.carray(logp_, (1,))
    value, g = log_density(x, ints, floats)
    logp[0] = value
    grad[:] = g
    if not np.isfinite(value):
        return 4
    for i in range(dim):
        if not np.isfinite(g[i]):
            return 3
    return 0


@numba.cfunc(_EXPAND_SIGNATURE, cache=True, error_model="numpy")
def expand_cfunc(dim, n_expanded, x_, out_, user_data):
    ints, floats = _model_arrays(user_data)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (n_expanded,))
    expand_flat(x, ints, floats, out)
    return 0

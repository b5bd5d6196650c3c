"""Compiled loops of the Laplace method (:mod:`lmm_bayes.inference.methods.laplace.system`): per-cluster modes,
the marginal likelihood with its exact gradient, and the importance-checked draws of b.

Every top-level cluster ``j`` owns a dense block ``b_j`` of its own effects and those of all
the clusters nested in it (a subject's effects and its neurons'); rows of different blocks
share no effect, so ``p(y | beta, theta) = prod_j integral p(y_j | b_j) N(b_j; 0, P_j^-1) db_j``
with ``P_j`` the block-diagonal prior precision. With ``f_j(b) = sum_i l_i(eta_i) - b'P_j b / 2``
and ``H_j = Z_j' W Z_j + P_j`` (``W`` the observed information of each row), Laplace gives

    log p(y_j | beta, theta) ~ f_j(b_hat) - log|H_j| / 2 + (log|P_j|) / 2.

Its gradient (the envelope theorem for ``f_j``, implicit differentiation of ``b_hat`` for
``log|H_j|``) needs per row ``h_i = z_i H^-1 z_i'``, the score ``s_i``, ``W_i``, and ``W'_i =
dW_i/deta_i``; with ``v = H^-1 sum_i W'_i h_i z_i'``:

* ``d/dbeta = sum_i (s_i - W'_i h_i / 2 + W_i (z_i v) / 2) x_i``;
* ``d/dP`` (each cluster's q x q block) ``= -(b b' + (H^-1)_blk - (v b' + b v') / 2) / 2``,
  turned into ``d/dG`` by the caller;
* ``d/dalpha`` (negative binomial) ``= sum_i (dl_i/dalpha - h_i dW_i/dalpha / 2 - (z_i v) ds_i/dalpha / 2)``.

Each row's normalising constant (``log y!``, the binomial coefficient, the negative binomial's
gamma functions) depends on the data and alpha alone; the caller adds it once per evaluation.

Families (``FAMILY_CODE``): Poisson (log link; ``trials`` counts the rows pooled into one),
negative binomial NB2 (log link; ``alpha``), binomial and Bernoulli (logit link; ``trials`` per row). Each has a concave ``l_i(eta)``, so the
damped Newton iteration for ``b_hat`` converges from zero.

Nothing here imports another kernel module, so numba's per-file cache check never pairs this
file with a stale copy of another; the small Cholesky helpers are this file's own.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["FAMILY_CODE", "cluster_modes", "draw_effects", "marginal"]

#: family name -> code read by the loops (logit covers Bernoulli and binomial)
FAMILY_CODE = {"poisson": 0, "negativebinomial": 1, "logit": 2}
_MAX_NEWTON = 60
_MAX_HALVING = 40
# stop when the Newton decrement g'H^-1 g (twice the expected gain) is below this
_DECREMENT = 1e-8


@numba.njit(cache=True, nogil=True, inline="always")
def _row(fam, y, eta, n, alpha):
    """(the b-dependent part of l_i, the score s_i, W_i, dW_i/deta) of one row."""
    if fam == 0:  # n: how many rows were pooled into this one (inference/laplace.py)
        mu = n * math.exp(eta)
        return y * eta - mu, y - mu, mu, mu
    if fam == 1:
        mu = math.exp(eta)
        am = alpha + mu
        w = alpha * mu * (y + alpha) / (am * am)
        return y * eta - (alpha + y) * math.log(am), alpha * (y - mu) / am, w, w * (alpha - mu) / am
    if eta > 0.0:
        e = math.exp(-eta)
        softplus, p = eta + math.log1p(e), 1.0 / (1.0 + e)
    else:
        e = math.exp(eta)
        softplus, p = math.log1p(e), e / (1.0 + e)
    w = n * p * (1.0 - p)
    return y * eta - n * softplus, y - n * p, w, w * (1.0 - 2.0 * p)


@numba.njit(cache=True, nogil=True)
def _cholesky(A, L, d, first):
    """Lower Cholesky factor of A[:d, :d] into L, inside the envelope ``first`` (row i's first
    nonzero column; no fill-in happens outside it); False when A is not positive definite."""
    for i in range(d):
        fi = first[i]
        for j in range(fi, i + 1):
            s = A[i, j]
            for k in range(max(fi, first[j]), j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if s <= 0.0 or not np.isfinite(s):
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True


@numba.njit(cache=True, nogil=True)
def _back(L, y, out, d, first):
    """out = L'^-1 y (y is overwritten)."""
    for i in range(d - 1, -1, -1):
        x = y[i] / L[i, i]
        out[i] = x
        for k in range(first[i], i):
            y[k] -= L[i, k] * x


@numba.njit(cache=True, nogil=True)
def _solve(L, g, out, d, first):
    """out = (L L')^-1 g."""
    for i in range(d):
        s = g[i]
        for k in range(first[i], i):
            s -= L[i, k] * out[k]
        out[i] = s / L[i, i]
    _back(L, out, out, d, first)


@numba.njit(cache=True, nogil=True)
def _selected_inverse(L, Z, d, cptr, crow):
    """The entries of H^-1 = (L L')^-1 inside the envelope, into Z's lower triangle (Takahashi's
    recurrence, from the last column back): ``Z_ij = delta_ij / L_jj^2 - sum_k L_kj Z_ik / L_jj``
    over the rows k > j of column j of L (``crow[cptr[j]:cptr[j + 1]]``). Every ``Z_ik`` it reads
    is inside the envelope too, so the cost is the sum of the columns' lengths squared (a few per
    effect in a nested block) instead of d^2 for the whole inverse."""
    for j in range(d - 1, -1, -1):
        ljj = L[j, j]
        for t in range(cptr[j], cptr[j + 1]):
            i = crow[t]
            s = 0.0
            for t2 in range(cptr[j], cptr[j + 1]):
                k = crow[t2]
                s += L[k, j] * (Z[i, k] if i >= k else Z[k, i])
            Z[i, j] = -s / ljj
        s = 0.0
        for t in range(cptr[j], cptr[j + 1]):
            s += L[crow[t], j] * Z[crow[t], j]
        Z[j, j] = 1.0 / (ljj * ljj) - s / ljj


@numba.njit(cache=True, nogil=True, inline="always")
def _lower(A, a, c):
    """A[a, c] of a symmetric matrix kept in its lower triangle."""
    return A[a, c] if a >= c else A[c, a]


@numba.njit(cache=True, nogil=True)
def _quadratic(j, b, prior):
    """``b'P_j b``: P_j is block-diagonal, one ``G_k^-1`` per cluster of the block."""
    Ginv, slot_ptr, slot_level, slot_start, qs = prior
    out = 0.0
    for s in range(slot_ptr[j], slot_ptr[j + 1]):
        k, st = slot_level[s], slot_start[s]
        for a in range(qs[k]):
            for c in range(qs[k]):
                out += b[st + a] * Ginv[k, a, c] * b[st + c]
    return out


@numba.njit(cache=True, nogil=True)
def _prior(j, b, prior, g, H, d, first):
    """Start g and H (inside the envelope) with the prior's part at b and return ``-b'P b / 2``:
    P_j is block-diagonal, one ``G_k^-1`` per cluster of the block, so this costs sum q^2."""
    Ginv, slot_ptr, slot_level, slot_start, qs = prior
    for a in range(d):
        g[a] = 0.0
        for c in range(first[a], a + 1):
            H[a, c] = 0.0
    for s in range(slot_ptr[j], slot_ptr[j + 1]):
        k, st = slot_level[s], slot_start[s]
        for a in range(qs[k]):
            for c in range(qs[k]):
                g[st + a] -= Ginv[k, a, c] * b[st + c]
            for c in range(a + 1):
                H[st + a, st + c] = Ginv[k, a, c]
    return -0.5 * _quadratic(j, b, prior)


@numba.njit(cache=True, nogil=True, inline="always")
def _eta(i, xb_i, cols, zv, b):
    """Row i's linear predictor: its ``x_i beta + offset_i`` plus ``z_i b``."""
    for c in range(cols.shape[1]):
        xb_i += zv[i, c] * b[cols[i, c]]
    return xb_i


@numba.njit(cache=True, nogil=True)
def _objective(j, b, xb, fam, alpha, data, prior):
    """f_j(b) = sum_i l_i (b-dependent part) - b'P b / 2."""
    y, ntr, cols, zv, ptr = data
    f = -0.5 * _quadratic(j, b, prior)
    for i in range(ptr[j], ptr[j + 1]):
        f += _row(fam, y[i], _eta(i, xb[i - ptr[j]], cols, zv, b), ntr[i], alpha)[0]
    return f


@numba.njit(cache=True, nogil=True)
def _prepare(j, beta, X, off, ptr, xb):
    """x_i beta + offset_i of cluster j's rows."""
    for i in range(ptr[j], ptr[j + 1]):
        acc = off[i]
        for c in range(X.shape[1]):
            acc += X[i, c] * beta[c]
        xb[i - ptr[j]] = acc


@numba.njit(cache=True, nogil=True)
def _evaluate(j, b, xb, fam, alpha, data, prior, g, H, d, first, rows, keep):
    """f_j(b), and its gradient g and negative Hessian H (lower triangle, inside the envelope) at
    b, in one pass over the rows; with ``keep``, ``rows`` receives each row's (eta, s, W, dW/deta)."""
    y, ntr, cols, zv, ptr = data
    f = _prior(j, b, prior, g, H, d, first)
    for i in range(ptr[j], ptr[j + 1]):
        eta = _eta(i, xb[i - ptr[j]], cols, zv, b)
        l, s, w, w1 = _row(fam, y[i], eta, ntr[i], alpha)
        if keep:
            r = i - ptr[j]
            rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3] = eta, s, w, w1
        f += l
        for c in range(cols.shape[1]):
            a, wz = cols[i, c], w * zv[i, c]
            g[a] += s * zv[i, c]
            for c2 in range(c + 1):  # the lower triangle only: the Cholesky reads no more
                e = cols[i, c2]
                if a >= e:
                    H[a, e] += wz * zv[i, c2]
                else:
                    H[e, a] += wz * zv[i, c2]
    return f


@numba.njit(cache=True, nogil=True)
def _mode(j, b, xb, fam, alpha, data, prior, H, L, g, step, trial, g2, H2, d, rows, first):
    """Damped Newton from b (in place) to the mode of f_j; leaves H and its factor L at the mode.

    Returns (f_j at the mode, converged). Once the Newton decrement is below ``_DECREMENT``
    one more full step is taken, so the mode is exact to rounding (convergence is quadratic
    there) wherever the iteration started. ``rows`` holds each row's (eta, s, W, dW/deta) at the
    mode (written by that last evaluation only: the earlier ones skip the stores)."""
    f = _evaluate(j, b, xb, fam, alpha, data, prior, g, H, d, first, rows, False)
    for _ in range(_MAX_NEWTON):
        if not _cholesky(H, L, d, first):
            return f, False
        _solve(L, g, step, d, first)
        decrement = 0.0
        for a in range(d):
            decrement += g[a] * step[a]
        last = decrement < _DECREMENT
        t = 1.0
        for _ in range(_MAX_HALVING):
            for a in range(d):
                trial[a] = b[a] + t * step[a]
            f_new = _evaluate(j, trial, xb, fam, alpha, data, prior, g2, H2, d, first, rows, last)
            if last or f_new >= f - 1e-12 * abs(f):
                break
            t *= 0.5
        else:
            return f, False
        for a in range(d):
            b[a] = trial[a]
            g[a] = g2[a]
            for c in range(first[a], a + 1):
                H[a, c] = H2[a, c]
        f = f_new
        if last:
            return f, _cholesky(H, L, d, first)
    return f, False


@numba.njit(cache=True, nogil=True)
def _sizes(ptr, bptr):
    """The largest block's effects and the most rows of any block."""
    dmax, rmax = 0, 0
    for j in range(ptr.size - 1):
        dmax = max(dmax, bptr[j + 1] - bptr[j])
        rmax = max(rmax, ptr[j + 1] - ptr[j])
    return dmax, rmax


@numba.njit(cache=True, nogil=True)
def _buffers(dmax, rmax):
    """The work arrays of :func:`_mode`: H, L, H2 (d x d, lower envelope used), g, g2, step, trial,
    b (d), the rows' x beta + offset and their (eta, s, W, dW/deta)."""
    return (np.empty((dmax, dmax)), np.empty((dmax, dmax)), np.empty((dmax, dmax)),
            np.empty(dmax), np.empty(dmax), np.empty(dmax), np.empty(dmax), np.empty(dmax), np.empty(rmax),
            np.empty((rmax, 4)))


@numba.njit(cache=True, nogil=True)
def marginal(beta, Ginv, fam, alpha, X, y, off, ntr, cols, zv, ptr, bptr, slot_ptr, slot_level, slot_start, qs,
             first, cptr, crow, bhat, want_grad):
    """The Laplace log marginal likelihood and its gradient, without the terms that depend on the
    data and alpha alone (each row's normalising constant; the caller adds them) and the
    ``-n_k log|G_k| / 2`` terms.

    Returns ``(ll, d/dbeta, d/dalpha, S, ok)`` with ``S[k]`` the sum over factor k's clusters of
    ``b b' + (H^-1)_blk - (v b' + b v') / 2`` (module docstring); ``bhat`` (all blocks, flat)
    receives the modes. ``ok`` is False when a mode was not found (the caller returns -inf).
    ``cptr``/``crow``: each effect's column of the Cholesky factor (``_selected_inverse``).
    """
    n_top = ptr.size - 1
    p = X.shape[1]
    K, qmax = Ginv.shape[0], Ginv.shape[1]
    data, prior = (y, ntr, cols, zv, ptr), (Ginv, slot_ptr, slot_level, slot_start, qs)
    dmax, rmax = _sizes(ptr, bptr)
    H, L, H2, g, g2, step, trial, b, xb, rows = _buffers(dmax, rmax)
    Hinv = np.empty((dmax, dmax))  # only its envelope is written and read
    u = np.empty(dmax)
    v = np.empty(dmax)
    hs = np.empty(rmax)
    gbeta = np.zeros(p)
    galpha = 0.0
    S = np.zeros((K, qmax, qmax))
    ll = 0.0
    for j in range(n_top):
        d = bptr[j + 1] - bptr[j]
        fj = first[bptr[j]:bptr[j + 1]]
        _prepare(j, beta, X, off, ptr, xb)
        b[:d] = bhat[bptr[j]:bptr[j + 1]]
        f, ok = _mode(j, b, xb, fam, alpha, data, prior, H, L, g, step, trial, g2, H2, d, rows, fj)
        if not ok:
            return -np.inf, gbeta, galpha, S, False
        bhat[bptr[j]:bptr[j + 1]] = b[:d]
        logdet = 0.0
        for a in range(d):
            logdet += 2.0 * math.log(L[a, a])
        ll += f - 0.5 * logdet
        if not want_grad:
            continue
        _selected_inverse(L, Hinv, d, cptr[bptr[j]:bptr[j + 1] + 1], crow)
        u[:d] = 0.0
        for i in range(ptr[j], ptr[j + 1]):
            r = i - ptr[j]
            h = 0.0
            for c in range(cols.shape[1]):
                for c2 in range(cols.shape[1]):
                    h += zv[i, c] * zv[i, c2] * _lower(Hinv, cols[i, c], cols[i, c2])
            hs[r] = h
            for c in range(cols.shape[1]):
                u[cols[i, c]] += rows[r, 3] * h * zv[i, c]
        _solve(L, u, v, d, fj)  # v = H^-1 u
        for i in range(ptr[j], ptr[j + 1]):
            r = i - ptr[j]
            eta, s, w, w1, h = rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3], hs[r]
            zv_v = 0.0
            for c in range(cols.shape[1]):
                zv_v += zv[i, c] * v[cols[i, c]]
            coef = s - 0.5 * w1 * h + 0.5 * w * zv_v
            for c in range(p):
                gbeta[c] += coef * X[i, c]
            if fam == 1:
                mu = math.exp(eta)
                am = alpha + mu
                dl = -math.log(am) - (y[i] + alpha) / am  # the rest of dl/dalpha depends on y alone
                ds = (y[i] - mu) * mu / (am * am)
                dw = mu * (y[i] * (mu - alpha) + 2.0 * alpha * mu) / (am * am * am)
                galpha += dl - 0.5 * h * dw - 0.5 * zv_v * ds
        for sl in range(slot_ptr[j], slot_ptr[j + 1]):
            k, st = slot_level[sl], slot_start[sl]
            for a in range(qs[k]):
                for c in range(qs[k]):
                    S[k, a, c] += (b[st + a] * b[st + c] + _lower(Hinv, st + a, st + c)
                                   - 0.5 * (v[st + a] * b[st + c] + b[st + a] * v[st + c]))
    return ll, gbeta, galpha, S, True


@numba.njit(cache=True, nogil=True, parallel=True)
def draw_effects(betas, Ginvs, alphas, fam, X, y, off, ntr, cols, zv, ptr, bptr, slot_ptr, slot_level, slot_start,
                 qs, first, cptr, crow, start, n_proposals, seed, out):
    """For each draw: every block's mode, ``n_proposals`` draws from its Laplace normal, and one
    of them picked with probability proportional to its importance weight (sampling importance
    resampling), written to ``out[draw]``. The proposals come in antithetic pairs,
    ``b_hat +- L'^-1 z``: the approximation's leading error is odd (the third derivatives), so a
    pair's mean weight cancels most of its noise.

    Returns ``log_w`` per draw: the sum over blocks of the log of the mean importance weight
    (the log ratio of the block's marginal likelihood, estimated, to its Laplace value). Draw
    ``t`` seeds its own stream with ``seed + t`` and every draw's Newton iterations start from
    the same modes ``start`` (flat; those at the posterior mean save most of the iterations
    from zero), so the result does not depend on the threads.
    """
    n_draws = betas.shape[0]
    n_top = ptr.size - 1
    data = (y, ntr, cols, zv, ptr)
    dmax, rmax = _sizes(ptr, bptr)
    log_w = np.zeros(n_draws)
    for t in numba.prange(n_draws):
        np.random.seed(seed + t)
        prior = (Ginvs[t], slot_ptr, slot_level, slot_start, qs)
        H, L, H2, g, g2, step, trial, b, xb, rows = _buffers(dmax, rmax)
        props = np.empty((n_proposals, dmax))
        r = np.empty(n_proposals)
        z = np.empty(dmax)
        for j in range(n_top):
            d = bptr[j + 1] - bptr[j]
            fj = first[bptr[j]:bptr[j + 1]]
            _prepare(j, betas[t], X, off, ptr, xb)
            b[:d] = start[bptr[j]:bptr[j + 1]]
            f_hat, ok = _mode(j, b, xb, fam, alphas[t], data, prior, H, L, g, step, trial, g2, H2, d, rows, fj)
            if not ok:
                log_w[t] = np.nan
                out[t, bptr[j]:bptr[j + 1]] = np.nan
                continue
            for s in range(n_proposals):
                if s % 2 == 0:
                    zz = 0.0
                    for a in range(d):
                        z[a] = np.random.standard_normal()
                        zz += z[a] * z[a]
                    # b = b_hat + L'^-1 z, a draw from N(b_hat, H^-1), and its mirror image next
                    _back(L, z, trial, d, fj)
                    for a in range(d):
                        props[s, a] = b[a] + trial[a]
                else:
                    for a in range(d):
                        props[s, a] = b[a] - trial[a]
                r[s] = _objective(j, props[s], xb, fam, alphas[t], data, prior) - f_hat + 0.5 * zz
            top = r.max()
            total = 0.0
            for s in range(n_proposals):
                w = math.exp(r[s] - top)
                total += w
            log_w[t] += top + math.log(total / n_proposals)
            pick = np.random.random() * total
            chosen = n_proposals - 1
            acc = 0.0
            for s in range(n_proposals):
                acc += math.exp(r[s] - top)
                if acc >= pick:
                    chosen = s
                    break
            out[t, bptr[j]:bptr[j + 1]] = props[chosen, :d]
    return log_w


@numba.njit(cache=True, nogil=True)
def cluster_modes(beta, Ginv, fam, alpha, X, y, off, ntr, cols, zv, ptr, bptr, slot_ptr, slot_level, slot_start, qs,
                  first, cptr, crow):
    """Every block's mode (flat), for tests and starting values."""
    bhat = np.zeros(bptr[-1])
    marginal(beta, Ginv, fam, alpha, X, y, off, ntr, cols, zv, ptr, bptr, slot_ptr, slot_level, slot_start, qs,
             first, cptr, crow, bhat, False)
    return bhat

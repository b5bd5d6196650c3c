"""Compiled sweeps of the collapsed Gibbs sampler (:mod:`lmm_bayes.inference.methods.gibbs.sampler`).

One call of :func:`run_chain` runs one chain from start to end in machine code, without
the GIL, so chains run side by side in threads. Every step is an exact draw from a full
conditional (or an exact slice-sampling update of one), for the Gaussian model with
random intercepts only::

    y = X beta + sum_k b_k[code_k] + e,   b_k ~ N(0, tau_k^2 I),   e ~ N(0, sigma^2 I).

Arrays passed in (built once by :mod:`lmm_bayes.inference.methods.gibbs.sampler`): ``codes`` (K, n) holds
every row's level in the flat vector of all factors' b (factor k's levels are
``offsets[k]:offsets[k+1]``); ``counts`` the rows of each level; ``sX`` (levels, p) the sum
of each level's rows of X; ``W`` (K, p, p) the within-level cross products
``sum_i (x_i - xbar_j)(x_i - xbar_j)'`` of each factor.

A sweep:

1. for each factor k: (beta, b_k) jointly given the other factors' b. beta with b_k
   integrated out has precision ``X'V^-1 X / 1 + prior``, ``V`` block diagonal with one
   ``sigma^2 I + tau_k^2 11'`` per level (Sherman-Morrison: ``X'V^-1X = (W_k + sum_j d_j
   s_j s_j') / sigma^2``, ``d_j = sigma^2 / (n_j (sigma^2 + n_j tau_k^2))``, written so that no
   two large numbers cancel), then each ``b_kj`` from its normal given beta;
2. each ``tau_k`` given ``b_k`` (centred), then given ``b_k / tau_k`` and the data
   (non-centred: the "interweaving" of Yu & Meng 2011, which keeps tau moving when the data
   say little about each level and ``b_k`` would otherwise pin it down);
3. ``sigma`` given the residuals;
4. for a StudentT prior on a fixed effect, its scale-mixture weight (the prior is
   ``Normal(mu, s^2 / w)``, ``w ~ Gamma(nu/2, nu/2)``), so step 1 stays Gaussian.

The SD updates use the model's own priors (not conjugate): a slice sampler (Neal 2003,
stepping out and shrinkage) on the log scale, with the Jacobian, on a log density of the
form ``log prior(e^u) + u + c0 u + c1 e^u + c2 e^2u + c3 e^-2u`` whose coefficients are
sufficient statistics, so each evaluation costs O(1).

This module uses nothing of the other compiled files (numba checks its on-disk cache
against each function's own file). Importing it compiles or loads every function (a tiny
chain at the bottom), so the loader's notice covers it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["FAMILY_CODES", "factor_draws", "run_chain", "slice_chain", "slice_log_sd", "update_factor"]

#: prior family -> code; parameters are passed as (nu, mu, scale), scale = lam for Exponential
FAMILY_CODES = {"Normal": 0, "StudentT": 1, "HalfNormal": 2, "Exponential": 3, "HalfStudentT": 4, "HalfCauchy": 5}
# the slice sampler's initial bracket on the log scale, and the most steps it takes outwards
_WIDTH = 1.0
_MAX_STEPS = 200
# log SDs beyond this are off the support (exp overflows)
_LOG_LIMIT = 300.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_scale_prior(code, nu, scale, t):
    """Log density of a positive parameter's prior at t > 0, up to a constant."""
    if code == 2:  # HalfNormal(sigma = scale)
        return -0.5 * (t / scale) ** 2
    if code == 3:  # Exponential(lam = scale)
        return -scale * t
    if code == 4:  # HalfStudentT(nu, sigma = scale)
        return -0.5 * (nu + 1.0) * math.log1p((t / scale) ** 2 / nu)
    return -math.log1p((t / scale) ** 2)  # HalfCauchy(beta = scale)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_target(u, code, nu, scale, c0, c1, c2, c3):
    """``log prior(e^u) + u + c0 u + c1 e^u + c2 e^2u + c3 e^-2u`` (u = log SD, with the Jacobian)."""
    if not (-_LOG_LIMIT < u < _LOG_LIMIT):
        return -np.inf
    t = math.exp(u)
    value = _log_scale_prior(code, nu, scale, t) + u + c0 * u + c1 * t + c2 * t * t + c3 / (t * t)
    return value if value == value else -np.inf


@numba.njit(cache=True, nogil=True, error_model="numpy")
def slice_log_sd(u0, code, nu, scale, c0, c1, c2, c3):
    """One slice-sampling update of a log SD ``u0`` (Neal 2003: stepping out, then shrinkage).

    Returns ``(u1, evaluations)``.
    """
    f0 = _log_target(u0, code, nu, scale, c0, c1, c2, c3)
    level = f0 - np.random.exponential(1.0)
    lo = u0 - _WIDTH * np.random.random()
    hi = lo + _WIDTH
    evals = 1
    steps = 0
    while steps < _MAX_STEPS and _log_target(lo, code, nu, scale, c0, c1, c2, c3) > level:
        lo -= _WIDTH
        steps += 1
        evals += 1
    evals += 1
    steps = 0
    while steps < _MAX_STEPS and _log_target(hi, code, nu, scale, c0, c1, c2, c3) > level:
        hi += _WIDTH
        steps += 1
        evals += 1
    evals += 1
    while True:
        u1 = lo + (hi - lo) * np.random.random()
        evals += 1
        if _log_target(u1, code, nu, scale, c0, c1, c2, c3) > level:
            return u1, evals
        if u1 < u0:
            lo = u1
        else:
            hi = u1
        if hi - lo < 1e-14:  # cannot happen for a proper target; keep the current value
            return u0, evals


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _draw_beta(Q, h, p):
    """A draw from N(Q^-1 h, Q^-1) for a small positive definite Q (overwritten by its Cholesky factor)."""
    for j in range(p):  # Cholesky, lower, in place
        acc = Q[j, j]
        for m in range(j):
            acc -= Q[j, m] * Q[j, m]
        Q[j, j] = math.sqrt(acc)
        for i in range(j + 1, p):
            acc = Q[i, j]
            for m in range(j):
                acc -= Q[i, m] * Q[j, m]
            Q[i, j] = acc / Q[j, j]
    v = np.empty(p)  # L v = h
    for i in range(p):
        acc = h[i]
        for m in range(i):
            acc -= Q[i, m] * v[m]
        v[i] = acc / Q[i, i]
    for i in range(p):  # v + z, then L' beta = v + z
        v[i] += np.random.standard_normal()
    beta = np.empty(p)
    for i in range(p - 1, -1, -1):
        acc = v[i]
        for m in range(i + 1, p):
            acc -= Q[m, i] * beta[m]
        beta[i] = acc / Q[i, i]
    return beta


@numba.njit(cache=True, nogil=True, error_model="numpy")
def update_factor(k, y, X, codes, offsets, counts, sX, W, beta, b, eta, sigma, tau, prior_prec, prior_mean):
    """(beta, b_k) given everything else: beta with b_k integrated out, then b_k given beta."""
    n, p = X.shape
    lo, hi = offsets[k], offsets[k + 1]
    R = np.zeros(hi - lo)  # per level: sum of y - (other factors' b)
    xr = np.zeros(p)
    for i in range(n):
        j = codes[k, i]
        r = y[i] - eta[i] + b[j]
        R[j - lo] += r
        for a in range(p):
            xr[a] += X[i, a] * r
    s2 = sigma * sigma
    t2 = tau[k] * tau[k]
    Q = np.empty((p, p))
    h = np.empty(p)
    for a in range(p):
        h[a] = xr[a]
        for c in range(p):
            Q[a, c] = W[k, a, c]
    for j in range(lo, hi):
        nj = counts[j]
        if nj == 0.0:
            continue
        cj = t2 / (s2 + nj * t2)
        dj = s2 / (nj * (s2 + nj * t2))
        Rj = R[j - lo]
        for a in range(p):
            h[a] -= cj * sX[j, a] * Rj
            for c in range(p):
                Q[a, c] += dj * sX[j, a] * sX[j, c]
    for a in range(p):
        h[a] = h[a] / s2 + prior_prec[a] * prior_mean[a]
        for c in range(p):
            Q[a, c] /= s2
        Q[a, a] += prior_prec[a]
    new_beta = _draw_beta(Q, h, p)
    for a in range(p):
        beta[a] = new_beta[a]
    delta = np.empty(hi - lo)
    for j in range(lo, hi):
        prec = counts[j] / s2 + 1.0 / t2
        fit = 0.0
        for a in range(p):
            fit += sX[j, a] * beta[a]
        new = (R[j - lo] - fit) / s2 / prec + np.random.standard_normal() / math.sqrt(prec)
        delta[j - lo] = new - b[j]
        b[j] = new
    for i in range(n):
        eta[i] += delta[codes[k, i] - lo]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _residuals(y, X, beta, eta):
    """e = y - X beta - eta."""
    n, p = X.shape
    e = np.empty(n)
    for i in range(n):
        acc = y[i] - eta[i]
        for a in range(p):
            acc -= X[i, a] * beta[a]
        e[i] = acc
    return e


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _update_tau(k, codes, offsets, counts, b, eta, e, sigma, tau, fam, par, interweave):
    """tau_k given b_k (centred); then, with ``interweave``, given b_k / tau_k and the data."""
    lo, hi = offsets[k], offsets[k + 1]
    ss = 0.0
    for j in range(lo, hi):
        ss += b[j] * b[j]
    u, evals = slice_log_sd(math.log(tau[k]), fam[k], par[k, 0], par[k, 2], -float(hi - lo), 0.0, 0.0, -0.5 * ss)
    tau[k] = math.exp(u)
    if not interweave:
        return evals
    # non-centred: b_k = tau_k v_k with v_k fixed; the rows' residuals without b_k are e + b_k
    E = np.zeros(hi - lo)
    for i in range(e.size):
        E[codes[k, i] - lo] += e[i]
    A = 0.0
    B = 0.0
    for j in range(lo, hi):
        v = b[j] / tau[k]
        A += counts[j] * v * v
        B += v * (E[j - lo] + counts[j] * b[j])
    s2 = sigma * sigma
    u1, more = slice_log_sd(u, fam[k], par[k, 0], par[k, 2], 0.0, B / s2, -0.5 * A / s2, 0.0)
    ratio = math.exp(u1 - u)
    tau[k] = math.exp(u1)
    delta = np.empty(hi - lo)
    for j in range(lo, hi):
        delta[j - lo] = b[j] * (ratio - 1.0)
        b[j] *= ratio
    for i in range(e.size):
        d = delta[codes[k, i] - lo]
        eta[i] += d
        e[i] -= d
    return evals + more


@numba.njit(cache=True, nogil=True, error_model="numpy")
def run_chain(y, X, codes, offsets, counts, sX, W, beta_fam, beta_par, sigma_fam, sigma_par, tau_fam, tau_par,
              beta0, sigma0, tau0, n_tune, thin, seed, interweave, beta_out, sigma_out, tau_out, b_out, evals_out):
    """Run one chain: ``n_tune`` sweeps discarded, then one kept draw every ``thin`` sweeps.

    Writes the draws into ``beta_out`` (draws, p), ``sigma_out`` (draws), ``tau_out``
    (draws, K), ``b_out`` (draws, levels; or zero rows: b not kept) and the slice sampler's
    log-density evaluations per kept draw into ``evals_out``.
    """
    np.random.seed(seed)  # numba's generator is per thread: each chain seeds its own
    n, p = X.shape
    K = offsets.size - 1
    beta = beta0.copy()
    sigma = sigma0
    tau = tau0.copy()
    b = np.zeros(offsets[K])
    eta = np.zeros(n)
    weight = np.ones(p)  # StudentT priors' scale-mixture weights
    prior_prec = np.empty(p)
    prior_mean = np.empty(p)
    draws = sigma_out.size
    keep_b = b_out.shape[0] > 0
    for sweep in range(n_tune + draws * thin):
        for a in range(p):
            prior_prec[a] = weight[a] / (beta_par[a, 2] * beta_par[a, 2])
            prior_mean[a] = beta_par[a, 1]
        for k in range(K):
            update_factor(k, y, X, codes, offsets, counts, sX, W, beta, b, eta, sigma, tau, prior_prec, prior_mean)
        e = _residuals(y, X, beta, eta)
        evals = 0
        for k in range(K):
            evals += _update_tau(k, codes, offsets, counts, b, eta, e, sigma, tau, tau_fam, tau_par, interweave)
        rss = 0.0
        for i in range(n):
            rss += e[i] * e[i]
        u, more = slice_log_sd(math.log(sigma), sigma_fam, sigma_par[0], sigma_par[2], -float(n), 0.0, 0.0, -0.5 * rss)
        sigma = math.exp(u)
        evals += more
        for a in range(p):
            if beta_fam[a] == 1:  # StudentT: w | beta ~ Gamma((nu + 1) / 2, rate (nu + z^2) / 2)
                nu = beta_par[a, 0]
                z = (beta[a] - beta_par[a, 1]) / beta_par[a, 2]
                weight[a] = np.random.gamma(0.5 * (nu + 1.0), 2.0 / (nu + z * z))
        kept = sweep - n_tune
        if kept >= 0 and (kept + 1) % thin == 0:
            d = kept // thin
            for a in range(p):
                beta_out[d, a] = beta[a]
            sigma_out[d] = sigma
            for k in range(K):
                tau_out[d, k] = tau[k]
            if keep_b:
                for j in range(b.size):
                    b_out[d, j] = b[j]
            evals_out[d] = evals


@numba.njit(cache=True, nogil=True, error_model="numpy")
def factor_draws(k, y, X, codes, offsets, counts, sX, W, b, sigma, tau, prior_prec, prior_mean, n_draws, seed):
    """``n_draws`` independent draws of (beta, b_k) given the other factors' b in ``b``.

    :func:`update_factor` again and again: its draw does not depend on the current beta and
    b_k, so the draws are independent. For checking that step against its exact conditional.
    Returns ``(betas (n_draws, p), bks (n_draws, levels of k))``.
    """
    np.random.seed(seed)
    n, p = X.shape
    b = b.copy()
    eta = np.zeros(n)
    for kk in range(codes.shape[0]):
        for i in range(n):
            eta[i] += b[codes[kk, i]]
    beta = np.zeros(p)
    lo, hi = offsets[k], offsets[k + 1]
    betas = np.empty((n_draws, p))
    bks = np.empty((n_draws, hi - lo))
    for d in range(n_draws):
        update_factor(k, y, X, codes, offsets, counts, sX, W, beta, b, eta, sigma, tau, prior_prec, prior_mean)
        betas[d] = beta
        bks[d] = b[lo:hi]
    return betas, bks


@numba.njit(cache=True, nogil=True, error_model="numpy")
def slice_chain(u0, code, nu, scale, c0, c1, c2, c3, n_draws, seed):
    """``n_draws`` successive :func:`slice_log_sd` updates from ``u0`` (a Markov chain on the log SD)."""
    np.random.seed(seed)
    out = np.empty(n_draws)
    u = u0
    for d in range(n_draws):
        u, _ = slice_log_sd(u, code, nu, scale, c0, c1, c2, c3)
        out[d] = u
    return out


def _warm_up() -> None:
    """A two-row chain: compiles (first import on a machine) or loads every function."""
    y = np.array([0.5, -0.5])
    X = np.ones((2, 1))
    codes = np.array([[0, 1]], dtype=np.int64)
    offsets = np.array([0, 2], dtype=np.int64)
    counts = np.ones(2)
    sX = np.ones((2, 1))
    W = np.zeros((1, 1, 1))
    par = np.array([[1.0, 0.0, 1.0]])
    run_chain(y, X, codes, offsets, counts, sX, W, np.array([1], dtype=np.int64), par, 2, par[0],
              np.array([3], dtype=np.int64), par, np.zeros(1), 1.0, np.ones(1), 1, 1, 1, True,
              np.empty((1, 1)), np.empty(1), np.empty((1, 1)), np.empty((1, 2)), np.empty(1, dtype=np.int64))
    factor_draws(0, y, X, codes, offsets, counts, sX, W, np.zeros(2), 1.0, np.ones(1), np.ones(1), np.zeros(1), 1, 1)
    slice_chain(0.0, 2, 0.0, 1.0, -2.0, 0.0, 0.0, -1.0, 1, 1)


_warm_up()

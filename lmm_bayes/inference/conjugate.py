"""Exact, independent draws from a Gaussian linear model whose coefficients have fixed Normal priors.

The no- and complete-pooling models of :func:`lmm_bayes.compare_pooling` are such models:

    y_i = Xs_i β + Zc_i c_{j(i)} + ε_i,   ε_i ~ N(0, σ²),
    β ~ N(m_s, diag(s_s²)),   c_j ~ N(m_c, diag(s_c²)) independently per cluster j,   σ ~ its prior.

Write θ = (β, c_1, ..., c_J), W its design, m0 and S0 its prior mean and covariance, and
r = y − W m0. Given σ, θ | y is Gaussian with precision P(σ) = S0⁻¹ + WᵀW/σ² and mean
m0 + P⁻¹ u, u = Wᵀr/σ². P is arrow-shaped: the clusters' blocks are coupled only through β, so
its factorization is a Cholesky per cluster and one of the Schur complement on β, O(J q³ + p³).
σ's marginal posterior is one-dimensional (the marginal of y is N(W m0, σ²I + W S0 Wᵀ), whose
determinant and inverse follow from P by the determinant lemma and Woodbury):

    log p(σ | y) = log p(σ) − n log σ − ½ log|P(σ)| − ½ (rᵀr / σ² − uᵀ P(σ)⁻¹ u) + const.

:func:`exact_draws` evaluates it on a grid of log σ spanning ±:data:`GRID_SDS` of its curvature
around the mode (:data:`GRID_POINTS` points, widened until the ends are negligible), draws σ by
inverting the grid's cumulative distribution, then θ | σ, y exactly, all draws at once. No
compilation and no Markov chain: the draws are independent (ESS = draws). The columns are scaled
to unit RMS first, an exact change of variables, so the algebra does not depend on their units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes import names
from lmm_bayes.inference.layout import BETA, coef_name

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` never pays for them
stats = lazy.load("scipy.stats", suppress_warning=True)
optimize = lazy.load("scipy.optimize", suppress_warning=True)

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.inference.sampling import SamplerSettings
    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.distribution import Prior
    from lmm_bayes.spec.priors import Priors

__all__ = ["GRID_POINTS", "GRID_SDS", "ExactDraws", "exact_draws", "exact_posterior", "sigma_log_prior"]

#: points of the grid on log σ, and its half-width in units of the posterior SD of log σ at the mode
GRID_POINTS = 801
GRID_SDS = 12.0


def sigma_log_prior(prior: Prior, sigma: np.ndarray) -> np.ndarray:
    """Log density of an SD prior (the package's four families) at ``sigma`` > 0.

    Examples
    --------
    >>> from lmm_bayes.spec.distribution import Prior
    >>> float(np.exp(sigma_log_prior(Prior("Exponential", lam=2.0), np.array([1.0]))[0]))  # 2 e^-2
    0.2706705664732254
    """
    k = prior.kwargs
    if prior.dist == "HalfNormal":
        return stats.halfnorm.logpdf(sigma, scale=k["sigma"])
    if prior.dist == "Exponential":
        return stats.expon.logpdf(sigma, scale=1.0 / k["lam"])
    if prior.dist == "HalfStudentT":
        return np.log(2.0) + stats.t.logpdf(sigma, k["nu"], scale=k["sigma"])
    if prior.dist == "HalfCauchy":
        return stats.halfcauchy.logpdf(sigma, scale=k["beta"])
    raise ValueError(f"no log density for an SD prior {prior!r}")


@dataclass(frozen=True)
class _Sums:
    """Cross-products of the scaled columns and the prior-mean residual, and the prior precisions."""

    A: np.ndarray  # (J, q, q) Zcᵀ Zc per cluster
    B: np.ndarray  # (J, q, p) Zcᵀ Xs per cluster
    C: np.ndarray  # (p, p) Xsᵀ Xs
    a: np.ndarray  # (J, q) Zcᵀ r per cluster
    b: np.ndarray  # (p,) Xsᵀ r
    rr: float
    n: int
    lam_c: np.ndarray  # (q,) prior precisions of the scaled cluster coefficients
    lam_s: np.ndarray  # (p,)


@dataclass(frozen=True)
class ExactDraws:
    """Independent posterior draws, shaped (chains, draws, ...): ``beta`` (p), ``coef`` (J, q), ``sigma``."""

    beta: np.ndarray
    coef: np.ndarray
    sigma: np.ndarray


def _factor(s: _Sums, t: np.ndarray):
    """For precisions t = 1/σ² (shape (k,)): the Cholesky factors, the right-hand sides and the quadratic form."""
    J, q = s.a.shape
    p = s.b.shape[0]
    Pc = np.diag(s.lam_c)[None, None] + t[:, None, None, None] * s.A[None]  # (k, J, q, q)
    Lc = np.linalg.cholesky(Pc)
    uc = t[:, None, None] * s.a[None]  # (k, J, q)
    us = t[:, None] * s.b[None]  # (k, p)
    quad = np.zeros(len(t))
    logdet = 2.0 * np.log(np.diagonal(Lc, axis1=-2, axis2=-1)).sum(axis=(-2, -1)) if q else np.zeros(len(t))
    if q:
        wc = np.linalg.solve(Pc, uc[..., None])[..., 0]  # Pc⁻¹ uc
        quad += np.einsum("kjq,kjq->k", uc, wc)
    Ps = np.diag(s.lam_s)[None] + t[:, None, None] * s.C[None]  # (k, p, p)
    hs = us
    if p and q:
        Pcs = t[:, None, None, None] * s.B[None]  # (k, J, q, p)
        PcinvPcs = np.linalg.solve(Pc, Pcs)  # (k, J, q, p)
        Ps = Ps - np.einsum("kjqp,kjqr->kpr", Pcs, PcinvPcs)
        hs = us - np.einsum("kjqp,kjq->kp", Pcs, wc)
    Ls = np.linalg.cholesky(Ps) if p else np.zeros((len(t), 0, 0))
    if p:
        logdet += 2.0 * np.log(np.diagonal(Ls, axis1=-2, axis2=-1)).sum(axis=-1)
        quad += np.einsum("kp,kp->k", hs, np.linalg.solve(Ps, hs[..., None])[..., 0])
    return Pc, Lc, uc, Ps, Ls, hs, logdet, quad


def _log_density(s: _Sums, log_sigma: np.ndarray, prior: Prior) -> np.ndarray:
    """log p(log σ | y) up to a constant (the Jacobian σ included)."""
    sigma = np.exp(log_sigma)
    t = sigma**-2.0
    *_, logdet, quad = _factor(s, t)
    return sigma_log_prior(prior, sigma) + log_sigma - s.n * log_sigma - 0.5 * logdet - 0.5 * (t * s.rr - quad)


def _grid(s: _Sums, prior: Prior) -> tuple[np.ndarray, np.ndarray]:
    """log σ on a grid around the mode, wide enough that its ends carry no mass, and the log density there."""
    start = 0.5 * np.log(max(s.rr / max(s.n, 1), 1e-300))
    f = lambda v: -float(_log_density(s, np.array([v]), prior)[0])  # noqa: E731 - a one-line objective
    mode = optimize.minimize_scalar(f, bracket=(start - 1.0, start + 0.5), tol=1e-10).x
    h = 1e-3
    curvature = (f(mode + h) - 2 * f(mode) + f(mode - h)) / h**2
    sd = 1.0 / np.sqrt(curvature) if np.isfinite(curvature) and curvature > 0 else 1.0
    width = GRID_SDS * sd
    for _ in range(8):
        grid = np.linspace(mode - width, mode + width, GRID_POINTS)
        logd = _log_density(s, grid, prior)
        if logd[0] < logd.max() - 40 and logd[-1] < logd.max() - 40:
            return grid, logd
        width *= 2.0
    raise FloatingPointError("the posterior of sigma could not be bracketed on a grid")


def exact_draws(
    y: np.ndarray, Xs: np.ndarray, Zc: np.ndarray, codes: np.ndarray, n_clusters: int, *,
    shared_prior: tuple[np.ndarray, np.ndarray], cluster_prior: tuple[np.ndarray, np.ndarray],
    sigma_prior: Prior, chains: int, draws: int, seed: int | None,
) -> ExactDraws:
    """Independent draws of (β, c, σ) from the model of the module docstring.

    Parameters
    ----------
    y : ndarray (n,)
    Xs : ndarray (n, p)
        Columns shared by every cluster (p may be 0).
    Zc, codes, n_clusters : ndarray (n, q), ndarray of int (n,), int
        Each cluster's own columns and every row's cluster (q may be 0: no clusters' own coefficients).
    shared_prior, cluster_prior : (means, SDs)
        The Normal priors of β and of each cluster's coefficients.
    sigma_prior : Prior
    chains, draws : int
        The draws are independent; chains only shape them like a sampler's.
    seed : int or None

    Returns
    -------
    ExactDraws

    Examples
    --------
    >>> from lmm_bayes.spec.distribution import Prior
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=200)
    >>> y = 1.0 + 2.0 * x + rng.normal(0, 0.5, 200)
    >>> d = exact_draws(y, np.column_stack([np.ones(200), x]), np.zeros((200, 0)), np.zeros(200, int), 1,
    ...                 shared_prior=(np.zeros(2), np.full(2, 100.0)), cluster_prior=(np.zeros(0), np.zeros(0)),
    ...                 sigma_prior=Prior("Exponential", lam=1.0), chains=2, draws=1000, seed=1)
    >>> d.beta.shape, bool(abs(d.beta[..., 1].mean() - 2.0) < 0.1), bool(abs(d.sigma.mean() - 0.5) < 0.05)
    ((2, 1000, 2), True, True)
    """
    n, p = Xs.shape
    q = Zc.shape[1]
    J = n_clusters if q else 0
    (ms, ss), (mc, sc) = shared_prior, cluster_prior
    r = y - Xs @ ms - (Zc @ mc if q else 0.0)
    ds = np.sqrt(np.mean(Xs**2, axis=0)) if p else np.ones(0)
    dc = np.sqrt(np.mean(Zc**2, axis=0)) if q else np.ones(0)
    ds, dc = np.where(ds > 0, ds, 1.0), np.where(dc > 0, dc, 1.0)
    X, Z = Xs / ds, Zc / dc
    A, B, a = np.zeros((J, q, q)), np.zeros((J, q, p)), np.zeros((J, q))
    if q:
        np.add.at(A, codes, Z[:, :, None] * Z[:, None, :])
        np.add.at(B, codes, Z[:, :, None] * X[:, None, :])
        np.add.at(a, codes, Z * r[:, None])
    sums = _Sums(A=A, B=B, C=X.T @ X, a=a, b=X.T @ r, rr=float(r @ r), n=n,
                 lam_c=1.0 / (sc * dc) ** 2, lam_s=1.0 / (ss * ds) ** 2)
    grid, logd = _grid(sums, sigma_prior)
    rng = np.random.default_rng(seed)
    dens = np.exp(logd - logd.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    total = chains * draws
    log_sigma = np.interp(rng.uniform(0, cdf[-1], total), cdf, grid)
    t = np.exp(-2.0 * log_sigma)
    Pc, Lc, uc, Ps, Ls, hs, _, _ = _factor(sums, t)
    # β | σ: N(Ps⁻¹ hs, Ps⁻¹) (Ps the Schur complement); c_j | β, σ: N(Pc_j⁻¹ (uc_j − Pcs_j β), Pc_j⁻¹)
    phi_s = np.zeros((total, p))
    if p:
        mean_s = np.linalg.solve(Ps, hs[..., None])[..., 0]
        noise = np.linalg.solve(np.swapaxes(Ls, -1, -2), rng.standard_normal((total, p))[..., None])[..., 0]
        phi_s = mean_s + noise
    phi_c = np.zeros((total, J, q))
    if q:
        rhs = uc - (t[:, None, None] * np.einsum("jqp,kp->kjq", sums.B, phi_s) if p else 0.0)
        mean_c = np.linalg.solve(Pc, rhs[..., None])[..., 0]
        noise = np.linalg.solve(np.swapaxes(Lc, -1, -2), rng.standard_normal((total, J, q))[..., None])[..., 0]
        phi_c = mean_c + noise
    beta = ms + phi_s / ds
    coef = mc + phi_c / dc
    shape = (chains, draws)
    return ExactDraws(beta=beta.reshape(*shape, p), coef=coef.reshape(*shape, J, q),
                      sigma=np.exp(log_sigma).reshape(shape))


def exact_posterior(design: Design, priors: Priors, shared: list[int], g: GroupDesign | None,
                    own: dict | None, settings: SamplerSettings) -> tuple[xr.Dataset, xr.Dataset] | None:
    """:func:`exact_draws` as a posterior and sample stats, where they apply; else None.

    They apply to a Gaussian response whose shared coefficients (columns ``shared`` of X) all
    have Normal priors; ``g``'s clusters get their own coefficients with the Normal priors
    ``own`` (``{effect: {"mu": ..., "sigma": ...}}``), or none when ``g`` is None. The
    posterior holds ``beta`` (dim ``coef``), ``sigma`` and ``{g}_coef``; the sample stats
    ``diverging`` (never: there is no Markov chain).
    """
    fixed = [priors.fixed_by_name[design.X_columns[k]] for k in shared]
    if not design.family.is_gaussian or any(p.dist != "Normal" for p in fixed):
        return None
    effects = list(g.effects) if g is not None else []
    d = exact_draws(
        design.y, design.X[:, shared], g.Z if g is not None else np.zeros((design.n, 0)),
        g.codes if g is not None else np.zeros(design.n, dtype=np.int64), g.n_levels if g is not None else 0,
        shared_prior=(np.array([p.kwargs["mu"] for p in fixed]), np.array([p.kwargs["sigma"] for p in fixed])),
        cluster_prior=(np.array([own[e]["mu"] for e in effects]), np.array([own[e]["sigma"] for e in effects])),
        sigma_prior=priors.sigma, chains=settings.chains, draws=settings.draws, seed=settings.seed,
    )
    cd = {"chain": np.arange(settings.chains), "draw": np.arange(settings.draws)}
    post = xr.Dataset(
        {BETA: (("chain", "draw", names.COEF), d.beta), names.SIGMA: (("chain", "draw"), d.sigma)},
        coords={**cd, names.COEF: [design.X_columns[k] for k in shared]},
    )
    if g is not None:
        post[coef_name(g)] = xr.DataArray(d.coef, dims=("chain", "draw", g.name, g.effect_dim),
                                          coords={g.name: list(g.levels), g.effect_dim: effects})
    st = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((settings.chains, settings.draws), dtype=bool))},
                    coords=cd)
    return post, st

"""The marginal likelihood with ``R_j = sigma_j^2 S_j A_j(rho) S_j``, from per-cluster sums, and the exact draws of b.

The model, per cluster j of the one grouping factor (rows sorted by time):

    y_j = X_j beta + Z_j b_j + e_j,   b_j ~ N(0, G),   e_j ~ N(0, R_j),   R_j = sigma_j^2 S_j A_j S_j,

``log sigma_j = log sigma + u_j`` (``u_j = 0`` without ``sigma="~ (1 | g)"``), ``S_j`` diagonal with
``kappa_c(i) = exp(gamma_c(i))`` for row i's category c(i) of ``sigma="~ cond"`` (``gamma = 0`` for the
first category, ``S = I`` without one) and ``A_j`` the AR(1) correlation at the integer times ``t_i``,
``(A_j)_ik = rho^|t_i - t_k|`` (the identity without ``ar=``).

Derivation
----------
*The inverse of A.* A stationary AR(1) observed at times t_1 < ... < t_n is
``e_1 = s nu_1``, ``e_i = phi_i e_(i-1) + s sqrt(1 - phi_i^2) nu_i`` with ``phi_i = rho^(t_i - t_(i-1))``
and independent standard normal ``nu`` (a gap of d steps composes d one-step transitions:
``rho^d``, innovation variance ``1 - rho^(2d)``). The map ``e -> nu`` is lower bidiagonal, so
``A^-1 = D' D`` is tridiagonal and, for any two columns u, v of the cluster,

    u' A^-1 v = u_1 v_1 + sum_(i>=2) (u_i - phi_i u_(i-1)) (v_i - phi_i v_(i-1)) / (1 - phi_i^2),
    log|A| = sum_(i>=2) log(1 - phi_i^2).

Expanded and grouped by the gap c of row i, with the sums of
:mod:`lmm_bayes.inference.methods.structured.sums` (``first``, ``cur``, ``prev``, ``lag``, ``count``):

    W_j := [Z X y]' A_j^-1 [Z X y] = first + sum_c (cur_c - phi_c lag_c + phi_c^2 prev_c) / (1 - phi_c^2).

With unit gaps only, ``first + cur = S0`` (all rows), ``prev = w_1 w_1' + S_int`` and ``lag = S1``
(lag-1 cross products), which gives ``[S0 + rho^2 S_int - rho S1] / (1 - rho^2)`` and
``log|A| = (n - 1) log(1 - rho^2)``. Then ``R_j^-1 = S^-1 A_j^-1 S^-1 / sigma_j^2`` and
``log|R_j| = 2 n_j log sigma_j + 2 sum_i gamma_c(i) + log|A_j|``. ``S^-1`` scales row i of ``w`` by
``1 / kappa_c(i)``, so the sums are also split by category (:func:`combine`): ``first``, ``cur`` by row
i's, ``prev`` by row i - 1's, ``lag`` by both (weight ``1 / (kappa_c(i) kappa_c(i-1))``).

*The marginal.* ``y_j ~ N(X_j beta, V_j)``, ``V_j = Z_j G Z_j' + R_j``. With ``r = y - X beta``,
``M_j = G^-1 + Z_j' R_j^-1 Z_j`` (q x q), Woodbury and the determinant lemma give

    r' V_j^-1 r = r' R^-1 r - (Z' R^-1 r)' M_j^-1 (Z' R^-1 r),
    log|V_j| = log|R_j| + log|G| + log|M_j|,

and every term is read off ``W_j / sigma_j^2``: ``Z'R^-1Z`` its Z block, ``Z'R^-1 r = W_Zy - W_ZX beta``,
``r'R^-1 r = W_yy - 2 beta' W_Xy + beta' W_XX beta``. One evaluation costs O(J C k^2) for J clusters,
C gap lengths and k = q + p + 1, whatever the number of rows; PyTensor differentiates it.

*The draws of b.* ``b_j | y, theta ~ N(M_j^-1 Z_j' R_j^-1 r_j, M_j^-1)``, drawn exactly per posterior draw.

The same function (:func:`cluster_loglik`) runs on numpy (:func:`marginal_loglik`, the reference the
tests compare with the dense multivariate normal) and on the graph's tensors
(:func:`build_structured_model`).
"""

from __future__ import annotations

from typing import Any

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference.graph import add_fixed_effects, add_group_covariance, add_sigma
from lmm_bayes.inference.layout import b_name, covariance_values, model_coords
from lmm_bayes.inference.methods.structured.sums import ResidualSums, residual_sums
from lmm_bayes.names import OBS, Y_MARGINAL
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors
from lmm_bayes.spec.residual import RHO, SIGMA_BETA, SIGMA_COEF, SIGMA_LOG, SIGMA_SD, SIGMA_SD_PRIOR, SIGMA_U

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` never pays for them
pm = lazy.load("pymc")
pytensor = lazy.load("pytensor")

__all__ = [
    "build_structured_model", "cluster_loglik", "combine", "data_updates", "draw_random_effects", "marginal_loglik",
]

_DATA = ("n", "first", "cur", "prev", "lag", "count", "gaps")
_AR_DATA = ("cur", "prev", "lag", "count", "gaps")


class _Np:
    log = staticmethod(np.log)
    exp = staticmethod(np.exp)
    sqrt = staticmethod(np.sqrt)
    stack = staticmethod(np.stack)


class _Pt:
    @staticmethod
    def log(x):
        return pytensor.tensor.log(x)

    @staticmethod
    def exp(x):
        return pytensor.tensor.exp(x)

    @staticmethod
    def sqrt(x):
        return pytensor.tensor.sqrt(x)

    @staticmethod
    def stack(xs, axis=0):
        return pytensor.tensor.stack(xs, axis=axis)


def _chol(S, q: int, ops) -> list[list[Any]]:
    """Lower Cholesky factor of S (..., q, q) as nested entries (q is 1-3: unrolled)."""
    L: list[list[Any]] = [[None] * q for _ in range(q)]
    for j in range(q):
        L[j][j] = ops.sqrt(S[..., j, j] - sum(L[j][m] ** 2 for m in range(j)))
        for i in range(j + 1, q):
            L[i][j] = (S[..., i, j] - sum(L[i][m] * L[j][m] for m in range(j))) / L[j][j]
    return L


def _solve(L: list[list[Any]], c: list[Any]) -> list[Any]:
    """Forward substitution ``L x = c`` (entries)."""
    x: list[Any] = []
    for i in range(len(L)):
        acc = c[i] - sum(L[i][m] * x[m] for m in range(i))
        x.append(acc / L[i][i])
    return x


def combine(s: dict[str, Any], rho, log_kappa, ops) -> tuple[Any, Any]:
    """``W_j = [Z X y]' S^-1 A_j^-1 S^-1 [Z X y]`` per cluster (J, k, k) and ``log|S A_j S|`` (J,) from the sums.

    ``S`` is the diagonal of the rows' category factors ``kappa_c = exp(log_kappa_c)`` (``sigma="~ cond"``;
    None: all 1); ``rho`` None without ``ar=``.
    """
    if log_kappa is None:
        W, logdet = s["first"].sum(axis=1), 0.0
        if rho is not None:
            cur, prev, lag = s["cur"].sum(axis=2), s["prev"].sum(axis=2), s["lag"].sum(axis=(2, 3))
    else:
        ik = ops.exp(-log_kappa)  # (K,)
        W = (s["first"] * (ik**2)[:, None, None]).sum(axis=1)
        logdet = 2 * (s["ncat"] * log_kappa).sum(axis=1)
        if rho is not None:
            cur = (s["cur"] * (ik**2)[:, None, None]).sum(axis=2)
            prev = (s["prev"] * (ik**2)[:, None, None]).sum(axis=2)
            lag = (s["lag"] * (ik[:, None] * ik[None, :])[:, :, None, None]).sum(axis=(2, 3))
    if rho is not None:
        phi = rho ** s["gaps"]  # (C,), integer gaps: rho^d is defined for negative rho too
        den = 1.0 - phi**2
        a, b, c = 1.0 / den, -phi / den, phi**2 / den
        W = W + (a[:, None, None] * cur + b[:, None, None] * lag + c[:, None, None] * prev).sum(axis=1)
        logdet = logdet + (s["count"] * ops.log(den)).sum(axis=1)
    return W, logdet


def cluster_loglik(s: dict[str, Any], q: int, p: int, beta, sigma, chol_G, rho, u, ops, log_kappa=None) -> Any:
    """``log p(y | beta, sigma, G, rho, u, kappa)`` summed over clusters, from the sums ``s`` (numpy or tensors).

    ``chol_G`` is G's lower Cholesky factor (q x q); ``rho`` None without ``ar=``; ``u`` (J,) None
    without ``sigma=``'s ``(1 | g)``; ``log_kappa`` (K,) None without its column (the reference's 0 first).
    """
    W, logdet_A = combine(s, rho, log_kappa, ops)
    log_s = ops.log(sigma) if u is None else ops.log(sigma) + u
    inv_s2 = ops.exp(-2.0 * log_s)
    k = q + p
    WZy, Wyy = W[:, :q, k], W[:, k, k]
    if p:
        WZX, WXy, WXX = W[:, :q, q:k], W[:, q:k, k], W[:, q:k, q:k]
        Zr = WZy - (WZX * beta).sum(axis=-1)
        rr = Wyy - 2 * (WXy * beta).sum(axis=-1) + ((WXX * beta).sum(axis=-1) * beta).sum(axis=-1)
    else:
        Zr, rr = WZy, Wyy
    # G^-1 = Linv' Linv from G's Cholesky factor (one q x q matrix)
    Lg = [[chol_G[i, j] if j <= i else None for j in range(q)] for i in range(q)]
    cols = [_solve(Lg, [1.0 if i == e else 0.0 for i in range(q)]) for e in range(q)]  # Linv[:, e]
    Ginv = [[sum(cols[i][m] * cols[j][m] for m in range(q)) for j in range(q)] for i in range(q)]
    M = ops.stack([ops.stack([Ginv[i][j] + W[:, i, j] * inv_s2 for j in range(q)], axis=-1) for i in range(q)], axis=-2)
    Lm = _chol(M, q, ops)
    v = _solve(Lm, [Zr[:, i] * inv_s2 for i in range(q)])
    logdet_M = 2 * sum(ops.log(Lm[i][i]) for i in range(q))
    logdet_G = 2 * sum(ops.log(Lg[i][i]) for i in range(q))
    logdet_R = 2 * s["n"] * log_s + logdet_A
    quad = rr * inv_s2 - sum(vi**2 for vi in v)
    per = s["n"] * np.log(2 * np.pi) + logdet_R + logdet_G + logdet_M + quad
    return -0.5 * per.sum()


def _arrays(sums: ResidualSums, ar: bool = True, fixed: bool = True) -> dict[str, np.ndarray]:
    """The sums by name, only those the graph reads (a compiled model rejects unused inputs)."""
    fields = ["n", "first", *(_AR_DATA if ar else ()), *(["ncat"] if fixed else [])]
    return {f: np.asarray(getattr(sums, f), dtype=float) for f in fields}


def marginal_loglik(design: Design, beta: np.ndarray, sigma: float, G: np.ndarray, *, rho: float | None = None,
                    sigma_u: np.ndarray | None = None, sigma_beta: np.ndarray | None = None) -> float:
    """``log p(y | beta, sigma, G, rho, u, gamma)`` with b integrated out, from the sums (numpy reference).

    ``rho`` is used only with ``ar=``, ``sigma_u`` (one per level) only with ``sigma=``'s ``(1 | g)`` and
    ``sigma_beta`` (``log(sigma_c / sigma)`` for every category but the first) only with its column.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"y": [0.5, 1.0, 0.2, 2.0, 1.5], "g": list("aaabb"), "trial": [1, 2, 3, 1, 2]})
    >>> d = lb.LMM("y ~ 1 + (1 | g)", df, ar="trial | g").design
    >>> round(marginal_loglik(d, np.array([1.0]), 0.8, np.array([[0.5]]), rho=0.3), 6)
    -5.192159
    """
    res = design.residual
    sums = residual_sums(design)
    rho_ = float(rho) if res.ar else None
    if res.ar and not -1 < rho_ < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho_}")
    u = np.asarray(sigma_u, dtype=float) if res.sigma_by else None
    log_kappa = np.concatenate([[0.0], np.asarray(sigma_beta, dtype=float)]) if res.sigma_fixed else None
    return float(cluster_loglik(_arrays(sums), sums.q, sums.p, np.asarray(beta, dtype=float), float(sigma),
                                np.linalg.cholesky(np.asarray(G, dtype=float)), rho_, u, _Np, log_kappa))


def data_updates(sums: ResidualSums, ar: bool, fixed: bool) -> dict[str, np.ndarray]:
    """The graph's data arrays by ``pm.Data`` name (a compiled model of the same structure takes new ones)."""
    return {f"structured_{k}": v for k, v in _arrays(sums, ar, fixed).items()}


def build_structured_model(design: Design, priors: Priors, sums: ResidualSums | None = None) -> pm.Model:
    """The model with b integrated out and ``R_j = sigma_j^2 A_j(rho)``: a potential on the sums.

    Priors and names are the package's (``beta``, ``sigma``, ``{g}_sd``, ...) plus those of
    :mod:`lmm_bayes.spec.residual`: ``sigma_sd`` (tau, HalfNormal(1)), ``sigma_log`` (``log sigma_j ~
    N(log sigma, tau^2)``, sampled), ``sigma_u`` (``log sigma_j - log sigma``) and ``rho`` (Uniform(-1, 1)).

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"y": np.arange(8.0), "g": list("aaaabbbb"), "trial": [1, 2, 3, 4] * 2})
    >>> m = lb.LMM("y ~ 1 + (1 | g)", df, sigma="~ (1 | g)", ar="trial | g")
    >>> sorted(v.name for v in build_structured_model(m.design, m.priors).free_RVs)
    ['beta', 'g_sd_indep', 'rho', 'sigma', 'sigma_log', 'sigma_sd']
    """
    sums = residual_sums(design) if sums is None else sums
    res = design.residual
    g = design.group(res.group)
    coords = {k: v for k, v in model_coords(design).items() if k != OBS}
    if res.sigma_fixed:
        coords[SIGMA_COEF] = list(res.categories[1:])
    with pm.Model(coords=coords) as model:
        # static shapes: a compiled model is reused only for the same structure (structure_key)
        arrays = {k: pm.Data(f"structured_{k}", v, shape=v.shape)
                  for k, v in _arrays(sums, res.ar, res.sigma_fixed).items()}
        beta = add_fixed_effects(design, priors)
        _, chol = add_group_covariance(g, priors.group_by_name[g.name])
        sigma = add_sigma(priors)
        u = rho = None
        if res.sigma_by:
            tau = pm.HalfNormal(SIGMA_SD, SIGMA_SD_PRIOR)
            # hierarchically centred: the likelihood reads log sigma_j alone, so sigma and the u_j form no ridge
            log_sj = pm.Normal(SIGMA_LOG, pytensor.tensor.log(sigma), tau, dims=g.name)
            u = pm.Deterministic(SIGMA_U, log_sj - pytensor.tensor.log(sigma), dims=g.name)
        if res.ar:
            rho = pm.Uniform(RHO, -1.0, 1.0)
        log_kappa = None
        if res.sigma_fixed:  # log(sigma_c / sigma_reference): unitless, the working scale's Normal(0, 1)
            gamma = pm.Normal(SIGMA_BETA, 0.0, 1.0, dims=SIGMA_COEF)
            log_kappa = pytensor.tensor.concatenate([pytensor.tensor.zeros(1), gamma])
        pm.Potential(Y_MARGINAL, cluster_loglik(arrays, sums.q, sums.p, beta, sigma, chol, rho, u, _Pt, log_kappa))
    return model


def draw_random_effects(design: Design, posterior: xr.Dataset, seed: Any = None, sums: ResidualSums | None = None,
                        dtype: Any = np.float64) -> dict[str, xr.DataArray]:
    """Every cluster's b drawn exactly from ``b | y, theta`` (Gaussian with ``R_j``), one per posterior draw."""
    sums = residual_sums(design) if sums is None else sums
    res = design.residual
    g = design.group(res.group)
    post = posterior.transpose("chain", "draw", ...)
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    D, q, p = nc * nd, sums.q, sums.p
    beta = post["beta"].values.reshape(D, -1) if "beta" in post and p else np.zeros((D, 0))
    sigma = post["sigma"].values.reshape(D)
    G = covariance_values(post, g).reshape(D, q, q)
    rho = post[RHO].values.reshape(D) if res.ar else None
    u = post[SIGMA_U].transpose("chain", "draw", g.name).values.reshape(D, -1) if res.sigma_by else None
    gamma = post[SIGMA_BETA].transpose("chain", "draw", ...).values.reshape(D, -1) if res.sigma_fixed else None
    arrays = _arrays(sums)
    rng = np.random.default_rng(seed)
    out = np.empty((D, g.n_levels, q), dtype=dtype)
    k = q + p
    for d in range(D):
        log_kappa = None if gamma is None else np.concatenate([[0.0], gamma[d]])
        W, _ = combine(arrays, rho[d] if res.ar else None, log_kappa, _Np)
        inv_s2 = np.exp(-2.0 * (np.log(sigma[d]) + (u[d] if u is not None else np.zeros(g.n_levels))))
        Zr = W[:, :q, k] - W[:, :q, q:k] @ beta[d]
        M = np.linalg.inv(G[d])[None] + W[:, :q, :q] * inv_s2[:, None, None]
        L = np.linalg.cholesky(M)
        mean = np.linalg.solve(M, (Zr * inv_s2[:, None])[..., None])[..., 0]
        z = rng.standard_normal((g.n_levels, q))
        # b = mean + L^-T z has covariance (L L')^-1 = M^-1
        out[d] = mean + np.linalg.solve(np.swapaxes(L, -1, -2), z[..., None])[..., 0]
    block = out.reshape(nc, nd, g.n_levels, q)
    name = b_name(g)
    return {name: xr.DataArray(block, dims=("chain", "draw", g.name, g.effect_dim), name=name,
                               coords={"chain": post["chain"].values, "draw": post["draw"].values,
                                       g.name: list(g.levels), g.effect_dim: list(g.effects)})}

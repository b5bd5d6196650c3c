"""The collapsed method: random effects integrated out of the Gaussian likelihood.

For ``y = X beta + W u + e`` with ``u ~ N(0, Lambda)`` (all clusters' effects
stacked) and ``e ~ N(0, sigma^2 I)`` the marginal density of y is Gaussian with
``V = sigma^2 I + W Lambda W'``. With ``M = W'W + sigma^2 Lambda^-1`` and
``r = y - X beta``:

* determinant lemma: ``log|V| = (n - Q) log sigma^2 + log|Lambda| + log|M|``;
* Woodbury: ``r' V^-1 r = (r'r - (W'r)' M^-1 (W'r)) / sigma^2``.

Both need only sufficient statistics (``Z'Z``, ``Z'X``, ``Z'y`` per cluster and
``X'X``, ``X'y``, ``y'y``), computed once in one vectorised pass over the rows,
so a gradient costs the same for 2 000 rows as for 10^6.

Nested factors (a chain ``subject > subject:neuron > ...``) make ``M`` an arrow
matrix per top-level cluster. It is factorised from the leaves up: each
cluster's own block is eliminated (Schur complement) and the correction passed
to its parent, so the cost is a batch of tiny ``q x q`` Choleskys per level,
linear in the number of clusters. Every cluster is augmented with the residual
as an extra first column (layout ``[r, ancestors' effects, own effects]``), so
the Woodbury term falls out of the same elimination.

After sampling, ``b | beta, theta, y`` is drawn exactly, top level first, each
level conditional on the levels above (the Schur complement gives the top
level's marginal; the eliminated blocks give the conditionals).

Crossed factors (subject x item) do not give an arrow structure; they are integrated
out by the blocked Cholesky of :mod:`lmm_bayes.inference.methods.crossed.system` instead (``supports``
says whether this module's elimination applies).

This module holds the numpy reference (:func:`marginal_loglik`), the PyMC graph of the
collapsed model (the reference the tests compare against, and ``LMM.pymc_model``) and the
exact draws of b. Fits sample the same density through the kernel compiled once per
machine (:mod:`lmm_bayes.inference.methods.collapsed.kernel`), which runs the same elimination.

Choices of the graph, measured in ``benchmarks/README.md``: beta stays a NUTS parameter (the
covariance parameters already mix at ~1 effective draw per draw); the small q x q
algebra is written out entry by entry (a batched LAPACK Cholesky compiles slower and
evaluates ~200x slower); the data have static shapes (fit.py reuses a compiled model
only for the same structure), which shortens numba's compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lazy_loader as lazy
import numpy as np
import scipy.sparse as sp
import xarray as xr

from lmm_bayes.inference.graph import add_fixed_effects, add_group_covariance, add_sigma
from lmm_bayes.inference.methods.kernel_loader import load
from lmm_bayes.inference.layout import b_name, covariance_values, model_coords
from lmm_bayes.inference.methods.collapsed.packing import KernelModel, pack
from lmm_bayes.inference.methods.collapsed.sufficient import (
    Level,
    SufficientStats,
    nesting_chain,
    sufficient_statistics,
)
from lmm_bayes.names import OBS, Y_MARGINAL
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")
pytensor = lazy.load("pytensor")  # its .tensor (imported by pytensor itself) is the graphs' algebra

__all__ = [
    "LIKELIHOOD_NAME",
    "Level",
    "SufficientStats",
    "build_collapsed_model",
    "data_updates",
    "draw_random_effects",
    "marginal_loglik",
    "nesting_chain",
    "sufficient_statistics",
    "supports",
]

#: what the collapsed method covers, for messages that say why it does not apply
SCOPE = "the nested elimination handles one factor or a chain of nested factors"
#: name of the marginal likelihood term in the PyMC model
LIKELIHOOD_NAME = Y_MARGINAL
# standard-normal innovations (draws x effects) held at once while drawing b
_CHUNK_ELEMENTS = 4_000_000


# ---------------------------------------------------------------------------- structure


def supports(design: Design) -> tuple[bool, str]:
    """Whether this module's nested elimination applies to this design, and if not, why (one line).

    It applies to one grouping factor or a chain of nested factors
    (``(1 + x | subject) + (1 | subject:neuron)``), and to models without random
    terms (the likelihood then needs only ``X'X``, ``X'y`` and ``y'y``, so a
    regression on 10^6 rows samples as fast as one on 100). Crossed factors
    (subject x item) make ``M`` a general sparse matrix rather than an arrow; they
    go to :mod:`lmm_bayes.inference.methods.crossed.system`.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> supports(lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design)
    (True, '')
    """
    try:
        nesting_chain(design)
    except ValueError as err:
        return False, f"{err}; {SCOPE}"
    return True, ""


def _data_names(name: str) -> dict[str, str]:
    return {f: f"collapsed_{name}_{f}" for f in ("ZtZ", "ZtA", "ZtX", "Zty", "parent")}


def data_updates(stats: SufficientStats) -> dict[str, np.ndarray]:
    """The data arrays of the collapsed graph, keyed by their ``pm.Data`` names.

    A compiled model of the same structure takes a new data set through these
    (``compiled.with_data(**data_updates(stats))``).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design
    >>> sorted(data_updates(sufficient_statistics(d)))
    ['collapsed_Subject_ZtX', 'collapsed_Subject_ZtZ', 'collapsed_Subject_Zty', 'collapsed_XtX', 'collapsed_Xty',
     'collapsed_n', 'collapsed_yty']
    """
    s = stats
    # only arrays the graph reads: a compiled model drops unused inputs and rejects them
    has_x = s.XtX.shape[0] > 0
    out: dict[str, np.ndarray] = {"collapsed_n": np.asarray(float(s.n)), "collapsed_yty": np.asarray(s.yty)}
    if has_x:
        out.update(collapsed_XtX=s.XtX, collapsed_Xty=s.Xty)
    for k, lev in enumerate(s.levels):
        names = _data_names(lev.name)
        for field in _level_fields(k, has_x):
            out[names[field]] = getattr(lev, field)
    return out


def _level_fields(k: int, has_x: bool) -> tuple[str, ...]:
    """The arrays the graph reads for the k-th factor of the chain."""
    return ("ZtZ", "Zty") + (("ZtX",) if has_x else ()) + (("ZtA", "parent") if k else ())


# ---------------------------------------------------------------------------- small dense algebra
# Written once for numpy and pytensor (arithmetic on the last axes, leading axes broadcast):
# q is tiny (1-3 effects), so an unrolled Cholesky is a handful of fused elementwise ops
# over the batch of clusters, cheaper than a batched LAPACK call and its gradient.


class _Numpy:
    stack = staticmethod(np.stack)
    sqrt = staticmethod(np.sqrt)
    log = staticmethod(np.log)

    @staticmethod
    def concat_last(a, b):
        lead = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        return np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]), np.broadcast_to(b, lead + b.shape[-1:])], -1)

    @staticmethod
    def segment_sum(x, index, size):
        """Sum over axis -3 (clusters) by parent index; leading axes kept."""
        ind = sp.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))), shape=(size, len(index)))
        moved = np.moveaxis(x, -3, 0)
        out = (ind @ moved.reshape(len(index), -1)).reshape((size,) + moved.shape[1:])
        return np.moveaxis(out, 0, -3)


class _Pytensor:
    # methods rather than class attributes, so defining the class does not load PyTensor
    @staticmethod
    def stack(*args, **kwargs):
        return pytensor.tensor.stack(*args, **kwargs)

    @staticmethod
    def sqrt(x):
        return pytensor.tensor.sqrt(x)

    @staticmethod
    def log(x):
        return pytensor.tensor.log(x)

    @staticmethod
    def concat_last(a, b):
        return pytensor.tensor.concatenate([a, b], axis=-1)

    @staticmethod
    def segment_sum(x, index, size):
        return pytensor.tensor.inc_subtensor(pytensor.tensor.zeros((size, x.shape[-2], x.shape[-1]))[index], x)


def _cholesky(S, q: int, ops) -> list[list[Any]]:
    """Lower Cholesky factor of S (..., q, q) as a nested list of (...,) entries."""
    L: list[list[Any]] = [[None] * q for _ in range(q)]
    for j in range(q):
        L[j][j] = ops.sqrt(S[..., j, j] - sum(L[j][m] ** 2 for m in range(j)))
        for i in range(j + 1, q):
            L[i][j] = (S[..., i, j] - sum(L[i][m] * L[j][m] for m in range(j))) / L[j][j]
    return L


def _entries(L, q: int) -> list[list[Any]]:
    """A lower-triangular matrix (..., q, q) as nested-list entries."""
    return [[L[..., i, j] if j <= i else None for j in range(q)] for i in range(q)]


def _forward(L: list[list[Any]], C, ops):
    """Solve ``L u = C`` for C (..., q, R)."""
    us = []
    for i in range(len(L)):
        acc = C[..., i, :]
        for m in range(i):
            acc = acc - L[i][m][..., None] * us[m]
        us.append(acc / L[i][i][..., None])
    return ops.stack(us, axis=-2)


def _gram(u):
    """``u'u`` over axis -2: (..., q, R) -> (..., R, R)."""
    return (u[..., :, :, None] * u[..., :, None, :]).sum(axis=-3)


def _logdet(L: list[list[Any]], ops):
    return 2 * sum(ops.log(L[i][i]) for i in range(len(L)))


# ---------------------------------------------------------------------------- elimination


def _eliminate(levels: Sequence[dict[str, Any]], ztr: Sequence[Any], prec: Sequence[Any], ops):
    """Factorise M from the finest factor up.

    ``levels[k]`` holds ``ZtZ``, ``ZtA``, ``parent``, ``n_parent``, ``q``, ``Q`` (effects
    above); ``ztr[k]`` is ``Z'r`` (..., L, q) and ``prec[k]`` ``sigma^2 G^-1`` (..., q, q).
    Returns ``log|M|`` (...) and the Woodbury reduction ``(W'r)' M^-1 (W'r)`` (...).
    """
    delta = None  # corrections passed up from eliminated children, layout [r, ancestors, own]
    logdet = 0.0
    for k in reversed(range(len(levels))):
        lev = levels[k]
        q, Q = lev["q"], lev["Q"]
        S = lev["ZtZ"] + prec[k][..., None, :, :]
        C = ztr[k][..., None] if Q == 0 else ops.concat_last(ztr[k][..., None], lev["ZtA"])
        if delta is not None:
            S = S - delta[..., 1 + Q :, 1 + Q :]
            C = C - delta[..., 1 + Q :, : 1 + Q]
        L = _cholesky(S, q, ops)
        logdet = logdet + _logdet(L, ops).sum(axis=-1)
        up = _gram(_forward(L, C, ops))
        if delta is not None:
            up = up + delta[..., : 1 + Q, : 1 + Q]
        if k == 0:
            reduction = up[..., 0, 0].sum(axis=-1)
        else:
            delta = ops.segment_sum(up, lev["parent"], lev["n_parent"])
    if not levels:
        reduction = 0.0
    return logdet, reduction


def _level_inputs(stats: SufficientStats, arrays: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per-factor inputs of :func:`_eliminate` (numpy arrays, or the graph's tensors).

    Arrays the graph does not read (the top factor's ``ZtA``, ``ZtX`` without fixed
    effects) are ``None``.
    """
    has_x = stats.XtX.shape[0] > 0
    out = []
    Q = 0
    for k, lev in enumerate(stats.levels):
        names = _data_names(lev.name)
        fields = _level_fields(k, has_x)
        entry: dict[str, Any] = {
            f: (None if f not in fields else getattr(lev, f) if arrays is None else arrays[names[f]])
            for f in ("ZtZ", "ZtA", "ZtX", "Zty", "parent")
        }
        # sizes are static: a compiled graph is reused only for the same numbers of levels
        entry.update(q=lev.q, Q=Q, n_parent=stats.levels[k - 1].n_clusters if k else 1)
        out.append(entry)
        Q += lev.q
    return out


def _loglik(n, XtX, Xty, yty, levels: list[dict[str, Any]], beta, sigma, chols: Sequence[Any], ops):
    """The marginal log-likelihood from sufficient statistics (one parameter point).

    Works on numpy arrays (``ops=_Numpy``) and on the graph's tensors (``_Pytensor``);
    ``chols`` are the lower Cholesky factors of each factor's G, ``beta`` is ``None``
    without fixed effects.
    """
    s2 = sigma**2
    rtr = yty
    if beta is not None:
        rtr = rtr - 2 * (beta * Xty).sum() + (beta * (XtX * beta[None, :]).sum(axis=-1)).sum()
    ztr, prec = [], []
    lam_term = 0.0
    for lev, chol in zip(levels, chols):
        q = lev["q"]
        Lg = _entries(chol, q)
        Linv = _forward(Lg, np.eye(q), ops)  # G^-1 = Linv' Linv
        prec.append(s2 * _gram(Linv))
        ztr.append(lev["Zty"] if beta is None else lev["Zty"] - (lev["ZtX"] * beta).sum(axis=-1))
        n_clusters = lev["ZtZ"].shape[0]
        lam_term = lam_term + n_clusters * (_logdet(Lg, ops) - q * ops.log(s2))
    logdet_m, reduction = _eliminate(levels, ztr, prec, ops)
    logdet_v = n * ops.log(s2) + lam_term + logdet_m
    return -0.5 * (n * np.log(2 * np.pi) + logdet_v + (rtr - reduction) / s2)


def marginal_loglik(design: Design, beta: np.ndarray, sigma: float, G: dict[str, np.ndarray]) -> float:
    """``log p(y | beta, sigma, G)`` with the random effects integrated out (numpy reference).

    Parameters
    ----------
    design : Design
    beta : ndarray, shape (p,)
        In the order of ``design.X_columns``.
    sigma : float
        Residual SD.
    G : dict of str to ndarray
        Covariance matrix of each grouping factor's effects, keyed by factor name.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> G = {"Subject": np.array([[600.0, 10.0], [10.0, 35.0]])}
    >>> round(marginal_loglik(d, np.array([251.4, 10.5]), 25.6, G), 2)
    -875.99
    """
    stats = sufficient_statistics(design)
    chols = [np.linalg.cholesky(np.asarray(G[lev.name], dtype=float)) for lev in stats.levels]
    beta = np.asarray(beta, dtype=float) if stats.XtX.shape[0] else None
    return float(
        _loglik(stats.n, stats.XtX, stats.Xty, stats.yty, _level_inputs(stats), beta, float(sigma), chols, _Numpy)
    )


# ---------------------------------------------------------------------------- the PyMC model


def build_collapsed_model(design: Design, priors: Priors, stats: SufficientStats | None = None) -> pm.Model:
    """The collapsed model: ``beta``, ``sigma`` and the covariance parameters, with b integrated out.

    Priors and variable names are those of :func:`lmm_bayes.inference.graph.build_model`; the
    likelihood is a potential named ``y_marginal`` computed from the sufficient
    statistics (``pm.Data``, see :func:`data_updates`), computed here unless given.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> model = build_collapsed_model(m.design, m.priors)
    >>> sorted(v.name for v in model.free_RVs), [p.name for p in model.potentials]
    (['Subject_chol_cov', 'beta', 'sigma'], ['y_marginal'])
    """
    stats = sufficient_statistics(design) if stats is None else stats
    group_priors = priors.group_by_name
    coords = {k: v for k, v in model_coords(design).items() if k != OBS}
    with pm.Model(coords=coords) as model:
        # static shapes let pytensor drop shape checks (faster numba compile); fit.py reuses a
        # compiled model only for designs of the same structure, hence the same shapes
        arrays = {
            name: pm.Data(name, value, shape=np.shape(value)) for name, value in data_updates(stats).items()
        }
        beta = add_fixed_effects(design, priors)
        chols = [add_group_covariance(g, group_priors[g.name])[1] for g in stats.chain]
        sigma = add_sigma(priors)
        has_x = stats.XtX.shape[0] > 0
        loglik = _loglik(
            arrays["collapsed_n"], arrays.get("collapsed_XtX"), arrays.get("collapsed_Xty"), arrays["collapsed_yty"],
            _level_inputs(stats, arrays), beta if has_x else None, sigma, chols, _Pytensor,
        )
        pm.Potential(LIKELIHOOD_NAME, loglik)
    return model


# ---------------------------------------------------------------------------- exact draws of b


def draw_random_effects(
    design: Design, posterior: xr.Dataset, seed: Any = None, stats: SufficientStats | None = None,
    dtype: Any = np.float64, packed: KernelModel | None = None,
) -> dict[str, xr.DataArray]:
    """Draw every cluster's b exactly from ``b | beta, theta, y``, one draw per posterior draw.

    Parameters
    ----------
    design : Design
    posterior : xarray.Dataset
        Holds ``beta``, ``sigma``, ``{g}_sd`` and (correlated factors) ``{g}_corr``.
    seed : int, Generator or None
        Seed of the innovations; the same seed gives the same b.
    stats : SufficientStats, optional
        The design's statistics, computed here unless given.
    dtype : numpy dtype
        Of the returned draws (drawn in float64; ``float32`` halves the memory kept).
    packed : KernelModel, optional
        The design packed for the kernel (any priors: the draws use its structure only),
        packed here unless given.

    Returns
    -------
    dict of str to xarray.DataArray
        ``{g}_b`` on (``chain``, ``draw``, ``g``, ``{g}_effect``) per grouping factor.

    Examples
    --------
    >>> import numpy as np, xarray as xr, lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design
    >>> post = xr.Dataset({
    ...     "beta": (("chain", "draw", "coef"), np.tile([251.4, 10.5], (2, 3, 1))),
    ...     "sigma": (("chain", "draw"), np.full((2, 3), 30.9)),
    ...     "Subject_sd": (("chain", "draw", "Subject_effect"), np.full((2, 3, 1), 37.1))})
    >>> b = draw_random_effects(d, post, seed=1)["Subject_b"]
    >>> b.dims, b.shape
    (('chain', 'draw', 'Subject', 'Subject_effect'), (2, 3, 18, 1))
    """
    stats = sufficient_statistics(design) if stats is None else stats
    chain = stats.chain
    if not chain:
        return {}
    packed = pack(design, None, stats) if packed is None else packed
    post = posterior.transpose("chain", "draw", ...)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    D = n_chain * n_draw
    betas = post["beta"].values.reshape(D, -1) if "beta" in post else np.zeros((D, 0))
    sigmas = np.ascontiguousarray(post["sigma"].values.reshape(-1), dtype=float)
    qmax = max(g.n_effects for g in chain)
    G = np.zeros((D, len(chain), qmax, qmax))
    for k, g in enumerate(chain):
        G[:, k, : g.n_effects, : g.n_effects] = covariance_values(post, g).reshape(D, g.n_effects, g.n_effects)
    sizes = [g.n_levels * g.n_effects for g in chain]
    values = np.empty((D, sum(sizes)), dtype=dtype)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, values.shape[1]))  # bounds the innovations held at once
    kernel = load()
    for start in range(0, D, chunk):
        sl = slice(start, min(D, start + chunk))
        z = rng.standard_normal((sl.stop - sl.start, values.shape[1]))
        out = values[sl] if values.dtype == np.float64 else np.empty_like(z)
        kernel.draw_effects(np.ascontiguousarray(betas[sl], dtype=float), sigmas[sl], G[sl], packed.ints,
                            packed.floats, z, out)
        values[sl] = out
    result = {}
    at = 0
    for g, size in zip(chain, sizes):
        block = values[:, at : at + size].reshape(n_chain, n_draw, g.n_levels, g.n_effects)
        at += size
        result[b_name(g)] = xr.DataArray(
            block,
            dims=("chain", "draw", g.name, g.effect_dim),
            coords={"chain": post["chain"].values, "draw": post["draw"].values,
                    g.name: list(g.levels), g.effect_dim: list(g.effects)},
            name=b_name(g),
        )
    return result

"""The collapsed method for crossed factors: subjects x items with every b integrated out.

For ``y = X beta + Z u + e``, ``u ~ N(0, Lambda)``, the marginal likelihood needs
``M = Z'Z + sigma^2 Lambda^-1`` (module :mod:`lmm_bayes.inference.methods.collapsed.likelihood`: determinant
lemma and Woodbury). Nested factors make M an arrow the kernel eliminates cluster by
cluster; crossed factors (``(1 | subject) + (1 | item)``) couple every subject to every
item it saw, so M is a general sparse matrix.

The linear algebra is the blocked Cholesky of lme4 and MixedModels.jl, with two blocks:

* the factor with the most effects (``L_k q_k``; students, or subjects, or sessions in
  ``(1 | subject/session) + (1 | item)``) is block diagonal in M: ``A = blockdiag(A_j)``,
  one ``q x q`` Cholesky per cluster, linear in its clusters;
* every other factor's effects (m of them) form the dense Schur complement
  ``S = D - B'A^-1 B`` (``B`` the sparse coupling ``Z_1'Z_rest``), factorised by LAPACK.

The coupling ``B'A^-1 B`` is eliminated cluster by cluster (compiled loops,
:mod:`lmm_bayes.inference.methods.crossed.kernel`) when each cluster meets few dense effects
(students who rated a few lecturers), and as one BLAS product when most clusters meet most of
them (every subject saw every item): :data:`DENSE_COUPLING`.

So a gradient costs no pass over the rows, only sparse products and ``O(m^3)`` LAPACK work.
Measured on one core, one BLAS thread (``python benchmarks/crossed.py``'s designs): 1.1 ms for
60 subjects x 40 items with four correlated effects on both (m = 160), 50-70 ms for 3,000
students x 1,100 lecturers x 14 departments (m = 1,114). Why not the alternatives: a sparse
Cholesky with a fill-reducing ordering fills in the same dense block when most items share
subjects (each student couples all lecturers it rated, and lecturers share students), so it
gives no saving there and needs CHOLMOD, which is not a wheel on every platform; a collapsed
Gibbs scheme (Papaspiliopoulos, Roberts & Zanella 2020; Papaspiliopoulos, Stumpf-Fetizon &
Zanella 2023) costs O(rows) per sweep but takes random intercepts only, whereas this exact
marginal keeps NUTS for slopes and correlations too. For random intercepts with a big dense
block that scheme is :mod:`lmm_bayes.inference.methods.gibbs.sampler`, which ``method="auto"`` takes above
:data:`SMALL_DENSE_EFFECTS` dense effects; with slopes, above :data:`MAX_DENSE_EFFECTS`
effects ``method="auto"`` takes the full method instead.

nutpie calls this module through its Python-callback interface. Up to
:data:`SMALL_DENSE_EFFECTS` dense effects the whole elimination runs in compiled code that calls
LAPACK without the GIL, so chains sample side by side; above it scipy's ``dpotri`` inverts S
three times faster than numba's LU-based inverse, but scipy's wrappers hold the GIL, so the
chains take turns on the inversion (the Cholesky factor comes from numpy, which releases it;
a GIL-free ``potri`` is the next speed-up there).

The gradient is exact by Fisher's identity, as in the kernel: it needs the posterior means
of every b and the diagonal ``q x q`` blocks of ``Cov(b | y) = sigma^2 M^-1``:
``S^-1``'s blocks for the dense factors, ``A_j^-1 + P_j S^-1 P_j'`` (``P = A^-1 B``) for the
block-diagonal one. The priors, the covariance transforms and the chain rule are the
kernel's (:func:`~lmm_bayes.inference.methods.collapsed.kernel.density_start`, ``density_finish``).

After sampling, b is drawn exactly: the dense factors' effects from ``N(S^-1 r, sigma^2
S^-1)``, then each block-diagonal cluster given them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lazy_loader as lazy
import numpy as np
import scipy.sparse as sp
import xarray as xr

from lmm_bayes.inference.methods.kernel_loader import load_crossed
from lmm_bayes.inference.layout import b_name, covariance_values
from lmm_bayes.inference.methods.collapsed.packing import KernelModel, pack_parameters
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
linalg = lazy.load("scipy.linalg", suppress_warning=True)

__all__ = ["MAX_DENSE_EFFECTS", "CrossedSystem", "crossed_model", "dense_effects", "draw_crossed_effects"]

#: the largest dense block (effects of all factors but the biggest) the crossed method takes:
#: a gradient costs ~m^3 flops, 50-70 ms at m = 1,114 and ~0.15 s at 1,500 on one core
MAX_DENSE_EFFECTS = 1500
#: the coupling is handled as a dense array (BLAS products) when at least this share of it is
#: filled (every subject saw most items) and it holds at most MAX_DENSE_COUPLING numbers
DENSE_COUPLING = 0.25
MAX_DENSE_COUPLING = 5_000_000
#: up to this many dense effects the whole elimination runs in compiled code (LAPACK without the
#: GIL, so chains sample side by side); above it scipy's dpotri inverts S three times faster
SMALL_DENSE_EFFECTS = 500
# standard-normal innovations (draws x effects) held at once while drawing b
_CHUNK_ELEMENTS = 4_000_000


def block_factor(groups: tuple[GroupDesign, ...]) -> int:
    """Index of the factor eliminated block-diagonally: the one with the most effects."""
    return int(np.argmax([g.n_levels * g.n_effects for g in groups]))


def dense_effects(design: Design) -> int:
    """The size m of the dense block the crossed method factorises for this design.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"s": list("aabbcc"), "i": list("xyxyxy"), "y": [1., 2, 3, 4, 5, 7]})
    >>> dense_effects(lb.LMM("y ~ 1 + (1 | s) + (1 | i)", df).design)  # the 2 items
    2
    """
    groups = design.groups
    if not groups:
        return 0
    s = block_factor(groups)
    return sum(g.n_levels * g.n_effects for k, g in enumerate(groups) if k != s)


def _coupling(gs: GroupDesign, rest: list[GroupDesign], offsets: list[int], m: int):
    """The block-diagonal factor's coupling to the dense effects, row-compressed per cluster.

    Returns ``(ptr, col, Bv)``: cluster j couples to dense effects ``col[ptr[j]:ptr[j+1]]``
    (sorted) with ``Bv[t, a] = sum over its rows of Z_j[:, a] * Z_dense[:, col[t]]``.
    """
    q = gs.n_effects
    keys, values = [], []
    for g, o in zip(rest, offsets):
        for e in range(g.n_effects):
            keys.append(gs.codes * m + o + g.codes * g.n_effects + e)
            values.append(gs.Z * g.Z[:, e : e + 1])
    key = np.concatenate(keys)
    value = np.concatenate(values)
    unique, inverse = np.unique(key, return_inverse=True)
    Bv = np.column_stack([np.bincount(inverse, weights=value[:, a], minlength=unique.size) for a in range(q)])
    ptr = np.searchsorted(unique // m, np.arange(gs.n_levels + 1)).astype(np.int64)
    return ptr, (unique % m).astype(np.int64), np.ascontiguousarray(Bv)


def _cluster_of(ptr: np.ndarray) -> np.ndarray:
    """For row-compressed entries with pointers ``ptr``, the cluster of each entry."""
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


def _dense_z(rest: list[GroupDesign], offsets: list[int], m: int, n: int) -> sp.csr_matrix:
    """Z of the dense factors as one sparse n x m matrix."""
    rows = np.concatenate([np.repeat(np.arange(n), g.n_effects) for g in rest])
    cols = np.concatenate([(o + g.codes[:, None] * g.n_effects + np.arange(g.n_effects)).ravel()
                           for g, o in zip(rest, offsets)])
    vals = np.concatenate([g.Z.ravel() for g in rest])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, m))


def _per_cluster(g: GroupDesign, F: np.ndarray) -> np.ndarray:
    """``sum over cluster j's rows of Z_j[:, a] F[:, c]``, shape (levels * effects, columns of F)."""
    q = g.n_effects
    out = np.empty((g.n_levels, q, F.shape[1]))
    for a in range(q):
        for c in range(F.shape[1]):
            out[:, a, c] = np.bincount(g.codes, weights=g.Z[:, a] * F[:, c], minlength=g.n_levels)
    return out.reshape(g.n_levels * q, F.shape[1])


@dataclass(frozen=True, eq=False)
class CrossedSystem:
    """The cross products of a crossed design, split into the block-diagonal factor and the rest.

    Built once per design by :meth:`from_design`; :meth:`marginal` and :meth:`draw` reuse it
    for every gradient and every posterior draw.
    """

    groups: tuple[GroupDesign, ...]
    s: int  # the block-diagonal factor
    A0: np.ndarray  # (L, q, q): Z_j'Z_j of its clusters
    ptr: np.ndarray  # its coupling to the dense effects (:func:`_coupling`)
    col: np.ndarray
    Bv: np.ndarray
    D0: np.ndarray  # (m, m): Z'Z of the dense effects
    ZsX: np.ndarray
    Zsy: np.ndarray
    ZrX: np.ndarray
    Zry: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    rest: np.ndarray  # one row (first dense effect, levels, effects) per dense factor, design order
    Bd: np.ndarray | None = None  # the coupling as a dense (L, q, m) array, when most of it is filled

    @classmethod
    def from_design(cls, design: Design) -> CrossedSystem:
        groups = design.groups
        s = block_factor(groups)
        gs = groups[s]
        rest = [g for k, g in enumerate(groups) if k != s]
        offsets = list(np.cumsum([0] + [g.n_levels * g.n_effects for g in rest])[:-1])
        m = sum(g.n_levels * g.n_effects for g in rest)
        Zr = _dense_z(rest, offsets, m, design.n)
        X, y = design.X, design.y
        ptr, col, Bv = _coupling(gs, rest, offsets, m)
        Xy = np.column_stack([X, y])
        L, q = gs.n_levels, gs.n_effects
        Bd = None
        if col.size >= DENSE_COUPLING * L * m and L * q * m <= MAX_DENSE_COUPLING:
            Bd = np.zeros((L, q, m))
            Bd[_cluster_of(ptr), :, col] = Bv
        sX = _per_cluster(gs, Xy)
        rX = np.asarray(Zr.T @ Xy)
        return cls(
            groups=groups, s=s, A0=_per_cluster(gs, gs.Z).reshape(gs.n_levels, gs.n_effects, gs.n_effects),
            ptr=ptr, col=col, Bv=Bv, D0=(Zr.T @ Zr).toarray(),
            ZsX=np.ascontiguousarray(sX[:, :-1]), Zsy=sX[:, -1].copy(),
            ZrX=np.ascontiguousarray(rX[:, :-1]), Zry=rX[:, -1].copy(),
            XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), n=design.n,
            rest=np.array([[o, g.n_levels, g.n_effects] for g, o in zip(rest, offsets)], dtype=np.int64), Bd=Bd,
        )

    @property
    def m(self) -> int:
        return self.D0.shape[0]

    @cached_property
    def cluster_of(self) -> np.ndarray:
        """The block-diagonal cluster of every coupling entry (rows of ``Bv``), computed once."""
        return _cluster_of(self.ptr)

    @cached_property
    def shapes(self) -> np.ndarray:
        """(levels, effects) of every factor, design order."""
        return np.array([[g.n_levels, g.n_effects] for g in self.groups], dtype=np.int64)

    def _dense_ginv(self, s2: float, Ginv: np.ndarray) -> np.ndarray:
        return s2 * np.delete(Ginv, self.s, axis=0)

    def _factor(self, beta: np.ndarray, s2: float, Ginv: np.ndarray):
        """The blocked Cholesky of M; None when M is not positive definite."""
        q = self.A0.shape[1]
        cs = self.Zsy - self.ZsX @ beta
        cr = self.Zry - self.ZrX @ beta
        dense = self.Bd is not None
        ok, S, LA, Ainv, logdet_A, P, a_s, rhs = load_crossed().schur(
            self.A0, s2 * Ginv[self.s, :q, :q], self.ptr, self.col, self.Bv, cs, cr, self.D0, self.rest,
            self._dense_ginv(s2, Ginv), dense)
        if not ok:
            return None
        Pd = None
        if dense:  # S -= B'A^-1 B as one BLAS product
            Pd = np.zeros(self.Bd.shape)
            Pd[self.cluster_of, :, self.col] = P
            S -= np.tensordot(self.Bd, Pd, axes=([0, 1], [0, 1]))
        try:  # numpy's LAPACK call releases the GIL (scipy's wrappers hold it): other chains keep going
            LS = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return None
        return dict(LS=LS, LA=LA, Ainv=Ainv, logdet_A=logdet_A, P=P, Pd=Pd, a_s=a_s, rhs=rhs, cs=cs)

    def marginal(self, beta: np.ndarray, s2: float, Ginv: np.ndarray, logdet_G: np.ndarray):
        """Marginal log-likelihood and its gradient wrt beta, sigma and each G (kernel's layout).

        Returns ``(ll, d/dbeta, d/dsigma, d/dG)``; ``ll`` is ``-inf`` where M is not positive
        definite.
        """
        beta = np.asarray(beta, dtype=float)
        kernel = load_crossed()
        failed = -np.inf, np.zeros_like(beta), 0.0, np.zeros_like(Ginv)
        if self.m <= SMALL_DENSE_EFFECTS:  # all in compiled code, GIL released: chains run side by side
            q = self.A0.shape[1]
            cs = self.Zsy - self.ZsX @ beta
            Bd2 = self.Bd.reshape(-1, self.m) if self.Bd is not None else np.zeros((0, self.m))
            ok, logdet_M, ur, us, B_s, B_rest, a_s, rhs = kernel.factor_small(
                self.A0, s2 * Ginv[self.s, :q, :q], self.ptr, self.col, self.Bv, cs, self.Zry - self.ZrX @ beta,
                self.D0, self.rest, self._dense_ginv(s2, Ginv), Bd2, s2)
            if not ok:
                return failed
        else:  # LAPACK through scipy: dpotri inverts in a third of numba's LU-based time
            f = self._factor(beta, s2, Ginv)
            if f is None:
                return failed
            LS = f["LS"]
            logdet_M = f["logdet_A"] + 2.0 * np.log(np.diag(LS)).sum()
            # L' is the Fortran-ordered upper factor; the inverse comes back in its upper triangle
            Sinv, info = linalg.lapack.dpotri(LS.T, lower=0)
            if info != 0:
                return failed
            Sinv = Sinv.T  # lower triangle of S^-1, as moments reads it
            Pd = f["Pd"]
            ur, us, B_s, B_rest = kernel.moments(Sinv, f["rhs"], self.ptr, self.col, f["P"], f["Ainv"], f["a_s"],
                                                 self.rest, s2, Pd is not None)
            if Pd is not None:  # + sigma^2 sum_j P_j S^-1 P_j', as BLAS products
                full = np.tril(Sinv) + np.tril(Sinv, -1).T
                T = (Pd.reshape(-1, self.m) @ full).reshape(Pd.shape)
                B_s = B_s + s2 * np.einsum("jat,jct->ac", T, Pd)
            cs, a_s, rhs = f["cs"], f["a_s"], f["rhs"]
        ll, g_beta, g_sigma, gG = kernel.assemble(
            beta, s2, Ginv, logdet_G, logdet_M, cs, a_s, rhs, ur, us, B_s, B_rest, self.s, self.shapes, self.XtX,
            self.Xty, self.yty, self.ZsX, self.ZrX, self.n)
        return float(ll), g_beta, float(g_sigma), gG

    def draw(self, beta: np.ndarray, s2: float, Ginv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """One exact draw of every b given beta, sigma^2 and the G^-1s, from innovations z.

        ``z`` and the result hold all factors' effects in the design's order, level-major.
        """
        f = self._factor(np.asarray(beta, dtype=float), s2, Ginv)
        if f is None:
            raise ValueError("a posterior draw gave a covariance that is not positive definite")
        sigma = math.sqrt(s2)
        starts = np.cumsum([0] + [g.n_levels * g.n_effects for g in self.groups])
        zr = np.concatenate([z[starts[k] : starts[k + 1]] for k in range(len(self.groups)) if k != self.s])
        LS = f["LS"]
        mean, _ = linalg.lapack.dpotrs(LS, f["rhs"], lower=1)
        ur = mean + sigma * linalg.solve_triangular(LS, zr, lower=True, trans="T", check_finite=False)
        bs = load_crossed().draw_block(ur, f["cs"], self.ptr, self.col, self.Bv, f["LA"], f["Ainv"], sigma,
                                       np.ascontiguousarray(z[starts[self.s] : starts[self.s + 1]]))
        out = np.empty_like(z)
        for k in range(len(self.groups)):
            if k == self.s:
                out[starts[k] : starts[k + 1]] = bs
        for r, k in enumerate(k for k in range(len(self.groups)) if k != self.s):
            first, levels, qk = self.rest[r]
            out[starts[k] : starts[k + 1]] = ur[first : first + levels * qk]
        return out


def crossed_model(design: Design, priors: Priors | None, system: CrossedSystem | None = None) -> KernelModel:
    """The crossed collapsed model for nutpie: the kernel's priors with this module's marginal.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"s": list("aabbcc"), "i": list("xyxyxy"), "y": [1., 2, 3, 4, 5, 7]})
    >>> m = lb.LMM("y ~ 1 + (1 | s) + (1 | i)", df)
    >>> km = crossed_model(m.design, m.priors)
    >>> km.n_dim  # beta, log sigma, two log SDs
    4
    """
    system = CrossedSystem.from_design(design) if system is None else system
    load_crossed()  # here, not first inside a sampler's thread: importing may compile
    km = pack_parameters(design, priors, design.groups)
    return KernelModel(design=km.design, chain=km.chain, ints=km.ints, floats=km.floats, n_dim=km.n_dim,
                       start=km.start, marginal=system.marginal)


def draw_crossed_effects(
    design: Design, posterior: xr.Dataset, seed: Any = None, system: CrossedSystem | None = None,
    dtype: Any = np.float64,
) -> dict[str, xr.DataArray]:
    """Draw every b of a crossed design exactly from ``b | beta, theta, y``, one per posterior draw.

    Returns ``{g}_b`` on (``chain``, ``draw``, ``g``, ``{g}_effect``) per grouping factor, as
    :func:`lmm_bayes.inference.methods.collapsed.likelihood.draw_random_effects` does for nested designs.
    """
    system = CrossedSystem.from_design(design) if system is None else system
    groups = design.groups
    post = posterior.transpose("chain", "draw", ...)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    D = n_chain * n_draw
    betas = post["beta"].values.reshape(D, -1) if "beta" in post else np.zeros((D, 0))
    sigmas = post["sigma"].values.reshape(-1)
    qmax = max(g.n_effects for g in groups)
    Ginv = np.zeros((D, len(groups), qmax, qmax))
    for k, g in enumerate(groups):
        q = g.n_effects
        Ginv[:, k, :q, :q] = np.linalg.inv(covariance_values(post, g).reshape(D, q, q))
    sizes = [g.n_levels * g.n_effects for g in groups]
    values = np.empty((D, sum(sizes)), dtype=dtype)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, values.shape[1]))
    for start in range(0, D, chunk):
        stop = min(D, start + chunk)
        z = rng.standard_normal((stop - start, values.shape[1]))
        for i, d in enumerate(range(start, stop)):
            values[d] = system.draw(betas[d], float(sigmas[d]) ** 2, Ginv[d], z[i])
    result, at = {}, 0
    for g, size in zip(groups, sizes):
        block = values[:, at : at + size].reshape(n_chain, n_draw, g.n_levels, g.n_effects)
        at += size
        result[b_name(g)] = xr.DataArray(
            block, dims=("chain", "draw", g.name, g.effect_dim),
            coords={"chain": post["chain"].values, "draw": post["draw"].values,
                    g.name: list(g.levels), g.effect_dim: list(g.effects)},
            name=b_name(g),
        )
    return result

"""A collapsed model as data for the compiled kernel (:mod:`lmm_bayes.inference.methods.collapsed.kernel`).

:func:`pack` lays out the sufficient statistics, the nesting chain, the correlated
blocks and the priors in two flat arrays (``ints``, ``floats``), so one compiled
function serves every model; :class:`KernelModel` holds them with what is needed to
turn an unconstrained point back into the named posterior variables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from lmm_bayes.inference.methods.kernel_loader import load
from lmm_bayes.inference.layout import BETA, SIGMA, bis, corr_name, sd_name
from lmm_bayes.inference.methods.collapsed.sufficient import SufficientStats
from lmm_bayes.names import COEF
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Prior, Priors, resolve_priors

__all__ = ["KernelModel", "pack", "pack_parameters"]


def _prior_row(prior: Prior, kernel) -> tuple[int, tuple[float, float, float]]:
    """(family code, (nu, mu, scale)) of one prior."""
    kw = prior.kwargs
    scale = kw.get("sigma", kw.get("lam", kw.get("beta", 1.0)))
    return kernel.FAMILY_CODES[prior.dist], (kw.get("nu", 0.0), kw.get("mu", 0.0), scale)


@dataclass(frozen=True, eq=False)
class KernelModel:
    """A collapsed model packed for :func:`lmm_bayes.inference.methods.collapsed.kernel.log_density`.

    Attributes
    ----------
    ints, floats : ndarray
        The structure and the data (layout in :mod:`lmm_bayes.inference.methods.collapsed.kernel`).
    n_dim : int
        Length of the unconstrained parameter vector.
    start : ndarray
        A central unconstrained point (prior locations), jittered for each chain.
    marginal : callable or None
        ``marginal(beta, sigma2, Ginv, logdet_G) -> (ll, d/dbeta, d/dsigma, d/dG)``: the
        marginal log-likelihood when another factorisation than the kernel's nested one
        integrates b out (crossed designs); None for the kernel's own.
    chain_marginal : callable or None
        Makes a fresh ``marginal`` for each chain, for one that keeps state between calls
        (the Laplace method's warm start: :mod:`lmm_bayes.inference.methods.laplace.system`); None shares ``marginal``.
    """

    design: Design
    chain: tuple[GroupDesign, ...]
    ints: np.ndarray
    floats: np.ndarray
    n_dim: int
    start: np.ndarray
    marginal: Callable | None = None
    chain_marginal: Callable[[], Callable] | None = None

    def chain_log_density(self) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        """:meth:`log_density` for one chain (with its own :attr:`chain_marginal`, if any)."""
        if self.chain_marginal is None:
            return self.log_density
        return replace(self, marginal=self.chain_marginal(), chain_marginal=None).log_density

    def log_density(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density (up to a constant) and its gradient at x."""
        kernel = load()
        x = np.asarray(x, dtype=float)
        if self.marginal is None:
            lp, grad = kernel.log_density(x, self.ints, self.floats)
            return float(lp), grad
        lp, grad, sigma, sd, R, Ginv, logdet_G = kernel.density_start(x, self.ints, self.floats)
        if not np.all(np.isfinite(logdet_G)):
            return -np.inf, grad
        p = len(self.design.X_columns)
        ll, g_beta, g_sigma, gG = self.marginal(x[:p], sigma * sigma, Ginv, logdet_G)
        if not np.isfinite(ll):
            return -np.inf, grad
        grad[:p] += g_beta
        grad[p] += g_sigma * sigma
        return float(kernel.density_finish(x, self.ints, self.floats, sd, R, gG, lp + ll, grad)), grad

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The named posterior variables (``beta``, ``sigma``, ``{g}_sd``, ``{g}_corr``) at x."""
        sigma, sd, R = load().constrain(np.asarray(x, dtype=float), self.ints, self.floats)
        p = len(self.design.X_columns)
        out: dict[str, np.ndarray] = {}
        if p:
            out[BETA] = np.array(x[:p], dtype=float)
        out[SIGMA] = np.asarray(sigma)
        for k, g in enumerate(self.chain):
            q = g.n_effects
            out[sd_name(g)] = sd[k, :q].copy()
            if g.correlated:
                out[corr_name(g)] = R[k, :q, :q].copy()
        return out

    def variables(self) -> tuple[list[str], list[tuple[int, ...]], dict[str, tuple[str, ...]]]:
        """Names, shapes and dims of what :meth:`expand` returns."""
        names, shapes, dims = [], [], {}
        p = len(self.design.X_columns)
        if p:
            names.append(BETA), shapes.append((p,))
            dims[BETA] = (COEF,)
        names.append(SIGMA), shapes.append(())
        for g in self.chain:
            q = g.n_effects
            names.append(sd_name(g)), shapes.append((q,))
            dims[sd_name(g)] = (g.effect_dim,)
            if g.correlated:
                names.append(corr_name(g)), shapes.append((q, q))
                dims[corr_name(g)] = (g.effect_dim, bis(g.effect_dim))
        return names, shapes, dims


def _parameters(design: Design, priors: Priors, groups: tuple[GroupDesign, ...], kernel) -> dict:
    """The unconstrained layout of the parameters and their priors (module docstring of the kernel)."""
    p = len(design.X_columns)
    group_priors = priors.group_by_name
    fams: list[int] = []
    params: list[tuple[float, float, float]] = []
    for prior in [priors.fixed_by_name[c] for c in design.X_columns] + [priors.sigma]:
        code, row = _prior_row(prior, kernel)
        fams.append(code), params.append(row)
    blocks: list[list[int]] = []
    effects: list[int] = []
    etas: list[float] = []
    start = [priors.fixed_by_name[c].kwargs.get("mu", 0.0) for c in design.X_columns]
    start.append(np.log(_prior_scale(priors.sigma)))
    x_at = p + 1
    for k, g in enumerate(groups):
        gp = group_priors[g.name]
        for block in g.blocks:
            sd_priors = [gp.sd_by_effect[g.effects[i]] for i in block]
            m = len(block)
            fields = dict(factor=k, size=m, first_effect=len(effects), first_x=x_at, first_prior=len(fams))
            blocks.append(_row(fields, kernel.BLOCK_FIELDS))
            effects.extend(block)
            for pr in sd_priors:
                code, row = _prior_row(pr, kernel)
                fams.append(code), params.append(row)
                start.append(np.log(_prior_scale(pr)))
            start.extend([0.0] * (m * (m - 1) // 2))
            etas.append(float(gp.eta))
            x_at += m + m * (m - 1) // 2
    return dict(fams=fams, params=params, blocks=blocks, effects=effects, etas=etas, start=start, n_dim=x_at)


def _row(fields: dict[str, int], names: tuple[str, ...]) -> list[int]:
    """A row of one of the kernel's tables from its fields by name, checked against the kernel's order."""
    if tuple(fields) != names:
        raise RuntimeError(f"table row fields {tuple(fields)} differ from the kernel's {names}")
    return list(fields.values())


class _Floats:
    """The ``floats`` array, built piece by piece; :meth:`put` returns a piece's offset."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.size = 0

    def put(self, values) -> int:
        arr = np.ascontiguousarray(values, dtype=float).ravel()
        self.pieces.append(arr)
        self.size += arr.size
        return self.size - arr.size

    def array(self) -> np.ndarray:
        return np.concatenate(self.pieces) if self.pieces else np.zeros(0)


def _tables(kernel, header: dict, level_rows: list[int], par: dict) -> list[int]:
    """``ints`` up to the parents: header, level table, block table, effects, prior families."""
    ints: list[int] = [0] * len(kernel.HEADER)
    header["levels"] = len(ints)
    ints.extend(level_rows)
    header["blocks"] = len(ints)
    ints.extend(v for row in par["blocks"] for v in row)
    header["effects"] = len(ints)
    ints.extend(par["effects"])
    header["families"] = len(ints)
    ints.extend(par["fams"])
    header["parents"] = len(ints)
    ints[: len(kernel.HEADER)] = [header.get(name, 0) for name in kernel.HEADER]
    return ints


def pack(design: Design, priors: Priors | None, stats: SufficientStats) -> KernelModel:
    """Lay out a collapsed model for the compiled kernel.

    The priors are those :func:`lmm_bayes.spec.priors.resolve_priors` accepted: every
    family has a code in the kernel, and the SDs of one correlated block share a family.
    ``None`` takes the defaults (for what needs only the structure, the draws of b).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> km = pack(m.design, m.priors, sufficient_statistics(m.design))
    >>> km.n_dim  # beta (2), log sigma, 2 log SDs, 1 correlation
    6
    """
    kernel = load()
    priors = resolve_priors(design) if priors is None else priors
    chain = stats.chain
    par = _parameters(design, priors, chain, kernel)
    floats = _Floats()
    put = floats.put
    header = dict(p=stats.XtX.shape[0], K=len(chain), n_blocks=len(par["blocks"]), n=stats.n)
    header["yty"] = put([stats.yty])
    header["XtX"] = put(stats.XtX)
    header["Xty"] = put(stats.Xty)
    header["priors"] = put(np.array(par["params"], dtype=float).reshape(-1, 3))
    header["eta"] = put(par["etas"])
    level_rows: list[int] = []
    group_parents: list[np.ndarray] = []
    n_group_parents = 0  # made absolute below, once the offsets of ints are known
    Q, first = 0, 0
    for k, (g, lev) in enumerate(zip(chain, stats.levels)):
        # the floats are put in this order: Z'Z, Z'A, Z'X, Z'y, then the groups' records
        fields = dict(q=lev.q, q_above=Q, n_clusters=lev.n_clusters, first_cluster=first, ZtZ=put(lev.ZtZ),
                      ZtA=put(lev.ZtA), ZtX=put(lev.ZtX), Zty=put(lev.Zty), correlated=int(g.correlated),
                      n_groups=0, group_parents=0, group_records=0)
        if k == len(chain) - 1 and lev.q == 1:
            parents, records = _leaf_groups(lev)
            fields.update(n_groups=len(parents), group_parents=n_group_parents, group_records=put(records))
            group_parents.append(parents)
            n_group_parents += len(parents)
        level_rows.extend(_row(fields, kernel.LEVEL_FIELDS))
        Q += lev.q
        first += lev.n_clusters
    ints = _tables(kernel, header, level_rows, par)
    level_at = header["levels"]
    parents = [np.asarray(lev.parent, dtype=np.int64) for lev in stats.levels]
    group_base = len(ints) + sum(len(a) for a in parents)
    n_groups_at, parents_at = (kernel.LEVEL_FIELDS.index(f) for f in ("n_groups", "group_parents"))
    for k in range(len(stats.levels)):  # the groups' parents follow the clusters' parents in ints
        if ints[level_at + k * kernel.LEVEL_WIDTH + n_groups_at]:
            ints[level_at + k * kernel.LEVEL_WIDTH + parents_at] += group_base
    return KernelModel(
        design=design,
        chain=chain,
        ints=np.concatenate([np.asarray(ints, dtype=np.int64), *parents, *group_parents]),
        floats=floats.array(),
        n_dim=par["n_dim"],
        start=np.asarray(par["start"], dtype=float),
    )


def pack_parameters(design: Design, priors: Priors | None, groups: tuple[GroupDesign, ...]) -> KernelModel:
    """The parameters and priors of a model with the factors ``groups`` (any structure), without data.

    Enough for :func:`lmm_bayes.inference.methods.collapsed.kernel.density_start`, ``density_finish`` and
    ``constrain``: the crossed method (:mod:`lmm_bayes.inference.methods.crossed.system`) adds its own
    marginal likelihood.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> pack_parameters(m.design, m.priors, m.design.groups).n_dim
    6
    """
    kernel = load()
    priors = resolve_priors(design) if priors is None else priors
    par = _parameters(design, priors, groups, kernel)
    floats = _Floats()
    header = dict(p=len(design.X_columns), K=len(groups), n_blocks=len(par["blocks"]), n=design.n)
    header["priors"] = floats.put(np.array(par["params"], dtype=float).reshape(-1, 3))
    header["eta"] = floats.put(par["etas"])
    level_rows: list[int] = []
    for g in groups:  # no data: every offset 0
        fields = dict.fromkeys(kernel.LEVEL_FIELDS, 0) | dict(q=g.n_effects, n_clusters=g.n_levels,
                                                             correlated=int(g.correlated))
        level_rows.extend(_row(fields, kernel.LEVEL_FIELDS))
    ints = _tables(kernel, header, level_rows, par)
    return KernelModel(
        design=design, chain=tuple(groups), ints=np.asarray(ints, dtype=np.int64), floats=floats.array(),
        n_dim=par["n_dim"], start=np.asarray(par["start"], dtype=float),
    )


def _leaf_groups(lev) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of a one-effect finest factor grouped by (parent, Z'Z): parents and records.

    A record is ``(count, Z'Z, W)`` with ``W = sum_j w_j w_j'`` over the group's clusters and
    ``w_j = [Z_j'y, Z_j'X, Z_j'A]`` (see the kernel): one pass of bincounts, no loop over clusters.
    """
    w = np.concatenate([lev.Zty[:, :1], lev.ZtX[:, 0, :], lev.ZtA[:, 0, :]], axis=1)
    keys = np.column_stack([lev.parent.astype(float), lev.ZtZ[:, 0, 0]])
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n_groups, width = len(uniq), w.shape[1]
    W = np.empty((n_groups, width, width))
    for a in range(width):
        for b in range(a + 1):
            W[:, a, b] = W[:, b, a] = np.bincount(inverse, weights=w[:, a] * w[:, b], minlength=n_groups)
    count = np.bincount(inverse, minlength=n_groups).astype(float)
    records = np.column_stack([count, uniq[:, 1], W.reshape(n_groups, -1)])
    return uniq[:, 0].astype(np.int64), records


def _prior_scale(prior: Prior) -> float:
    """A typical value of a positive parameter under its prior (its scale, or 1 / rate)."""
    kw = prior.kwargs
    if prior.dist == "Exponential":
        return 1.0 / kw["lam"]
    return kw.get("sigma", kw.get("beta", 1.0))

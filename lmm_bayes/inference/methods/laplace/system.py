"""The Laplace method of a GLMM: b integrated out approximately per cluster, then checked and drawn.

A generalized model has no closed-form marginal likelihood, but in a nested design every
top-level cluster (a subject, with its neurons) is a block of effects that no other rows
touch. Per block, the integral over b is replaced by Laplace's approximation at the mode,
found by damped Newton steps with the exact Hessian ``Z'WZ + G^-1`` (as glmer and INLA do);
NUTS samples β, the SDs and correlations (and the negative binomial's dispersion) on that
marginal, with its exact gradient (:mod:`lmm_bayes.inference.methods.laplace.kernel`).

An approximation must not pass silently for the posterior. After sampling, every draw's
blocks get ``n_proposals`` draws from their Laplace normal ``N(b_hat, H^-1)``, weighted by
``p(y, b | beta, theta) / q(b)``:

* the mean weight of a block estimates the ratio of its true marginal likelihood to the
  Laplace value, so the product over blocks, ``w``, is the importance weight of the draw
  of (β, θ) against the exact posterior. Pareto-smoothed (PSIS, Vehtari et al. 2024), its
  shape ``k`` says whether the weights can be trusted, and the weighted means of the
  hyperparameters estimate the exact posterior's: :func:`check_laplace` compares each
  with the unweighted mean in units of its standard error (Monte Carlo error and the
  weights' own noise);
* b is resampled among a block's proposals by its weights (sampling importance
  resampling), so the draws of b are corrected too.

The check passes when ``k <= 0.7`` and no hyperparameter moves by more than
:data:`MAX_SHIFT` standard errors under the weights. ``method="auto"`` uses this method only for a
nested design whose family it covers, and keeps its result only when the check passes
(otherwise it samples the full model and says why); ``method="laplace"`` keeps the result
and warns. The check's numbers are stored in the posterior's attributes (``laplace_*``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import lazy_loader as lazy
import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.methods.kernel_loader import load_laplace
from lmm_bayes.inference.layout import BETA, SIGMA, b_name, covariance_values, hyperparameter_draws, hyperparameters
from lmm_bayes.inference.methods.collapsed.packing import KernelModel, pack_parameters
from lmm_bayes.inference.methods.collapsed.sufficient import nesting_chain
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Prior, Priors, resolve_priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
special = lazy.load("scipy.special", suppress_warning=True)

__all__ = ["MAX_BLOCK", "MAX_PARETO_K", "MAX_SHIFT", "LaplaceCheck", "LaplaceSystem", "check_laplace",
           "draw_laplace_effects", "laplace_model", "laplace_obstacle", "proposals_for", "rename_slot"]

#: the largest block (a top-level cluster's effects and its nested clusters'): its work arrays are d x d
MAX_BLOCK = 1000
#: the largest Pareto k of the importance weights for which the check passes (Vehtari et al. 2024)
MAX_PARETO_K = 0.7
#: the largest move of a hyperparameter's mean under the weights, in standard errors (:func:`check_laplace`)
MAX_SHIFT = 2.0
#: proposals per block and draw (fewer on large data: see :func:`proposals_for`)
PROPOSALS = 16
#: rows x draws x proposals evaluated after sampling, at most (sets the proposals on large data)
ROW_BUDGET = 2e9
# the prior of the unused residual-scale slot of families without an extra parameter
_UNUSED = Prior("HalfNormal", sigma=1.0)


def laplace_obstacle(design: Design) -> str:
    """Why the Laplace method cannot take this design, or "".

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"k": [1, 0, 1, 1, 0, 1], "g": list("aabbcc")})
    >>> laplace_obstacle(lb.GLMM("k ~ 1 + (1 | g)", df, family="bernoulli").design)
    ''
    >>> laplace_obstacle(lb.GLMM("k ~ 1 + (1 | g)", df, family="bernoulli", link="probit").design)
    "the Laplace method covers the canonical links (log for counts, logit for choices), not link='probit'"
    """
    family = design.family
    if family.is_gaussian:
        return "a Gaussian response has an exact collapsed method (lb.LMM), which the Laplace method would only approximate"
    if family.kernel_code is None:
        return f"the Laplace kernel has no case for family={family.name!r}"
    if not family.canonical:
        return (f"the Laplace method covers the canonical links (log for counts, logit for choices), "
                f"not link={family.link!r}")
    if design.reduction is not None:
        return "a model built from Dask or Parquet keeps a sample of its rows, and the Laplace method needs them all"
    if not design.groups:
        return "the model has no random effects to integrate out"
    try:
        chain = nesting_chain(design)
    except ValueError as err:
        return f"{err}; the Laplace method takes one factor or a chain of nested factors"
    sizes = _subtree_sizes(chain)[0]
    if sizes.max() > MAX_BLOCK:
        return (f"a top-level cluster holds {int(sizes.max())} effects with its nested clusters, above the "
                f"{MAX_BLOCK} the Laplace method holds in its d x d work arrays")
    return ""


def _ancestors(chain: tuple[GroupDesign, ...]) -> list[np.ndarray]:
    """For each factor of the chain, the top-level cluster of each of its clusters."""
    out = [np.arange(chain[0].n_levels)]
    for g in chain[1:]:
        out.append(out[-1][np.asarray(g.parent_codes, dtype=np.int64)])
    return out


def _subtree_sizes(chain: tuple[GroupDesign, ...]) -> list[np.ndarray]:
    """For each factor, each cluster's effects together with those of every cluster nested in it."""
    sizes = [np.full(chain[-1].n_levels, chain[-1].n_effects, dtype=np.int64)]
    for k in range(len(chain) - 2, -1, -1):
        below = np.bincount(np.asarray(chain[k + 1].parent_codes, dtype=np.int64), weights=sizes[0],
                            minlength=chain[k].n_levels)
        sizes.insert(0, chain[k].n_effects + below.astype(np.int64))
    return sizes


def _post_order(chain: tuple[GroupDesign, ...]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Where each cluster's subtree starts inside its top-level block, where its own effects sit,
    and each block's size.

    Post-order: a cluster's nested clusters first (in code order), its own effects last. Then
    ``H`` is an arrow inside every subtree and its Cholesky factor fills in nothing outside the
    envelope (each row's nonzeros start at its cluster's subtree), so the factorisation costs
    the envelope instead of the block's size cubed.
    """
    sizes = _subtree_sizes(chain)
    starts = [np.zeros(chain[0].n_levels, dtype=np.int64)]
    for k in range(1, len(chain)):
        parent = np.asarray(chain[k].parent_codes, dtype=np.int64)
        order = np.lexsort((np.arange(parent.size), parent))
        before = np.cumsum(sizes[k][order]) - sizes[k][order]  # sizes of the earlier clusters, all parents
        first = np.searchsorted(parent[order], np.arange(chain[k - 1].n_levels))
        base = np.concatenate([[0], np.cumsum(sizes[k][order])])[first]  # where each parent's children begin
        start = np.empty(parent.size, dtype=np.int64)
        start[order] = starts[k - 1][parent[order]] + before - base[parent[order]]
        starts.append(start)
    own = [st + size - g.n_effects for st, size, g in zip(starts, sizes, chain)]
    return starts, own, sizes[0]


def _factor_columns(first: np.ndarray, bptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each effect's column of its block's Cholesky factor: the rows below it inside the envelope
    (row i's nonzeros start at ``first[i]``), as ``crow[cptr[e]:cptr[e + 1]]`` (block-local rows)
    for the effect e (flat); the selected inverse walks them (``laplace.kernel._selected_inverse``)."""
    n = int(bptr[-1])
    block = np.repeat(np.arange(bptr.size - 1), np.diff(bptr))
    local = np.arange(n) - bptr[block]
    lengths = local - first  # row i holds columns first[i] .. i - 1 below the diagonal
    row = np.repeat(np.arange(n), lengths)
    step = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    column = bptr[block[row]] + first[row] + step  # flat
    order = np.lexsort((local[row], column))
    cptr = np.searchsorted(column[order], np.arange(n + 1)).astype(np.int64)
    return cptr, np.ascontiguousarray(local[row][order], dtype=np.int64)


def _pooled(arrays: tuple, top: np.ndarray, n_top: int) -> tuple:
    """Rows that agree on everything but the response pooled into one (Poisson, binomial).

    Rows of one cluster with the same covariates, offset and Z (trials under the same
    condition) share a linear predictor, and the log-likelihood of their sum is theirs up to
    a constant: ``sum_i (y_i eta - mu) = (sum_i y_i) eta - m mu`` for m Poisson rows, and
    binomial successes and trials add. The loops then pass over the distinct rows only; the
    rows are kept as they are when fewer than half of them would pool.
    """
    X, y, off, ntr, cols, zv = arrays[:6]
    key = pd.DataFrame(np.column_stack([top, X, off, cols, zv]))
    group = key.groupby(list(key.columns), sort=True).ngroup().to_numpy()
    n_groups = int(group.max()) + 1 if group.size else 0
    if n_groups > 0.5 * y.size:
        return arrays
    one = np.zeros(n_groups, dtype=np.int64)
    one[group[::-1]] = np.arange(y.size)[::-1]  # a row of each group (its first)
    ptr = np.searchsorted(top[one], np.arange(n_top + 1)).astype(np.int64)
    pooled = (np.ascontiguousarray(X[one]), np.bincount(group, weights=y, minlength=n_groups),
              np.ascontiguousarray(off[one]), np.bincount(group, weights=ntr, minlength=n_groups),
              np.ascontiguousarray(cols[one]), np.ascontiguousarray(zv[one]), ptr)
    return pooled + tuple(arrays[7:])


@dataclass(frozen=True, eq=False)
class LaplaceSystem:
    """A nested GLMM laid out for the compiled loops: rows by top-level cluster, blocks of effects.

    Attributes
    ----------
    chain : tuple of GroupDesign
        The factors, top first.
    starts : list of ndarray
        Per factor, where each cluster's effects start in the flat vector of all blocks.
    """

    design: Design
    chain: tuple[GroupDesign, ...]
    fam: int
    arrays: tuple  # X, y, off, ntr, cols, zv, ptr, bptr, slot_ptr, slot_level, slot_start, qs, first, cptr, crow
    starts: list[np.ndarray]
    counts: tuple[np.ndarray, np.ndarray]  # the distinct responses and how often each occurs
    constant: float  # the rows' normalising constants that depend on the data alone

    @classmethod
    def from_design(cls, design: Design) -> LaplaceSystem:
        """Lay out a design :func:`laplace_obstacle` accepts (``ValueError`` otherwise)."""
        why = laplace_obstacle(design)
        if why:
            raise ValueError(f"method='laplace' cannot be used for this model: {why}; use method='full'")
        family = design.family
        chain = nesting_chain(design)
        anc = _ancestors(chain)
        n_top = chain[0].n_levels
        qs = np.array([g.n_effects for g in chain], dtype=np.int64)
        subtree, local, sizes = _post_order(chain)
        bptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        starts = [bptr[a] + loc for a, loc in zip(anc, local)]
        first = np.zeros(int(bptr[-1]), dtype=np.int64)
        for g, st, sub in zip(chain, starts, subtree):
            first[st[:, None] + np.arange(g.n_effects)] = sub[:, None]
        cptr, crow = _factor_columns(first, bptr)
        slots = np.concatenate([np.column_stack([a, np.full(a.size, k), loc]) for k, (a, loc) in
                                enumerate(zip(anc, local))]).astype(np.int64)
        slots = slots[np.lexsort((slots[:, 2], slots[:, 0]))]
        slot_ptr = np.searchsorted(slots[:, 0], np.arange(n_top + 1)).astype(np.int64)
        rows = np.argsort(chain[0].codes, kind="stable")
        ptr = np.searchsorted(chain[0].codes[rows], np.arange(n_top + 1)).astype(np.int64)
        cols = np.concatenate([loc[g.codes][:, None] + np.arange(g.n_effects) for g, loc in zip(chain, local)],
                              axis=1)[rows]
        zv = np.concatenate([g.Z for g in chain], axis=1)[rows]
        offset = design.offset
        trials = design.trials
        arrays = (
            np.ascontiguousarray(design.X[rows], dtype=float), np.ascontiguousarray(design.y[rows], dtype=float),
            np.zeros(design.n) if offset is None else np.ascontiguousarray(offset[rows], dtype=float),
            np.ones(design.n) if trials is None else np.ascontiguousarray(trials[rows], dtype=float),
            np.ascontiguousarray(cols, dtype=np.int64), np.ascontiguousarray(zv, dtype=float), ptr, bptr,
            slot_ptr, np.ascontiguousarray(slots[:, 1]), np.ascontiguousarray(slots[:, 2]), qs, first, cptr, crow,
        )
        code = family.kernel_code
        y, n = arrays[1], arrays[3]
        constant = family.kernel_constant(y, n)
        counts = np.unique(y, return_counts=True)
        if code != load_laplace().FAMILY_CODE["negativebinomial"]:  # log-likelihoods linear in y and n: rows pool
            arrays = _pooled(arrays, chain[0].codes[rows], n_top)
        return cls(design=design, chain=chain, fam=code, arrays=arrays, starts=starts, counts=counts,
                   constant=constant)

    def _alpha_terms(self, alpha: float) -> tuple[float, float]:
        """The negative binomial's constants that depend on alpha, and their derivative in alpha:
        ``sum_i log Gamma(y_i + alpha) - log Gamma(alpha) + alpha log alpha`` over the distinct y."""
        values, counts = self.counts
        n = counts.sum()
        value = np.sum(counts * special.gammaln(values + alpha)) + n * (alpha * np.log(alpha) - special.gammaln(alpha))
        slope = np.sum(counts * special.digamma(values + alpha)) + n * (np.log(alpha) + 1.0 - special.digamma(alpha))
        return float(value), float(slope)

    @property
    def negative_binomial(self) -> bool:
        """Whether the model has the negative binomial's dispersion (in the residual-scale slot)."""
        return self.fam == load_laplace().FAMILY_CODE["negativebinomial"]

    def marginal(self, beta: np.ndarray, s2: float, Ginv: np.ndarray, logdet_G: np.ndarray,
                 start: np.ndarray | None = None):
        """``(ll, d/dbeta, d/dsigma, d/dG)``: :attr:`KernelModel.marginal`'s contract, the slot
        ``sigma`` holding the negative binomial's dispersion ``1/sqrt(alpha)`` (unused otherwise).

        The modes' Newton iterations start from ``start`` (zero by default) and write the modes
        back into it; the result does not depend on the start (to rounding: the iteration ends
        with a full Newton step taken in its quadratic phase).
        """
        alpha = 1.0 / s2 if self.negative_binomial else 1.0
        bhat = np.zeros(self.n_effects) if start is None else start
        ll, gbeta, galpha, S, ok = load_laplace().marginal(np.asarray(beta, dtype=float), Ginv, self.fam, alpha, *self.arrays,
                                               bhat, True)
        if not ok or not np.isfinite(ll):
            return -np.inf, np.zeros_like(beta), 0.0, np.zeros_like(Ginv)
        ll += self.constant
        if self.negative_binomial:
            value, slope = self._alpha_terms(alpha)
            ll += value
            galpha += slope
        gG = np.zeros_like(Ginv)
        for k, g in enumerate(self.chain):
            q = g.n_effects
            Gi = Ginv[k, :q, :q]
            ll -= 0.5 * g.n_levels * logdet_G[k]
            gG[k, :q, :q] = 0.5 * Gi @ S[k, :q, :q] @ Gi - 0.5 * g.n_levels * Gi
        g_sigma = galpha * (-2.0 / s2 ** 1.5) if self.negative_binomial else 0.0
        return float(ll), gbeta, float(g_sigma), gG

    @property
    def n_effects(self) -> int:
        """The length of the flat vector of all blocks' effects."""
        return int(self.arrays[7][-1])

    def chain_marginal(self):
        """A :meth:`marginal` for one chain: it starts each mode search from the chain's last modes.

        nutpie asks for one log density per chain and calls it from that chain alone, so the
        warm start follows one chain's path and the draws stay reproducible from the seed.
        """
        start = np.zeros(self.n_effects)

        def marginal(beta, s2, Ginv, logdet_G):
            return self.marginal(beta, s2, Ginv, logdet_G, start=start)

        return marginal

    def modes(self, beta: np.ndarray, Ginv: np.ndarray, alpha: float = 1.0) -> np.ndarray:
        """Every block's mode ``b_hat`` (flat; :attr:`starts` says where each cluster's are)."""
        return load_laplace().cluster_modes(np.asarray(beta, dtype=float), Ginv, self.fam, alpha, *self.arrays)

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Per factor, its clusters' effects ``(..., levels, q)`` from flat vectors ``(..., total)``."""
        out = {}
        for g, st in zip(self.chain, self.starts):
            idx = st[:, None] + np.arange(g.n_effects)
            out[g.name] = flat[..., idx]
        return out


def laplace_model(design: Design, priors: Priors | None, system: LaplaceSystem | None = None) -> KernelModel:
    """The Laplace-integrated GLMM for nutpie: the kernel's priors with :meth:`LaplaceSystem.marginal`.

    The kernel's residual-scale slot carries the negative binomial's dispersion (with its
    prior); other families leave it unused, under a HalfNormal(1) prior, and drop it from the
    posterior.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"k": [1, 0, 2, 5, 0, 1], "g": list("aabbcc")})
    >>> laplace_model(lb.GLMM("k ~ 1 + (1 | g)", df, family="poisson").design, None).n_dim  # beta, slot, SD
    3
    """
    system = LaplaceSystem.from_design(design) if system is None else system
    priors = resolve_priors(design) if priors is None else priors
    slot = priors.dispersion if system.negative_binomial else _UNUSED
    km = pack_parameters(design, replace(priors, sigma=slot), system.chain)
    return KernelModel(design=km.design, chain=km.chain, ints=km.ints, floats=km.floats, n_dim=km.n_dim,
                       start=km.start, marginal=system.marginal, chain_marginal=system.chain_marginal)


def proposals_for(rows: int, draws: int) -> int:
    """Proposals per block and draw (an even number: antithetic pairs): :data:`PROPOSALS`, fewer
    (at least 4) when rows x draws is large."""
    return int(np.clip(ROW_BUDGET // max(1, rows * draws), 4, PROPOSALS)) // 2 * 2


@dataclass(frozen=True)
class LaplaceCheck:
    """The importance-weight check of a Laplace posterior (module docstring).

    Attributes
    ----------
    pareto_k : float
        PSIS shape of the draws' importance weights; above :data:`MAX_PARETO_K` the weights,
        and the approximation, cannot be trusted.
    max_shift : float
        The largest move of a hyperparameter's posterior mean under the weights, in standard
        errors (Monte Carlo error and the weights' noise).
    worst : str
        The hyperparameter that moved most.
    ess_fraction : float
        The weights' effective sample size as a fraction of the draws.
    proposals : int
        Proposals per block and draw.
    """

    pareto_k: float
    max_shift: float
    worst: str
    ess_fraction: float
    proposals: int

    @property
    def passed(self) -> bool:
        """Whether the approximation is close enough to the exact posterior to keep."""
        return bool(np.isfinite(self.pareto_k) and self.pareto_k <= MAX_PARETO_K and self.max_shift <= MAX_SHIFT)

    def reason(self) -> str:
        """One line saying what the check found."""
        verdict = "passed" if self.passed else "failed"
        return (f"the Laplace approximation's importance check {verdict}: Pareto k = {self.pareto_k:.2f} "
                f"(at most {MAX_PARETO_K}), the largest shift of a posterior mean under the weights = "
                f"{self.max_shift:.1f} standard errors ({self.worst}; at most {MAX_SHIFT}), weights' ESS "
                f"{self.ess_fraction:.0%} of the draws")

    def attrs(self) -> dict[str, Any]:
        """The check as posterior attributes."""
        return {"laplace_pareto_k": self.pareto_k, "laplace_max_shift": self.max_shift, "laplace_worst": self.worst,
                "laplace_ess_fraction": self.ess_fraction, "laplace_proposals": self.proposals,
                "laplace_check_passed": int(self.passed)}


def check_laplace(hyper: xr.DataArray, log_w: np.ndarray, proposals: int) -> LaplaceCheck:
    """Pareto-smooth the importance weights ``log_w`` (chain, draw) and compare weighted and plain means
    of the hyperparameters ``hyper`` (chain, draw, parameter:
    :func:`~lmm_bayes.inference.layout.hyperparameter_draws`).

    Each hyperparameter's move under the weights is measured in standard errors: the Monte
    Carlo error of its plain mean, and the move's own noise (the weights are estimates,
    noisier the more effects a block holds), ``sqrt(N / ESS * sum_i ((w_i - 1/N)(x_i - mean))^2)``.
    A move that the noise explains is not an error of the approximation; a bias is a move
    beyond it. Constant draws are skipped.
    """
    from arviz_stats.base import array_stats

    flat = np.asarray(log_w, dtype=float).reshape(-1)
    if not np.all(np.isfinite(flat)):
        return LaplaceCheck(np.inf, np.inf, "a block without a mode", 0.0, proposals)
    smoothed, k = array_stats.psislw(flat)
    w = np.exp(smoothed - smoothed.max())
    w /= w.sum()
    n = flat.size
    ess_fraction = float(1.0 / np.sum(w**2) / n)
    worst, max_shift = "", 0.0
    for name, draws in zip(hyper["parameter"].values, hyper.transpose("parameter", "chain", "draw").values):
        values = draws.reshape(-1)
        if np.ptp(values) == 0:
            continue
        mcse = float(array_stats.mcse(draws, method="mean", chain_axis=0, draw_axis=1))
        ess = float(array_stats.ess(draws, method="bulk", chain_axis=0, draw_axis=1))
        centred = values - values.mean()
        noise = np.sqrt(n / max(ess, 1.0) * np.sum(((w - 1.0 / n) * centred) ** 2))
        se = np.hypot(mcse, noise)
        shift = abs(float(np.sum(w * centred))) / se if se > 0 else 0.0
        if shift > max_shift:
            worst, max_shift = str(name), shift
    return LaplaceCheck(float(k), float(max_shift), worst, ess_fraction, proposals)


def draw_laplace_effects(
    design: Design, posterior: xr.Dataset, seed: Any = None, system: LaplaceSystem | None = None,
    dtype: Any = np.float64,
) -> tuple[dict[str, xr.DataArray], LaplaceCheck]:
    """Every b by importance resampling from the Laplace normals, and the check (module docstring).

    ``posterior`` holds ``beta``, the SDs and correlations, and ``dispersion`` for the
    negative binomial. Returns ``({g}_b per factor, check)``.
    """
    system = LaplaceSystem.from_design(design) if system is None else system
    post = posterior.transpose("chain", "draw", ...)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    D = n_chain * n_draw
    betas = post[BETA].values.reshape(D, -1) if BETA in post else np.zeros((D, 0))
    qmax = max(g.n_effects for g in system.chain)
    Ginv = np.zeros((D, len(system.chain), qmax, qmax))
    for k, g in enumerate(system.chain):
        q = g.n_effects
        Ginv[:, k, :q, :q] = np.linalg.inv(covariance_values(post, g).reshape(D, q, q))
    alphas = (1.0 / post["dispersion"].values.reshape(D) ** 2 if system.negative_binomial else np.ones(D))
    n_prop = proposals_for(design.n, D)
    seed_int = int(np.random.default_rng(seed).integers(0, 2**31 - D - 1))
    flat = np.empty((D, system.n_effects))
    betas = np.ascontiguousarray(betas, dtype=float)
    start = system.modes(betas.mean(axis=0), Ginv.mean(axis=0), float(alphas.mean()))
    log_w = load_laplace().draw_effects(betas, Ginv, alphas, system.fam, *system.arrays, start, n_prop, seed_int, flat)
    hyper = hyperparameter_draws(post, hyperparameters(design)).transpose("chain", "draw", "parameter")
    check = check_laplace(hyper, log_w.reshape(n_chain, n_draw), n_prop)
    result, by_factor = {}, system.unflatten(flat)
    for g in system.chain:
        values = by_factor[g.name].reshape(n_chain, n_draw, g.n_levels, g.n_effects).astype(dtype, copy=False)
        result[b_name(g)] = xr.DataArray(
            values, dims=("chain", "draw", g.name, g.effect_dim),
            coords={"chain": post["chain"].values, "draw": post["draw"].values,
                    g.name: list(g.levels), g.effect_dim: list(g.effects)}, name=b_name(g))
    return result, check


def rename_slot(posterior: xr.Dataset, system: LaplaceSystem) -> xr.Dataset:
    """The kernel's residual-scale slot as the family's parameter: ``dispersion``, or dropped."""
    if SIGMA not in posterior:
        return posterior
    if system.negative_binomial:
        return posterior.rename({SIGMA: "dispersion"})
    return posterior.drop_vars(SIGMA)


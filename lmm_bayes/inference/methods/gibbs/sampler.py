"""A collapsed Gibbs sampler for large crossed (and nested) random-intercept designs.

``y ~ 1 + (1 | student) + (1 | lecturer) + (1 | dept)`` with thousands of levels on every
side couples every student to every lecturer they rated: the exact marginal of
:mod:`lmm_bayes.inference.methods.crossed.system` then factorises a dense block of all lecturers and
departments (1,114 effects, ~50 ms a gradient), which no number of NUTS steps makes cheap.
This module samples the same posterior (same model, same priors) with a Gibbs sampler
whose sweep costs O(rows x fixed effects + levels), no factorisation larger than p x p.

The scheme is the *collapsed* Gibbs sampler of Papaspiliopoulos, Roberts & Zanella
("Scalable inference for crossed random effects models", Biometrika 2020) and
Papaspiliopoulos, Stumpf-Fétizon & Zanella ("Scalable Bayesian computation for crossed and
nested hierarchical models", 2023): for each factor k in turn, draw (beta, b_k) jointly given
the other factors' b, beta with b_k integrated out (block ``sigma^2 I + tau_k^2 11'`` per
level, inverted by Sherman-Morrison), then b_k given beta (one normal per level). Drawing
beta jointly with each factor is what makes it scale: the plain Gibbs sampler that updates
beta and each b_k separately slows down as the levels grow, because the intercept and the
mean of every factor's b are nearly confounded; the collapsed one has a relaxation time
bounded as the design grows (PRZ 2020 prove it with the variances known and balanced
designs, and show the hyperparameter-extended sampler outperforming alternatives
empirically; PSZ 2023 analyse random, sparse designs on average). The compiled sweeps are
in :mod:`lmm_bayes.inference.methods.gibbs.kernel`.

The SDs are not conjugate under the package's priors (half-normal, exponential,
half-Student-t, half-Cauchy): each is updated exactly by slice sampling on its log scale,
first given b_k (centred) and then given ``b_k / tau_k`` and the data (non-centred; the two
"interwoven", Yu & Meng 2011).

When it mixes well, and when badly:

* well: many levels, each with a few rows or more (students who rated ~25 lecturers), so
  each b_k is either well informed by its rows (centred update of tau fine) or not (the
  non-centred update takes over); crossed factors that are not too unbalanced;
* badly: a tiny tau with weak data (few levels, one row each, tau near 0), where beta and
  every b move in small steps; very unbalanced or structured missingness between factors
  (a student rates only one department's lecturers), where the factors' means are
  confounded beyond what the collapsing removes; SDs with a handful of levels (3
  departments) whose posterior is wide and slow in both parameterisations. The fit's R-hat
  and ESS (``fit.diagnostics()``) say so: read them as for NUTS.

Scope: a Gaussian model whose every random term is an intercept, ``(1 | g)``, any number of
crossed and/or nested factors, any fixed effects with the package's Normal or StudentT
priors (StudentT through its normal scale mixture). :func:`gibbs_obstacle` says what else
there is and why it is refused. The sampler's own settings: ``tune`` sweeps discarded, then
``draws`` sweeps kept per chain; NUTS's ``target_accept`` does not apply.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from lmm_bayes.inference.methods.kernel_loader import load_gibbs
from lmm_bayes.inference.layout import BETA, KEEP_B, SIGMA, b_name, sd_name
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Prior, Priors

__all__ = ["GibbsSystem", "gibbs_obstacle", "sample_gibbs"]

#: the name a fit made by this sampler carries as its ``sampler`` attribute
SAMPLER_NAME = "gibbs"


def gibbs_obstacle(design: Design) -> str:
    """Why the Gibbs sampler cannot take this design, or "" when it can.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> gibbs_obstacle(lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design)
    ''
    >>> gibbs_obstacle(lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design)
    "grouping factor 'Subject' has effects ['Intercept', 'Days'] and the Gibbs sampler takes random intercepts ..."
    """
    if not design.groups:
        return "the model has no grouping factor, so there is nothing for the Gibbs sampler to sweep"
    for g in design.groups:
        if tuple(g.effects) != ("Intercept",) or not np.all(g.Z == 1.0):
            return (f"grouping factor {g.name!r} has effects {list(g.effects)} and the Gibbs sampler takes "
                    "random intercepts (1 | g) only")
    return ""


@dataclass(frozen=True, eq=False)
class GibbsSystem:
    """The design's per-level sums, laid out for :func:`~lmm_bayes.inference.methods.gibbs.kernel.run_chain`.

    Built once per design by :meth:`from_design` (one pass over the rows per factor).
    """

    y: np.ndarray
    X: np.ndarray
    codes: np.ndarray  # (K, n): every row's level in the flat b of all factors
    offsets: np.ndarray  # (K + 1,)
    counts: np.ndarray  # rows per level
    sX: np.ndarray  # (levels, p): sum of each level's rows of X
    W: np.ndarray  # (K, p, p): within-level cross products of X

    @classmethod
    def from_design(cls, design: Design) -> GibbsSystem:
        why = gibbs_obstacle(design)
        if why:
            raise ValueError(f"method='gibbs' cannot be used for this model: {why}; use method='full' or 'collapsed'")
        X = np.array(design.X, dtype=float, order="C")  # writable: one compiled signature
        sizes = [g.n_levels for g in design.groups]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        codes = np.stack([g.codes.astype(np.int64) + o for g, o in zip(design.groups, offsets[:-1])])
        counts, sums, within = [], [], []
        for g in design.groups:
            n_j = np.bincount(g.codes, minlength=g.n_levels).astype(float)
            s = np.column_stack([np.bincount(g.codes, weights=X[:, a], minlength=g.n_levels)
                                 for a in range(X.shape[1])]).reshape(g.n_levels, X.shape[1])
            centred = X - (s / np.maximum(n_j, 1.0)[:, None])[g.codes]  # no cancellation of large sums
            counts.append(n_j), sums.append(s), within.append(centred.T @ centred)
        return cls(y=np.array(design.y, dtype=float), X=X, codes=np.ascontiguousarray(codes),
                   offsets=offsets, counts=np.concatenate(counts), sX=np.ascontiguousarray(np.concatenate(sums)),
                   W=np.ascontiguousarray(np.stack(within)))


def _prior_row(prior: Prior, codes: dict[str, int]) -> tuple[int, list[float]]:
    kw = prior.kwargs
    scale = kw.get("sigma", kw.get("lam", kw.get("beta", 1.0)))
    return codes[prior.dist], [kw.get("nu", 0.0), kw.get("mu", 0.0), scale]


def _prior_arrays(design: Design, priors: Priors, codes: dict[str, int]) -> dict[str, Any]:
    fixed = [_prior_row(priors.fixed_by_name[c], codes) for c in design.X_columns]
    sigma = _prior_row(priors.sigma, codes)
    taus = [_prior_row(priors.group_by_name[g.name].sd_by_effect["Intercept"], codes) for g in design.groups]
    p = len(fixed)
    return dict(
        beta_fam=np.array([f for f, _ in fixed], dtype=np.int64),
        beta_par=np.array([r for _, r in fixed], dtype=float).reshape(p, 3),
        sigma_fam=int(sigma[0]), sigma_par=np.array(sigma[1], dtype=float),
        tau_fam=np.array([f for f, _ in taus], dtype=np.int64), tau_par=np.array([r for _, r in taus], dtype=float),
    )


def _typical(prior: Prior) -> float:
    """A typical value of a positive parameter under its prior (its scale, or 1 / rate)."""
    kw = prior.kwargs
    return 1.0 / kw["lam"] if prior.dist == "Exponential" else kw.get("sigma", kw.get("beta", 1.0))


def sample_gibbs(
    design: Design,
    priors: Priors,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    keep_b: str = "all",
    interweave: bool = True,
    workers: int | None = None,
    system: GibbsSystem | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Sample the posterior with the collapsed Gibbs sampler; returns (posterior, sample_stats).

    The posterior holds ``beta``, ``sigma``, ``{g}_sd`` and (unless ``keep_b="none"``)
    ``{g}_b`` in the layout of :mod:`lmm_bayes.inference.layout`; ``sample_stats`` holds
    ``slice_evaluations`` per draw and names the sampler in its attributes. Chains run in
    parallel threads (the sweeps release the GIL), each seeded from ``seed``.

    Parameters
    ----------
    design, priors
        The model (random intercepts only: :func:`gibbs_obstacle`).
    draws, tune, chains : int
        Kept sweeps, discarded sweeps and chains.
    seed : int, optional
        Same seed, same draws.
    keep_b : {"all", "float32", "none"}
        The draws of b to keep.
    interweave : bool
        Add the non-centred update of each SD (the default; ``False`` only for comparisons).
    workers : int, optional
        Threads running chains side by side; default one per core, up to ``chains``
        (``benchmarks/gibbs_threads.py`` compares with one).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> post, stats = sample_gibbs(m.design, m.priors, draws=200, tune=100, chains=2, seed=1)
    >>> dict(post["Subject_b"].sizes)
    {'chain': 2, 'draw': 200, 'Subject': 18, 'Subject_effect': 1}
    >>> bool(9 < float(post["beta"].sel(coef="Days").mean()) < 12), stats.attrs["sampler"]
    (True, 'gibbs')
    """
    draws = validate.check_positive_int(draws, "draws")
    tune = validate.check_positive_int(tune, "tune", minimum=0)
    chains = validate.check_positive_int(chains, "chains")
    validate.check_choice(keep_b, KEEP_B, "keep_b")
    kernel = load_gibbs()
    system = GibbsSystem.from_design(design) if system is None else system
    pa = _prior_arrays(design, priors, kernel.FAMILY_CODES)
    p, K, levels = system.X.shape[1], len(design.groups), int(system.offsets[-1])
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=chains)
    beta0 = np.linalg.lstsq(system.X, system.y, rcond=None)[0] if p else np.zeros(0)
    s_y = float(np.std(system.y)) or 1.0
    taus = np.array([_typical(priors.group_by_name[g.name].sd_by_effect["Intercept"]) for g in design.groups])
    rows_b = draws if keep_b != "none" else 0
    out = [dict(beta=np.empty((draws, p)), sigma=np.empty(draws), tau=np.empty((draws, K)),
                b=np.empty((rows_b, levels)), evals=np.empty(draws, dtype=np.int64)) for _ in range(chains)]
    jitter = rng.uniform(-1.0, 1.0, size=(chains, K + 1))  # like nutpie's start: U(-1, 1) on the log scale

    def run(c: int) -> None:
        o = out[c]
        kernel.run_chain(system.y, system.X, system.codes, system.offsets, system.counts, system.sX, system.W,
                         pa["beta_fam"], pa["beta_par"], pa["sigma_fam"], pa["sigma_par"], pa["tau_fam"],
                         pa["tau_par"], beta0.astype(float), float(s_y * np.exp(jitter[c, 0])),
                         taus * np.exp(jitter[c, 1:]), int(tune), 1, int(seeds[c]), bool(interweave),
                         o["beta"], o["sigma"], o["tau"], o["b"], o["evals"])

    workers = max(1, min(chains, os.cpu_count() or 1)) if workers is None else workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, range(chains)))
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    data: dict[str, xr.DataArray] = {}
    if p:
        data[BETA] = xr.DataArray(np.stack([o["beta"] for o in out]), dims=("chain", "draw", "coef"),
                                  coords={**coords, "coef": list(design.X_columns)})
    data[SIGMA] = xr.DataArray(np.stack([o["sigma"] for o in out]), dims=("chain", "draw"), coords=coords)
    for k, g in enumerate(design.groups):
        data[sd_name(g)] = xr.DataArray(np.stack([o["tau"][:, k : k + 1] for o in out]),
                                        dims=("chain", "draw", g.effect_dim),
                                        coords={**coords, g.effect_dim: list(g.effects)})
    if keep_b != "none":
        dtype = np.float32 if keep_b == "float32" else np.float64
        for k, g in enumerate(design.groups):
            lo, hi = system.offsets[k], system.offsets[k + 1]
            block = np.stack([o["b"][:, lo:hi] for o in out]).astype(dtype, copy=False)[..., None]
            data[b_name(g)] = xr.DataArray(block, dims=("chain", "draw", g.name, g.effect_dim),
                                           coords={**coords, g.name: list(g.levels), g.effect_dim: list(g.effects)})
    stats = xr.Dataset({"slice_evaluations": (("chain", "draw"), np.stack([o["evals"] for o in out]))},
                       coords=coords,
                       attrs={"sampler": SAMPLER_NAME,
                              "scheme": "collapsed Gibbs: (beta, b_k) jointly per factor, then each SD by slice "
                                        "sampling (centred and non-centred), then sigma",
                              "interweave": int(interweave), "tune_sweeps": int(tune)})
    return xr.Dataset(data), stats

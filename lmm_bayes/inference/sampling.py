"""Running a sampler: the compiled-model cache, and the posterior as an ArviZ DataTree.

The runner knows the methods only through their protocol
(:class:`~lmm_bayes.inference.methods.base.Method`): :func:`sample_posterior` asks a method to
``run`` (each method's package says how: the collapsed, crossed and Laplace methods on the kernel
compiled once per machine with nutpie, the Gibbs sampler on its own sweeps, the full method and the
collapsed method's reference graph through a PyMC graph, :func:`run_sampler`), then maps the draws
back and builds the DataTree the same way for all.

A compiled PyMC graph is cached by the model's structure (design shapes, factor layout, priors,
method: the method's ``structure_key``): refitting the same structure with new data
(simulation-based calibration, bootstraps, the CLI on a fresh data file of the same shape) swaps
the data in instead of compiling again.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference.layout import (
    b_name,
    constant_data,
    fitted_linear_predictor,
    pointwise_log_likelihood,
)
from lmm_bayes.inference.standardize import Standardization
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors
from lmm_bayes.version import __version__

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

if TYPE_CHECKING:  # pragma: no cover  (the methods import this module's samplers)
    from lmm_bayes.inference.methods.base import Method

__all__ = [
    "ADAPTATIONS", "MAX_CHAINS", "MAX_DRAWS", "MAX_LOGLIK_VALUES", "MAX_TOTAL_DRAWS", "SAMPLERS", "SamplerSettings", "choose_adaptation", "log_likelihood_draws", "run_sampler",
    "sample_nutpie", "sample_posterior",
]

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
#: pointwise log-likelihood is stored when chains × draws × rows is at most this
MAX_LOGLIK_VALUES = 40_000_000
#: nutpie's mass matrix: "diag" (Stan's), "low_rank" (diagonal plus the directions in which the
#: posterior is correlated: learns a ridge such as two collinear predictors'), or "auto", which
#: :func:`choose_adaptation` resolves from the design
ADAPTATIONS = ("auto", "diag", "low_rank")
#: "auto" takes the low-rank mass matrix when two predictors of the working design correlate beyond this
LOW_RANK_CORRELATION = 0.7
#: the largest seed: nutpie takes unsigned 64-bit seeds, and a saved fit stores the seed as int64
MAX_SEED = 2**63 - 1
#: nutpie adapts its step size and mass matrix during tuning and cannot start without it
MIN_NUTPIE_TUNE = 1
#: the most draws (and tuning steps) per chain: 10**12 aborted the Rust sampler (the whole
#: process); a few thousand draws estimate most posteriors well
MAX_DRAWS = 1_000_000
#: the most chains: each runs its own sampler state (100,000 hung at 3.9 GB)
MAX_CHAINS = 1_000
#: the most draws kept, chains × draws: every parameter's draws are held in memory,
#: 8 bytes each, so 80 MB per parameter at this limit
MAX_TOTAL_DRAWS = 10_000_000

#: the collapsed method with nutpie runs on the compiled-once kernel; False samples its PyMC
#: graph instead (compiled per model structure), which benchmarks and tests compare against
#: (read by :meth:`lmm_bayes.inference.methods.collapsed.method.Collapsed.run` at each fit)
USE_KERNEL = True

_COMPILED: OrderedDict[str, Any] = OrderedDict()
_CACHE_SIZE = 8


@dataclass(frozen=True)
class SamplerSettings:
    """The NUTS settings every fit shares, checked once (``TypeError``/``ValueError`` otherwise).

    Draws and tuning steps per chain are at most :data:`MAX_DRAWS`, chains at most
    :data:`MAX_CHAINS`, and chains × draws at most :data:`MAX_TOTAL_DRAWS`, all checked
    before anything is allocated or sampled.
    """

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    seed: int | None = None
    progressbar: bool = True
    adaptation: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "draws", validate.check_positive_int(self.draws, "draws"))
        validate.check_choice(self.sampler, SAMPLERS, "sampler")
        validate.check_choice(self.adaptation, ADAPTATIONS, "adaptation")
        if self.adaptation != "auto" and self.sampler != "nutpie":
            raise ValueError(
                f"adaptation={self.adaptation!r} chooses nutpie's mass matrix; sampler={self.sampler!r} adapts its "
                "own: leave adaptation at 'auto', or use sampler='nutpie'"
            )
        minimum_tune = MIN_NUTPIE_TUNE if self.sampler == "nutpie" else 0
        object.__setattr__(self, "tune", validate.check_positive_int(self.tune, "tune", minimum=minimum_tune))
        object.__setattr__(self, "chains", validate.check_positive_int(self.chains, "chains"))
        self._check_size()
        object.__setattr__(self, "target_accept", validate.check_probability(self.target_accept, "target_accept"))
        if self.seed is not None:
            seed = validate.check_positive_int(self.seed, "seed", minimum=0, maximum=MAX_SEED)
            object.__setattr__(self, "seed", seed)
        if not isinstance(self.progressbar, bool):
            raise TypeError(f"progressbar must be True or False, got {type(self.progressbar).__name__}")

    def _check_size(self) -> None:
        """Refuse draws, tuning steps or chains beyond the limits, before any allocation."""
        why = "the sampler reserves every draw of every chain in memory, 8 bytes per parameter"
        for name, limit in (("draws", MAX_DRAWS), ("tune", MAX_DRAWS), ("chains", MAX_CHAINS)):
            value = getattr(self, name)
            if value > limit:
                per = "" if name == "chains" else " per chain"
                raise ValueError(
                    f"{name}={value} is more than {limit:,}{per}, the most a fit takes ({why}); "
                    f"give {name} of at most {limit:,}: a few thousand draws over 4 chains estimate most posteriors well"
                )
        if self.chains * self.draws > MAX_TOTAL_DRAWS:
            raise ValueError(
                f"chains x draws = {self.chains} x {self.draws} = {self.chains * self.draws:,} draws is more than "
                f"{MAX_TOTAL_DRAWS:,}, the most a fit keeps ({why}: 80 MB per parameter at this limit); "
                "use fewer chains or fewer draws"
            )

    def attrs(self) -> dict[str, Any]:
        """Provenance attributes of a fit made with these settings."""
        return {
            "sampler": self.sampler,
            "seed": -1 if self.seed is None else self.seed,
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "target_accept": self.target_accept,
            "adaptation": self.adaptation,
        }


def choose_adaptation(settings: SamplerSettings, max_correlation: float, *, sampled_b: bool = False) -> SamplerSettings:
    """``settings`` with ``adaptation="auto"`` resolved.

    The low-rank mass matrix when every cluster's b is sampled (``sampled_b``: the full
    method, where β trades off with the mean of the b's along a ridge: crossed subjects x
    items with correlated slopes, min ESS 123 -> 1,038 and 3.7x faster) or when two columns
    of the (centred, scaled) X correlate beyond :data:`LOW_RANK_CORRELATION` (their
    coefficients are then correlated in the posterior: ``trt`` and ``lbase:trt`` at 0.97 in
    an epilepsy-like Poisson GLMM, bulk ESS 917 -> 5,041); the diagonal one (Stan's)
    otherwise, where it costs less per draw.
    """
    if settings.adaptation != "auto" or settings.sampler != "nutpie":
        return settings
    low_rank = sampled_b or max_correlation > LOW_RANK_CORRELATION
    return replace(settings, adaptation="low_rank" if low_rank else "diag")


def log_likelihood_draws(posterior: xr.Dataset, n_obs: int) -> xr.Dataset:
    """The draws a pointwise log-likelihood of ``n_obs`` rows is computed on when it must stay small.

    All of them while chains × draws × rows is at most :data:`MAX_LOGLIK_VALUES`, else every
    k-th draw of each chain, the smallest k that keeps it there (PSIS-LOO needs a few hundred
    draws, not all of them).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> post = xr.Dataset({"sigma": (("chain", "draw"), np.ones((4, 1000)))})
    >>> log_likelihood_draws(post, 50_000).sizes["draw"]      # 4 x 1000 x 50,000 = 5 x the limit
    200
    """
    total = posterior.sizes["chain"] * posterior.sizes["draw"] * n_obs
    step = max(1, -(-total // MAX_LOGLIK_VALUES))
    return posterior if step == 1 else posterior.isel(draw=slice(None, None, step))


def run_sampler(
    build: Callable[[], pm.Model],
    key: str,
    updates: Callable[[], dict[str, np.ndarray]],
    settings: SamplerSettings,
) -> tuple[xr.Dataset, xr.Dataset, bool]:
    """Sample the model ``build()`` makes.

    Returns (posterior, sample_stats, reused): two ``xarray.Dataset`` and whether a
    compiled model was reused.

    With nutpie the compiled model is cached under ``key`` (the model's structure
    and priors); a later call with the same key swaps in ``updates()`` (the
    ``pm.Data`` values by name) instead of compiling again.
    """
    s = settings
    if s.sampler == "nutpie":
        import nutpie

        compiled = _COMPILED.get(key)
        reused = compiled is not None
        if compiled is None:
            if s.progressbar:  # a compile is the one wait a user cannot see coming
                print("lmm-bayes: compiling this model's graph (seconds to a minute; a model of the same "
                      "structure reuses it in this process)", file=sys.stderr, flush=True)
            compiled = nutpie.compile_pymc_model(build(), freeze_model=False)
            _COMPILED[key] = compiled
            while len(_COMPILED) > _CACHE_SIZE:
                _COMPILED.popitem(last=False)
        else:
            _COMPILED.move_to_end(key)
            compiled = compiled.with_data(**updates())
        return (*sample_nutpie(compiled, s), reused)
    if s.sampler in ("numpyro", "blackjax") and importlib.util.find_spec("jax") is None:
        raise ValueError(
            f"sampler={s.sampler!r} needs JAX, which is not installed; install it with "
            f"'pip install jax {s.sampler}', or use sampler='nutpie' (the default) or 'pymc'"
        )
    if s.sampler in ("numpyro", "blackjax") and importlib.util.find_spec(s.sampler) is None:
        raise ValueError(f"sampler={s.sampler!r} needs the {s.sampler} package: pip install {s.sampler}")
    with build():
        trace = pm.sample(
            draws=s.draws, tune=s.tune, chains=s.chains, target_accept=s.target_accept, random_seed=s.seed,
            progressbar=s.progressbar, nuts_sampler=s.sampler, compute_convergence_checks=False,
        )
    return _dataset(trace.posterior), _dataset(trace.sample_stats), False


def sample_nutpie(compiled: Any, settings: SamplerSettings) -> tuple[xr.Dataset, xr.Dataset]:
    """Sample a nutpie compiled model (a PyMC graph's, or the kernel's); returns (posterior, sample_stats)."""
    import nutpie

    s = settings
    trace = nutpie.sample(
        compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
        progress_bar=s.progressbar, target_accept=s.target_accept, save_warmup=False,
        adaptation="diag" if s.adaptation == "auto" else s.adaptation,
    )
    return _dataset(trace.posterior), _dataset(trace.sample_stats)


def _dataset(group) -> xr.Dataset:
    """A sampler's group as a Dataset (samplers return DataTree nodes or Datasets)."""
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def sample_posterior(
    design: Design,
    priors: Priors,
    method: Method,
    settings: SamplerSettings,
    *,
    log_likelihood: bool | Literal["auto"] = "auto",
    attrs: dict[str, Any] | None = None,
    keep_b: str = "all",
    standardization: Standardization | None = None,
) -> xr.DataTree:
    """Sample a model and return its draws as an ArviZ DataTree in the posterior layout.

    ``method`` was made for ``standardization.design``, the working design
    (:mod:`lmm_bayes.inference.standardize`; ``design`` itself when None): it samples the
    working model under the working priors, and the draws are mapped back to ``design``'s
    parameterisation before anything else (the log-likelihood included) is computed.

    Groups: ``posterior`` (:func:`lmm_bayes.inference.layout.posterior_vars`),
    ``sample_stats``, ``observed_data``, ``constant_data`` and, when asked for or
    when chains × draws × rows is at most :data:`MAX_LOGLIK_VALUES` and the draws of b are
    kept (``keep_b``, :data:`~lmm_bayes.inference.layout.KEEP_B`), ``log_likelihood``.
    Root and posterior attributes carry the provenance (package version, method,
    sampler settings, ``attrs``).
    """
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(f"log_likelihood must be True, False or 'auto', got {log_likelihood!r}")
    user_priors, kept = priors, keep_b
    if standardization is not None:
        priors = standardization.priors(priors)
        if keep_b == "float32" and not standardization.is_identity:
            keep_b = "all"  # b is mapped back in float64, then kept in float32 (the same draws as "all")
    posterior, stats, reused = method.run(priors, settings, keep_b)
    if standardization is not None:
        posterior = standardization.to_user(posterior)
    if kept != keep_b:
        posterior = posterior.assign({n: posterior[n].astype(np.float32) for n in map(b_name, design.groups)
                                      if n in posterior})
        keep_b = kept
    obs = np.arange(design.n)
    groups: dict[str, xr.Dataset] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": xr.Dataset({"y": ("obs", design.y)}, coords={"obs": obs}),
        "constant_data": constant_data(design),
    }
    n_values = settings.chains * settings.draws * design.n
    has_b = keep_b != "none" or not design.groups
    # ar=: rows of a cluster are not independent given b, so there is no pointwise density (not stored)
    independent = design.residual is None or not design.residual.ar
    if has_b and independent and (log_likelihood is True or (log_likelihood == "auto" and n_values <= MAX_LOGLIK_VALUES)):
        ll = pointwise_log_likelihood(design.y, posterior, lambda one: fitted_linear_predictor(design, one), design)
        groups["log_likelihood"] = ll.to_dataset()
    provenance = {
        "lmm_bayes_version": __version__,
        **(attrs or {}),
        "priors": user_priors.to_json(),
        "method": method.name,
        "centered": int(method.centered),
        **settings.attrs(),
        "compiled_model_reused": int(reused),
        "keep_b": keep_b,
        **method.provenance(),  # the Gibbs sampler's name for the sampler's; the Laplace check
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    idata = xr.DataTree.from_dict(groups)
    idata.attrs.update(provenance)
    idata["posterior"].attrs.update(provenance)
    return idata

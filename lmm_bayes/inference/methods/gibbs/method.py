"""The collapsed Gibbs sampler as a method (:class:`~lmm_bayes.inference.methods.gibbs.method.Gibbs`): no PyMC graph, no kernel model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import xarray as xr

from lmm_bayes.inference.methods.base import Method, Run, gaussian_only, in_layout, kept, model_key
# SMALL_DENSE_EFFECTS imported by value, as before the move: the tests' switch of the crossed
# module's LAPACK path (system.SMALL_DENSE_EFFECTS) leaves the choice of method alone
from lmm_bayes.inference.methods.crossed.system import SMALL_DENSE_EFFECTS, dense_effects
from lmm_bayes.inference.methods.gibbs.sampler import SAMPLER_NAME, GibbsSystem, gibbs_obstacle, sample_gibbs
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

__all__ = ["Gibbs"]


@dataclass(frozen=True, eq=False)
class Gibbs(Method):
    """The collapsed Gibbs sampler for random-intercept designs (:mod:`lmm_bayes.inference.methods.gibbs.sampler`):
    its own sampler, not NUTS, so it has no PyMC graph and no kernel model."""

    design: Design
    name: ClassVar[str] = "gibbs"
    choice: ClassVar[str] = "gibbs"
    no_graph: ClassVar[str] = (
        "method='gibbs' runs its own Gibbs sampler and has no PyMC graph; use method='full' or "
        "'collapsed' for a graph"
    )
    no_centering: ClassVar[str] = "the Gibbs sampler draws b centred already"

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        """With ``auto``, also declines a dense block of at most
        :data:`~lmm_bayes.inference.methods.crossed.system.SMALL_DENSE_EFFECTS` effects: there each NUTS
        gradient of the crossed method factorises it cheaply, while above it a Gibbs sweep, linear in
        rows and levels, wins (``benchmarks/crossed.py`` design (b), 1,114 dense effects, measured it
        well over 10x faster per effective draw). ``"auto"`` asks it only after the nested collapsed
        method, exact and cheap where it applies."""
        if not design.family.is_gaussian:
            return "the Gibbs sampler draws b and β from their exact normal conditionals, which only a Gaussian " \
                   "response allows"
        why = gibbs_obstacle(design)
        if why:
            return why
        if sampler != "nutpie":
            return f"the Gibbs sampler is not NUTS (sampler={sampler!r} asks for NUTS)"
        if centered:
            return "the Gibbs sampler draws b centred already"
        if auto and dense_effects(design) <= SMALL_DENSE_EFFECTS:
            return "the crossed collapsed method's dense block is small enough for NUTS"
        return None

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        return False  # "auto" takes it where it is faster, never for want of another method

    @classmethod
    def take(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False) -> Gibbs:
        gaussian_only(design, "gibbs", "draws b and β from their exact normal conditionals")
        why = gibbs_obstacle(design)
        if why:
            raise ValueError(f"method='gibbs' cannot be used for this model: {why}; use method='collapsed' or 'full'")
        if sampler != "nutpie":
            raise ValueError(
                f"method='gibbs' runs its own Gibbs sampler, not NUTS, so sampler={sampler!r} does not apply; "
                "leave sampler at its default, or use method='collapsed' or 'full' with that sampler"
            )
        if centered:
            raise ValueError(f"centered=True only applies to method='full'; {cls.no_centering}")
        return cls(design)

    @cached_property
    def system(self) -> GibbsSystem:
        """The design's per-level sums (computed once)."""
        return GibbsSystem.from_design(self.design)

    def structure_key(self, priors: Priors) -> str:
        return model_key(self.name, self.design, priors, None, False)

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        """Its own chains with ``settings``' draws, tune, chains and seed; nothing is compiled per
        model (the sweeps are compiled once per machine), so the compiled model counts as reused."""
        s = settings
        post, stats = sample_gibbs(self.design, priors, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
                                   keep_b=keep_b, system=self.system)
        return self.complete(post, s.seed, keep_b), stats, True

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return kept(in_layout(self.design, posterior), self.design, keep_b)

    def provenance(self) -> dict[str, Any]:
        return {"sampler": SAMPLER_NAME}

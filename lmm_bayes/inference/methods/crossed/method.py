"""The crossed form of the collapsed method (:class:`~lmm_bayes.inference.methods.crossed.method.Crossed`), sampled with nutpie only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import xarray as xr

from lmm_bayes.inference.methods.base import Method, Run, model_key, with_drawn_b
from lmm_bayes.inference.methods.collapsed.kernel_sampler import sample_kernel
from lmm_bayes.inference.methods.collapsed.packing import KernelModel
# imported by value, as before the move: the tests' switches of the module's own thresholds
# (system.SMALL_DENSE_EFFECTS picks its LAPACK path) leave the choice of method alone
from lmm_bayes.inference.methods.crossed.system import (
    MAX_DENSE_EFFECTS,
    CrossedSystem,
    crossed_model,
    dense_effects,
    draw_crossed_effects,
)
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

__all__ = ["Crossed"]


@dataclass(frozen=True, eq=False)
class Crossed(Method):
    """The collapsed method for crossed factors: b integrated out by a blocked Cholesky, then
    drawn exactly (:mod:`lmm_bayes.inference.methods.crossed.system`). Samples with nutpie only."""

    design: Design
    name: ClassVar[str] = "collapsed"
    choice: ClassVar[str] = "collapsed"
    no_graph: ClassVar[str] = (
        "the collapsed method for crossed factors has no PyMC graph: it samples with nutpie "
        "(sampler='nutpie', the default); use method='full' for the PyMC graph or another sampler"
    )
    no_centering: ClassVar[str] = "the collapsed method has no b to center"

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        if not design.family.is_gaussian:
            return "the collapsed method integrates b out exactly, which only a Gaussian response allows"
        if sampler != "nutpie":
            return f"the collapsed method for crossed factors samples with nutpie only (sampler={sampler!r})"
        m = dense_effects(design)
        if m > MAX_DENSE_EFFECTS:
            return (
                f"its dense block would hold {m:,} effects (all factors but the largest), above the "
                f"{MAX_DENSE_EFFECTS:,} the crossed collapsed method factorises in reasonable time"
            )
        return None

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        return design.family.is_gaussian

    @cached_property
    def system(self) -> CrossedSystem:
        """The design's cross products, split for the blocked Cholesky (computed once)."""
        return CrossedSystem.from_design(self.design)

    def structure_key(self, priors: Priors) -> str:
        return model_key("crossed", self.design, priors, None, False)

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model for nutpie: the kernel's priors with the blocked-Cholesky marginal likelihood."""
        return crossed_model(self.design, priors, self.system)

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        if settings.sampler != "nutpie":
            raise ValueError(self.no_graph)
        return sample_kernel(self, priors, settings, keep_b)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return with_drawn_b(self.design, posterior, keep_b, lambda dtype: draw_crossed_effects(
            self.design, posterior, seed=seed, system=self.system, dtype=dtype))

"""The Laplace method as a method (:class:`~lmm_bayes.inference.methods.laplace.method.Laplace`): nutpie on the Laplace marginal, then the check.

Its :meth:`Laplace.fallback` is the full method when the importance check fails: the registry
(:func:`~lmm_bayes.inference.methods.registry.fallback_after`) samples that instead after
``method="auto"`` and keeps the draws with a warning after ``method="laplace"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from lmm_bayes.inference.methods.base import Method, Run, in_layout, model_key
from lmm_bayes.inference.methods.collapsed.kernel_sampler import sample_kernel
from lmm_bayes.inference.methods.collapsed.packing import KernelModel
from lmm_bayes.inference.methods.full.method import Full
from lmm_bayes.inference.methods.laplace.system import (
    LaplaceCheck,
    LaplaceSystem,
    draw_laplace_effects,
    laplace_model,
    laplace_obstacle,
    rename_slot,
)
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

__all__ = ["Laplace"]


@dataclass(frozen=True, eq=False)
class Laplace(Method):
    """A nested GLMM with b integrated out by Laplace's approximation per top-level cluster, then
    b drawn by importance resampling and the approximation checked (:mod:`lmm_bayes.inference.methods.laplace.system`).
    Samples with nutpie only; :attr:`check` holds the last check."""

    design: Design
    name: ClassVar[str] = "laplace"
    choice: ClassVar[str] = "laplace"
    no_graph: ClassVar[str] = (
        "method='laplace' has no PyMC graph: it samples with nutpie (sampler='nutpie', the default); "
        "use method='full' for the PyMC graph or another sampler"
    )
    no_centering: ClassVar[str] = "the Laplace method has no b to center"
    _last_check: list = field(default_factory=list, init=False, repr=False)  # one slot: the class is frozen

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        if auto and centered:  # "auto" then samples the full model's hierarchical centering, without a note
            return "centered=True asks for the full method's centered parameterisation"
        if sampler != "nutpie":
            return f"the Laplace method samples with nutpie only (sampler={sampler!r})"
        return laplace_obstacle(design) or None

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        return not design.family.is_gaussian and not centered

    @cached_property
    def system(self) -> LaplaceSystem:
        """The design laid out in blocks (computed once)."""
        return LaplaceSystem.from_design(self.design)

    @property
    def check(self) -> LaplaceCheck | None:
        """The importance-weight check of the last completed posterior, or None."""
        return self._last_check[0] if self._last_check else None

    def structure_key(self, priors: Priors) -> str:
        return model_key(self.name, self.design, priors, None, False)

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model for nutpie: the kernel's priors with the Laplace marginal likelihood."""
        return laplace_model(self.design, priors, self.system)

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        if settings.sampler != "nutpie":
            raise ValueError(f"method='laplace' samples with nutpie only, not sampler={settings.sampler!r}; "
                             "use method='full' with that sampler")
        return sample_kernel(self, priors, settings, keep_b)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        posterior = rename_slot(posterior, self.system)
        dtype = np.float32 if keep_b == "float32" else np.float64
        b, check = draw_laplace_effects(self.design, posterior, seed=seed, system=self.system, dtype=dtype)
        self._last_check[:] = [check]
        out = in_layout(self.design, posterior.assign(b) if keep_b != "none" else posterior)
        out.attrs.update(check.attrs())
        return out

    def provenance(self) -> dict[str, Any]:
        return self.check.attrs() if self.check else {}

    def fallback(self) -> tuple[Method, str] | None:
        """The full method, and the check's finding, when the importance check failed."""
        check = self.check
        if check is None or check.passed:
            return None
        return Full(self.design), check.reason()

"""The method of a model with ``sigma=`` or ``ar=`` (:class:`~lmm_bayes.inference.methods.structured.method.Structured`).

b integrated out of a likelihood whose ``R_j = sigma_j^2 A_j(rho)``
(:mod:`lmm_bayes.inference.methods.structured.likelihood`), a PyMC graph on per-cluster sums that nutpie
compiles (numba), b drawn exactly afterwards. A fit names it ``"collapsed"``; the registry sends every
model with a residual structure here (:func:`~lmm_bayes.inference.methods.registry.resolve_method`) and
no other method takes one, so no fit ever ignores ``sigma=`` or ``ar=``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference.methods.base import Method, Run, model_key, sample_graph, with_drawn_b
from lmm_bayes.inference.methods.structured import likelihood
from lmm_bayes.inference.methods.structured.sums import ResidualSums, residual_sums
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` never pays for them
pm = lazy.load("pymc")

__all__ = ["Structured"]


@dataclass(frozen=True, eq=False)
class Structured(Method):
    """b integrated out with ``R_j = sigma_j^2 A_j(rho)``; the only method for a model with ``sigma=`` or ``ar=``."""

    design: Design
    name: ClassVar[str] = "collapsed"
    choice: ClassVar[str] = "collapsed"
    no_centering: ClassVar[str] = "the collapsed method has no b to center"

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        if design.residual is None:
            return "the model has no residual structure (sigma= or ar=)"
        if not design.family.is_gaussian:
            return "a residual structure needs a Gaussian response"
        if centered:
            return "centered=True applies to method='full', which does not fit sigma= or ar= yet"
        return None

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        return design.residual is not None

    @classmethod
    def for_residual(cls, design: Design, method: str, *, sampler: str = "nutpie", centered: bool = False) -> Method:
        """The method for a model with a residual structure asked for as ``method``; ``ValueError`` saying why not."""
        if method not in ("auto", "collapsed"):
            raise ValueError(f"method={method!r} cannot fit sigma= or ar= (residuals beyond sigma^2 I) yet: only "
                             "method='collapsed' (or 'auto', which takes it) does")
        why = cls.obstacle(design, sampler=sampler, centered=centered)
        if why is not None:
            raise ValueError(f"this model cannot be fitted: {why}")
        return cls(design)

    @cached_property
    def sums(self) -> ResidualSums:
        """The per-cluster sums, computed once per method object."""
        return residual_sums(self.design)

    def structure_key(self, priors: Priors) -> str:
        res = self.design.residual
        shape = [res.sigma_by, res.ar, len(res.gap_values), list(res.categories)]
        return model_key("structured", self.design, priors, None, False) + json.dumps(shape)

    def build(self, priors: Priors) -> pm.Model:
        return likelihood.build_structured_model(self.design, priors, self.sums)

    def data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values by name, swapped into a cached compiled graph."""
        res = self.design.residual
        return likelihood.data_updates(self.sums, res.ar, res.sigma_fixed)

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        return sample_graph(self, priors, settings, keep_b, self.data)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return with_drawn_b(self.design, posterior, keep_b, lambda dtype: likelihood.draw_random_effects(
            self.design, posterior, seed=seed, sums=self.sums, dtype=dtype))

    def provenance(self) -> dict[str, Any]:
        return {"residual": json.dumps(self.design.residual.spec.kwargs())}

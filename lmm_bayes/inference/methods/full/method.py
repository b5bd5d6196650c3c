"""The full method (:class:`~lmm_bayes.inference.methods.full.method.Full`): every cluster's b a parameter; takes every model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes import names
from lmm_bayes.inference.graph import build_model
from lmm_bayes.inference.glm import glm_data
from lmm_bayes.inference.layout import codes_name, z_name
from lmm_bayes.inference.methods.base import Method, Run, in_layout, kept, model_key, sample_graph
from lmm_bayes.inference.methods.full.centered import build_hierarchical_model, uses_X
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

__all__ = ["Full"]


@dataclass(frozen=True, eq=False)
class Full(Method):
    """Every cluster's b is a parameter (non-centered unless ``centered``)."""

    design: Design
    centered: bool = False
    name: ClassVar[str] = "full"
    choice: ClassVar[str] = "full"
    samples_b: ClassVar[bool] = True

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        return None  # the method of last resort: every model, every sampler

    @classmethod
    def take(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False) -> Full:
        return cls(design, centered=centered)

    def structure_key(self, priors: Priors) -> str:
        return model_key(self.name, self.design, priors, self.design.n, self.centered)

    def build(self, priors: Priors) -> pm.Model:
        if self.centered and not self.design.family.is_gaussian:  # a GLMM: hierarchical centering
            return build_hierarchical_model(self.design, priors)
        return build_model(self.design, priors, centered=self.centered)

    def data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values by name, swapped into a cached compiled graph."""
        d = self.design
        updates = {names.X: d.X, names.Y_OBS: d.y, **glm_data(d)}
        if self.centered and not d.family.is_gaussian and not uses_X(d):
            del updates[names.X]
        for g in d.groups:
            updates[codes_name(g)] = g.codes
            updates[z_name(g)] = g.Z
        return updates

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        return sample_graph(self, priors, settings, keep_b, self.data)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return kept(in_layout(self.design, posterior), self.design, keep_b)

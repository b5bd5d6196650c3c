"""The collapsed method (:class:`~lmm_bayes.inference.methods.collapsed.method.Collapsed`): b integrated out for one factor or a chain of nested
factors, sampled on the compiled-once kernel with nutpie (its PyMC graph otherwise), b drawn exactly.

``method="collapsed"`` has a second form for crossed factors,
:class:`~lmm_bayes.inference.methods.crossed.method.Crossed`; :meth:`Collapsed.take` hands a crossed
design to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference import sampling
from lmm_bayes.inference.methods.base import Method, Run, gaussian_only, model_key, sample_graph, with_drawn_b
from lmm_bayes.inference.methods.collapsed import likelihood
from lmm_bayes.inference.methods.collapsed.kernel_sampler import sample_kernel
from lmm_bayes.inference.methods.collapsed.packing import KernelModel, pack
from lmm_bayes.inference.methods.collapsed.sufficient import SufficientStats, nesting_chain, sufficient_statistics
from lmm_bayes.inference.methods.crossed.method import Crossed
from lmm_bayes.inference.methods.gibbs.sampler import gibbs_obstacle
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

__all__ = ["Collapsed"]


@dataclass(frozen=True, eq=False)
class Collapsed(Method):
    """b integrated out of the likelihood, then drawn exactly from ``b | beta, theta, y``.

    ``chain`` is the design's nesting chain (:func:`~lmm_bayes.inference.methods.collapsed.sufficient.nesting_chain`),
    found once by :meth:`take`.
    """

    design: Design
    chain: tuple[GroupDesign, ...]
    name: ClassVar[str] = "collapsed"
    choice: ClassVar[str] = "collapsed"
    no_centering: ClassVar[str] = "the collapsed method has no b to center"
    # the kernel model last made for sampling; the draws of b reuse its structure (they need no priors)
    _packed: dict[str, KernelModel] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        if not design.family.is_gaussian:
            return "the collapsed method integrates b out exactly, which only a Gaussian response allows"
        try:
            nesting_chain(design)
        except ValueError as err:  # crossed factors: the crossed form's
            return str(err)
        return None

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        return design.family.is_gaussian

    @classmethod
    def take(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False) -> Method:
        gaussian_only(design, "collapsed", "integrates b out exactly")
        try:
            chain = nesting_chain(design)
        except ValueError as err:
            why = Crossed.obstacle(design, sampler=sampler, centered=centered)
            if why is None:
                return Crossed.take(design, sampler=sampler, centered=centered)
            alt = "" if gibbs_obstacle(design) else " (or method='gibbs', a Gibbs sampler for random intercepts)"
            raise ValueError(
                f"method='collapsed' cannot be used for this model: {err}, and {why}; use method='full'{alt}"
            ) from None
        if centered:
            raise ValueError(f"centered=True only applies to method='full'; {cls.no_centering}")
        return cls(design, chain)

    @cached_property
    def stats(self) -> SufficientStats:
        """The sufficient statistics, computed once per method object."""
        return sufficient_statistics(self.design, self.chain)

    def structure_key(self, priors: Priors) -> str:
        # the collapsed graph's shapes do not depend on the number of rows
        return model_key(self.name, self.design, priors, None, False)

    def build(self, priors: Priors) -> pm.Model:
        return likelihood.build_collapsed_model(self.design, priors, self.stats)

    def data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values by name, swapped into a cached compiled graph."""
        return likelihood.data_updates(self.stats)

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model packed for the kernel compiled once per machine (sampled with nutpie)."""
        self._packed["last"] = pack(self.design, priors, self.stats)
        return self._packed["last"]

    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        # sampling.USE_KERNEL read at each run: the tests and benchmarks switch to the graph with it
        if sampling.USE_KERNEL and settings.sampler == "nutpie":
            return sample_kernel(self, priors, settings, keep_b)
        return sample_graph(self, priors, settings, keep_b, self.data)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return with_drawn_b(self.design, posterior, keep_b, lambda dtype: likelihood.draw_random_effects(
            self.design, posterior, seed=seed, stats=self.stats, dtype=dtype, packed=self._packed.get("last")))

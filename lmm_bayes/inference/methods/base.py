"""The protocol every sampling method keeps (:class:`~lmm_bayes.inference.methods.base.Method`), and the helpers the methods share.

A method answers, for the registry (:mod:`lmm_bayes.inference.methods.registry`):

* ``obstacle(design, sampler=..., centered=..., auto=...)``: why it cannot take this design
  with these settings, one clause, or None (``method="auto"`` takes the first method without
  one); ``expected(design, centered=...)``: whether ``"auto"`` is meant to take it for such a
  model, so that its obstacle is worth a note when ``"auto"`` falls back to the full method;
* ``take(design, sampler=..., centered=...)``: the method for this design as the user asked
  for it by name, or ``ValueError`` saying why not (``"auto"`` takes its choice the same way, so
  ``centered=True`` is refused wherever only the full method would honour it);

and, for the runner (:func:`lmm_bayes.inference.sampling.sample_posterior`), which knows nothing
else of it:

* ``name``: what a fit reports (both forms of the collapsed method report ``"collapsed"``);
* ``structure_key(priors)``: what a compiled model depends on (shapes, factor layout, priors),
  so a model of the same structure is compiled once and gets new data;
* ``run(priors, settings, keep_b)``: the posterior in the layout (:mod:`lmm_bayes.inference.layout`),
  the sampler's statistics, and whether a compiled model was reused; it calls
  ``complete(posterior, seed, keep_b)``, which turns the raw draws into that layout, keeping b as
  ``keep_b`` says (the collapsed methods draw every b exactly there);
* ``centered``, ``samples_b`` and ``provenance()``: what the fit records, and whether every
  cluster's b is a NUTS parameter (the runner's mass-matrix choice);
* ``fallback()``: after ``run``, the method to sample instead and why (the Laplace method's
  failed importance check), or None;
* ``build(priors)``: the PyMC model, where the method has one; the others say why not.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import lazy_loader as lazy
import numpy as np
import xarray as xr

from lmm_bayes.inference import sampling
from lmm_bayes.inference.glm import glm_data
from lmm_bayes.inference.layout import b_name, model_coords, posterior_vars
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.inference.sampling import SamplerSettings

__all__ = ["Method", "Run", "gaussian_only", "in_layout", "kept", "model_key", "sample_graph", "with_drawn_b"]

#: what ``run`` returns: (posterior in the layout, sample_stats, whether a compiled model was reused)
Run = tuple[xr.Dataset, xr.Dataset, bool]


class Method(ABC):
    """One way of sampling a model; the concrete methods are frozen dataclasses with a ``design`` field."""

    #: what a fit reports as its method
    name: ClassVar[str]
    #: the ``method=`` value that asks for it
    choice: ClassVar[str]
    #: why the method has no PyMC graph ("" where it has one)
    no_graph: ClassVar[str] = ""
    #: the end of the ValueError for ``centered=True``, which only the full method takes
    no_centering: ClassVar[str] = ""
    #: every cluster's b is a NUTS parameter (nutpie's low-rank mass matrix then pays: ``choose_adaptation``)
    samples_b: ClassVar[bool] = False
    #: the full method's centered parameterisation; the others have no b to center
    centered: bool = False
    design: Design

    @classmethod
    @abstractmethod
    def obstacle(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False,
                 auto: bool = False) -> str | None:
        """Why this method cannot take ``design`` with these settings (one clause), or None.

        With ``auto`` it may also decline where another method serves better (the Gibbs
        sampler where NUTS on the crossed method's dense block is faster).
        """

    @classmethod
    def expected(cls, design: Design, *, centered: bool = False) -> bool:
        """Whether ``method="auto"`` is meant to take this method for such a model, so that its
        obstacle is worth a note when ``"auto"`` falls back to the full method."""
        return True

    @classmethod
    def take(cls, design: Design, *, sampler: str = "nutpie", centered: bool = False) -> Method:
        """The method for ``design`` as asked for by name (``method=<choice>``, or chosen by ``"auto"``);
        ``ValueError`` saying why not."""
        why = cls.obstacle(design, sampler=sampler, centered=centered)
        if why is not None:
            raise ValueError(f"method={cls.choice!r} cannot be used for this model: {why}; use method='full'")
        if centered:
            raise ValueError(f"centered=True only applies to method='full'; {cls.no_centering}")
        return cls(design)  # type: ignore[call-arg]  # the dataclasses take the design

    @abstractmethod
    def structure_key(self, priors: Priors) -> str:
        """What a compiled model depends on: a model with the same key reuses it with new data."""

    @abstractmethod
    def run(self, priors: Priors, settings: SamplerSettings, keep_b: str = "all") -> Run:
        """Sample under ``priors``: (posterior in the layout, sample_stats, compiled model reused)."""

    @abstractmethod
    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        """The raw draws turned into the posterior layout, b kept as ``keep_b`` says."""

    def build(self, priors: Priors) -> pm.Model:
        """The PyMC model, for a method that has one; the others raise ``ValueError`` saying why."""
        raise ValueError(self.no_graph)

    def provenance(self) -> dict[str, Any]:
        """Attributes the fit records besides the sampler settings (they override those of the same name)."""
        return {}

    def fallback(self) -> tuple[Method, str] | None:
        """After :meth:`~lmm_bayes.inference.methods.base.Method.run`: the method to sample instead and why, or None to keep the draws."""
        return None


def gaussian_only(design: Design, method: str, what: str) -> None:
    """Refuse ``method`` (which ``what``) for a GLMM: ``ValueError`` naming the methods that take one."""
    family = design.family
    if not family.is_gaussian:
        raise ValueError(
            f"method={method!r} {what}, which only a Gaussian response allows; "
            f"family={family.name!r} has no such closed form: use method='laplace' (b integrated out "
            "approximately per cluster, then checked), 'full' or 'auto'"
        )


def model_key(name: str, design: Design, priors: Priors, rows: int | None, centered: bool) -> str:
    """The structure key of a method named ``name`` (``rows``: the row count where shapes depend on it)."""
    layout = [(g.name, g.n_levels, g.effects, g.blocks, g.parent) for g in design.groups]
    family = design.family
    glm = [family.name, family.link, sorted(glm_data(design))]
    # the working priors of the defaults are the same numbers for any data, up to the last bits
    # of the maps (2.5 s_y / s_x * s_x / s_y): rounded, so a new data set reuses the compiled model
    return json.dumps([name, centered, rows, design.X_columns, layout, _rounded(priors.to_dict()), glm],
                      default=str)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def in_layout(design: Design, post: xr.Dataset) -> xr.Dataset:
    """The posterior variables of the layout, with the design's coords."""
    out = post[[v for v in posterior_vars(design) if v in post]]
    coords = model_coords(design)
    return out.assign_coords({k: v for k, v in coords.items() if k in out.dims})


def kept(post: xr.Dataset, design: Design, keep_b: str) -> xr.Dataset:
    """The posterior with the draws of b kept as ``keep_b`` says (:data:`~lmm_bayes.inference.layout.KEEP_B`)."""
    names = [b_name(g) for g in design.groups if b_name(g) in post]
    if keep_b == "none":
        return post.drop_vars(names)
    if keep_b == "float32":
        return post.assign({n: post[n].astype(np.float32) for n in names})
    return post


def with_drawn_b(design: Design, post: xr.Dataset, keep_b: str, draw: Callable[[Any], dict]) -> xr.Dataset:
    """The posterior in the layout, with b from ``draw(dtype)`` unless ``keep_b`` is "none"."""
    if keep_b == "none":
        return in_layout(design, post)
    return in_layout(design, post.assign(draw(np.float32 if keep_b == "float32" else np.float64)))


def sample_graph(method: Method, priors: Priors, settings: SamplerSettings, keep_b: str,
                 data: Callable[[], dict[str, np.ndarray]]) -> Run:
    """Sample ``method``'s PyMC graph (compiled once per structure key; ``data()`` swapped into a
    cached compiled model) and complete the draws."""
    raw, stats, reused = sampling.run_sampler(
        lambda: method.build(priors), method.structure_key(priors), data, settings
    )
    return method.complete(raw, settings.seed, keep_b), stats, reused

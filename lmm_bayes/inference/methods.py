"""How a model is sampled, as small strategy objects: :class:`Full`, :class:`Collapsed`, :class:`Crossed`
and :class:`Gibbs`.

A method knows four things, and the sampler asks it for each instead of branching on a
string:

* ``structure_key(priors)``: what a compiled model depends on (shapes, factor layout,
  priors), so a model of the same structure is compiled once and gets new data;
* ``build(priors)``: the PyMC model (:class:`Collapsed` also has ``kernel_model(priors)``,
  the same model for the kernel compiled once per machine, which nutpie samples without
  compiling a graph);
* ``data()``: the ``pm.Data`` values by name, swapped into a cached compiled model;
* ``complete(posterior, seed, keep_b)``: the raw draws turned into the posterior layout
  (:mod:`lmm_bayes.inference.layout`), keeping b as ``keep_b`` says; the collapsed method
  draws every b exactly here.

:class:`Collapsed` computes the design's sufficient statistics and nesting chain once,
when it is made, and every step reuses them. :class:`Crossed` is the collapsed method for
crossed factors (:mod:`lmm_bayes.inference.crossed`); a fit names both ``"collapsed"``.
:class:`Gibbs` runs its own sampler instead of NUTS (:mod:`lmm_bayes.inference.gibbs`):
``sample(priors, settings, keep_b)`` replaces ``build``/``data``, and a fit names it ``"gibbs"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from lmm_bayes.inference import collapsed
from lmm_bayes.inference.crossed import (
    MAX_DENSE_EFFECTS,
    SMALL_DENSE_EFFECTS,
    CrossedSystem,
    crossed_model,
    dense_effects,
    draw_crossed_effects,
)
from lmm_bayes.inference.gibbs import GibbsSystem, gibbs_obstacle, sample_gibbs
from lmm_bayes.inference.glm import glm_data
from lmm_bayes.inference.glm_centered import build_hierarchical_model, uses_X
from lmm_bayes.inference.graph import build_model
from lmm_bayes.inference.laplace import LaplaceCheck, LaplaceSystem, draw_laplace_effects, laplace_model, \
    laplace_obstacle, rename_slot
from lmm_bayes.inference.layout import b_name, codes_name, model_coords, posterior_vars, z_name
from lmm_bayes.inference.packing import KernelModel, pack
from lmm_bayes.inference.sufficient import SufficientStats, nesting_chain, sufficient_statistics
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import Priors

__all__ = ["METHODS", "Collapsed", "Crossed", "Full", "Gibbs", "Laplace", "Method", "choose_method", "resolve_method"]

METHODS = ("auto", "full", "collapsed", "gibbs", "laplace")


def _key(name: str, design: Design, priors: Priors, rows: int | None, centered: bool) -> str:
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


def _in_layout(design: Design, post: xr.Dataset) -> xr.Dataset:
    """The posterior variables of the layout, with the design's coords."""
    out = post[[v for v in posterior_vars(design) if v in post]]
    coords = model_coords(design)
    return out.assign_coords({k: v for k, v in coords.items() if k in out.dims})


def _kept(post: xr.Dataset, design: Design, keep_b: str) -> xr.Dataset:
    """The posterior with the draws of b kept as ``keep_b`` says (:data:`~lmm_bayes.inference.layout.KEEP_B`)."""
    names = [b_name(g) for g in design.groups if b_name(g) in post]
    if keep_b == "none":
        return post.drop_vars(names)
    if keep_b == "float32":
        return post.assign({n: post[n].astype(np.float32) for n in names})
    return post


def _with_drawn_b(design: Design, post: xr.Dataset, keep_b: str, draw: Callable[[Any], dict]) -> xr.Dataset:
    """The posterior in the layout, with b from ``draw(dtype)`` unless ``keep_b`` is "none"."""
    if keep_b == "none":
        return _in_layout(design, post)
    return _in_layout(design, post.assign(draw(np.float32 if keep_b == "float32" else np.float64)))


@dataclass(frozen=True, eq=False)
class Full:
    """Every cluster's b is a parameter (non-centered unless ``centered``)."""

    design: Design
    centered: bool = False
    name: str = field(default="full", init=False)

    def structure_key(self, priors: Priors) -> str:
        return _key(self.name, self.design, priors, self.design.n, self.centered)

    def build(self, priors: Priors) -> pm.Model:
        if self.centered and not self.design.family.is_gaussian:  # a GLMM: hierarchical centering
            return build_hierarchical_model(self.design, priors)
        return build_model(self.design, priors, centered=self.centered)

    def data(self) -> dict[str, np.ndarray]:
        d = self.design
        updates = {"X": d.X, "y_obs": d.y, **glm_data(d)}
        if self.centered and not d.family.is_gaussian and not uses_X(d):
            del updates["X"]
        for g in d.groups:
            updates[codes_name(g)] = g.codes
            updates[z_name(g)] = g.Z
        return updates

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return _kept(_in_layout(self.design, posterior), self.design, keep_b)


@dataclass(frozen=True, eq=False)
class Collapsed:
    """b integrated out of the likelihood, then drawn exactly from ``b | beta, theta, y``.

    ``chain`` is the design's nesting chain (:func:`~lmm_bayes.inference.sufficient.nesting_chain`),
    found once by :func:`resolve_method`.
    """

    design: Design
    chain: tuple[GroupDesign, ...]
    name: str = field(default="collapsed", init=False)
    # the kernel model last made for sampling; the draws of b reuse its structure (they need no priors)
    _packed: dict[str, KernelModel] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def stats(self) -> SufficientStats:
        """The sufficient statistics, computed once per method object."""
        return sufficient_statistics(self.design, self.chain)

    def structure_key(self, priors: Priors) -> str:
        # the collapsed graph's shapes do not depend on the number of rows
        return _key(self.name, self.design, priors, None, False)

    def build(self, priors: Priors) -> pm.Model:
        return collapsed.build_collapsed_model(self.design, priors, self.stats)

    def data(self) -> dict[str, np.ndarray]:
        return collapsed.data_updates(self.stats)

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model packed for the kernel compiled once per machine (sampled with nutpie)."""
        self._packed["last"] = pack(self.design, priors, self.stats)
        return self._packed["last"]

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return _with_drawn_b(self.design, posterior, keep_b, lambda dtype: collapsed.draw_random_effects(
            self.design, posterior, seed=seed, stats=self.stats, dtype=dtype, packed=self._packed.get("last")))


@dataclass(frozen=True, eq=False)
class Crossed:
    """The collapsed method for crossed factors: b integrated out by a blocked Cholesky, then
    drawn exactly (:mod:`lmm_bayes.inference.crossed`). Samples with nutpie only."""

    design: Design
    name: str = field(default="collapsed", init=False)

    @cached_property
    def system(self) -> CrossedSystem:
        """The design's cross products, split for the blocked Cholesky (computed once)."""
        return CrossedSystem.from_design(self.design)

    def structure_key(self, priors: Priors) -> str:
        return _key("crossed", self.design, priors, None, False)

    def build(self, priors: Priors) -> pm.Model:
        raise ValueError(
            "the collapsed method for crossed factors has no PyMC graph: it samples with nutpie "
            "(sampler='nutpie', the default); use method='full' for the PyMC graph or another sampler"
        )

    def data(self) -> dict[str, np.ndarray]:
        return {}

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model for nutpie: the kernel's priors with the blocked-Cholesky marginal likelihood."""
        return crossed_model(self.design, priors, self.system)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return _with_drawn_b(self.design, posterior, keep_b, lambda dtype: draw_crossed_effects(
            self.design, posterior, seed=seed, system=self.system, dtype=dtype))


@dataclass(frozen=True, eq=False)
class Gibbs:
    """The collapsed Gibbs sampler for random-intercept designs (:mod:`lmm_bayes.inference.gibbs`):
    its own sampler, not NUTS, so it has no PyMC graph and no kernel model."""

    design: Design
    name: str = field(default="gibbs", init=False)

    @cached_property
    def system(self) -> GibbsSystem:
        """The design's per-level sums (computed once)."""
        return GibbsSystem.from_design(self.design)

    def structure_key(self, priors: Priors) -> str:
        return _key(self.name, self.design, priors, None, False)

    def build(self, priors: Priors) -> pm.Model:
        raise ValueError(
            "method='gibbs' runs its own Gibbs sampler and has no PyMC graph; use method='full' or "
            "'collapsed' for a graph"
        )

    def data(self) -> dict[str, np.ndarray]:
        return {}

    def sample(self, priors: Priors, settings: Any, keep_b: str = "all") -> tuple[xr.Dataset, xr.Dataset]:
        """(posterior in the layout, sample_stats), with ``settings``' draws, tune, chains and seed."""
        post, stats = sample_gibbs(self.design, priors, draws=settings.draws, tune=settings.tune,
                                   chains=settings.chains, seed=settings.seed, keep_b=keep_b, system=self.system)
        return _in_layout(self.design, post), stats

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        return _kept(_in_layout(self.design, posterior), self.design, keep_b)


@dataclass(frozen=True, eq=False)
class Laplace:
    """A nested GLMM with b integrated out by Laplace's approximation per top-level cluster, then
    b drawn by importance resampling and the approximation checked (:mod:`lmm_bayes.inference.laplace`).
    Samples with nutpie only; :attr:`check` holds the last check."""

    design: Design
    name: str = field(default="laplace", init=False)
    _last_check: list = field(default_factory=list, init=False, repr=False)  # one slot: the class is frozen

    @cached_property
    def system(self) -> LaplaceSystem:
        """The design laid out in blocks (computed once)."""
        return LaplaceSystem.from_design(self.design)

    @property
    def check(self) -> LaplaceCheck | None:
        """The importance-weight check of the last completed posterior, or None."""
        return self._last_check[0] if self._last_check else None

    def structure_key(self, priors: Priors) -> str:
        return _key(self.name, self.design, priors, None, False)

    def build(self, priors: Priors) -> pm.Model:
        raise ValueError(
            "method='laplace' has no PyMC graph: it samples with nutpie (sampler='nutpie', the default); "
            "use method='full' for the PyMC graph or another sampler"
        )

    def data(self) -> dict[str, np.ndarray]:
        return {}

    def kernel_model(self, priors: Priors) -> KernelModel:
        """The model for nutpie: the kernel's priors with the Laplace marginal likelihood."""
        return laplace_model(self.design, priors, self.system)

    def complete(self, posterior: xr.Dataset, seed: Any, keep_b: str = "all") -> xr.Dataset:
        posterior = rename_slot(posterior, self.system)
        dtype = np.float32 if keep_b == "float32" else np.float64
        b, check = draw_laplace_effects(self.design, posterior, seed=seed, system=self.system, dtype=dtype)
        self._last_check[:] = [check]
        out = _in_layout(self.design, posterior.assign(b) if keep_b != "none" else posterior)
        out.attrs.update(check.attrs())
        return out


Method = Full | Collapsed | Crossed | Gibbs | Laplace


def resolve_method(
    design: Design, method: str, *, centered: bool = False, sampler: str = "nutpie"
) -> tuple[Method, str]:
    """The strategy for ``method`` (``"auto"`` resolved), and a note saying why auto fell back, or "".

    ``"auto"`` picks :class:`Collapsed` for one grouping factor or a chain of nested
    factors; for crossed factors, :class:`Gibbs` when every random term is an intercept and
    the crossed method's dense block would exceed
    :data:`~lmm_bayes.inference.crossed.SMALL_DENSE_EFFECTS` effects (there each NUTS
    gradient factorises that block, while a Gibbs sweep is linear in rows and levels:
    ``benchmarks/crossed.py`` design (b), 1,114 dense effects, measured it well over 10x
    faster per effective draw), else :class:`Crossed` (sampled with nutpie, with a dense
    block of at most :data:`~lmm_bayes.inference.crossed.MAX_DENSE_EFFECTS` effects); and
    :class:`Full` otherwise. Nested designs keep :class:`Collapsed`, exact and cheap there,
    and the Gibbs sampler is picked only with the default sampler (another ``sampler`` asks
    for NUTS). ``"gibbs"`` takes any random-intercept design (crossed or nested) and
    refuses others, saying why.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m, note = resolve_method(lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design,
    ...                          "auto")
    >>> m.name, [g.name for g in m.chain], note
    ('collapsed', ['Subject'], '')
    """
    validate.check_choice(method, METHODS, "method")
    if design.reduction is not None and (method == "full" or centered):
        raise ValueError(
            f"a model built from Dask or Parquet keeps a sample of its rows, not all {design.n_rows:,}: it is "
            "fitted from sufficient statistics with method='collapsed' (or 'auto'); method='full' and "
            "centered=True need every row in memory (load it with pandas)"
        )
    family = design.family
    if method in ("collapsed", "gibbs") and not family.is_gaussian:
        what = ("integrates b out exactly" if method == "collapsed"
                else "draws b and β from their exact normal conditionals")
        raise ValueError(
            f"method={method!r} {what}, which only a Gaussian response allows; "
            f"family={family.name!r} has no such closed form: use method='laplace' (b integrated out "
            "approximately per cluster, then checked), 'full' or 'auto'"
        )
    if method == "laplace":
        return _laplace(design, centered, sampler), ""
    if method == "auto" and not family.is_gaussian and not centered:
        why = _laplace_obstacle(design, sampler)
        if not why:
            return Laplace(design), ""
        return Full(design), f"method='auto' chose 'full': {why}"
    if method == "full" or not family.is_gaussian:
        return Full(design, centered=centered), ""
    if method == "gibbs":
        return _gibbs(design, centered, sampler), ""
    try:
        strategy: Method = Collapsed(design, nesting_chain(design))
    except ValueError as err:
        why = _crossed_obstacle(design, sampler)
        if why:
            why = f"{err}, and {why}"
            if method == "collapsed":
                alt = "" if gibbs_obstacle(design) else " (or method='gibbs', a Gibbs sampler for random intercepts)"
                raise ValueError(
                    f"method='collapsed' cannot be used for this model: {why}; use method='full'{alt}"
                ) from None
            if method == "auto" and not centered and _gibbs_wins(design, sampler):
                return _gibbs(design, centered, sampler), ""
            return Full(design, centered=centered), f"method='auto' chose 'full': {why}"
        strategy = Gibbs(design) if method == "auto" and _gibbs_wins(design, sampler) else Crossed(design)
    if centered:
        raise ValueError("centered=True only applies to method='full'; the collapsed method has no b to center")
    return strategy, ""


def _laplace_obstacle(design: Design, sampler: str) -> str:
    """Why the Laplace method cannot take this GLMM, or ""."""
    if sampler != "nutpie":
        return f"the Laplace method samples with nutpie only (sampler={sampler!r})"
    return laplace_obstacle(design)


def _laplace(design: Design, centered: bool, sampler: str) -> Laplace:
    why = _laplace_obstacle(design, sampler)
    if why:
        raise ValueError(f"method='laplace' cannot be used for this model: {why}; use method='full'")
    if centered:
        raise ValueError("centered=True only applies to method='full'; the Laplace method has no b to center")
    return Laplace(design)


def _gibbs_wins(design: Design, sampler: str) -> bool:
    """Whether ``method="auto"`` takes the Gibbs sampler for this crossed design (see :func:`resolve_method`)."""
    return sampler == "nutpie" and not gibbs_obstacle(design) and dense_effects(design) > SMALL_DENSE_EFFECTS


def _gibbs(design: Design, centered: bool, sampler: str) -> Gibbs:
    why = gibbs_obstacle(design)
    if why:
        raise ValueError(f"method='gibbs' cannot be used for this model: {why}; use method='collapsed' or 'full'")
    if sampler != "nutpie":
        raise ValueError(
            f"method='gibbs' runs its own Gibbs sampler, not NUTS, so sampler={sampler!r} does not apply; "
            "leave sampler at its default, or use method='collapsed' or 'full' with that sampler"
        )
    if centered:
        raise ValueError("centered=True only applies to method='full'; the Gibbs sampler draws b centred already")
    return Gibbs(design)


def _crossed_obstacle(design: Design, sampler: str) -> str:
    """Why the crossed collapsed method cannot take this design, or ""."""
    if sampler != "nutpie":
        return f"the collapsed method for crossed factors samples with nutpie only (sampler={sampler!r})"
    m = dense_effects(design)
    if m > MAX_DENSE_EFFECTS:
        return (
            f"its dense block would hold {m:,} effects (all factors but the largest), above the "
            f"{MAX_DENSE_EFFECTS:,} the crossed collapsed method factorises in reasonable time"
        )
    return ""


def choose_method(design: Design, method: str) -> tuple[str, str]:
    """Resolve ``method="auto"``; returns (method name, note saying why auto fell back, or "").

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> choose_method(lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design, "auto")
    ('collapsed', '')
    """
    strategy, note = resolve_method(design, method)
    return strategy.name, note

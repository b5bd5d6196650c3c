"""The methods in order of preference, and the one place ``method="auto"`` is decided.

``"auto"`` asks each method of :data:`PREFERENCE` once for its obstacle
(:meth:`~lmm_bayes.inference.methods.base.Method.obstacle`), in order, and takes the first without
one; when every one has an obstacle it takes :data:`LAST_RESORT`, the full method, which takes every
model, and its note quotes the obstacles of the methods ``"auto"`` was meant to take for such a model
(:meth:`~lmm_bayes.inference.methods.base.Method.expected`). A method asked for by name is that
method's own :meth:`~lmm_bayes.inference.methods.base.Method.take`, which refuses what it cannot take.
After sampling, :func:`fallback_after` acts on a method's
:meth:`~lmm_bayes.inference.methods.base.Method.fallback` (the Laplace method's failed check).

Adding a method: its package under :mod:`lmm_bayes.inference.methods`, and its class in
:data:`PREFERENCE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmm_bayes.errors import MethodNote, SamplingWarning
from lmm_bayes.inference.methods.base import Method
from lmm_bayes.inference.methods.collapsed.method import Collapsed
from lmm_bayes.inference.methods.crossed.method import Crossed
from lmm_bayes.inference.methods.full.method import Full
from lmm_bayes.inference.methods.gibbs.method import Gibbs
from lmm_bayes.inference.methods.laplace.method import Laplace
from lmm_bayes.inference.methods.structured.method import Structured
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design

__all__ = [
    "LAST_RESORT", "METHODS", "PREFERENCE", "Collapsed", "Crossed", "Fallback", "Full", "Gibbs", "Laplace", "Method",
    "Structured",
    "choose_method", "fallback_after", "resolve_method",
]

#: what ``method="auto"`` tries, most preferred first: the Laplace method for a GLMM; the collapsed
#: method for one factor or nested factors; for crossed factors the Gibbs sampler where it is faster
#: (random intercepts, a big dense block), else the crossed form of the collapsed method
PREFERENCE: tuple[type[Method], ...] = (Laplace, Collapsed, Gibbs, Crossed)
#: what ``method="auto"`` takes when every method of :data:`PREFERENCE` has an obstacle
LAST_RESORT: type[Method] = Full
#: the ``method=`` values, from the method that takes every model to the most specialised
METHODS = ("auto", LAST_RESORT.choice, *dict.fromkeys(m.choice for m in reversed(PREFERENCE)))


def resolve_method(
    design: Design, method: str, *, centered: bool = False, sampler: str = "nutpie"
) -> tuple[Method, str]:
    """The method for ``method`` (``"auto"`` resolved), and a note saying why auto fell back, or "".

    ``"auto"`` picks the Laplace method for a nested GLMM with a log or logit link;
    :class:`Collapsed` for one grouping factor or a chain of nested factors; for crossed factors,
    :class:`Gibbs` when every random term is an intercept and the crossed method's dense block would
    exceed :data:`~lmm_bayes.inference.methods.crossed.system.SMALL_DENSE_EFFECTS` effects (see
    :meth:`Gibbs.obstacle <lmm_bayes.inference.methods.gibbs.method.Gibbs.obstacle>`), else
    :class:`Crossed` (sampled with nutpie, with a dense block of at most
    :data:`~lmm_bayes.inference.methods.crossed.system.MAX_DENSE_EFFECTS` effects); and :class:`Full`
    otherwise. Nested designs keep :class:`Collapsed`, exact and cheap there, and the Gibbs sampler
    is picked only with the default sampler (another ``sampler`` asks for NUTS). ``"gibbs"`` takes
    any random-intercept design (crossed or nested) and refuses others, saying why.

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
    if design.residual is not None:  # sigma= or ar=: one method fits them, and no other may ignore them
        return Structured.for_residual(design, method, sampler=sampler, centered=centered), ""
    if method != "auto":  # the first method registered under that name (the collapsed method's nested form)
        asked = next(m for m in (LAST_RESORT, *PREFERENCE) if m.choice == method)
        return asked.take(design, sampler=sampler, centered=centered), ""
    reasons = []
    for candidate in PREFERENCE:
        why = candidate.obstacle(design, sampler=sampler, centered=centered, auto=True)
        if why is None:
            return candidate.take(design, sampler=sampler, centered=centered), ""
        if candidate.expected(design, centered=centered):
            reasons.append(why)
    chosen = LAST_RESORT.take(design, sampler=sampler, centered=centered)
    return chosen, f"method='auto' chose {chosen.name!r}: {', and '.join(reasons)}" if reasons else ""


@dataclass(frozen=True)
class Fallback:
    """What a fit does after a method's :meth:`~lmm_bayes.inference.methods.base.Method.fallback`.

    Attributes
    ----------
    method : Method or None
        The method to sample instead (after ``method="auto"``), or None to keep the draws.
    note : str
        The warning's text.
    warning : type
        :class:`~lmm_bayes.errors.MethodNote` for a refit, :class:`~lmm_bayes.errors.SamplingWarning`
        for draws kept.
    """

    method: Method | None
    note: str
    warning: type[Warning]


def fallback_after(strategy: Method, method: str) -> Fallback | None:
    """After ``strategy`` sampled for ``method=method``: what to do about its fallback, or None.

    ``"auto"`` samples the fallback instead, with a note saying why; a method asked for by name keeps
    its draws, with a warning.
    """
    found = strategy.fallback()
    if found is None:
        return None
    other, why = found
    if method == "auto":
        return Fallback(other, f"method='auto' chose {other.name!r}: {why}", MethodNote)
    return Fallback(None, f"{why}, so this posterior may differ from the exact one: refit with "
                          f"method={other.name!r} (method='auto' does so by itself)", SamplingWarning)


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

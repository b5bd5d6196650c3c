"""Where a nested cluster sits: the clusters it lies in, and the effects its whole line carries.

In ``y ~ x + (1 + x | subject) + (1 | subject:neuron)`` a neuron has an intercept of its own,
and it lies in a subject that has an intercept and a slope of its own. The neuron's
**whole line** is β + its subject's b + its own b, over the effects that vary by neuron at
its level or above: here (Intercept, x), the slope being its subject's. The neuron is pulled
toward its **parent's line** (β + its subject's b), not toward the population's β.

:func:`lineage` lists the factors a factor is nested in (nearest first) with the level of
each that holds each of its levels; :func:`line_group` is the factor as a
:class:`~lmm_bayes.spec.design.GroupDesign` over its whole line's effects, the design a
cluster's own regression (no pooling) uses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign

__all__ = ["line_effects", "line_group", "lineage"]


def lineage(design: Design, g: GroupDesign) -> tuple[tuple[GroupDesign, np.ndarray], ...]:
    """The factors ``g`` is nested in, nearest first, each with the index of its level holding each of g's levels.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.calibration.simulate import simulate_hierarchy
    >>> df = simulate_hierarchy(3, 2, 4, beta=[1.0, 0.5], G=[[0.25, 0], [0, 0.09]], sigma_neuron=0.4,
    ...                         sigma=1.0, seed=1).data
    >>> d = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df).design
    >>> [(a.name, codes.tolist()) for a, codes in lineage(d, d.group("subject:neuron"))]
    [('subject', [0, 0, 1, 1, 2, 2])]
    >>> lineage(d, d.group("subject"))
    ()
    """
    chain = []
    codes = np.arange(g.n_levels)
    child = g
    seen = {g.name}
    while child.parent is not None:
        parent = design.group(child.parent)
        if parent.name in seen:  # a design never nests a factor in itself; refuse rather than loop
            raise ValueError(f"grouping factor {parent.name!r} is nested in itself")
        seen.add(parent.name)
        codes = np.asarray(child.parent_codes)[codes]
        chain.append((parent, codes))
        child = parent
    return tuple(chain)


def line_effects(design: Design, g: GroupDesign) -> tuple[str, ...]:
    """The effects of ``g``'s whole line: its ancestors' (outermost first) and its own, each once.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.calibration.simulate import simulate_hierarchy
    >>> df = simulate_hierarchy(3, 2, 4, beta=[1.0, 0.5], G=[[0.25, 0], [0, 0.09]], sigma_neuron=0.4,
    ...                         sigma=1.0, seed=1).data
    >>> d = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df).design
    >>> line_effects(d, d.group("subject:neuron"))
    ('Intercept', 'x')
    """
    effects: list[str] = []
    for h in [*(a for a, _ in reversed(lineage(design, g))), g]:
        effects += [e for e in h.effects if e not in effects]
    return tuple(effects)


def line_group(design: Design, g: GroupDesign) -> GroupDesign:
    """``g`` over its whole line's effects (:func:`line_effects`), one block, its own levels and codes.

    Each effect's column is taken from the nearest factor that has it (the same variable in
    every term). A factor nested in nothing is returned as it is.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.calibration.simulate import simulate_hierarchy
    >>> df = simulate_hierarchy(3, 2, 4, beta=[1.0, 0.5], G=[[0.25, 0], [0, 0.09]], sigma_neuron=0.4,
    ...                         sigma=1.0, seed=1).data
    >>> d = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df).design
    >>> line = line_group(d, d.group("subject:neuron"))
    >>> line.effects, line.Z.shape, bool((line.Z[:, 1] == df["x"]).all())
    (('Intercept', 'x'), (24, 2), True)
    """
    effects = line_effects(design, g)
    if effects == g.effects:
        return g
    owners = [g, *(a for a, _ in lineage(design, g))]
    columns = []
    for e in effects:
        owner = next(h for h in owners if e in h.effects)
        columns.append(owner.Z[:, owner.effects.index(e)])
    return dataclasses.replace(g, effects=effects, Z=np.column_stack(columns),
                               blocks=(tuple(range(len(effects))),))

"""The planned hierarchy: the rows of one design point, the grid of points, and each simulation's seeds.

A :class:`Hierarchy` is either **nested** (``subjects`` × ``neurons`` per subject ×
``trials`` per neuron: columns ``subject``, ``neuron``, ``trial``) or **crossed**
(``subjects`` × ``items``, each subject seeing every item ``trials`` times, 1 by
default: columns ``subject``, ``item``, ``trial``). A ``condition`` column coded
−0.5 / +0.5 (so its coefficient is the difference between the conditions) varies

* ``"within"``: nested, between the trials of every neuron (alternating); crossed,
  within every subject and every item (subject *s* sees item *i* in condition
  (*s* + *i*) mod 2, a Latin square);
* ``"between"``: between subjects (subject *s* in condition *s* mod 2);
* ``None``: no condition column.

The formula reads these columns; the neuron labels repeat across subjects
(``n1``, ``n2``, ...), so a neuron's factor is ``subject:neuron``.

Simulation ``i`` at a design point depends only on ``(seed, the point's sizes, i)``
(:func:`simulation_seeds`), so a result does not depend on the number of workers, on the
other points of the grid, nor on ``n_sims`` (a run of 100 is the first 100 of a run of 200).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.calibration.sim_checks import MAX_SIMULATED_ROWS
from lmm_bayes.spec import validate

__all__ = ["AXES", "CONDITIONS", "Hierarchy", "expand_grid", "simulation_seeds"]

#: Every size a design point has, in the order of a seed's entropy and of the tables' columns.
AXES = ("subjects", "neurons", "items", "trials")
CONDITIONS = ("within", "between", None)
_NESTED, _CROSSED = ("subjects", "neurons", "trials"), ("subjects", "items")


@dataclass(frozen=True)
class Hierarchy:
    """One design point: its sizes and how the condition is assigned.

    Examples
    --------
    >>> h = Hierarchy.of({"subjects": 2, "neurons": 2, "trials": 2}, condition="within")
    >>> h.rows().to_dict("list")["condition"]
    [-0.5, 0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5]
    >>> Hierarchy.of({"subjects": 2, "items": 2}, condition="within").rows()[["subject", "item", "condition"]].values.tolist()
    [['s01', 'i1', -0.5], ['s01', 'i2', 0.5], ['s02', 'i1', 0.5], ['s02', 'i2', -0.5]]
    """

    subjects: int
    neurons: int = 0
    items: int = 0
    trials: int = 1
    condition: str | None = "within"

    @classmethod
    def of(cls, sizes: Any, *, condition: Any = "within") -> Hierarchy:
        """Check ``sizes`` (a dict of :data:`AXES`) and ``condition``; nested or crossed from the keys."""
        if not isinstance(sizes, Mapping):
            raise TypeError(
                "sizes must be a dict, e.g. {'subjects': 12, 'neurons': 5, 'trials': 20} (nested) or "
                f"{{'subjects': 30, 'items': 20}} (crossed); got {type(sizes).__name__}"
            )
        for key in sizes:
            if key not in AXES:
                raise ValueError(f"unknown size {key!r}{validate.did_you_mean(key, AXES)}; sizes are {list(AXES)}")
        keys = set(sizes)
        if "neurons" in keys and "items" in keys:
            raise ValueError("sizes give neurons (a nested design) and items (a crossed design): choose one")
        needed = _NESTED if "neurons" in keys or "items" not in keys else _CROSSED
        missing = [k for k in needed if k not in keys]
        if missing:
            kind = "a nested design (subjects, neurons, trials)" if needed == _NESTED else "a crossed design"
            raise ValueError(f"sizes lack {missing} for {kind}")
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be 'within', 'between' or None, got {condition!r}")
        checked = {k: validate.check_positive_int(v, f"sizes[{k!r}]", minimum=2 if k == "subjects" else 1)
                   for k, v in sizes.items()}
        h = cls(condition=condition, **checked)
        h.check()
        return h

    @property
    def nested(self) -> bool:
        """Trials in neurons in subjects (else subjects x items)."""
        return self.neurons > 0

    @property
    def axes(self) -> tuple[str, ...]:
        """The sizes this kind of hierarchy has (a grid may vary any of them)."""
        return _NESTED if self.nested else (*_CROSSED, "trials")

    @property
    def sizes(self) -> dict[str, int]:
        """Each of :attr:`axes` with its size."""
        return {a: getattr(self, a) for a in self.axes}

    @property
    def n_rows(self) -> int:
        """The rows of this design point: every recorded trial."""
        return self.subjects * (self.neurons or self.items) * self.trials

    def check(self) -> None:
        """``ValueError`` for a design whose condition cannot vary, or one too large to simulate."""
        if self.condition == "within" and self.nested and self.trials < 2:
            raise ValueError("condition='within' alternates the trials of each neuron: it needs trials >= 2")
        if self.condition == "within" and not self.nested and self.items < 2:
            raise ValueError("condition='within' varies over a subject's items: it needs items >= 2")
        if self.n_rows > MAX_SIMULATED_ROWS:
            raise ValueError(f"the design point {self.sizes} has {self.n_rows:,} rows, more than "
                             f"{MAX_SIMULATED_ROWS:,}: plan a smaller grid")

    def rows(self) -> pd.DataFrame:
        """The predictor and grouping columns of this design point, without a response."""
        s, inner, t = self.subjects, self.neurons or self.items, self.trials
        sub = np.repeat(np.arange(s), inner * t)
        mid = np.tile(np.repeat(np.arange(inner), t), s)
        trial = np.tile(np.arange(t), s * inner)
        width = max(2, len(str(s)))
        name, prefix = ("neuron", "n") if self.nested else ("item", "i")
        data = {
            "subject": pd.Categorical.from_codes(sub, [f"s{k:0{width}d}" for k in range(1, s + 1)]),
            name: pd.Categorical.from_codes(mid, [f"{prefix}{k}" for k in range(1, inner + 1)]),
            "trial": trial + 1,
        }
        if self.condition is not None:
            arm = {"between": sub, "within": trial if self.nested else sub + mid}[self.condition] % 2
            data["condition"] = arm - 0.5
        return pd.DataFrame(data)

    def label(self) -> str:
        """``"subjects=12_neurons=5_trials=20"``: the point's file name on disk."""
        return "_".join(f"{k}={v}" for k, v in self.sizes.items())


def expand_grid(base: Hierarchy, grid: Any) -> list[Hierarchy]:
    """Every design point of ``grid`` (axis -> list of sizes; several axes: every combination) around ``base``.

    Examples
    --------
    >>> base = Hierarchy.of({"subjects": 4, "neurons": 3, "trials": 10})
    >>> [h.label() for h in expand_grid(base, {"subjects": [4, 8], "trials": [10]})]
    ['subjects=4_neurons=3_trials=10', 'subjects=8_neurons=3_trials=10']
    """
    if grid is None:
        return [base]
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of axis -> list of sizes, e.g. {{'subjects': [8, 12, 16]}}; "
                        f"got {type(grid).__name__}")
    values: list[Sequence[int]] = []
    for axis, sizes in grid.items():
        if axis not in base.axes:
            raise ValueError(f"grid axis {axis!r} is not a size of this design{validate.did_you_mean(axis, base.axes)}; "
                             f"its axes are {list(base.axes)}")
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not len(sizes):
            raise ValueError(f"grid[{axis!r}] must be a non-empty list of sizes, got {sizes!r}")
        checked = [validate.check_positive_int(v, f"grid[{axis!r}]", minimum=2 if axis == "subjects" else 1)
                   for v in sizes]
        if len(set(checked)) != len(checked):
            raise ValueError(f"grid[{axis!r}] repeats a size: {checked}")
        values.append(checked)
    points = [replace(base, **dict(zip(grid, combo))) for combo in itertools.product(*values)]
    for p in points:
        p.check()
    return points


def simulation_seeds(seed: int, point: Hierarchy, sim: int) -> tuple[np.random.SeedSequence, int]:
    """Simulation ``sim``'s data stream and its fit's seed, from ``(seed, the point's sizes, sim)`` alone.

    Examples
    --------
    >>> h = Hierarchy.of({"subjects": 4, "items": 3})
    >>> simulation_seeds(1, h, 0)[1] == simulation_seeds(1, h, 0)[1] != simulation_seeds(1, h, 1)[1]
    True
    """
    entropy = [int(seed), *(getattr(point, a) for a in AXES), int(sim)]
    data, fit = np.random.SeedSequence(entropy).spawn(2)
    return data, int(fit.generate_state(1)[0])

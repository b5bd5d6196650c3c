"""What a design point costs, and the cheapest point of a grid that reaches a target.

A nested point costs ``subjects x subject + subjects x neurons x neuron + rows x trial``, a
crossed one ``subjects x subject + items x item + rows x trial`` (rows = every recorded
trial), from the cost per unit the user gives (any of ``"subject"``, ``"neuron"``,
``"item"``, ``"trial"``; the others cost nothing). A point *meets* the target when its
estimated power is at least ``power`` and its expected width at most ``width``: the
estimates carry Monte Carlo error (their MCSE columns), so a point within about two MCSE
of the target is a near tie that more simulations would settle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.spec import validate

__all__ = ["UNITS", "check_costs", "cost_table"]

#: The units a cost may be given per.
UNITS = ("subject", "neuron", "item", "trial")


def check_costs(costs: Any, nested: bool) -> dict[str, float]:
    """``costs`` as floats >= 0, every key a unit of this kind of design."""
    if not isinstance(costs, Mapping) or not costs:
        raise TypeError("costs must be a dict of cost per unit, e.g. {'subject': 2000, 'neuron': 100, 'trial': 1}; "
                        f"got {costs!r}")
    allowed = ("subject", "neuron", "trial") if nested else ("subject", "item", "trial")
    out = {}
    for unit, value in costs.items():
        if unit not in allowed:
            raise ValueError(f"costs[{unit!r}]: this design's units are {list(allowed)}"
                             f"{validate.did_you_mean(unit, allowed)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value < 0:
            raise ValueError(f"costs[{unit!r}] must be a finite number >= 0, got {value!r}")
        out[unit] = float(value)
    return out


def cost_table(table: pd.DataFrame, costs: Mapping[str, float], *, nested: bool, power: float | None,
               width: float | None, budget: float | None) -> pd.DataFrame:
    """One quantity's table (columns: the sizes, power, width, ...) with ``cost``, ``meets`` and
    ``within_budget``, sorted by cost.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"subjects": [4, 8], "neurons": 2, "trials": [20, 5], "power": [0.7, 0.9],
    ...                   "width": [0.5, 0.4]})
    >>> cost_table(t, {"subject": 100, "trial": 1}, nested=True, power=0.8, width=None, budget=None)[
    ...     ["subjects", "cost", "meets"]].values.tolist()
    [[4, 560.0, False], [8, 880.0, True]]
    """
    if power is None and width is None:
        raise ValueError("give a target: power= (e.g. 0.8), width= (the widest acceptable interval), or both")
    s = table["subjects"].to_numpy(float)
    inner = table["neurons" if nested else "items"].to_numpy(float)
    rows = s * inner * table["trials"].to_numpy(float)
    cost = s * costs.get("subject", 0.0) + rows * costs.get("trial", 0.0)
    cost += s * inner * costs.get("neuron", 0.0) if nested else inner * costs.get("item", 0.0)
    meets = np.ones(len(table), bool)
    if power is not None:
        meets &= table["power"].to_numpy(float) >= validate.check_probability(power, "power")
    if width is not None:
        meets &= table["width"].to_numpy(float) <= validate.check_positive_number(width, "width")
    out = table.assign(cost=cost, meets=meets)
    if budget is not None:
        out = out.assign(within_budget=cost <= validate.check_positive_number(budget, "budget"))
    return out.sort_values(["cost", *[c for c in ("subjects", "neurons", "items", "trials") if c in out]],
                           kind="stable").reset_index(drop=True)

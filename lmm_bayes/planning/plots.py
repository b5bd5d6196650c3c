"""The curves of a design analysis: power and interval width against one axis, with Monte Carlo bands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_curves"]


def plot_curves(table: pd.DataFrame, *, along: str, others: Sequence[str], quantity: str,
                target: float | None = 0.8, axes: Sequence[Any] | None = None) -> Any:
    """Power (left) and interval width (right) of one quantity against ``along``, bands of ±2 MCSE.

    ``table`` is :meth:`StudyPlan.table` reset to columns, one quantity's rows; each
    combination of ``others`` (the other varied axes) is a line of its own.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"subjects": [4, 8], "power": [0.3, 0.6], "power_mcse": [0.05, 0.05],
    ...                   "width": [2.0, 1.4], "width_mcse": [0.02, 0.02]})
    >>> fig = plot_curves(t, along="subjects", others=[], quantity="x")
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['power', 'interval width']
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    else:
        fig = axes[0].figure
    groups = table.groupby(list(others), sort=True) if others else [((), table)]
    for key, rows in groups:
        rows = rows.sort_values(along)
        x = rows[along].to_numpy(float)
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or None
        for ax, col in zip(axes, ("power", "width")):
            y, se = rows[col].to_numpy(float), rows[f"{col}_mcse"].to_numpy(float)
            (line,) = ax.plot(x, y, marker="o", label=label)
            ax.fill_between(x, y - 2 * np.nan_to_num(se), y + 2 * np.nan_to_num(se), color=line.get_color(),
                            alpha=0.2, linewidth=0)
    axes[0].set_ylim(0, 1)
    if target is not None:
        axes[0].axhline(target, color="grey", linestyle="--", linewidth=1)
    axes[0].set_ylabel("power")
    axes[1].set_ylabel("interval width")
    for ax in axes:
        ax.set_xlabel(along)
        ax.set_title(quantity)
    if others:
        axes[0].legend(fontsize="small")
    return fig

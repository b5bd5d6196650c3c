"""Row checks shared by the families: the first bad rows named, and the trials of a binomial response."""

from __future__ import annotations

import numpy as np

__all__ = ["check_trials", "raise_if_rows"]


def check_trials(trials: np.ndarray, name: str, index=None) -> np.ndarray:
    """Trials must be whole numbers ≥ 1; returns them as floats.

    Examples
    --------
    >>> check_trials(np.array([3, 0]), "n")
    Traceback (most recent call last):
    ...
    ValueError: the trials 'n' must be whole numbers of at least 1, but 1 of 2 rows are not (first: row 1 = 0); drop rows with no trials (they carry no information) or fix the column
    """
    trials = np.asarray(trials, dtype=float)
    bad = ~np.isfinite(trials) | (trials < 1) | (trials != np.round(trials))
    raise_if_rows(bad, trials, f"the trials {name!r} must be whole numbers of at least 1",
                  "drop rows with no trials (they carry no information) or fix the column", index=index)
    return trials


def raise_if_rows(bad: np.ndarray, values: np.ndarray, what: str, fix: str, extra: np.ndarray | None = None,
                  index=None) -> None:
    """``ValueError`` if any row is ``bad``: how many, the first two (with ``extra``'s value), and ``fix``.

    ``index`` holds the rows' labels in the data (default: their positions).
    """
    if not np.any(bad):
        return
    rows = np.flatnonzero(bad)
    labels = np.arange(len(values)) if index is None else np.asarray(index)
    shown = ", ".join(
        f"row {labels[i]} = {values[i]:g}" + ("" if extra is None else f" of {extra[i]:g}") for i in rows[:2]
    )
    raise ValueError(f"{what}, but {len(rows)} of {len(values)} rows are not (first: {shown}); {fix}")

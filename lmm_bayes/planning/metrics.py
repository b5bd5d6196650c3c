"""Operating characteristics of a design, from one row per simulation and quantity: numbers only, no fitting.

Per design point and quantity, over the ``K`` simulations:

* **power**: the share of the K simulations whose interval excludes 0. A fit that
  raised (``status == "failed"``) stays in the denominator and counts as *no
  detection*: a study whose analysis fails finds nothing. A fit that did not converge
  (``"unconverged"``: a divergence in its fit, or this quantity's R-hat above
  :data:`RHAT_LIMIT`, 1.01)
  counts the same way with ``unconverged="miss"`` (the default), or with its interval
  as it came with ``"keep"``. Monte Carlo SE √(p(1 − p)/K).
* **width**: the mean width of the interval over the fits that gave one (``n_used``),
  SE sd/√n_used; **coverage**: the share of those intervals holding the truth.
* **type S** (Gelman & Carlin 2014): among the detections, the share whose estimate
  (the posterior mean) has the wrong sign, SE √(s(1 − s)/n_detected); **type M**, the
  exaggeration ratio: the mean of \\|estimate\\| / \\|truth\\| among the detections, SE
  sd/√n_detected. Both need a non-zero truth (NaN otherwise: then power is the false
  positive rate). Each simulation is compared with its own truth: under assurance (the truth
  drawn from a pilot's posterior) ``truth`` is their mean.
* with ``rope=(low, high)``: ``p_outside_rope``, the share of the K whose interval lies
  wholly outside the region of practical equivalence, and ``p_inside_rope``, wholly inside
  (Kruschke's decision rule), failures again counted as neither.

A standard deviation (``kind`` ``"sd"`` or ``"sigma"``) is positive by construction: its
power and type S/M are NaN; its width, coverage and bias are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RHAT_LIMIT", "STATUSES", "UNCONVERGED", "operating_characteristics"]

#: A simulation's fit: finished and healthy, finished with a warning sign, or raised.
STATUSES = ("ok", "unconverged", "failed")
#: A quantity's R-hat above this (or NaN), or a divergence in its fit, makes a finished fit "unconverged":
#: the fit tables' limit. In benchmarks/design_power.py (2,400 fits, 2 chains x 1000 draws) 6 fits
#: exceeded it (at most 1.017) and 41 had a divergence, 39 of them at 6 subjects.
RHAT_LIMIT = 1.01
#: How an unconverged fit counts: as no detection (like a failure), or with its interval.
UNCONVERGED = ("miss", "keep")


def _share(hits: np.ndarray, n: int) -> tuple[float, float]:
    if n == 0:
        return np.nan, np.nan
    p = hits.sum() / n
    return float(p), float(np.sqrt(p * (1 - p) / n))


def _mean(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return np.nan, np.nan
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.nan
    return float(values.mean()), float(se)


def _one(group: pd.DataFrame, rope: tuple[float, float] | None, unconverged: str) -> dict[str, Any]:
    k = len(group)
    status = group["status"].to_numpy()
    if "r_hat" in group and "divergences" in group:  # re-derived: files written under another limit agree
        bad = (group["divergences"].to_numpy(float) > 0) | ~(group["r_hat"].to_numpy(float) <= RHAT_LIMIT)
        status = np.where(status == "failed", "failed", np.where(bad, "unconverged", "ok"))
    used = (status == "ok") | ((status == "unconverged") & (unconverged == "keep"))
    lower, upper = group["lower"].to_numpy(float), group["upper"].to_numpy(float)
    est, truth = group["estimate"].to_numpy(float), group["truth"].to_numpy(float)
    signed = group["kind"].iloc[0] == "coef"
    detected = used & ((lower > 0) | (upper < 0))  # NaN bounds (a failure) compare False
    row: dict[str, Any] = {
        "truth": float(truth[0] if (truth == truth[0]).all() else truth.mean()), "n_sims": k, "n_failed": int((status == "failed").sum()),
        "n_unconverged": int((status == "unconverged").sum()), "n_used": int(used.sum()),
    }
    row["power"], row["power_mcse"] = _share(detected, k) if signed else (np.nan, np.nan)
    row["width"], row["width_mcse"] = _mean((upper - lower)[used])
    row["coverage"], row["coverage_mcse"] = _share(((lower <= truth) & (truth <= upper))[used], int(used.sum()))
    row["bias"], row["bias_mcse"] = _mean((est - truth)[used])
    n_det = int(detected.sum())
    if signed and (truth != 0).all():  # each simulation's own truth (one for all, but for assurance)
        row["type_s"], row["type_s_mcse"] = _share((np.sign(est) != np.sign(truth))[detected], n_det)
        row["type_m"], row["type_m_mcse"] = _mean(np.abs(est[detected]) / np.abs(truth[detected]))
    else:
        row["type_s"] = row["type_s_mcse"] = row["type_m"] = row["type_m_mcse"] = np.nan
    if rope is not None:
        low, high = rope
        row["p_outside_rope"], row["p_outside_rope_mcse"] = _share(used & ((lower > high) | (upper < low)), k)
        row["p_inside_rope"], row["p_inside_rope_mcse"] = _share(used & (lower >= low) & (upper <= high), k)
    return row


def check_rope(rope: Any) -> tuple[float, float] | None:
    """``None`` or a ``(low, high)`` pair of numbers with low < high."""
    if rope is None:
        return None
    try:
        low, high = (float(v) for v in rope)
    except (TypeError, ValueError):
        raise TypeError(f"rope must be a (low, high) pair of numbers, e.g. (-0.1, 0.1); got {rope!r}") from None
    if not low < high:
        raise ValueError(f"rope must have low < high, got {rope!r}")
    return low, high


def operating_characteristics(
    sims: pd.DataFrame, by: Sequence[str], *, rope: Any = None, unconverged: str = "miss"
) -> pd.DataFrame:
    """Power, width, coverage, bias, type S and type M with their Monte Carlo SEs, per group of ``by``.

    Parameters
    ----------
    sims : pandas.DataFrame
        One row per simulation and quantity: ``by``'s columns, ``kind`` (``"coef"``,
        ``"sigma"`` or ``"sd"``), ``truth``, ``estimate``, ``lower``, ``upper`` (NaN for a
        failed fit) and ``status`` (:data:`STATUSES`).
    by : sequence of str
        The columns naming a design point and quantity.
    rope : (low, high), optional
    unconverged : {"miss", "keep"}

    Examples
    --------
    >>> import pandas as pd
    >>> sims = pd.DataFrame({"q": "x", "kind": "coef", "truth": 1.0, "estimate": [1.2, 0.3, -0.1, None],
    ...                      "lower": [0.2, -0.5, -0.9, None], "upper": [2.0, 1.1, 0.7, None],
    ...                      "status": ["ok", "ok", "ok", "failed"]})
    >>> t = operating_characteristics(sims, ["q"]).iloc[0]
    >>> [round(float(t[c]), 3) for c in ("n_sims", "n_failed", "power", "type_m", "coverage")]
    [4.0, 1.0, 0.25, 1.2, 0.667]
    """
    if unconverged not in UNCONVERGED:
        raise ValueError(f"unconverged must be 'miss' (counted as no detection) or 'keep', got {unconverged!r}")
    rope = check_rope(rope)
    rows = [{**dict(zip(by, key if isinstance(key, tuple) else (key,))), **_one(g, rope, unconverged)}
            for key, g in sims.groupby(list(by), sort=False, observed=True)]
    return pd.DataFrame(rows)

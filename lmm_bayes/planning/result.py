"""A design analysis's result: every simulation's interval, and the tables and curves read from them.

:class:`StudyPlan` keeps one row per simulation and quantity (``simulations``) and computes
its table (:func:`~lmm_bayes.planning.metrics.operating_characteristics`) on request, so a
ROPE or the treatment of unconverged fits can change without fitting again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lmm_bayes.planning.cost import check_costs, cost_table
from lmm_bayes.planning.metrics import operating_characteristics

__all__ = ["StudyPlan"]


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """The result of :func:`lmm_bayes.plan_study`.

    Attributes
    ----------
    simulations : pandas.DataFrame
        One row per design point, simulation and quantity: the point's sizes, ``sim``,
        ``seed`` (the fit's), ``quantity``, ``kind``, ``truth``, ``estimate`` (posterior
        mean), ``lower``, ``upper`` (the interval), ``status`` (``"ok"``,
        ``"unconverged"``, ``"failed"``; per quantity), ``r_hat``, ``divergences``, ``seconds``, ``message``
        (a failure's error).
    axes : tuple of str
        The sizes of a design point (``subjects``, ``neurons``, ``trials`` or ``subjects``,
        ``items``, ``trials``).
    varied : tuple of str
        The axes the grid varies.
    attrs : dict
        The plan's settings (formula, truth, seed, n_sims, interval, fit settings, version).
    skipped : tuple of str
        Design points read from the folder instead of run.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> plan = lb.plan_study("y ~ condition + (1 | subject)", {"subjects": 4, "neurons": 1, "trials": 4},
    ...                      truth={"beta": {"Intercept": 0.0, "condition": 1.0}, "G": {"subject": 0.25},
    ...                             "sigma": 1.0}, n_sims=2, seed=1, draws=200, tune=200, progressbar=False)
    >>> plan.table().columns[:6].tolist()
    ['truth', 'n_sims', 'n_failed', 'n_unconverged', 'n_used', 'power']
    >>> plan.failures().empty
    True
    """

    simulations: pd.DataFrame
    axes: tuple[str, ...]
    varied: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def table(self, *, rope: Any = None, unconverged: str = "miss") -> pd.DataFrame:
        """Per design point and quantity: power, width, coverage, bias, type S and M, each with its MCSE.

        Parameters
        ----------
        rope : (low, high), optional
            Adds ``p_outside_rope`` (the interval wholly outside) and ``p_inside_rope``
            (wholly inside), with their MCSEs.
        unconverged : {"miss", "keep"}
            An unconverged fit counts as no detection (default) or with its interval.

        Notes
        -----
        Every simulation stays in power's denominator (``n_sims``): a failed fit counts as no
        detection; ``n_failed`` and ``n_unconverged`` say how many there were. Width,
        coverage and bias are over the ``n_used`` fits that gave an interval; type S and type
        M over the detections among them (:mod:`lmm_bayes.planning.metrics`).
        """
        by = [*self.axes, "quantity"]
        table = operating_characteristics(self.simulations, by, rope=rope, unconverged=unconverged)
        return table.set_index(by)

    def costs(self, costs: Mapping[str, float], *, quantity: str | None = None, power: float | None = 0.8,
              width: float | None = None, budget: float | None = None, unconverged: str = "miss") -> pd.DataFrame:
        """The trade-off: every design point with its cost and whether it meets the target, cheapest first.

        Parameters
        ----------
        costs : dict
            Cost per ``"subject"``, ``"neuron"`` (nested) or ``"item"`` (crossed), and ``"trial"``
            (each recorded row); a unit left out costs nothing.
        quantity : str, optional
            Default: the first one reported.
        power, width : float, optional
            The target: power at least ``power``, expected interval width at most ``width``.
        budget : float, optional
            Adds ``within_budget``.
        unconverged : {"miss", "keep"}
            As for :meth:`table`.

        Returns
        -------
        pandas.DataFrame
            The quantity's table rows with ``cost``, ``meets`` (and ``within_budget``), sorted by
            cost (:mod:`lmm_bayes.planning.cost`).
        """
        names = list(dict.fromkeys(self.simulations["quantity"]))
        quantity = names[0] if quantity is None else quantity
        if quantity not in names:
            raise ValueError(f"quantity {quantity!r} was not reported; the plan has {names}")
        nested = "neurons" in self.axes
        table = self.table(unconverged=unconverged).reset_index()
        return cost_table(table[table["quantity"] == quantity].reset_index(drop=True), check_costs(costs, nested),
                          nested=nested, power=power, width=width, budget=budget)

    def cheapest(self, costs: Mapping[str, float], *, quantity: str | None = None, power: float | None = 0.8,
                 width: float | None = None, budget: float | None = None, unconverged: str = "miss") -> pd.Series:
        """The cheapest design point of the grid that meets the target (within ``budget``); arguments as :meth:`costs`.

        Raises
        ------
        ValueError
            No point meets it: the message names the best one reached and suggests a wider grid.
        """
        table = self.costs(costs, quantity=quantity, power=power, width=width, budget=budget, unconverged=unconverged)
        ok = table["meets"] & (table["within_budget"] if budget is not None else True)
        if not ok.any():
            best = table.loc[table["power"].idxmax()] if power is not None else table.loc[table["width"].idxmin()]
            sizes = ", ".join(f"{a}={int(best[a])}" for a in self.axes)
            reached = f"power {best['power']:.3f}" if power is not None else f"width {best['width']:.3g}"
            raise ValueError(f"no design point of the grid meets the target{' within the budget' if budget else ''}; "
                             f"the best reaches {reached} ({sizes}, cost {best['cost']:g}): extend the grid")
        return table[ok].iloc[0]

    def failures(self) -> pd.DataFrame:
        """The failed fits: design point, simulation, the fit's seed and the error."""
        sims = self.simulations
        failed = sims[sims["status"] == "failed"].drop_duplicates([*self.axes, "sim"])
        return failed[[*self.axes, "sim", "seed", "message"]].reset_index(drop=True)

    def seconds(self) -> float:
        """The fits' total run time (one row per simulation counted once)."""
        return float(self.simulations.drop_duplicates([*self.axes, "sim"])["seconds"].sum())

    def plot(self, quantity: str | None = None, *, along: str | None = None, target: float | None = 0.8,
             rope: Any = None, unconverged: str = "miss", axes: Sequence[Any] | None = None) -> Any:
        """Power and interval width against a grid axis, with ±2 Monte Carlo SE bands.

        Parameters
        ----------
        quantity : str, optional
            Default: the first one reported.
        along : str, optional
            The axis on the horizontal; default: the first one the grid varies. Other varied
            axes give one line each.
        target : float or None
            A horizontal line at this power.
        rope, unconverged
            As for :meth:`table`.
        axes : two matplotlib Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        from lmm_bayes.planning.plots import plot_curves

        table = self.table(rope=rope, unconverged=unconverged).reset_index()
        names = list(dict.fromkeys(self.simulations["quantity"]))
        quantity = names[0] if quantity is None else quantity
        if quantity not in names:
            raise ValueError(f"quantity {quantity!r} was not reported; the plan has {names}")
        if along is None:
            if not self.varied:
                raise ValueError("the plan has one design point: there is no curve to draw; use .table()")
            along = self.varied[0]
        if along not in self.axes:
            raise ValueError(f"along={along!r} is not an axis of the plan; its axes are {list(self.axes)}")
        others = [a for a in self.varied if a != along]
        return plot_curves(table[table["quantity"] == quantity], along=along, others=others, quantity=quantity,
                           target=target, axes=axes)

    def __repr__(self) -> str:
        n_points = len(self.simulations.drop_duplicates(list(self.axes)))
        failed = int((self.simulations.drop_duplicates([*self.axes, "sim"])["status"] == "failed").sum())
        kind = "; power is assurance (truth from a pilot's posterior)" if self.attrs.get("assurance") else ""
        return (f"StudyPlan({self.attrs.get('formula', '')!r}: {n_points} design points x "
                f"{self.attrs.get('n_sims')} simulations, {failed} failed{kind}; .table(), .plot())")

"""Running a design analysis: simulate and fit each simulation in a worker, keep each design point on disk.

One task is one simulation at one design point: the worker builds the point's rows
(:meth:`~lmm_bayes.planning.hierarchy.Hierarchy.rows`), draws the response from the
truth with :func:`~lmm_bayes.simulate` (its stream from
:func:`~lmm_bayes.planning.hierarchy.simulation_seeds`), fits it with
:func:`~lmm_bayes.results.fitting.fit_model` and returns one row per quantity. The
executors, the progress bar and the capture of a failed fit are those of
simulation-based calibration (:mod:`lmm_bayes.calibration.workers`).

With a ``folder`` every design point is written there (``point-<sizes>.csv``) as soon as
its simulations are done, beside ``plan.json`` (the plan's settings); a rerun with the
same settings reads the points already done, says how many it skips, and runs only what
is missing (an interrupted run keeps the simulations it finished, of unfinished points too) (more simulations of a point run only the new indices: simulation ``i`` is
the same in every run). A folder holding another plan is refused.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.calibration.simulate import simulate
from lmm_bayes.calibration.workers import Failure, collect, execute
from lmm_bayes.planning.hierarchy import Hierarchy, simulation_seeds
from lmm_bayes.planning.metrics import RHAT_LIMIT
from lmm_bayes.planning.truth import PilotDraws, Quantity
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.summary import interval_bounds
from lmm_bayes.spec.model import MixedModel

__all__ = ["Done", "PlanContext", "PlanTask", "PointStore", "run_plan", "fit_task", "simulate_and_fit"]

COLUMNS = ("sim", "seed", "quantity", "kind", "truth", "estimate", "lower", "upper", "status", "r_hat",
           "divergences", "seconds", "message")


@dataclass(frozen=True, eq=False)
class PlanContext:
    """What every simulation shares: the model, the truth (or a pilot's draws), the quantities, the fit's settings."""

    formula: str
    params: dict[str, Any]
    quantities: tuple[Quantity, ...]
    truth: tuple[float, ...]
    fit_kwargs: tuple[tuple[str, Any], ...]
    ci: str
    prob: float
    seed: int
    parent_pid: int
    pilot: PilotDraws | None = None
    priors: Mapping[str, Any] | None = None

    def params_for(self, sim: int) -> dict[str, Any]:
        """Simulation ``sim``'s parameters: the plan's truth, or its draw of the pilot's posterior."""
        return self.params if self.pilot is None else self.pilot.params(self.pilot.index(self.seed, sim))

    def truth_for(self, sim: int) -> tuple[float, ...]:
        """Each quantity's true value in simulation ``sim``."""
        if self.pilot is None:
            return self.truth
        j = self.pilot.index(self.seed, sim)
        return tuple(self.pilot.value(q, j) for q in self.quantities)


@dataclass(frozen=True)
class PlanTask:
    """Simulation ``sim`` of design point ``point``; ``index`` is its place in this run, ``seed`` its fit's seed."""

    index: int
    point: Hierarchy
    sim: int
    seed: int


def simulate_and_fit(ctx: PlanContext, task: PlanTask) -> list[dict[str, Any]]:
    """Draw one data set at the task's design point, fit it, and return one row per quantity."""
    import arviz_stats as azs  # at first use, as everywhere in the package

    start = time.perf_counter()
    stream, fit_seed = simulation_seeds(ctx.seed, task.point, task.sim)
    sim = simulate(ctx.formula, task.point.rows(), params=ctx.params_for(task.sim), seed=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit's own warnings are read below, as its status
        fit = fit_model(MixedModel(ctx.formula, sim.data, priors=ctx.priors), **dict(ctx.fit_kwargs), seed=fit_seed,
                        progressbar=False, log_likelihood=False, keep_b="none")
    posterior = fit.idata.posterior.to_dataset()
    stats = fit.idata.sample_stats.to_dataset()
    divergences = int(stats["diverging"].values.sum()) if "diverging" in stats else 0
    rows = []
    for q, truth in zip(ctx.quantities, ctx.truth_for(task.sim)):
        draws = q.of(posterior)
        low, high = interval_bounds(draws, ci=ctx.ci, prob=ctx.prob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = float(azs.rhat(draws).values)
        rows.append({"quantity": q.name, "kind": q.kind, "truth": truth, "estimate": float(draws.mean()),
                     "lower": float(low), "upper": float(high), "r_hat": rhat, "divergences": divergences})
    seconds = time.perf_counter() - start
    # a quantity's own mixing decides its status: a slowly mixing SD need not discount a coefficient's power
    return [{"sim": task.sim, "seed": fit_seed, **r,
             "status": "unconverged" if divergences > 0 or not r["r_hat"] <= RHAT_LIMIT else "ok",
             "seconds": seconds, "message": ""} for r in rows]


def failed_rows(ctx: PlanContext, task: PlanTask, failure: Failure) -> list[dict[str, Any]]:
    """A failed simulation's rows: no estimate or interval, the error kept as the message."""
    return [{"sim": task.sim, "seed": task.seed, "quantity": q.name, "kind": q.kind, "truth": truth,
             "estimate": np.nan, "lower": np.nan, "upper": np.nan, "status": "failed", "r_hat": np.nan,
             "divergences": 0, "seconds": np.nan, "message": f"{failure.error}: {failure.message}"}
            for q, truth in zip(ctx.quantities, ctx.truth_for(task.sim))]


class PointStore:
    """A folder of design points: ``plan.json`` (the settings) and one CSV per point."""

    def __init__(self, folder: str | os.PathLike, manifest: dict[str, Any]):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"folder={str(folder)!r} is a file; name a folder for the design points")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "plan.json"
        text = json.dumps(manifest, sort_keys=True, indent=1, default=_plain)
        if path.exists():
            held = json.loads(path.read_text())
            ours = json.loads(text)
            # the package version is recorded, not compared: an upgrade may resume a plan
            differ = sorted(k for k in set(held) | set(ours) - {"version"} if held.get(k) != ours.get(k))
            if differ:
                raise ValueError(f"the folder {str(folder)!r} holds a plan with other settings ({', '.join(differ)} "
                                 "differ): name another folder, or delete this one to start again")
        else:
            path.write_text(text)

    def path(self, point: Hierarchy) -> Path:
        """The file of ``point``."""
        return self.folder / f"point-{point.label()}.csv"

    def load(self, point: Hierarchy) -> pd.DataFrame:
        """The simulations of ``point`` already done (empty if none)."""
        path = self.path(point)
        if not path.exists():
            return pd.DataFrame(columns=list(COLUMNS))
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"message": str})

    def save(self, point: Hierarchy, frame: pd.DataFrame) -> None:
        """Write ``point``'s simulations whole (a temporary file renamed over the old one)."""
        path = self.path(point)
        tmp = path.with_suffix(".tmp")
        frame.sort_values(["sim", "quantity"]).to_csv(tmp, index=False)
        os.replace(tmp, path)  # a point is on disk whole or not at all


def _plain(obj: Any) -> Any:
    """Arrays as lists; anything else JSON cannot write (a Prior) as its repr."""
    return obj.tolist() if isinstance(obj, (np.ndarray, np.generic)) else repr(obj)


def run_plan(ctx: PlanContext, points: Sequence[Hierarchy], n_sims: int, *, executor: Any,
             store: PointStore | None, progressbar: bool) -> tuple[pd.DataFrame, list[str]]:
    """Every simulation of every point (those on disk read, the rest run); one row per simulation and quantity.

    Returns the rows (with the point's sizes as columns) and the labels of the points
    that were already complete on disk.
    """
    done: dict[int, pd.DataFrame] = {}
    tasks: list[PlanTask] = []
    skipped: list[str] = []
    for p, point in enumerate(points):
        held = store.load(point) if store is not None else pd.DataFrame(columns=list(COLUMNS))
        held = held[held["sim"] < n_sims] if len(held) else held
        done[p] = held
        have = set(held["sim"].astype(int)) if len(held) else set()
        missing = [i for i in range(n_sims) if i not in have]
        if not missing:
            skipped.append(point.label())
        for i in missing:
            tasks.append(PlanTask(index=len(tasks), point=point, sim=i, seed=simulation_seeds(ctx.seed, point, i)[1]))
    if skipped and store is not None:
        print(f"lmm-bayes: {len(skipped)} of {len(points)} design points already done in {store.folder}, skipped",
              file=sys.stderr, flush=True)
    fresh: dict[int, list[dict[str, Any]]] = {p: [] for p in range(len(points))}
    left = {p: n_sims - (len(set(done[p]["sim"])) if len(done[p]) else 0) for p in range(len(points))}
    index_of = {point: p for p, point in enumerate(points)}

    def each(result: Done | Failure) -> None:
        task = tasks[result.index] if isinstance(result, Failure) else result.task
        rows = failed_rows(ctx, task, result) if isinstance(result, Failure) else result.rows
        p = index_of[task.point]
        fresh[p].extend(rows)
        left[p] -= 1
        if left[p] == 0 and store is not None:
            store.save(points[p], _join(done[p], fresh[p]))

    if tasks:
        try:
            collect(execute(ctx, tasks, executor, run=fit_task), len(tasks), progressbar, label="Design", each=each)
        finally:  # interrupted: keep the simulations of unfinished points too (a rerun runs only the rest)
            for p in range(len(points)):
                if store is not None and left[p] > 0 and fresh[p]:
                    store.save(points[p], _join(done[p], fresh[p]))
    frames = []
    for p, point in enumerate(points):
        frames.append(_join(done[p], fresh[p]).assign(**point.sizes))
    out = pd.concat(frames, ignore_index=True)
    out["message"] = out["message"].fillna("")
    # numbers as numbers, whether they came from a worker, from disk or from an empty frame
    return out.astype({**{c: float for c in ("truth", "estimate", "lower", "upper", "r_hat", "seconds")},
                       **{c: "int64" for c in ("sim", "seed", "divergences")}}), skipped


def _join(held: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows read from disk and the new ones (no empty frame in the concatenation: pandas warns)."""
    parts = [f for f in (held, pd.DataFrame(rows, columns=list(COLUMNS))) if len(f)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COLUMNS))


@dataclass(frozen=True)
class Done:
    """One simulation's rows, with its task (the shared collector sorts results by ``index``)."""

    index: int
    task: PlanTask
    rows: list[dict[str, Any]]


def fit_task(ctx: PlanContext, task: PlanTask) -> Done:
    """:func:`simulate_and_fit`, its rows returned with their task; what the workers run."""
    return Done(task.index, task, simulate_and_fit(ctx, task))

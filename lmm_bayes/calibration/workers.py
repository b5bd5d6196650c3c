"""Running simulation-based calibration's fits: one simulation per task, on any executor.

``executor=None`` runs in this process; ``"processes"`` uses local worker processes;
a ``dask.distributed.Client`` runs each simulation as a Dask task, so the same call
scales from a laptop to a cluster. Every worker process gets its own PyTensor compile
directory, because PyTensor's compile lock is not safe across processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmm_bayes.spec.priors import Priors

if TYPE_CHECKING:  # pragma: no cover

    from lmm_bayes.calibration.sbc import _Param

__all__: list[str] = []


# ---------------------------------------------------------------- one simulation (runs in a worker)


@dataclass(frozen=True, eq=False)
class _Context:
    """What every simulation shares; sent once to each worker."""

    formula: str
    data: pd.DataFrame  # the design's columns, without the response
    response: str
    priors: Priors
    params: tuple[_Param, ...]
    fit_kwargs: tuple[tuple[str, Any], ...]
    thin: int
    parent_pid: int


@dataclass(frozen=True)
class _Task:
    index: int
    y: np.ndarray
    truth: np.ndarray
    seed: int


@dataclass(frozen=True)
class _Outcome:
    index: int
    ranks: np.ndarray
    divergences: int
    min_ess: float
    max_rhat: float
    seconds: float


_WORKER: dict[str, Any] = {}  # this worker process's compile directory and the lock that holds it


def _claim_dir(base: str) -> str:
    """A compile directory no other live process uses: the first free ``slot-k``.

    Slots are locked for the life of the process (``flock``), so later runs reuse
    the compiled modules of earlier ones; without ``fcntl`` a directory per process.
    """
    os.makedirs(base, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return os.path.join(base, f"pid-{os.getpid()}")
    for k in range(4096):
        lock = open(os.path.join(base, f"slot-{k}.lock"), "a")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _WORKER["lock"] = lock
        return os.path.join(base, f"slot-{k}")
    return os.path.join(base, f"pid-{os.getpid()}")  # pragma: no cover


def _isolate_compiledir(parent_pid: int) -> None:
    """Give this worker process its own PyTensor compile directory (once).

    PyTensor's compile lock is not safe across processes sharing a directory.
    The setting takes effect only if PyTensor has not chosen its directory yet in
    this process (it has not, in the workers this module starts); the in-process
    executor keeps the user's.
    """
    if _WORKER or os.getpid() == parent_pid:
        return
    user = getattr(os, "getuid", lambda: "user")()
    path = _claim_dir(os.path.join(tempfile.gettempdir(), f"lmm_bayes_sbc-{user}"))
    _WORKER["dir"] = path
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = f"{flags},compiledir={path}" if flags else f"compiledir={path}"
    if "pytensor" in sys.modules:  # imported already: set it unless it is fixed
        try:
            sys.modules["pytensor"].config.compiledir = path
        except Exception:  # noqa: BLE001 - already in use; keep PyTensor's choice
            pass


def _run_one(ctx: _Context, task: _Task) -> _Outcome:
    """Fit one simulated data set and rank the truth; runs wherever the executor puts it."""
    _isolate_compiledir(ctx.parent_pid)
    import arviz_stats

    from lmm_bayes.calibration.sbc import _ranks, _values
    from lmm_bayes.spec.model import LMM

    start = time.perf_counter()
    data = ctx.data.assign(**{ctx.response: task.y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = LMM(ctx.formula, data, priors=ctx.priors).fit(
            **dict(ctx.fit_kwargs), seed=task.seed, progressbar=False, log_likelihood=False
        )
    posterior = fit.idata.posterior.to_dataset()
    draws = np.stack([v.reshape(v.shape[0], v.shape[1]) for v in _values(posterior, ctx.params)], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ESS of a constant (e.g. one chain, stuck) warns
        ess = np.asarray(arviz_stats.ess(draws))
        rhat = np.asarray(arviz_stats.rhat(draws)) if draws.shape[0] > 1 else np.full(draws.shape[-1], np.nan)
    diverging = fit.idata.sample_stats.to_dataset().get("diverging")
    return _Outcome(
        index=task.index,
        ranks=_ranks(posterior, task.truth, ctx.params, ctx.thin),
        divergences=0 if diverging is None else int(diverging.sum()),
        min_ess=float(np.nanmin(ess)),
        max_rhat=float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
        seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------- executors


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "scatter")


def _check_executor(executor: Any) -> None:
    if executor is None or executor == "processes" or _is_dask_client(executor):
        return
    if isinstance(executor, cf.Executor):
        return
    if isinstance(executor, str):
        raise ValueError(f"executor must be None, 'processes' or a dask.distributed.Client; got {executor!r}")
    raise TypeError(
        "executor must be None (one fit after another), 'processes' (local worker processes), a "
        f"dask.distributed.Client or a concurrent.futures.Executor; got {type(executor).__name__}"
    )


def _execute(ctx: _Context, tasks: Sequence[_Task], executor: Any) -> Iterator[_Outcome]:
    """Outcomes in order of completion."""
    if executor is None:
        for task in tasks:
            yield _run_one(ctx, task)
    elif _is_dask_client(executor):
        from distributed import as_completed

        shared = executor.scatter(ctx, broadcast=True)
        token = uuid.uuid4().hex[:8]
        futures = [executor.submit(_run_one, shared, t, pure=False, key=f"sbc-{token}-{t.index}")
                   for t in tasks]
        for future in as_completed(futures):
            yield future.result()
    elif executor == "processes":
        with cf.ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from _from_pool(pool, ctx, tasks)
    else:
        yield from _from_pool(executor, ctx, tasks)


def _from_pool(pool: cf.Executor, ctx: _Context, tasks: Sequence[_Task]) -> Iterator[_Outcome]:
    futures = [pool.submit(_run_one, ctx, t) for t in tasks]
    for future in cf.as_completed(futures):
        yield future.result()


def _progress(outcomes: Iterator[_Outcome], total: int, show: bool) -> list[_Outcome]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    done = []
    columns = (TextColumn("SBC"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show, transient=False) as bar:
        task = bar.add_task("sbc", total=total)
        for outcome in outcomes:
            done.append(outcome)
            bar.advance(task)
    return sorted(done, key=lambda o: o.index)

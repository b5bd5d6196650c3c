"""Running simulation-based calibration's fits: one simulation per task, on any executor.

A :class:`Task` (one simulated response and its true hyperparameters) is fitted by
:func:`run_one`, which ranks the truth among the posterior draws (:func:`rank_truth`)
and checks the sampler's health (:func:`~lmm_bayes.results.summary.diagnose`).

A simulation that raises does not stop the others: :func:`attempt` (what the
executors run) turns its exception into a :class:`Failure` (index, seed, error type
and message) inside the worker, so nothing is lost in transit; a worker that dies
is recorded the same way. ``KeyboardInterrupt`` is not caught, and stops the run.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import Hyperparameter, hyperparameter_draws
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.summary import diagnose
from lmm_bayes.spec.glmm import GeneralizedMixedModel
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.spec.priors import Priors

__all__ = [
    "Context", "Failure", "Outcome", "Task", "attempt", "check_executor", "collect", "execute", "rank_truth", "run_one",
]


# ---------------------------------------------------------------- one simulation (runs in a worker)


@dataclass(frozen=True, eq=False)
class Context:
    """What every simulation shares; sent once to each worker.

    Attributes
    ----------
    formula : str
    data : pandas.DataFrame
        The design's columns, without the response.
    response : str
        The response column each task fills in.
    priors : Priors
        The fitting priors.
    params : tuple of Hyperparameter
        The ranked hyperparameters (:func:`~lmm_bayes.inference.layout.hyperparameters`).
    fit_kwargs : tuple of (name, value)
        Keyword arguments of :meth:`LMM.fit` (draws, tune, chains, method, sampler).
    thin : int
        Rank among every ``thin``-th draw.
    parent_pid : int
        The process that made the tasks (it keeps its own PyTensor compile directory).
    glm : tuple of (name, value)
        A GLMM's ``family``, ``link`` and ``trials`` (keyword arguments of :class:`~lmm_bayes.GLMM`);
        empty for an LMM.
    """

    formula: str
    data: pd.DataFrame
    response: str
    priors: Priors
    params: tuple[Hyperparameter, ...]
    fit_kwargs: tuple[tuple[str, Any], ...]
    thin: int
    parent_pid: int
    glm: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Task:
    """One simulation: its response ``y``, the true value of each of ``Context.params``, the fit's seed."""

    index: int
    y: np.ndarray
    truth: np.ndarray
    seed: int


@dataclass(frozen=True)
class Outcome:
    """One simulation's ranks (one per hyperparameter), sampler health (:func:`diagnose`) and run time."""

    index: int
    ranks: np.ndarray
    diagnostics: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class Failure:
    """One simulation that raised: its index, its fit's seed, the error's type name and message."""

    index: int
    seed: int
    error: str
    message: str

    @classmethod
    def of(cls, task: Task, err: BaseException) -> Failure:
        return cls(index=task.index, seed=task.seed, error=type(err).__name__, message=str(err))

    def describe(self) -> str:
        """``"simulation 3 (seed 123) raised ValueError: ..."``."""
        return f"simulation {self.index} (seed {self.seed}) raised {self.error}: {self.message}"


def rank_truth(
    posterior: xr.Dataset, truth: np.ndarray, params: Sequence[Hyperparameter], thin: int
) -> np.ndarray:
    """How many thinned posterior draws lie below the truth, per hyperparameter.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws (``chain``, ``draw``, ...) in the layout of :mod:`lmm_bayes.inference.layout`.
    truth : ndarray
        One true value per entry of ``params``.
    params : sequence of Hyperparameter
    thin : int
        Count among every ``thin``-th draw of each chain.

    Returns
    -------
    ndarray of int, one rank in ``0..chains * ceil(draws / thin)`` per hyperparameter.

    Examples
    --------
    >>> import numpy as np, xarray as xr, lmm_bayes as lb
    >>> from lmm_bayes.inference.layout import hyperparameters
    >>> d = lb.LMM("y ~ 1", lb.datasets.load("sleepstudy").rename(columns={"Reaction": "y"})).design
    >>> post = xr.Dataset({"beta": (("chain", "draw", "coef"), np.arange(10.0).reshape(1, 10, 1)),
    ...                    "sigma": (("chain", "draw"), np.ones((1, 10)))}, coords={"coef": ["Intercept"]})
    >>> rank_truth(post, np.array([4.5, 2.0]), hyperparameters(d), thin=2)
    array([3, 5])
    """
    draws = hyperparameter_draws(posterior, params).transpose("chain", "draw", "parameter").values
    return (draws[:, ::thin] < np.asarray(truth)).sum(axis=(0, 1))


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


def run_one(ctx: Context, task: Task) -> Outcome:
    """Fit one simulated data set, rank the truth, check the sampler; runs wherever the executor puts it."""
    _isolate_compiledir(ctx.parent_pid)
    start = time.perf_counter()
    data = ctx.data.assign(**{ctx.response: task.y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GeneralizedMixedModel(ctx.formula, data, priors=ctx.priors, **dict(ctx.glm)) if ctx.glm else (
            MixedModel(ctx.formula, data, priors=ctx.priors))
        fit = fit_model(model, **dict(ctx.fit_kwargs), seed=task.seed, progressbar=False, log_likelihood=False)
    posterior = fit.idata.posterior.to_dataset()
    health = diagnose([hyperparameter_draws(posterior, ctx.params)], fit.idata.sample_stats.to_dataset())
    return Outcome(
        index=task.index,
        ranks=rank_truth(posterior, task.truth, ctx.params, ctx.thin),
        diagnostics=health,
        seconds=time.perf_counter() - start,
    )


def attempt(ctx: Any, task: Any, run: Callable[[Any, Any], Any] | None = None) -> Any:
    """``run(ctx, task)`` (:func:`run_one` by default), with any exception (not ``KeyboardInterrupt``)
    returned as a :class:`Failure`.

    ``run`` is any module-level function (design analysis runs its own, :mod:`lmm_bayes.planning`);
    ``ctx`` has ``parent_pid`` and ``task`` ``index`` and ``seed``. Each worker process gets its own
    PyTensor compile directory first.
    """
    try:
        _isolate_compiledir(ctx.parent_pid)
        return (run_one if run is None else run)(ctx, task)  # looked up now: tests replace run_one
    except Exception as err:  # noqa: BLE001 - one simulation's error must not stop the others
        return Failure.of(task, err)


# ---------------------------------------------------------------- executors


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "scatter")


def check_executor(executor: Any) -> None:
    """``TypeError``/``ValueError`` unless ``executor`` is one :func:`execute` runs on."""
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


def execute(ctx: Any, tasks: Sequence[Any], executor: Any, run: Callable[[Any, Any], Any] | None = None,
            ) -> Iterator[Any]:
    """Run ``run`` (:func:`run_one` by default) on every task on ``executor`` (see :func:`check_executor`);
    yield results in order of completion.

    A simulation that raises, or whose worker dies, yields a :class:`Failure`.
    """
    if executor is None:
        for task in tasks:
            yield attempt(ctx, task, run)
    elif _is_dask_client(executor):
        from distributed import as_completed

        shared = executor.scatter(ctx, broadcast=True)
        token = uuid.uuid4().hex[:8]
        prefix, extra = ("sbc", ()) if run is None else (run.__name__, (run,))
        futures = {executor.submit(attempt, shared, t, *extra, pure=False, key=f"{prefix}-{token}-{t.index}"): t
                   for t in tasks}
        try:
            for future in as_completed(futures):
                yield _result(future, futures[future])
        finally:
            executor.cancel(list(futures))  # after an interrupt, nothing keeps running (no-op when all are done)
    elif executor == "processes":
        with cf.ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from _from_pool(pool, ctx, tasks, run)
    else:
        yield from _from_pool(executor, ctx, tasks, run)


def _result(future: Any, task: Task) -> Outcome | Failure:
    """The future's result; a worker's death (or a lost result) as a :class:`Failure`."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - e.g. BrokenProcessPool or a killed Dask worker
        return Failure.of(task, err)


def _from_pool(pool: cf.Executor, ctx: Any, tasks: Sequence[Any], run: Callable[[Any, Any], Any] | None,
               ) -> Iterator[Any]:
    extra = () if run is None else (run,)  # SBC's calls stay attempt(ctx, task)
    futures = {pool.submit(attempt, ctx, t, *extra): t for t in tasks}
    try:
        for future in cf.as_completed(futures):
            yield _result(future, futures[future])
    finally:
        for future in futures:  # after an interrupt, start no more simulations
            future.cancel()


def collect(outcomes: Iterator[Any], total: int, show: bool, *, label: str = "SBC",
            each: Callable[[Any], None] | None = None) -> list[Any]:
    """Gather ``total`` results (a rich progress bar named ``label`` when ``show``, counting failures),
    sorted by index; ``each`` is called with every result as it arrives."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    done: list[Outcome | Failure] = []
    columns = (TextColumn(label.replace("[", "\\[") + "{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not show, transient=False) as bar:
        task = bar.add_task("", total=total)
        for outcome in outcomes:
            done.append(outcome)
            if each is not None:
                each(outcome)
            failed = sum(isinstance(o, Failure) for o in done)
            bar.update(task, advance=1, description=f" ({failed} failed)" if failed else "")
    return sorted(done, key=lambda o: o.index)

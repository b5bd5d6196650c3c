"""The user's design analysis: :func:`plan_study` checks the plan and hands it to :mod:`lmm_bayes.planning`.

Named ``plan_study`` (and its result :class:`~lmm_bayes.StudyPlan`) rather than "design",
because :class:`~lmm_bayes.Design` is already a model's matrices (:mod:`lmm_bayes.spec.design`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from lmm_bayes.calibration.simulate import simulate
from lmm_bayes.calibration.workers import check_executor
from lmm_bayes.inference.methods.registry import METHODS, resolve_method
from lmm_bayes.planning.hierarchy import Hierarchy, expand_grid
from lmm_bayes.planning.result import StudyPlan
from lmm_bayes.planning.runner import PlanContext, PointStore, run_plan
from lmm_bayes.planning.truth import PilotDraws, resolve_quantities, truth_params
from lmm_bayes.results.fit import MixedModelFit
from lmm_bayes.results.summary import check_interval
from lmm_bayes.spec import validate
from lmm_bayes.spec.formula import parse_formula
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.version import __version__

__all__ = ["plan_study"]


def plan_study(
    formula: str,
    sizes: Mapping[str, int],
    *,
    truth: Mapping[str, Any] | MixedModelFit,
    seed: int,
    grid: Mapping[str, Any] | None = None,
    condition: str | None = "within",
    quantities: list[str] | None = None,
    priors: Mapping[str, Any] | None = None,
    n_sims: int = 200,
    executor: Any = None,
    folder: str | os.PathLike | None = None,
    ci: str = "eti",
    prob: float = 0.95,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 2,
    method: str = "auto",
    progressbar: bool = True,
) -> StudyPlan:
    """Bayesian design analysis: how many subjects, neurons and trials to estimate an effect of this size.

    At every design point of ``grid``, ``n_sims`` data sets are drawn from the assumed
    ``truth`` on the planned hierarchy, each is fitted with ``formula``, and the fits'
    intervals give the point's power, expected interval width, coverage, bias, and type S
    and type M errors (Gelman & Carlin 2014), each with its Monte Carlo SE
    (:meth:`StudyPlan.table`).

    Parameters
    ----------
    formula : str
        The analysis model, on the hierarchy's columns: ``subject``, ``neuron`` (nested;
        labels repeat across subjects, so write ``subject:neuron``) or ``item`` (crossed),
        ``trial`` (1, 2, ... within a neuron, or a subject-item pair) and ``condition``
        (−0.5 / +0.5: its coefficient is the difference between the conditions), e.g.
        ``"y ~ condition + (1 + condition | subject) + (1 | subject:neuron)"``. The response
        (any name) is simulated; a Gaussian model.
    sizes : dict
        The base design point: ``{"subjects": 12, "neurons": 5, "trials": 20}`` (trials in
        neurons in subjects) or ``{"subjects": 30, "items": 20}`` (crossed; optional
        ``"trials"``, repetitions per subject and item, 1 by default).
    truth : dict or Fit
        The assumed parameters, as :func:`~lmm_bayes.simulate`'s ``params``: ``"beta"`` (a
        dict by fixed effect), ``"G"`` (per grouping factor a covariance, a number for one
        effect, or ``{"sd": [...], "corr": r}``) and ``"sigma"``. Or a **pilot fit** (an
        ``lb.Fit`` of an LMM with the plan's fixed effects and factors): each simulation then
        draws its truth from the pilot's posterior (the draw chosen by ``(seed, i)``, the same
        at every design point), and power is **assurance**, the chance of success averaged
        over what the pilot leaves uncertain (``attrs["assurance"]``; the table's ``truth`` is
        the mean of the simulations' truths, and type S/M and coverage use each one's own).
    seed : int
        Simulation ``i`` at a design point depends only on ``(seed, the point's sizes, i)``:
        the same whatever the executor, its number of workers or the rest of the grid.
    grid : dict, optional
        Axis -> list of sizes, e.g. ``{"subjects": [8, 12, 16], "trials": [10, 40]}`` (every
        combination); the other sizes stay at ``sizes``. Default: ``sizes`` alone.
    condition : {"within", "between", None}
        Nested: alternating over a neuron's trials, or between subjects. Crossed: within
        subjects and items (a Latin square), or between subjects. None: no condition column.
    quantities : list of str, optional
        What to report: fixed effects (``"condition"``), ``"sigma"``, factors' SDs
        (``"sd(subject)"``, ``"sd(subject, condition)"``: width, coverage, bias only).
        Default: every fixed effect but the intercept.
    priors : dict, optional
        The analysis model's priors, as for :class:`~lmm_bayes.LMM` (overrides of the defaults,
        which are scaled to each simulated data set as they would be to the real one).
    n_sims : int
        Simulations per design point, at least 2; power's Monte Carlo SE is at most
        0.5/√n_sims (0.035 at 200).
    executor : None, "processes", concurrent.futures.Executor or dask.distributed.Client
        As for :func:`~lmm_bayes.sbc`: in this process, a pool of local processes, any
        executor (``ProcessPoolExecutor(max_workers=2)``), or a Dask cluster.
    folder : str or path, optional
        Keep each design point there as it finishes (``point-<sizes>.csv``); a rerun reads
        what is done, says how many points it skips, and runs only the rest. A folder
        holding a plan with other settings is refused.
    ci, prob : str, float
        The interval: equal-tailed 95% by default, so that power matches a two-sided test at
        the 5% level; ``ci="hdi"`` for the package's tables' kind.
    draws, tune, chains, method
        Each fit's settings. Measured on the nested model of the example (12 × 5 × 20
        rows): with the collapsed method a 95% interval's endpoints vary between repeat fits
        by 0.09 posterior SD at 2 chains × 1000 draws (0.12 at 500, 0.17 at 250; the
        width's bias 0.007, 0.02, 0.035 SD), at about 0.2 s a fit either way, hence the
        default. The fit uses ``method="auto"``: the collapsed kernel for a Gaussian model.
    progressbar : bool

    Returns
    -------
    StudyPlan
        ``.table()``, ``.plot()``, ``.failures()``, ``.simulations``.

    Raises
    ------
    TypeError, ValueError
        An unknown size or grid axis, a column the hierarchy lacks, ``n_sims`` below 2, a
        quantity not in the formula, a truth that does not fit the formula, a folder
        holding another plan.

    Notes
    -----
    Power counts every simulation: a fit that raised counts as no detection, and so does
    one that did not converge (a divergence, or the quantity's R-hat above 1.01;
    ``table(unconverged="keep")`` keeps its interval instead); ``n_failed`` and
    ``n_unconverged`` are in the table and ``.failures()`` lists the errors.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> plan = lb.plan_study("y ~ condition + (1 | subject)", {"subjects": 6, "neurons": 1, "trials": 4},
    ...                      truth={"beta": {"Intercept": 0.0, "condition": 1.0}, "G": {"subject": 0.25},
    ...                             "sigma": 1.0},
    ...                      grid={"subjects": [4, 8]}, n_sims=3, seed=1, draws=200, tune=200, progressbar=False)
    >>> t = plan.table()
    >>> t.index.names, t["n_sims"].tolist()
    (FrozenList(['subjects', 'neurons', 'trials', 'quantity']), [3, 3])
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string, got {type(formula).__name__}")
    base = Hierarchy.of(sizes, condition=condition)
    points = expand_grid(base, grid)
    n_sims = validate.check_positive_int(n_sims, "n_sims", minimum=2)
    seed = validate.check_positive_int(seed, "seed", minimum=0)
    ci, prob = check_interval(ci, prob)
    for name, value in (("draws", draws), ("chains", chains)):
        validate.check_positive_int(value, name)
    validate.check_positive_int(tune, "tune", minimum=0)
    validate.check_choice(method, METHODS, "method")
    if not isinstance(progressbar, bool):
        raise TypeError(f"progressbar must be True or False, got {type(progressbar).__name__}")
    check_executor(executor)

    rows = base.rows()
    spec = parse_formula(formula)
    lacking = [c for c in spec.predictor_variables if c not in rows]
    if lacking:
        raise ValueError(f"the formula reads {lacking}, which the planned hierarchy does not have; its columns are "
                         f"{list(rows.columns)}" + ("" if condition else " (condition=None drops 'condition')"))
    pilot = PilotDraws.of(truth) if isinstance(truth, MixedModelFit) else None
    if pilot is not None:  # the pilot's parameters must be the plan's, before any is used
        noise = np.random.default_rng(0).standard_normal(len(rows))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pilot.check(MixedModel(formula, rows.assign(**{spec.response: noise})).design)
    params = truth_params(truth) if pilot is None else pilot.params(0)
    sim = simulate(formula, rows, params=params, seed=seed)  # checks the truth against the formula
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedModel(formula, sim.data, priors=priors)  # the priors checked here, not in every fit
    resolve_method(model.design, method, sampler="nutpie")  # refused here, not in every fit
    found = resolve_quantities(quantities, model.design)
    ctx = PlanContext(
        formula=formula, params=params, quantities=found, truth=tuple(float(q.of(sim.truth)) for q in found),
        fit_kwargs=(("draws", draws), ("tune", tune), ("chains", chains), ("method", method)),
        ci=ci, prob=prob, seed=seed, parent_pid=os.getpid(), pilot=pilot, priors=priors,
    )
    settings = {"formula": formula, "kind": "nested" if base.nested else "crossed", "condition": condition,
                "truth": params if pilot is None else {"pilot": truth.model.formula, "draws": pilot.digest()},
                "assurance": pilot is not None, "quantities": [q.name for q in found], "seed": seed, "ci": ci, "prob": prob,
                "priors": priors, "draws": draws, "tune": tune, "chains": chains, "method": method}
    store = None if folder is None else PointStore(folder, {**settings, "version": __version__})
    sims, skipped = run_plan(ctx, points, n_sims, executor=executor, store=store, progressbar=progressbar)
    varied = tuple(a for a in base.axes if a in (grid or {}) and len(grid[a]) > 1)
    return StudyPlan(simulations=sims, axes=base.axes, varied=varied,
                     attrs={**settings, "n_sims": n_sims, "version": __version__}, skipped=tuple(skipped))

"""Simulation-based calibration (Talts et al. 2018), in-process or on a Dask cluster.

For each simulation: draw the hyperparameters (β, the SDs and correlations of
every grouping factor, σ) from the prior, draw b and y on the model's design,
fit, and record the rank of each true value among the thinned posterior draws.
If the fitting is calibrated, every parameter's ranks are uniform on
``0..n_draws``; :class:`SBCResult` tests that, reports the coverage of central
intervals and draws the ECDF-difference plot of Säilynoja et al. (2022).

The prior draws come from PyMC itself (``pm.draw`` on the graph that fitting
samples, :func:`~lmm_bayes.inference.graph.build_model`), so the check cannot drift
from the prior it checks. The parameters are named and laid out by
:mod:`lmm_bayes.inference.layout` (:func:`~lmm_bayes.inference.layout.hyperparameters`).

Simulation ``i`` depends only on ``(seed, i)``: its hyperparameters are the ``i``-th
draw of one prior stream seeded by ``seed``, and its b, y and fit seed come from the
``i``-th child of ``numpy.random.SeedSequence(seed)``. So the same seed gives the
same ranks whichever executor runs it, and the first ``k`` simulations of a longer
run equal a run of ``k``.

A simulation whose fit raises is recorded (:attr:`SBCResult.failures`: index, seed,
error) and the run goes on; the ranks and tests cover the simulations that finished
(``sim`` keeps their indices). If every simulation fails, :func:`sbc` raises a
``ValueError`` naming the first failure. ``KeyboardInterrupt`` stops the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import lazy_loader as lazy
import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.calibration.sbc_result import SBCResult, failures_table, ranks_dataset
from lmm_bayes.calibration.simulate import draw_glm_response, draw_response, plain_response
from lmm_bayes.calibration.workers import Context, Failure, Outcome, Task, check_executor, collect, execute
from lmm_bayes.inference.graph import build_model
from lmm_bayes.inference.standardize import standardize
from lmm_bayes.inference.layout import (
    BETA,
    Hyperparameter,
    covariance_values,
    hyperparameter_draws,
    hyperparameters,
)
from lmm_bayes.inference.methods.registry import METHODS, resolve_method
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.spec.priors import Priors, resolve_priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

__all__ = ["SBCResult", "draw_prior", "failures_table", "ranks_dataset", "sbc"]

# ---------------------------------------------------------------- the prior


def _prior_samples(design: Design, priors: Priors, draws: int, rng: Any) -> xr.Dataset:
    """``draws`` draws of the hyperparameters from the model's own PyMC graph: dims (chain=1, draw, ...).

    One compiled function (``pm.draw``) makes every draw, one after another, so the
    first k of n draws equal a run of k. The graph is the standardized one every fit samples
    (:mod:`lmm_bayes.inference.standardize`: priors at the means of the predictors), its
    draws mapped to the user's parameterisation as a fit's are.
    """
    working = standardize(design, centered=priors.centered)
    model = build_model(working.design, working.priors(priors))
    names = list(dict.fromkeys(h.var for h in hyperparameters(design)))  # beta (if any), sigma, sd, corr
    values = pm.draw([model[n] for n in names], draws=draws, random_seed=rng)
    if draws == 1:  # pm.draw returns a single draw without the draws axis
        values = [v[None] for v in values]
    dims = {n: tuple(model.named_vars_to_dims.get(n, ())) for n in names}
    coords = {d: list(model.coords[d]) for n in names for d in dims[n]}
    return working.to_user(xr.Dataset({n: (("chain", "draw", *dims[n]), v[None]) for n, v in zip(names, values)},
                                      coords=coords))


def _parameter_values(
    prior: xr.Dataset, design: Design
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """``(beta (draw, p), {group: G (draw, q, q)}, aux (draw,) or None)`` of prior draws (one chain).

    ``aux`` is the family's extra parameter: σ (Gaussian), the dispersion (negative
    binomial), or None (Poisson, Bernoulli, binomial).
    """
    n = prior.sizes["draw"]
    beta = prior[BETA].values[0] if BETA in prior else np.zeros((n, 0))
    G = {g.name: covariance_values(prior, g)[0] for g in design.groups}
    aux = design.family.aux
    return beta, G, prior[aux].values[0] if aux else None


def draw_prior(
    design: Design, priors: Priors, rng: Any, *, draws: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """Draw ``(beta, {group: G}, sigma)`` from the priors of a design, with PyMC's own distributions.

    For a generalized model the third is the family's extra parameter (the negative
    binomial's dispersion) or None (Poisson, Bernoulli, binomial).

    The hyperparameters (β, σ, every factor's SDs and correlations) are drawn by
    ``pm.draw`` from the graph that fitting samples
    (:func:`~lmm_bayes.inference.graph.build_model`), so calibration cannot drift from
    the prior: SDs from each effect's SD prior, correlations of a correlated block from
    PyMC's LKJ(eta); effects in different blocks are independent.

    Parameters
    ----------
    design : Design
    priors : Priors
    rng : int, numpy.random.Generator or None
        Seeds the draws (a Generator gives one integer seed).
    draws : int, optional
        ``None`` (default): one draw, ``beta`` (p,), G (q, q), ``sigma`` a float.
        An int: that many draws, stacked on a leading axis (one compiled function
        makes all of them: much faster than calling this in a loop).

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> beta, G, sigma = draw_prior(m.design, m.priors, np.random.default_rng(1))
    >>> beta.shape, G["Subject"].shape, sigma > 0
    ((2,), (2, 2), True)
    >>> beta, G, sigma = draw_prior(m.design, m.priors, np.random.default_rng(1), draws=100)
    >>> beta.shape, G["Subject"].shape, sigma.shape
    ((100, 2), (100, 2, 2), (100,))
    """
    n = 1 if draws is None else validate.check_positive_int(draws, "draws")
    beta, G, sigma = _parameter_values(_prior_samples(design, priors, n, rng), design)
    if draws is None:
        return beta[0], {k: v[0] for k, v in G.items()}, None if sigma is None else float(sigma[0])
    return beta, G, sigma


# ---------------------------------------------------------------- public


def sbc(
    model: MixedModel,
    *,
    n_sims: int,
    draws: int,
    seed: int,
    executor: Any = None,
    thin: int = 2,
    tune: int | None = None,
    chains: int = 2,
    method: str = "auto",
    sampler: str = "nutpie",
    sim_priors: Priors | Mapping[str, Any] | None = None,
    centered: bool = False,
    progressbar: bool = True,
) -> SBCResult:
    """Simulation-based calibration of a model on its own design.

    Parameters
    ----------
    model : LMM
        Its design (predictors and grouping) and priors are used; its response is not. A
        :class:`~lmm_bayes.GLMM` draws its responses from its family (at the design's
        offsets and trials) and fits with its own method (the full method; ``centered``).
    n_sims : int
        Number of simulated data sets (a few hundred for a real check).
    draws : int
        Posterior draws per chain; ranks are taken among ``chains * ceil(draws / thin)``.
    seed : int
        Simulation ``i`` depends only on ``(seed, i)``, whatever the executor.
    executor : None, "processes", dask.distributed.Client or concurrent.futures.Executor
        ``None`` fits one data set after another in this process; ``"processes"``
        uses a pool of local worker processes; a Dask client runs each simulation
        as a task (``LocalCluster`` on a laptop, dask-jobqueue on a cluster).
        Each worker compiles the model once and swaps in new data, in its own
        PyTensor compile directory.
    thin : int
        Keep every ``thin``-th draw, to make the ranked draws nearly independent.
    tune : int, optional
        Tuning steps per chain; default ``max(draws, 200)``.
    chains : int
    method, sampler : str
        As for :meth:`lmm_bayes.LMM.fit`.
    centered : bool
        As for :meth:`lmm_bayes.LMM.fit`: for a GLMM, hierarchical centering of the full method (for
        clusters that hold much data).
    sim_priors : Priors or mapping, optional
        Draw the truth from these priors instead of the model's (overrides as
        for :class:`~lmm_bayes.LMM`); a prior that differs from the fitting prior makes a
        deliberately miscalibrated check.
    progressbar : bool
        A progress bar over simulations.

    Returns
    -------
    SBCResult
        Of the simulations that finished; those whose fit raised are in its ``failures``.

    Raises
    ------
    ValueError
        Every simulation failed (the message names the first one's index, seed and error).

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"g": np.repeat(list("abcdef"), 5), "y": 0.0})
    >>> res = lb.sbc(lb.LMM("y ~ 1 + (1 | g)", df), n_sims=3, draws=50, seed=1, progressbar=False)
    >>> res.ranks["g_sd"].dims, res.n_draws
    (('sim', 'g_effect'), 50)
    """
    if not isinstance(model, MixedModel):
        raise TypeError(f"model must be an lb.LMM, got {type(model).__name__}")
    n_sims = validate.check_positive_int(n_sims, "n_sims")
    draws = validate.check_positive_int(draws, "draws")
    chains = validate.check_positive_int(chains, "chains")
    thin = validate.check_positive_int(thin, "thin")
    seed = validate.check_positive_int(seed, "seed", minimum=0)
    tune = max(draws, 200) if tune is None else validate.check_positive_int(tune, "tune", minimum=0)
    if thin > draws:
        raise ValueError(f"thin ({thin}) must not exceed draws ({draws})")
    for name, flag in (("progressbar", progressbar), ("centered", centered)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {type(flag).__name__}")
    check_executor(executor)
    # the fits' settings, checked once here rather than failing in every simulation
    validate.check_choice(method, METHODS, "method")
    resolve_method(model.design, method, centered=centered, sampler=sampler)  # refused here, not in every fit
    SamplerSettings(sampler=sampler, draws=draws, tune=tune, chains=chains, progressbar=progressbar)
    if model.design.residual is not None:  # its simulations draw sigma^2 I errors from the full graph
        raise ValueError("SBC of a model with sigma= or ar= is not available yet: it simulates responses from the "
                         "model's full graph, which has one residual SD and independent rows")
    if (design := model.design).reduction is not None:  # its rows are a sample: SBC would calibrate another model
        raise ValueError(f"SBC simulates a response for every row; this model was built from {design.reduction.source} "
                         f"and keeps a sample of {design.n:,} rows: run SBC on an in-memory model of the formula")
    response = plain_response(model.spec)
    truth_priors = _sim_priors(model, sim_priors)

    params = hyperparameters(design)
    formula, data, glm = _refit_recipe(model, response)
    ctx = Context(
        formula=formula,
        data=data,
        response=response,
        priors=model.priors,
        params=params,
        # every refit on the model's own working scale: the same working priors, so a PyMC graph
        # (method="full") is compiled once for all simulations, as before the standardization. Scales
        # in powers of two keep the priors' numbers exact: nutpie's numba graph of the full model fails
        # to start with sigma ~ HalfNormal(1.129) (found here, already so on the raw scale; 1, 0.5, 2 run)
        fit_kwargs=tuple(dict(draws=draws, tune=tune, chains=chains, method=method, sampler=sampler,
                              centered=centered,
                              scales=standardize(design, centered=model.priors.centered).scales.powers_of_two(),
                              ).items()),
        thin=thin,
        parent_pid=os.getpid(),
        glm=glm,
    )
    tasks = _simulate_tasks(design, truth_priors, params, n_sims, seed)
    results = collect(execute(ctx, tasks, executor), n_sims, progressbar)
    outcomes = [o for o in results if isinstance(o, Outcome)]
    failures = [o for o in results if isinstance(o, Failure)]
    if not outcomes:
        raise ValueError(f"all {n_sims} simulations failed; the first, {failures[0].describe()}")

    n_draws = chains * len(range(0, draws, thin))
    attrs = {"formula": model.formula, "priors": model.priors.to_json(), "seed": seed, "thin": thin,
             "draws": draws, "chains": chains, "n_draws": n_draws, "n_sims": n_sims, "failed": len(failures),
             "sim_priors": truth_priors.to_json(), "method": method, "sampler": sampler, "centered": int(centered),
             **{k: str(v) for k, v in glm}}
    sims = [o.index for o in outcomes]
    ranks = ranks_dataset(np.stack([o.ranks for o in outcomes]), params, attrs, sims=sims)
    diagnostics = pd.DataFrame(
        [{**o.diagnostics, "seconds": o.seconds} for o in outcomes], index=pd.Index(sims, name="sim"),
    )
    return SBCResult.from_ranks(ranks, n_draws, diagnostics=diagnostics, failures=failures_table(failures))


def _sim_priors(model: MixedModel, overrides: Priors | Mapping[str, Any] | None) -> Priors:
    """The model's priors with ``overrides`` applied (as :class:`~lmm_bayes.LMM` applies them to the defaults)."""
    if overrides is None or isinstance(overrides, Priors):
        return model.priors if overrides is None else overrides
    if not isinstance(overrides, Mapping):
        raise TypeError(
            f"sim_priors must be lb.Priors or a dict keyed by parameter, got {type(overrides).__name__}"
        )
    base = model.priors
    merged: dict[str, Any] = {**dict(base.fixed)}
    for aux in ("sigma", "dispersion"):  # the family's extra parameter, if it has one
        if getattr(base, aux, None) is not None:
            merged[aux] = getattr(base, aux)
    merged.update({g: {**{f"sd({e})": p for e, p in gp.sd}, "eta": gp.eta} for g, gp in base.groups})
    for key, value in overrides.items():
        if key in base.group_by_name and isinstance(value, Mapping):
            kept = {k: v for k, v in merged[key].items() if not ("sd" in value and k.startswith("sd("))}
            merged[key] = {**kept, **value}
        else:
            merged[key] = value
    return resolve_priors(model.design, merged)


def _simulate_tasks(design: Design, priors: Priors, params: Sequence[Hyperparameter], n_sims: int,
                    seed: int) -> list[Task]:
    """The truth and y of every simulation.

    The hyperparameters are the first ``n_sims`` draws of one prior stream seeded by
    ``seed``; simulation ``i``'s b, y and fit seed come from the ``i``-th child of
    ``SeedSequence(seed)``. So simulation ``i`` depends only on ``(seed, i)``.
    """
    prior = _prior_samples(design, priors, n_sims, np.random.default_rng(np.random.SeedSequence(seed)))
    truths = hyperparameter_draws(prior, params).transpose("chain", "draw", "parameter").values[0]
    beta, G, aux = _parameter_values(prior, design)
    family = design.family
    tasks = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_sims)):
        Gi, rng = {k: v[i] for k, v in G.items()}, np.random.default_rng(child)
        if family.is_gaussian:
            y, _ = draw_response(design.X, design.groups, beta[i], Gi, aux[i], rng)
        else:
            y, _ = draw_glm_response(design.X, design.groups, beta[i], Gi, family, rng,
                                     aux=None if aux is None else aux[i], trials=design.trials,
                                     offset=design.offset)
        tasks.append(Task(index=i, y=y, truth=truths[i].astype(float), seed=int(child.generate_state(1)[0])))
    return tasks


def _refit_recipe(model: MixedModel, response: str) -> tuple[str, pd.DataFrame, tuple[tuple[str, Any], ...]]:
    """The formula, the data without the response, and a GLMM's family arguments, to refit each simulation.

    A binomial model written ``cbind(successes, failures)`` is refitted as
    ``successes ~ ...`` with its trials in a column of their own, so each simulated
    response keeps the design's trials whatever the failures expression was.
    """
    design = model.design
    data = design.data.drop(columns=[response])
    family = design.family
    if family.is_gaussian and not hasattr(model, "glm_attrs"):
        return model.formula, data, ()
    attrs = dict(model.glm_attrs)
    glm: dict[str, Any] = {"family": family.name, "link": family.link, "trials": None}
    formula = model.formula
    if attrs["trials_kind"] == "column":
        glm["trials"] = attrs["trials"]
    elif attrs["trials_kind"] == "number":
        glm["trials"] = int(attrs["trials"])
    elif family.needs_trials:  # cbind(successes, failures): the trials as a column
        column = "sbc_trials"
        while column in data:
            column += "_"
        data = data.assign(**{column: design.trials})
        formula = f"{response} ~{formula.split('~', 1)[1]}"
        glm["trials"] = column
    return formula, data, tuple(glm.items())

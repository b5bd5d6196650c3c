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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import stats

from lmm_bayes.calibration.simulate import draw_response, plain_response
from lmm_bayes.calibration.workers import Context, Failure, Outcome, Task, check_executor, collect, execute
from lmm_bayes.inference.graph import build_model
from lmm_bayes.inference.layout import (
    BETA,
    SIGMA,
    Hyperparameter,
    covariance_values,
    hyperparameter_draws,
    hyperparameters,
)
from lmm_bayes.inference.methods import METHODS
from lmm_bayes.inference.sampling import SamplerSettings
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.family import require_gaussian
from lmm_bayes.spec.priors import Priors, resolve_priors

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.spec.model import LMM

__all__ = ["SBCResult", "draw_prior", "failures_table", "ranks_dataset", "sbc"]

_COVERAGE = (0.5, 0.9)


# ---------------------------------------------------------------- the prior


def _prior_samples(design: Design, priors: Priors, draws: int, rng: Any) -> xr.Dataset:
    """``draws`` draws of the hyperparameters from the model's own PyMC graph: dims (chain=1, draw, ...).

    One compiled function (``pm.draw``) makes every draw, one after another, so the
    first k of n draws equal a run of k.
    """
    model = build_model(design, priors)
    names = list(dict.fromkeys(h.var for h in hyperparameters(design)))  # beta (if any), sigma, sd, corr
    values = pm.draw([model[n] for n in names], draws=draws, random_seed=rng)
    if draws == 1:  # pm.draw returns a single draw without the draws axis
        values = [v[None] for v in values]
    dims = {n: tuple(model.named_vars_to_dims.get(n, ())) for n in names}
    coords = {d: list(model.coords[d]) for n in names for d in dims[n]}
    return xr.Dataset({n: (("chain", "draw", *dims[n]), v[None]) for n, v in zip(names, values)},
                      coords=coords)


def _parameter_values(
    prior: xr.Dataset, design: Design
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``(beta (draw, p), {group: G (draw, q, q)}, sigma (draw,))`` of prior draws (one chain)."""
    n = prior.sizes["draw"]
    beta = prior[BETA].values[0] if BETA in prior else np.zeros((n, 0))
    G = {g.name: covariance_values(prior, g)[0] for g in design.groups}
    return beta, G, prior[SIGMA].values[0]


def draw_prior(
    design: Design, priors: Priors, rng: Any, *, draws: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """Draw ``(beta, {group: G}, sigma)`` from the priors of a design, with PyMC's own distributions.

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
        return beta[0], {k: v[0] for k, v in G.items()}, float(sigma[0])
    return beta, G, sigma


# ---------------------------------------------------------------- ranks


def ranks_dataset(
    ranks: np.ndarray, params: Sequence[Hyperparameter], attrs: Mapping[str, Any], *,
    sims: Sequence[int] | None = None,
) -> xr.Dataset:
    """Ranks (sim, parameter) as a Dataset named like the posterior, one variable per ``Hyperparameter.var``.

    ``beta`` on (``sim``, ``coef``), ``sigma`` on ``sim``, ``{g}_sd`` on (``sim``,
    ``{g}_effect``), ``{g}_corr`` on (``sim``, ``{g}_pair``) with coords like ``"Intercept, x"``.
    ``sims`` labels the rows (the simulations' indices; default ``0, 1, ...``).

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> from lmm_bayes.inference.layout import hyperparameters
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> ds = ranks_dataset(np.zeros((3, 6), int), hyperparameters(m.design), {})
    >>> ds["Subject_corr"].dims, ds["Subject_pair"].values.tolist()
    (('sim', 'Subject_pair'), ['Intercept, Days'])
    """
    by_var: dict[str, list[int]] = {}
    for k, p in enumerate(params):
        by_var.setdefault(p.var, []).append(k)
    data, coords = {}, {"sim": np.arange(ranks.shape[0]) if sims is None else np.asarray(sims, dtype=int)}
    for var, idx in by_var.items():
        first = params[idx[0]]
        if first.dim is None:
            data[var] = ("sim", ranks[:, idx[0]])
        else:
            data[var] = (("sim", first.dim), ranks[:, idx])
            coords[first.dim] = [params[k].coord for k in idx]
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))


def _flat(ds: xr.Dataset, dim: str = "sim") -> pd.DataFrame:
    """A (sim × parameter) table of a ranks dataset, labelled ``beta[Intercept]``."""
    cols = {}
    for name, da in ds.data_vars.items():
        other = [d for d in da.dims if d != dim]
        if not other:
            cols[str(name)] = da.values
            continue
        stacked = da.stack(_p=other) if len(other) > 1 else da.rename({other[0]: "_p"})
        for k, label in enumerate(stacked["_p"].values):
            cols[f"{name}[{label}]"] = stacked.isel(_p=k).values
    return pd.DataFrame(cols, index=pd.Index(ds[dim].values, name=dim))


# ---------------------------------------------------------------- the result


def _chi_square(ranks: np.ndarray, n_draws: int, bins: int) -> tuple[float, float]:
    """Chi-square test of discrete uniformity on ``0..n_draws``, ranks pooled into ``bins``."""
    which = np.arange(n_draws + 1) * bins // (n_draws + 1)
    expected = np.bincount(which, minlength=bins) / (n_draws + 1) * len(ranks)
    observed = np.bincount(which[ranks], minlength=bins)
    res = stats.chisquare(observed, expected)
    return float(res.statistic), float(res.pvalue)


def _default_bins(n_sims: int, n_draws: int) -> int:
    return int(min(n_draws + 1, max(2, min(20, n_sims // 10))))


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Ranks of the true hyperparameters among posterior draws, and their checks.

    Attributes
    ----------
    ranks : xarray.Dataset
        Dims ``sim`` and the parameter's own (``beta`` on ``coef``, ``{g}_sd``
        on ``{g}_effect``, ``{g}_corr`` on ``{g}_pair``, ``sigma``); values in
        ``0..n_draws``.
    n_draws : int
        Thinned posterior draws per simulation (the largest possible rank).
    uniformity : pandas.DataFrame
        Per parameter: ``chi2``, ``df``, ``p_value`` of a chi-square test that
        the ranks are uniform (small p: miscalibrated), and ``bins``.
    coverage : pandas.DataFrame
        Per parameter, the share of simulations whose truth lies in the central
        50% and 90% posterior interval (``"50%"``, ``"90%"``); calibrated: 0.5 and 0.9.
    diagnostics : pandas.DataFrame
        Per simulation: the sampler's health as :meth:`Fit.diagnostics` reports it
        (``divergences``, ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` of the
        hyperparameters, ``min_bfmi``, ``treedepth_hits``) and ``seconds``.
    failures : pandas.DataFrame
        The simulations whose fit raised, left out of everything above: indexed by
        ``sim``, columns ``seed`` (the fit's), ``error`` (the type) and ``message``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ranks = xr.Dataset({"sigma": ("sim", np.random.default_rng(1).integers(0, 100, 50))})
    >>> res = SBCResult.from_ranks(ranks, n_draws=99)
    >>> res.uniformity.columns.tolist(), res.coverage.columns.tolist()
    (['chi2', 'df', 'p_value', 'bins'], ['50%', '90%'])
    """

    ranks: xr.Dataset
    n_draws: int
    uniformity: pd.DataFrame
    coverage: pd.DataFrame
    diagnostics: pd.DataFrame
    failures: pd.DataFrame = field(default_factory=lambda: failures_table([]))

    @classmethod
    def from_ranks(cls, ranks: xr.Dataset, n_draws: int, *, diagnostics: pd.DataFrame | None = None,
                   bins: int | None = None, failures: pd.DataFrame | None = None) -> SBCResult:
        """Compute the tests and coverage from a ranks dataset (dim ``sim``); ``failures`` as :func:`sbc` makes."""
        flat = _flat(ranks)
        n_draws = validate.check_positive_int(n_draws, "n_draws")
        if flat.to_numpy().min() < 0 or flat.to_numpy().max() > n_draws:
            raise ValueError(f"ranks must lie in 0..n_draws = 0..{n_draws}")
        if bins is None:
            bins = _default_bins(len(flat), n_draws)
        bins = validate.check_positive_int(bins, "bins", minimum=2)
        rows = {c: (*_chi_square(flat[c].to_numpy(), n_draws, bins), bins - 1) for c in flat}
        uniformity = pd.DataFrame.from_dict(rows, orient="index", columns=["chi2", "p_value", "df"])
        uniformity = uniformity[["chi2", "df", "p_value"]].assign(bins=bins).rename_axis("parameter")
        q = flat.to_numpy() / n_draws
        coverage = pd.DataFrame(
            {f"{p:.0%}": ((q >= (1 - p) / 2) & (q <= (1 + p) / 2)).mean(axis=0) for p in _COVERAGE},
            index=pd.Index(flat.columns, name="parameter"),
        )
        if diagnostics is None:
            diagnostics = pd.DataFrame(index=flat.index)
        return cls(ranks=ranks, n_draws=n_draws, uniformity=uniformity, coverage=coverage,
                   diagnostics=diagnostics, failures=failures_table([]) if failures is None else failures)

    def pit(self) -> xr.Dataset:
        """The ranks as probability integral transforms in (0, 1): ``(rank + 0.5) / (n_draws + 1)``."""
        return (self.ranks + 0.5) / (self.n_draws + 1)

    def plot(self, *, coverage: bool = False, prob: float = 0.95) -> Figure:
        """ECDF of the ranks minus the uniform CDF, one panel per parameter.

        The grey band is the simultaneous ``prob`` band of Säilynoja et al.
        (2022), computed by :func:`arviz_stats.ecdf_utils.ecdf_pit`: a calibrated
        parameter's line leaves it with probability ``1 - prob``. A line above
        zero on the left (below on the right) means the truth tends to be low
        (high) in the posterior; a ∪ shape means too narrow posteriors, a ∩
        shape too wide. ``coverage=True`` plots the coverage of central
        intervals against their width instead. (For the Dataset form, use
        :meth:`pit` with :func:`arviz_plots.plot_ecdf_pit`.)

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> ranks = xr.Dataset({"sigma": ("sim", np.random.default_rng(1).integers(0, 100, 50))})
        >>> fig = SBCResult.from_ranks(ranks, n_draws=99).plot()
        >>> [ax.get_title() for ax in fig.axes]
        ['sigma']
        """
        import matplotlib.pyplot as plt
        from arviz_stats.ecdf_utils import ecdf_pit

        prob = validate.check_probability(prob, "prob")
        u = _flat(self.pit())
        if coverage:
            u = 2 * (u - 0.5).abs()
        ncols = min(4, u.shape[1])
        nrows = -(-u.shape[1] // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), sharex=True,
                                 sharey=True, squeeze=False, layout="constrained")
        for ax, name in zip(axes.flat, u.columns):
            x, ecdf, lower, upper = ecdf_pit(u[name].to_numpy(), prob, 1000, rng=np.random.default_rng(0))
            ax.fill_between(x, lower - x, upper - x, step="post", color="0.85", lw=0)
            ax.step(x, ecdf - x, where="post", color="C0")
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
            ax.set_title(name, fontsize="medium")
        for ax in axes.flat[u.shape[1]:]:
            ax.remove()
        fig.supxlabel("central interval width" if coverage else "fractional rank (PIT)")
        fig.supylabel("coverage - width" if coverage else "ECDF - uniform CDF")
        return fig

    def __repr__(self) -> str:
        table = self.uniformity[["p_value"]].join(self.coverage)
        failed = ""
        if len(self.failures):
            first = self.failures.iloc[0]
            message = (str(first["message"]).strip().splitlines() or [""])[0]
            failed = (f"{len(self.failures)} simulation(s) failed and are left out (see .failures); the first, "
                      f"simulation {self.failures.index[0]} (seed {first['seed']}), raised {first['error']}: "
                      f"{message}\n")
        return (f"SBCResult: {self.ranks.sizes['sim']} simulations, ranks in 0..{self.n_draws}\n{failed}"
                f"{table.to_string(float_format=lambda v: f'{v:.3f}')}")


def failures_table(failures: Sequence[Failure]) -> pd.DataFrame:
    """The failed simulations as :attr:`SBCResult.failures` holds them (indexed by ``sim``)."""
    rows = [(f.index, f.seed, f.error, f.message) for f in failures]
    table = pd.DataFrame(rows, columns=["sim", "seed", "error", "message"]).astype({"sim": int, "seed": int})
    return table.set_index("sim")


# ---------------------------------------------------------------- public


def sbc(
    model: LMM,
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
    progressbar: bool = True,
) -> SBCResult:
    """Simulation-based calibration of a model on its own design.

    Parameters
    ----------
    model : LMM
        Its design (predictors and grouping) and priors are used; its response is not.
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
        As for :meth:`LMM.fit`.
    sim_priors : Priors or mapping, optional
        Draw the truth from these priors instead of the model's (overrides as
        for :class:`LMM`); a prior that differs from the fitting prior makes a
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
    from lmm_bayes.spec.model import LMM

    if not isinstance(model, LMM):
        raise TypeError(f"model must be an lb.LMM, got {type(model).__name__}")
    require_gaussian(model.design, "sbc")
    n_sims = validate.check_positive_int(n_sims, "n_sims")
    draws = validate.check_positive_int(draws, "draws")
    chains = validate.check_positive_int(chains, "chains")
    thin = validate.check_positive_int(thin, "thin")
    seed = validate.check_positive_int(seed, "seed", minimum=0)
    tune = max(draws, 200) if tune is None else validate.check_positive_int(tune, "tune", minimum=0)
    if thin > draws:
        raise ValueError(f"thin ({thin}) must not exceed draws ({draws})")
    if not isinstance(progressbar, bool):
        raise TypeError(f"progressbar must be True or False, got {type(progressbar).__name__}")
    check_executor(executor)
    # the fits' settings, checked once here rather than failing in every simulation
    validate.check_choice(method, METHODS, "method")
    SamplerSettings(sampler=sampler, draws=draws, tune=tune, chains=chains, progressbar=progressbar)
    if (design := model.design).reduction is not None:  # its rows are a sample: SBC would calibrate another model
        raise ValueError(f"SBC simulates a response for every row; this model was built from {design.reduction.source} "
                         f"and keeps a sample of {design.n:,} rows: run SBC on an in-memory model of the formula")
    response = plain_response(model.spec)
    truth_priors = _sim_priors(model, sim_priors)

    params = hyperparameters(design)
    ctx = Context(
        formula=model.formula,
        data=design.data.drop(columns=[response]),
        response=response,
        priors=model.priors,
        params=params,
        fit_kwargs=tuple(dict(draws=draws, tune=tune, chains=chains, method=method, sampler=sampler).items()),
        thin=thin,
        parent_pid=os.getpid(),
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
             "sim_priors": truth_priors.to_json(), "method": method, "sampler": sampler}
    sims = [o.index for o in outcomes]
    ranks = ranks_dataset(np.stack([o.ranks for o in outcomes]), params, attrs, sims=sims)
    diagnostics = pd.DataFrame(
        [{**o.diagnostics, "seconds": o.seconds} for o in outcomes], index=pd.Index(sims, name="sim"),
    )
    return SBCResult.from_ranks(ranks, n_draws, diagnostics=diagnostics, failures=failures_table(failures))


def _sim_priors(model: LMM, overrides: Priors | Mapping[str, Any] | None) -> Priors:
    """The model's priors with ``overrides`` applied (as :class:`LMM` applies them to the defaults)."""
    if overrides is None or isinstance(overrides, Priors):
        return model.priors if overrides is None else overrides
    if not isinstance(overrides, Mapping):
        raise TypeError(
            f"sim_priors must be lb.Priors or a dict keyed by parameter, got {type(overrides).__name__}"
        )
    base = model.priors
    merged: dict[str, Any] = {**dict(base.fixed), "sigma": base.sigma}
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
    beta, G, sigma = _parameter_values(prior, design)
    tasks = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_sims)):
        y, _ = draw_response(design.X, design.groups, beta[i], {k: v[i] for k, v in G.items()}, sigma[i],
                             np.random.default_rng(child))
        tasks.append(Task(index=i, y=y, truth=truths[i].astype(float), seed=int(child.generate_state(1)[0])))
    return tasks

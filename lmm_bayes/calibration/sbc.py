"""Simulation-based calibration (Talts et al. 2018), in-process or on a Dask cluster.

For each simulation: draw the hyperparameters (β, the SDs and correlations of
every grouping factor, σ) from the prior, draw b and y on the model's design,
fit, and record the rank of each true value among the thinned posterior draws.
If the fitting is calibrated, every parameter's ranks are uniform on
``0..n_draws``; :class:`SBCResult` tests that, reports the coverage of central
intervals and draws the ECDF-difference plot of Säilynoja et al. (2022).

Simulation ``i`` depends only on ``(seed, i)`` (its seed is the ``i``-th child
of ``numpy.random.SeedSequence(seed)``), so the same seed gives the same ranks
whichever executor runs it, and the first ``k`` simulations of a longer run
equal a run of ``k``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from lmm_bayes.calibration.simulate import _draw, _plain_response, _Term, _terms_of, _truth
from lmm_bayes.calibration.workers import _check_executor, _Context, _execute, _progress, _Task
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.priors import Prior, Priors, resolve_priors

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.spec.model import LMM

__all__ = ["SBCResult", "sbc", "draw_prior"]

#: prior samplers in PyMC's parameterisation, keyed by distribution name
_PRIOR_DRAWS: dict[str, Callable[..., float]] = {
    "Normal": lambda rng, mu, sigma: rng.normal(mu, sigma),
    "StudentT": lambda rng, nu, mu, sigma: mu + sigma * rng.standard_t(nu),
    "HalfNormal": lambda rng, sigma: abs(rng.normal(0.0, sigma)),
    "Exponential": lambda rng, lam: rng.exponential(1.0 / lam),
    "HalfStudentT": lambda rng, nu, sigma: abs(sigma * rng.standard_t(nu)),
    "HalfCauchy": lambda rng, beta: abs(beta * rng.standard_cauchy()),
}
_COVERAGE = (0.5, 0.9)


# ---------------------------------------------------------------- the prior


def _draw_one(prior: Prior, rng: np.random.Generator) -> float:
    return float(_PRIOR_DRAWS[prior.dist](rng, **prior.kwargs))


def _lkj_corr(q: int, eta: float, rng: np.random.Generator) -> np.ndarray:
    """A q×q correlation matrix from LKJ(eta), by the onion method (as PyMC's ``LKJCorr``)."""
    if q == 1:
        return np.ones((1, 1))
    beta = eta - 1.0 + q / 2.0
    r = 2.0 * rng.beta(beta, beta) - 1.0
    P = np.eye(q)
    P[0, 1], P[1, 1] = r, np.sqrt(1.0 - r**2)
    for m in range(2, q):
        beta -= 0.5
        y = rng.beta(m / 2.0, beta)
        z = rng.standard_normal(m)
        P[:m, m] = np.sqrt(y) * z / np.linalg.norm(z)
        P[m, m] = np.sqrt(1.0 - y)
    return P.T @ P


def draw_prior(
    design: Design, priors: Priors, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """One draw of ``(beta, {group: G}, sigma)`` from the priors of a design.

    SDs come from each effect's SD prior, correlations of a correlated block
    from LKJ(eta); effects in different blocks are independent.

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> beta, G, sigma = draw_prior(m.design, m.priors, np.random.default_rng(1))
    >>> beta.shape, G["Subject"].shape, sigma > 0
    ((2,), (2, 2), True)
    """
    fixed = priors.fixed_by_name
    beta = np.array([_draw_one(fixed[c], rng) for c in design.X_columns])
    G = {}
    for g in design.groups:
        gp = priors.group_by_name[g.name]
        sd = np.array([_draw_one(gp.sd_by_effect[e], rng) for e in g.effects])
        corr = np.eye(g.n_effects)
        for block in g.blocks:
            corr[np.ix_(block, block)] = _lkj_corr(len(block), gp.eta, rng)
        G[g.name] = corr * np.outer(sd, sd)
    return beta, G, _draw_one(priors.sigma, rng)


# ---------------------------------------------------------------- parameters and ranks


@dataclass(frozen=True)
class _Param:
    """One scalar hyperparameter: where it is in the posterior and in the ranks."""

    label: str  # "beta[Intercept]", "g_corr[Intercept, x]"
    var: str
    sel: tuple[tuple[str, str], ...]  # posterior selection
    dim: str | None  # dim in the ranks dataset
    coord: str | None


def _parameters(design) -> list[_Param]:
    ps = [_Param(f"beta[{c}]", "beta", (("coef", c),), "coef", c) for c in design.X_columns]
    ps.append(_Param("sigma", "sigma", (), None, None))
    for g in design.groups:
        ed = g.effect_dim
        ps += [_Param(f"{g.name}_sd[{e}]", f"{g.name}_sd", ((ed, e),), ed, e) for e in g.effects]
        for block in g.blocks:
            for k, i in enumerate(block):
                for j in block[k + 1 :]:
                    pair = f"{g.effects[i]}, {g.effects[j]}"
                    sel = ((ed, g.effects[i]), (f"{ed}_bis", g.effects[j]))
                    ps.append(_Param(f"{g.name}_corr[{pair}]", f"{g.name}_corr", sel, f"{g.name}_pair", pair))
    return ps


def _values(ds: xr.Dataset, params: Sequence[_Param]) -> list[np.ndarray]:
    """Each parameter's values in ``ds`` (any leading dims, e.g. chain and draw)."""
    return [np.asarray(ds[p.var].sel(dict(p.sel)).values) for p in params]


def _ranks(posterior: xr.Dataset, truth: np.ndarray, params: Sequence[_Param], thin: int) -> np.ndarray:
    """How many thinned posterior draws lie below the truth, per parameter."""
    draws = _values(posterior, params)
    return np.array([int(np.sum(d[:, ::thin] < t)) for d, t in zip(draws, truth)])


def _ranks_dataset(ranks: np.ndarray, params: Sequence[_Param], attrs: Mapping[str, Any]) -> xr.Dataset:
    by_var: dict[str, list[int]] = {}
    for k, p in enumerate(params):
        by_var.setdefault(p.var, []).append(k)
    data, coords = {}, {"sim": np.arange(ranks.shape[0])}
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
        Per simulation: ``divergences``, ``min_ess`` and ``max_rhat`` of the
        hyperparameters, ``seconds``.

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

    @classmethod
    def from_ranks(cls, ranks: xr.Dataset, n_draws: int, *, diagnostics: pd.DataFrame | None = None,
                   bins: int | None = None) -> SBCResult:
        """Compute the tests and coverage from a ranks dataset (dim ``sim``)."""
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
                   diagnostics=diagnostics)

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
        return (f"SBCResult: {self.ranks.sizes['sim']} simulations, ranks in 0..{self.n_draws}\n"
                f"{table.to_string(float_format=lambda v: f'{v:.3f}')}")


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
    _check_executor(executor)
    design = model.design
    response = _plain_response(model.spec)
    truth_priors = _sim_priors(model, sim_priors)

    params = tuple(_parameters(design))
    terms = _terms_of(design)
    ctx = _Context(
        formula=model.formula,
        data=design.data.drop(columns=[response]),
        response=response,
        priors=model.priors,
        params=params,
        fit_kwargs=tuple(dict(draws=draws, tune=tune, chains=chains, method=method, sampler=sampler).items()),
        thin=thin,
        parent_pid=os.getpid(),
    )
    tasks = [_simulate_task(i, child, design, truth_priors, terms, params)
             for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_sims))]
    outcomes = _progress(_execute(ctx, tasks, executor), n_sims, progressbar)

    n_draws = chains * len(range(0, draws, thin))
    attrs = {"formula": model.formula, "priors": model.priors.to_json(), "seed": seed, "thin": thin,
             "draws": draws, "chains": chains, "n_draws": n_draws,
             "sim_priors": truth_priors.to_json(), "method": method, "sampler": sampler}
    ranks = _ranks_dataset(np.stack([o.ranks for o in outcomes]), params, attrs)
    diagnostics = pd.DataFrame(
        [(o.divergences, o.min_ess, o.max_rhat, o.seconds) for o in outcomes],
        columns=["divergences", "min_ess", "max_rhat", "seconds"],
        index=pd.Index([o.index for o in outcomes], name="sim"),
    )
    return SBCResult.from_ranks(ranks, n_draws, diagnostics=diagnostics)


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


def _simulate_task(index: int, child: np.random.SeedSequence, design, priors: Priors,
                   terms: Sequence[_Term], params: Sequence[_Param]) -> _Task:
    """Draw the truth and y of simulation ``index`` from its own seed."""
    rng = np.random.default_rng(child)
    beta, G, sigma = draw_prior(design, priors, rng)
    y, _ = _draw(design.X, beta, terms, G, sigma, rng)
    truth = _truth(design.X_columns, beta, terms, G, sigma)
    fit_seed = int(child.generate_state(1)[0])
    return _Task(index=index, y=y, truth=np.array([float(v) for v in _values(truth, params)]), seed=fit_seed)

"""Simulation-based calibration: bookkeeping on fake posteriors, then real SBC runs.

The real runs share one small random-intercept model (compiled once per process)
and one Dask LocalCluster for the module. Ranks are compared bit for bit only within
this process; the Dask workers' ranks are compared within Monte Carlo error.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.calibration import workers
from lmm_bayes.calibration.sbc import SBCResult, draw_prior, ranks_dataset
from lmm_bayes.calibration.workers import Context, Failure, Outcome, Task, rank_truth
from lmm_bayes.inference.layout import hyperparameters

PRIORS = {
    "Intercept": lb.Prior("Normal", mu=0.0, sigma=2.0),
    "sigma": lb.Prior("HalfNormal", sigma=1.0),
    "g": {"sd": lb.Prior("HalfNormal", sigma=1.0)},
}
SBC_ARGS = dict(draws=100, tune=200, chains=2, thin=2, method="collapsed", progressbar=False)
N_SIMS = 40
SEED = 2024


def ri_model() -> lb.LMM:
    df = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(10)], 5), "y": 0.0})
    return lb.LMM("y ~ 1 + (1 | g)", df, priors=PRIORS)


def slopes_model(eta: float = 2.0) -> lb.LMM:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": np.repeat(list("abcdefgh"), 6), "x": rng.normal(size=48),
                       "z": rng.normal(size=48), "y": rng.normal(size=48)})
    return lb.LMM("y ~ x + (1 + x + z | g)", df, priors={"g": {"eta": eta}})


# ---------------------------------------------------------------- the prior


def test_draw_prior_matches_the_priors():
    m = slopes_model(eta=2.0)
    beta, G, sigma = draw_prior(m.design, m.priors, np.random.default_rng(1), draws=4000)  # PyMC's own draws
    # the intercept's prior and G's apply at the means of the predictors (Priors.centered): read them there,
    # b_c = T b with T moving the intercept to the mean of x and z (beta alike)
    means = m.design.data[["x", "z"]].mean().to_numpy()
    T = np.eye(3)
    T[0, 1:] = means
    G = np.einsum("ij,djk,lk->dil", T, G["g"], T)
    beta = beta + np.outer(beta[:, 1] * means[0], [1.0, 0.0])
    fixed = m.priors.fixed_by_name
    prior_sd = [fixed[c].kwargs["sigma"] for c in m.design.X_columns]
    np.testing.assert_allclose(beta.std(axis=0), prior_sd, rtol=0.05)
    lam = m.priors.sigma.kwargs["lam"]
    assert abs(sigma.mean() * lam - 1) < 0.05  # Exponential(lam) has mean 1/lam
    sd = np.sqrt(np.diagonal(G, axis1=1, axis2=2))
    scale = [m.priors.group_by_name["g"].sd_by_effect[e].kwargs["sigma"] for e in ("Intercept", "x", "z")]
    np.testing.assert_allclose(sd.mean(axis=0), np.array(scale) * np.sqrt(2 / np.pi), rtol=0.05)
    corr = G / (sd[:, :, None] * sd[:, None, :])
    # LKJ(eta) in 3 dimensions: every correlation is 2 Beta(eta + 1/2, eta + 1/2) - 1, variance 1/(2 eta + 2)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert abs(corr[:, i, j].mean()) < 0.03
        assert abs(corr[:, i, j].var() - 1 / 6) < 0.015
    assert np.all(np.linalg.eigvalsh(G) > 0)


def test_draw_prior_independent_blocks():
    df = pd.DataFrame({"g": np.repeat(list("abcd"), 5), "x": np.arange(20.0), "y": 0.0})
    m = lb.LMM("y ~ x + (1 + x || g)", df)
    _, G, _ = draw_prior(m.design, m.priors, np.random.default_rng(0))
    assert G["g"][0, 1] == 0.0 and np.all(np.diag(G["g"]) > 0)


def test_sim_priors_override_the_models_priors():
    from lmm_bayes.calibration.sbc import _sim_priors

    m = ri_model()
    wide = _sim_priors(m, {"g": {"sd": lb.Prior("HalfNormal", sigma=5.0)}})
    assert wide.fixed_by_name["Intercept"] == PRIORS["Intercept"] and wide.sigma == PRIORS["sigma"]
    assert wide.group_by_name["g"].sd_by_effect["Intercept"] == lb.Prior("HalfNormal", sigma=5.0)
    assert _sim_priors(m, None) is m.priors
    with pytest.raises(TypeError, match=r"sim_priors must be lb.Priors or a dict"):
        _sim_priors(m, [1])


# ---------------------------------------------------------------- bookkeeping on fake posteriors


EFFECTS = ["Intercept", "x", "z"]
COORDS = {"coef": ["Intercept", "x"], "g_effect": EFFECTS, "g_effect_bis": EFFECTS}
DIMS = {"beta": ("coef",), "sigma": (), "g_sd": ("g_effect",), "g_corr": ("g_effect", "g_effect_bis")}


def fake_posteriors(params, n_sims: int, posterior_sd: float, rng) -> tuple[np.ndarray, list[xr.Dataset]]:
    """Conjugate normal: theta ~ N(0, 1), x ~ N(theta, 1), posterior N(x / 2, sqrt(1/2)) (or too narrow)."""
    truths, posteriors = [], []
    for _ in range(n_sims):
        theta = rng.normal(size=len(params))
        x = theta + rng.normal(size=len(params))
        draws = x / 2 + posterior_sd * rng.normal(size=(2, 100, len(params)))
        shapes = {v: (2, 100, *(len(COORDS[k]) for k in d)) for v, d in DIMS.items()}
        post = xr.Dataset({v: (("chain", "draw", *d), np.zeros(shapes[v])) for v, d in DIMS.items()},
                          coords=COORDS)
        for k, p in enumerate(params):
            post[p.var].loc[dict(p.sel)] = draws[..., k]
        truths.append(theta)
        posteriors.append(post)
    return np.array(truths), posteriors


@pytest.mark.parametrize(("posterior_sd", "calibrated"), [(np.sqrt(0.5), True), (0.15, False)])
def test_ranks_and_tests_on_fake_posteriors(posterior_sd, calibrated):
    params = hyperparameters(slopes_model().design)
    assert [p.label for p in params] == [
        "beta[Intercept]", "beta[x]", "sigma", "g_sd[Intercept]", "g_sd[x]", "g_sd[z]",
        "g_corr[Intercept, x]", "g_corr[Intercept, z]", "g_corr[x, z]",
    ]
    truths, posteriors = fake_posteriors(params, 300, posterior_sd, np.random.default_rng(3))
    ranks = np.stack([rank_truth(post, t, params, thin=2) for post, t in zip(posteriors, truths)])
    assert ranks.min() >= 0 and ranks.max() <= 100
    ds = ranks_dataset(ranks, params, {"n_draws": 100})
    assert ds["beta"].dims == ("sim", "coef") and ds["g_corr"].dims == ("sim", "g_pair")
    assert ds["g_corr"]["g_pair"].values.tolist() == ["Intercept, x", "Intercept, z", "x, z"]
    res = SBCResult.from_ranks(ds, n_draws=100)
    assert res.uniformity.index.tolist() == [p.label for p in params]
    assert (res.uniformity["bins"] == 20).all() and (res.uniformity["df"] == 19).all()
    if calibrated:
        assert res.uniformity["p_value"].min() > 0.001
        np.testing.assert_allclose(res.coverage["50%"], 0.5, atol=0.1)
        np.testing.assert_allclose(res.coverage["90%"], 0.9, atol=0.06)
    else:
        assert res.uniformity["p_value"].max() < 1e-6
        assert (res.coverage["90%"] < 0.5).all()


def test_coverage_and_chi_square_exact():
    # ranks 0..99 once each: exactly uniform; 50% interval holds ranks 25..75 of 0..100
    ranks = xr.Dataset({"sigma": ("sim", np.arange(100))})
    res = SBCResult.from_ranks(ranks, n_draws=99, bins=10)
    assert res.uniformity.loc["sigma", "chi2"] == pytest.approx(0.0)
    assert res.uniformity.loc["sigma", "p_value"] == pytest.approx(1.0)
    lows = SBCResult.from_ranks(xr.Dataset({"sigma": ("sim", np.zeros(50, int))}), n_draws=99)
    assert lows.uniformity.loc["sigma", "p_value"] < 1e-10 and lows.coverage.loc["sigma", "90%"] == 0.0
    assert "sigma" in repr(res) and "100 simulations" in repr(res)


def test_from_ranks_errors():
    with pytest.raises(ValueError, match=r"ranks must lie in 0..n_draws = 0..9"):
        SBCResult.from_ranks(xr.Dataset({"sigma": ("sim", np.array([0, 10]))}), n_draws=9)
    with pytest.raises(ValueError, match=r"bins must be at least 2"):
        SBCResult.from_ranks(xr.Dataset({"sigma": ("sim", np.array([0, 5]))}), n_draws=9, bins=1)


def test_plot_panels():
    ranks = xr.Dataset(
        {"beta": (("sim", "coef"), np.random.default_rng(0).integers(0, 51, (60, 2))),
         "sigma": ("sim", np.random.default_rng(1).integers(0, 51, 60))},
        coords={"coef": ["Intercept", "x"]},
    )
    res = SBCResult.from_ranks(ranks, n_draws=50)
    fig = res.plot()
    assert [ax.get_title() for ax in fig.axes] == ["beta[Intercept]", "beta[x]", "sigma"]
    assert len(res.plot(coverage=True).axes) == 3
    with pytest.raises(ValueError, match=r"prob must be strictly between 0 and 1"):
        res.plot(prob=1.5)
    import matplotlib.pyplot as plt

    plt.close("all")


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(model="model"), TypeError, r"model must be an lb.LMM, got str"),
        (dict(n_sims=0), ValueError, r"n_sims must be at least 1"),
        (dict(seed=None), TypeError, r"seed must be an integer"),
        (dict(thin=200), ValueError, r"thin \(200\) must not exceed draws \(100\)"),
        (dict(executor="threads"), ValueError, r"executor must be None, 'processes' or a dask.distributed"),
        (dict(executor=4), TypeError, r"executor must be None .* got int"),
        (dict(progressbar="yes"), TypeError, r"progressbar must be True or False"),
        (dict(sim_priors={"sigmaa": 1}), ValueError, r"unknown key 'sigmaa'"),
    ],
)
def test_sbc_argument_errors(change, error, match):
    args = dict(model=ri_model(), n_sims=2, draws=100, seed=1)
    args.update(change)
    with pytest.raises(error, match=match):
        lb.sbc(args.pop("model"), **args)


def test_sbc_transformed_response():
    df = pd.DataFrame({"g": np.repeat(list("abcd"), 5), "y": np.arange(1.0, 21.0)})
    with pytest.raises(ValueError, match=r"cannot simulate the transformed response 'log\(y\)'"):
        lb.sbc(lb.LMM("log(y) ~ 1 + (1 | g)", df), n_sims=2, draws=10, seed=1)


# ---------------------------------------------------------------- real runs through Dask


@pytest.fixture(scope="module")
def client():
    import distributed  # a declared test dependency: missing, the tests fail rather than skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def sbc_dask(client):
    return lb.sbc(ri_model(), n_sims=N_SIMS, seed=SEED, executor=client, **SBC_ARGS)


@pytest.fixture(scope="module")
def sbc_miscalibrated(client):
    """Truth drawn from much wider SD priors than the fit assumes."""
    wide = {"sigma": lb.Prior("HalfNormal", sigma=5.0), "g": {"sd": lb.Prior("HalfNormal", sigma=5.0)}}
    return lb.sbc(ri_model(), n_sims=N_SIMS, seed=SEED, executor=client, sim_priors=wide, **SBC_ARGS)


def test_sbc_on_dask_is_calibrated(sbc_dask):
    res = sbc_dask
    assert res.ranks.sizes["sim"] == N_SIMS and res.n_draws == 100
    assert set(res.ranks.data_vars) == {"beta", "sigma", "g_sd"}
    assert res.ranks["g_sd"].dims == ("sim", "g_effect")
    assert res.uniformity["p_value"].min() > 0.001, res.uniformity
    assert res.coverage["90%"].between(0.7, 1.0).all(), res.coverage
    assert res.diagnostics["divergences"].sum() <= N_SIMS  # a few in extreme prior draws are tolerated
    assert res.ranks.attrs["seed"] == SEED and res.ranks.attrs["method"] == "collapsed"


@pytest.fixture(scope="module")
def sbc_local():
    """The first simulations of ``sbc_dask``, run in this process: the reference for exact comparisons."""
    return lb.sbc(ri_model(), n_sims=6, seed=SEED, executor=None, **SBC_ARGS)


def test_simulations_depend_only_on_seed_and_index():
    """The truths, data and fit seeds (numpy, drawn in the parent before any executor) of a run of 6
    are exactly the first 6 of a run of 40: whichever executor fits them, it fits the same problems."""
    from lmm_bayes.calibration.sbc import _simulate_tasks

    m = ri_model()
    params = hyperparameters(m.design)
    short, long = (_simulate_tasks(m.design, m.priors, params, n, SEED) for n in (6, N_SIMS))
    for a, b in zip(short, long[:6]):
        assert a.index == b.index and a.seed == b.seed
        np.testing.assert_array_equal(a.truth, b.truth)
        np.testing.assert_array_equal(a.y, b.y)


def test_same_seed_same_ranks_in_process(sbc_local):
    """In one process the same (seed, i) gives the same ranks bit for bit; a run of 2 is the first 2 of 6."""
    again = lb.sbc(ri_model(), n_sims=2, seed=SEED, executor=None, **SBC_ARGS)
    assert again.ranks.identical(sbc_local.ranks.isel(sim=slice(0, 2)).assign_attrs(again.ranks.attrs))


def assert_ranks_agree_within_mc_error(a: SBCResult, b: SBCResult, sims: list[int]) -> None:
    """Ranks of the same simulations fitted in two processes agree within Monte Carlo error.

    Not bit for bit: another process may sum in another order (BLAS threads, numba's own
    compilation), and one last-bit difference sends NUTS down another trajectory. The truth
    and data are the same (``test_simulations_depend_only_on_seed_and_index``), so each
    rank / n_draws estimates the same posterior quantile q twice, with MC SE at most
    sqrt((1/ESS_a + 1/ESS_b) / 4) (q(1 - q) <= 1/4), ESS being the fit's smallest bulk/tail
    ESS, at most the thinned draws ranked. As for truth vs posterior in the README: each
    |z| < 4 (one draw of rounding allowed) and the sum of z² below chi²_k(0.999).
    """
    n = a.n_draws

    def per_sim(res):
        ranks = np.column_stack([res.ranks[v].sel(sim=sims).values.reshape(len(sims), -1)
                                 for v in res.ranks.data_vars])
        d = res.diagnostics.loc[sims]
        ess = np.fmin(np.fmin(d["min_ess_bulk"], d["min_ess_tail"]), n).to_numpy(float)
        ess = np.nan_to_num(ess, nan=1.0)
        return ranks, np.maximum(ess, 1.0)

    (ra, ea), (rb, eb) = per_sim(a), per_sim(b)
    se = n * np.sqrt(0.25 * (1 / ea + 1 / eb))[:, None]
    z = np.maximum(np.abs(ra - rb) - 1, 0) / se
    assert (z < 4).all(), (ra, rb, se)
    assert (z**2).sum() < stats.chi2.ppf(0.999, z.size), (ra, rb, se)


def test_rank_agreement_check_can_fail():
    """With ESS 100 one SE is 7 draws: ranks 40 and 60 agree (z = 2.7), 0 and 100 do not (z = 14)."""
    def result(rank):
        ranks = xr.Dataset({"sigma": ("sim", np.array([rank]))}, coords={"sim": [0]})
        diagnostics = pd.DataFrame({"min_ess_bulk": [100.0], "min_ess_tail": [100.0]},
                                   index=pd.Index([0], name="sim"))
        return SBCResult.from_ranks(ranks, n_draws=100, diagnostics=diagnostics)

    assert_ranks_agree_within_mc_error(result(40), result(60), [0])
    with pytest.raises(AssertionError):
        assert_ranks_agree_within_mc_error(result(0), result(100), [0])


def test_dask_ranks_agree_with_in_process_ranks(sbc_dask, sbc_local):
    """Measured: identical here (every gap 0); one SE was 8 to 14 of the 100 draws (ESS about 25 to 70)."""
    assert_ranks_agree_within_mc_error(sbc_local, sbc_dask, list(range(6)))


def test_miscalibration_is_flagged(sbc_miscalibrated):
    p = sbc_miscalibrated.uniformity["p_value"]
    assert p.min() < 0.01, sbc_miscalibrated.uniformity
    assert p[["sigma", "g_sd[Intercept]"]].max() < 0.01


def test_processes_and_executor_instances_same_ranks(sbc_local, monkeypatch):
    """'processes' builds a spawn-context pool; any concurrent.futures executor works.

    A thread pool stands in for the process pool (spawning fresh interpreters that
    import PyMC and compile costs ~20 s each on two cores); the plumbing is the same.
    Threads share this process, so the ranks equal the in-process run's bit for bit.
    """
    from concurrent.futures import ThreadPoolExecutor

    import lmm_bayes.calibration.workers as workers

    made = []

    class Pool(ThreadPoolExecutor):
        def __init__(self, *, mp_context):
            made.append(mp_context.get_start_method())
            super().__init__(max_workers=1)

    monkeypatch.setattr(workers.cf, "ProcessPoolExecutor", Pool)
    res = lb.sbc(ri_model(), n_sims=3, seed=SEED, executor="processes", **SBC_ARGS)
    assert made == ["spawn"]
    assert res.ranks.identical(sbc_local.ranks.isel(sim=slice(0, 3)).assign_attrs(res.ranks.attrs))
    with ThreadPoolExecutor(max_workers=1) as pool:
        again = lb.sbc(ri_model(), n_sims=3, seed=SEED, executor=pool, **SBC_ARGS)
    assert again.ranks.identical(res.ranks)


# ---------------------------------------------------------------- failed simulations


def fit_seeds(n: int) -> list[int]:
    """The fit seed of each of the first ``n`` simulations of ``SEED`` (as sbc draws them)."""
    return [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(SEED).spawn(n)]


def failing_at(indices, error=RuntimeError, *, fake: bool = False):
    """A stand-in for workers.run_one that raises ``error`` for the given simulations.

    The others are fitted for real, or (``fake``) get ranks of 0 without fitting.
    """
    real = workers.run_one
    calls = []

    def run_one(ctx, task):
        calls.append(task.index)
        if task.index in indices:
            raise error(f"simulation {task.index} broke")
        if fake:
            return Outcome(index=task.index, ranks=np.zeros(len(ctx.params), int), diagnostics={}, seconds=0.0)
        return real(ctx, task)

    run_one.calls = calls
    return run_one


def test_failed_simulations_are_recorded_and_the_others_kept(sbc_local, monkeypatch):
    monkeypatch.setattr(workers, "run_one", failing_at({1, 4}))
    res = lb.sbc(ri_model(), n_sims=6, seed=SEED, **SBC_ARGS)
    kept = [0, 2, 3, 5]
    assert res.ranks["sim"].values.tolist() == kept and res.diagnostics.index.tolist() == kept
    assert res.ranks.identical(sbc_local.ranks.sel(sim=kept).assign_attrs(res.ranks.attrs))  # same process
    assert res.ranks.attrs["failed"] == 2 and res.ranks.attrs["n_sims"] == 6
    seeds = fit_seeds(6)
    expected = pd.DataFrame(
        {"seed": [seeds[1], seeds[4]], "error": "RuntimeError",
         "message": ["simulation 1 broke", "simulation 4 broke"]},
        index=pd.Index([1, 4], name="sim"),
    )
    pd.testing.assert_frame_equal(res.failures, expected)
    assert (f"2 simulation(s) failed and are left out (see .failures); the first, simulation 1 (seed {seeds[1]}), "
            "raised RuntimeError: simulation 1 broke") in repr(res)
    assert res.uniformity["bins"].iloc[0] == 2  # the tests count the 4 finished simulations


def test_a_run_without_failures_has_an_empty_failures_table(sbc_dask):
    assert sbc_dask.failures.empty and list(sbc_dask.failures.columns) == ["seed", "error", "message"]
    assert "failed" not in repr(sbc_dask)
    assert SBCResult.from_ranks(xr.Dataset({"sigma": ("sim", np.arange(10))}), n_draws=9).failures.empty


def test_all_simulations_failing_raises_naming_the_first(monkeypatch):
    monkeypatch.setattr(workers, "run_one", failing_at({0, 1, 2}, ValueError))
    with pytest.raises(ValueError, match=rf"all 3 simulations failed; the first, simulation 0 \(seed {fit_seeds(1)[0]}\) "
                                         r"raised ValueError: simulation 0 broke"):
        lb.sbc(ri_model(), n_sims=3, seed=SEED, **SBC_ARGS)


def test_keyboard_interrupt_stops_the_run(monkeypatch):
    run_one = failing_at({1}, KeyboardInterrupt, fake=True)
    monkeypatch.setattr(workers, "run_one", run_one)
    with pytest.raises(KeyboardInterrupt):
        lb.sbc(ri_model(), n_sims=4, seed=SEED, **SBC_ARGS)
    assert run_one.calls == [0, 1]


def test_failures_in_a_pool_and_dead_workers_are_recorded(monkeypatch):
    """The executor path ('processes' and any concurrent.futures pool): failures come back as results.

    A simulation that raises is caught in the worker; one whose worker dies (the
    future raises) is recorded the same way.
    """
    from concurrent.futures import Executor, Future
    from concurrent.futures.process import BrokenProcessPool

    class DyingPool(Executor):
        def submit(self, fn, ctx, task):
            future = Future()
            if task.index == 3:
                future.set_exception(BrokenProcessPool("a worker died"))
            else:
                future.set_result(fn(ctx, task))
            return future

    monkeypatch.setattr(workers, "run_one", failing_at({0}, fake=True))
    res = lb.sbc(ri_model(), n_sims=5, seed=SEED, executor=DyingPool(), **SBC_ARGS)
    assert res.ranks["sim"].values.tolist() == [1, 2, 4]
    assert res.failures["error"].to_dict() == {0: "RuntimeError", 3: "BrokenProcessPool"}
    assert res.failures.loc[3, "message"] == "a worker died" and res.failures.loc[3, "seed"] == fit_seeds(4)[3]


def test_failures_on_dask_are_caught_in_the_worker(client):
    """A simulation that raises on a Dask worker comes back as a Failure; the others finish."""
    model = ri_model()
    params = tuple(hyperparameters(model.design))
    fit_kwargs = {"draws": 100, "tune": 200, "chains": 2, "method": "collapsed", "sampler": "nutpie"}
    ctx = Context(formula=model.formula, data=model.design.data.drop(columns=["y"]), response="y",
                  priors=model.priors, params=params, fit_kwargs=tuple(fit_kwargs.items()), thin=2,
                  parent_pid=os.getpid())
    rng = np.random.default_rng(0)
    ys = [rng.normal(size=50) for _ in range(3)]
    ys[1][7] = np.nan  # LMM refuses a missing response: this simulation fails inside the worker
    tasks = [Task(index=i, y=y, truth=np.zeros(len(params)), seed=100 + i) for i, y in enumerate(ys)]
    results = workers.collect(workers.execute(ctx, tasks, client), len(tasks), False)
    assert [type(r) for r in results] == [Outcome, Failure, Outcome]
    failure = results[1]
    assert (failure.index, failure.seed, failure.error) == (1, 101, "ValueError")
    assert "missing or infinite values in 'y'" in failure.message
    assert failure.describe().startswith("simulation 1 (seed 101) raised ValueError: missing")


# ---------------------------------------------------------------- simulate, then fit


@pytest.fixture(scope="module")
def recovery():
    sim = lb.simulate_hierarchy(30, 5, (15, 25), beta={"Intercept": 10.0, "x": 2.0},
                                G=[[1.0, -0.2], [-0.2, 0.25]], sigma_neuron=0.7, sigma=2.0, seed=42)
    fit = lb.LMM(sim.formula, sim.data).fit(draws=300, tune=300, chains=2, seed=1, progressbar=False,
                                            method="collapsed", log_likelihood=False)
    return sim, fit.idata.posterior.to_dataset()


@pytest.mark.parametrize("var", ["beta", "sigma", "subject_sd", "subject_corr", "subject:neuron_sd"])
def test_simulate_then_fit_recovers_truth(recovery, var):
    sim, post = recovery
    assert 2500 <= len(sim.data) <= 5000
    lo, hi = post[var].quantile([0.03, 0.97], dim=("chain", "draw"))
    truth = sim.truth[var]
    if var == "subject_corr":
        lo, hi, truth = (a.sel(subject_effect="Intercept", subject_effect_bis="x") for a in (lo, hi, truth))
    assert bool(((lo <= truth) & (truth <= hi)).all()), (var, lo.values, truth.values, hi.values)


def test_truth_and_posterior_b_line_up_by_label(recovery):
    sim, post = recovery
    for g in ("subject", "subject:neuron"):
        b = post[f"{g}_b"]
        lo, hi = b.quantile(0.03, dim=("chain", "draw")), b.quantile(0.97, dim=("chain", "draw"))
        inside = ((lo <= sim.truth[f"{g}_b"]) & (sim.truth[f"{g}_b"] <= hi))  # aligned by level label
        assert inside.sizes[g] == sim.truth.sizes[g]
        assert float(inside.mean()) > 0.85


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampler="nutpei"), r"sampler must be one of .* \(did you mean 'nutpie'\?\)"),
    (dict(method="colapsed"), r"method must be one of .* \(did you mean 'collapsed'\?\)"),
    (dict(tune=0), r"tune must be at least 1, got 0"),
])
def test_fit_settings_are_checked_before_any_simulation(monkeypatch, kwargs, message):
    from lmm_bayes.calibration import workers

    def no_simulation(*args, **kw):
        raise AssertionError("a simulation ran before the settings were checked")

    monkeypatch.setattr(workers, "attempt", no_simulation)
    monkeypatch.setattr(workers, "run_one", no_simulation)
    with pytest.raises(ValueError, match=message):
        lb.sbc(ri_model(), n_sims=2, draws=20, seed=1, progressbar=False, **kwargs)

"""Design analysis (lb.plan_study): the hierarchy's rows, the operating characteristics against closed
forms, failures in the denominator, seeds that do not depend on the workers, resuming from disk.

The statistics are checked two ways: on synthetic intervals with a known sampling distribution
(no fitting; 10^5 draws, so the analytic Gelman & Carlin (2014) values are met within 3 Monte
Carlo SEs of a tight estimate), and end to end on a balanced random-intercept design whose
between-subject effect has an exact GLS standard error. The slow tier (tests/test_planning_slow.py)
repeats the end-to-end checks with more simulations, type S/M on fits, and Dask.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import lmm_bayes as lb
from lmm_bayes.planning import runner
from lmm_bayes.planning.hierarchy import Hierarchy
from lmm_bayes.planning.metrics import operating_characteristics

FAST = {"draws": 300, "tune": 300, "progressbar": False}
RI = "y ~ condition + (1 | subject)"
RI_TRUTH = {"beta": {"Intercept": 0.0, "condition": 0.6}, "G": {"subject": 1.0}, "sigma": 1.0}


# ---------------------------------------------------------------- independent references


def gelman_carlin(D: float, s: float, z: float = stats.norm.ppf(0.975)) -> tuple[float, float, float]:
    """Power, type S and exaggeration ratio of an estimate ~ N(D, s) declared when |estimate| > z s
    (Gelman & Carlin 2014, their retrodesign), by integration."""
    lam = D / s
    power = stats.norm.cdf(-z - lam) + stats.norm.sf(z - lam)
    type_s = (stats.norm.cdf(-z - lam) if D > 0 else stats.norm.sf(z - lam)) / power
    dens = lambda x: abs(x) * stats.norm.pdf(x, D, s)  # noqa: E731
    tail = integrate.quad(dens, z * s, np.inf)[0] + integrate.quad(dens, -np.inf, -z * s)[0]
    return power, type_s, tail / power / abs(D)


def between_reference(J: int, n: int, tau: float, sigma: float, beta: float, prob: float = 0.95):
    """Balanced design, condition between subjects (J/2 each): the exact GLS SE of the difference
    sqrt(4 (tau^2 + sigma^2/n) / J); under the reference prior the posterior of beta is t with
    J - 2 df about the GLS estimate, so power is a noncentral t tail and the expected width is
    2 t_q SE E[s/sd] (E of a chi with J - 2 df over sqrt(J - 2))."""
    se = np.sqrt(4 * (tau**2 + sigma**2 / n) / J)
    nu = J - 2
    tq = stats.t.ppf(0.5 + prob / 2, nu)
    nct = stats.nct(nu, beta / se)
    c = np.sqrt(2 / nu) * np.exp(special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2))
    return se, nct.sf(tq) + nct.cdf(-tq), 2 * tq * se * c


def synthetic(D: float, s: float, K: int, rng, *, failed: float = 0.0, kind: str = "coef") -> pd.DataFrame:
    est = rng.normal(D, s, K)
    z = stats.norm.ppf(0.975)
    status = np.where(rng.random(K) < failed, "failed", "ok")
    frame = pd.DataFrame({"q": f"D={D}", "kind": kind, "truth": D, "estimate": est, "lower": est - z * s,
                          "upper": est + z * s, "status": status})
    frame.loc[status == "failed", ["estimate", "lower", "upper"]] = np.nan
    return frame


# ---------------------------------------------------------------- the hierarchy


def test_rows_of_nested_and_crossed_designs_assign_the_condition_as_documented():
    nested = Hierarchy.of({"subjects": 4, "neurons": 3, "trials": 6}, condition="within").rows()
    assert len(nested) == 4 * 3 * 6 and nested.groupby(["subject", "neuron"], observed=True).size().eq(6).all()
    per_neuron = nested.groupby(["subject", "neuron"], observed=True)["condition"]
    assert per_neuron.mean().eq(0).all() and per_neuron.nunique().eq(2).all()  # balanced within each neuron
    between = Hierarchy.of({"subjects": 6, "neurons": 2, "trials": 3}, condition="between").rows()
    per_subject = between.groupby("subject", observed=True)["condition"]
    assert per_subject.nunique().eq(1).all() and per_subject.first().value_counts().tolist() == [3, 3]
    crossed = Hierarchy.of({"subjects": 4, "items": 6, "trials": 2}, condition="within").rows()
    assert len(crossed) == 4 * 6 * 2 and set(crossed.columns) == {"subject", "item", "trial", "condition"}
    for by in ("subject", "item"):  # a Latin square: balanced within every subject and every item
        assert crossed.groupby(by, observed=True)["condition"].mean().eq(0).all()
    assert "condition" not in Hierarchy.of({"subjects": 2, "items": 2}, condition=None).rows()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sizes": {"subjects": 6, "neurons": 2, "trails": 4}}, ValueError, "unknown size 'trails'.*did you mean 'trials'"),
    ({"sizes": {"subjects": 6, "neurons": 2}}, ValueError, r"lack \['trials'\]"),
    ({"sizes": {"subjects": 6, "neurons": 2, "items": 3, "trials": 2}}, ValueError, "choose one"),
    ({"sizes": {"subjects": 1, "neurons": 2, "trials": 2}}, ValueError, "subjects'\\] must be at least 2"),
    ({"grid": {"neuron": [2, 3]}}, ValueError, "grid axis 'neuron'.*did you mean 'neurons'"),
    ({"grid": {"items": [2, 3]}}, ValueError, "grid axis 'items' is not a size of this design"),
    ({"grid": {"subjects": [4, 4]}}, ValueError, "repeats a size"),
    ({"grid": {"subjects": 8}}, ValueError, "non-empty list of sizes"),
    ({"n_sims": 1}, ValueError, "n_sims must be at least 2"),
    ({"quantities": ["conditon"]}, ValueError, "quantity 'conditon' is not in the formula.*did you mean 'condition'"),
    ({"quantities": ["sd(neuron)"]}, ValueError, "no grouping factor 'neuron'"),
    ({"formula": "y ~ condition + (1 | item)"}, ValueError, r"reads \['item'\].*does not have"),
    ({"condition": "within", "sizes": {"subjects": 6, "neurons": 2, "trials": 1}}, ValueError, "trials >= 2"),
    ({"condition": "sometimes"}, ValueError, "condition must be 'within', 'between' or None"),
    ({"truth": {"beta": {"Intercept": 0.0}, "G": {"subject": 1.0}, "sigma": 1.0}}, ValueError, "condition"),
    ({"truth": {"beta": [0, 1], "G": {"subject": {"sd": [1.0], "cor": 0}}, "sigma": 1}}, ValueError, "'sd'.*'corr'"),
    ({"executor": "threads"}, ValueError, "executor must be"),
    ({"ci": "95%"}, ValueError, "ci must be one of"),
])
def test_bad_plans_say_what_is_wrong(kwargs, error, match):
    args = {"formula": RI, "sizes": {"subjects": 6, "neurons": 2, "trials": 4}, "truth": RI_TRUTH, "seed": 1,
            "n_sims": 2, **FAST, **kwargs}
    with pytest.raises(error, match=match):
        lb.plan_study(args.pop("formula"), args.pop("sizes"), **args)


# ---------------------------------------------------------------- the numbers, without fitting


def test_power_type_s_and_type_m_match_gelman_carlin_with_failures_in_the_denominator():
    """10^5 estimates ~ N(D, 1) with 95% intervals: power, type S and type M of a tiny effect
    (D = 0.5 SE: type M about 4.8) on both signs, against the analytic values; 10% of the fits
    failed and count as no detection, so power is 0.9 x the analytic one."""
    rng = np.random.default_rng(7)
    K = 100_000
    sims = pd.concat([synthetic(D, 1.0, K, rng, failed=0.1) for D in (0.5, -0.5)])
    table = operating_characteristics(sims, ["q"]).set_index("q")
    for D in (0.5, -0.5):
        row, (power, type_s, type_m) = table.loc[f"D={D}"], gelman_carlin(D, 1.0)
        used = row["n_used"]
        assert row["n_sims"] == K and row["n_failed"] + used == K and abs(row["n_failed"] / K - 0.1) < 0.005
        expected = 0.9 * power
        assert abs(row["power"] - expected) < 3 * np.sqrt(expected * (1 - expected) / K)
        n_det = row["power"] * K
        assert abs(row["type_s"] - type_s) < 3 * np.sqrt(type_s * (1 - type_s) / n_det)
        assert type_m > 4 and abs(row["type_m"] - type_m) < 3 * row["type_m_mcse"]
        assert row["width"] == pytest.approx(2 * stats.norm.ppf(0.975))
        assert abs(row["coverage"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / used)
        assert row["power_mcse"] == pytest.approx(np.sqrt(row["power"] * (1 - row["power"]) / K))


def test_unconverged_fits_count_as_missed_unless_kept_and_sds_have_no_power():
    rng = np.random.default_rng(3)
    sims = synthetic(3.0, 1.0, 1000, rng)
    sims.loc[sims.index[:100], "status"] = "unconverged"
    detected = ((sims["lower"] > 0) | (sims["upper"] < 0)).to_numpy()
    missed = operating_characteristics(sims, ["q"]).iloc[0]
    kept = operating_characteristics(sims, ["q"], unconverged="keep").iloc[0]
    assert missed["n_unconverged"] == 100 and missed["power"] == detected[100:].sum() / 1000
    assert kept["power"] == detected.sum() / 1000
    # from the fits' own R-hat and divergences: above 1.01, NaN, or a divergence
    health = synthetic(3.0, 1.0, 4, rng).assign(r_hat=[1.009, 1.02, np.nan, 1.0], divergences=[0, 0, 0, 2])
    assert operating_characteristics(health, ["q"]).iloc[0]["n_unconverged"] == 3
    sd = operating_characteristics(synthetic(0.5, 0.1, 50, rng, kind="sd"), ["q"]).iloc[0]
    assert np.isnan(sd["power"]) and np.isnan(sd["type_m"]) and sd["width"] == pytest.approx(2 * 1.96 * 0.1, rel=1e-3)


def test_rope_decisions_count_intervals_wholly_outside_or_inside():
    sims = pd.DataFrame({"q": "x", "kind": "coef", "truth": 0.3, "estimate": 0.0, "status": "ok",
                         "lower": [0.25, -0.05, -0.3, -0.5, 0.05], "upper": [0.6, 0.05, 0.2, -0.2, 0.15]})
    row = operating_characteristics(sims, ["q"], rope=(-0.1, 0.1)).iloc[0]
    assert row["p_outside_rope"] == 2 / 5 and row["p_inside_rope"] == 1 / 5
    with pytest.raises(ValueError, match="low < high"):
        operating_characteristics(sims, ["q"], rope=(0.1, -0.1))


def test_plot_draws_power_and_width_with_two_mcse_bands():
    frame = pd.concat([synthetic(1.0, s, 200, np.random.default_rng(1)).assign(subjects=n, neurons=2, trials=4,
                                                                                  sim=range(200), quantity="x")
                       for n, s in ((4, 1.0), (8, 0.7), (16, 0.5))])
    plan = lb.StudyPlan(simulations=frame, axes=("subjects", "neurons", "trials"), varied=("subjects",))
    table = plan.table().reset_index()
    fig = plan.plot()
    power_ax, width_ax = fig.axes
    assert power_ax.get_lines()[0].get_xdata().tolist() == [4, 8, 16]
    assert np.allclose(power_ax.get_lines()[0].get_ydata(), table["power"])
    band = power_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx((table["power"] + 2 * table["power_mcse"]).max())
    assert np.allclose(width_ax.get_lines()[0].get_ydata(), table["width"])
    with pytest.raises(ValueError, match="not an axis"):
        plan.plot(along="neuron")
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def between_plan():
    """60 subjects (30 per condition) x 10 trials, tau = sigma = 1, beta = 0.6: power about 0.59."""
    return lb.plan_study(RI, {"subjects": 60, "neurons": 1, "trials": 10}, condition="between", truth=RI_TRUTH,
                         n_sims=60, seed=11, progressbar=False)


def test_power_and_width_match_the_exact_standard_error(between_plan):
    """The simulated power and mean width against the closed form of the balanced design, within 3
    MCSE. With 60 subjects the default weakly informative priors hardly move the posterior (the
    slope's prior SD is over 20 SEs, tau's data carry 58 df): at 400 simulations the difference is
    -1.4 MCSE for power and -0.6 for width (the slow tier checks that)."""
    se, power, width = between_reference(60, 10, 1.0, 1.0, 0.6)
    row = between_plan.table().iloc[0]
    sims = between_plan.simulations
    widths = (sims["upper"] - sims["lower"]).to_numpy()
    assert row["n_sims"] == 60 and row["n_failed"] == 0
    assert abs(row["power"] - power) < 3 * np.sqrt(power * (1 - power) / 60)
    assert abs(widths.mean() - width) < 3 * widths.std(ddof=1) / np.sqrt(60)
    assert abs(sims["estimate"].mean() - 0.6) < 3 * se / np.sqrt(60)  # the effect was applied
    assert row["truth"] == 0.6 and row["width"] == pytest.approx(widths.mean())


def test_failed_fits_stay_in_the_denominator_and_are_listed(monkeypatch):
    real = runner.fit_model
    calls = []

    def flaky(model, *, seed, **kwargs):
        calls.append(seed)
        if len(calls) in (2, 5):
            raise RuntimeError("the sampler broke")
        return real(model, seed=seed, **kwargs)

    monkeypatch.setattr(runner, "fit_model", flaky)
    plan = lb.plan_study(RI, {"subjects": 8, "neurons": 1, "trials": 4}, condition="within",
                         truth={**RI_TRUTH, "beta": {"Intercept": 0.0, "condition": 3.0}}, n_sims=6, seed=2, **FAST)
    row = plan.table().iloc[0]
    sims = plan.simulations
    detected = ((sims["lower"] > 0) | (sims["upper"] < 0)) & (sims["status"] == "ok")
    assert row["n_sims"] == 6 and row["n_failed"] == 2 and row["n_used"] == 4 - row["n_unconverged"]
    assert row["power"] == detected.sum() / 6 and detected.sum() >= 3
    failures = plan.failures()
    assert failures["sim"].tolist() == [1, 4] and (failures["message"] == "RuntimeError: the sampler broke").all()
    assert failures["seed"].tolist() == calls[1:2] + calls[4:5]


def expected_seed(seed: int, sizes: tuple[int, int, int, int], sim: int) -> int:
    """The documented derivation: SeedSequence([seed, subjects, neurons, items, trials, sim]), second child."""
    return int(np.random.SeedSequence([seed, *sizes, sim]).spawn(2)[1].generate_state(1)[0])


def test_same_seed_same_simulations_with_one_or_two_workers_or_in_process():
    args = dict(formula=RI, sizes={"subjects": 4, "neurons": 1, "trials": 4}, truth=RI_TRUTH, n_sims=3, seed=5,
                grid={"subjects": [4, 6]}, **FAST)
    spawn = multiprocessing.get_context("spawn")
    runs = [lb.plan_study(**args).simulations]
    for workers in (1, 2):
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            runs.append(lb.plan_study(**args, executor=pool).simulations)
    alone = lb.plan_study(**{**args, "grid": {"subjects": [6]}}).simulations  # the grid's other points do not matter
    keys = ["subjects", "sim", "quantity"]
    numbers = ["seed", "estimate", "lower", "upper", "r_hat"]
    first = runs[0].sort_values(keys).reset_index(drop=True)
    assert first["seed"].tolist() == [expected_seed(5, (s, 1, 0, 4), i) for s in (4, 6) for i in range(3)]
    for other in [*runs[1:], alone]:
        other = other.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(first.loc[first["subjects"].isin(other["subjects"]), numbers].reset_index(drop=True),
                                      other[numbers])


def test_a_rerun_skips_the_points_on_disk_and_runs_only_what_is_new(tmp_path, monkeypatch, capsys):
    real = runner.fit_model
    fits = []

    def counting(model, **kwargs):
        fits.append(kwargs["seed"])
        return real(model, **kwargs)

    monkeypatch.setattr(runner, "fit_model", counting)
    args = dict(formula=RI, sizes={"subjects": 4, "neurons": 1, "trials": 4}, truth=RI_TRUTH, seed=3,
                folder=tmp_path / "plan", **FAST)
    first = lb.plan_study(**args, grid={"subjects": [4, 6]}, n_sims=2)
    assert len(fits) == 4 and sorted(p.name for p in (tmp_path / "plan").iterdir()) == [
        "plan.json", "point-subjects=4_neurons=1_trials=4.csv", "point-subjects=6_neurons=1_trials=4.csv"]
    second = lb.plan_study(**args, grid={"subjects": [4, 6, 8]}, n_sims=2)
    assert len(fits) == 6 and "2 of 3 design points already done" in capsys.readouterr().err
    assert second.skipped == ("subjects=4_neurons=1_trials=4", "subjects=6_neurons=1_trials=4")
    keys = ["subjects", "sim", "quantity"]
    old = second.simulations[second.simulations["subjects"] < 8].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(old[["seed", "estimate", "lower", "upper"]],
                                  first.simulations.sort_values(keys).reset_index(drop=True)[
                                      ["seed", "estimate", "lower", "upper"]])
    third = lb.plan_study(**args, grid={"subjects": [4, 6, 8]}, n_sims=3)  # only simulation 2 of each point
    assert len(fits) == 9 and fits[6:] == [expected_seed(3, (s, 1, 0, 4), 2) for s in (4, 6, 8)]
    assert third.table()["n_sims"].tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="holds a plan with other settings \\(truth differ\\)"):
        lb.plan_study(**{**args, "truth": {**RI_TRUTH, "sigma": 2.0}}, n_sims=2)


def test_costs_and_the_cheapest_design_meeting_the_target():
    """Three nested points with known power (effect / SE 1.5, 2.5, 3.5 on 4000 synthetic intervals each);
    cost per subject 1000, per neuron 50, per trial 1, computed by hand."""
    points = [(4, 5, 40, 1 / 1.5), (8, 2, 20, 1 / 2.5), (6, 5, 10, 1 / 3.5)]
    frame = pd.concat([synthetic(1.0, se, 4000, np.random.default_rng(k)).assign(
        subjects=s, neurons=n, trials=t, sim=range(4000), quantity="x") for k, (s, n, t, se) in enumerate(points)])
    plan = lb.StudyPlan(simulations=frame, axes=("subjects", "neurons", "trials"), varied=("subjects",))
    costs = {"subject": 1000, "neuron": 50, "trial": 1}
    by_hand = {(s, n, t): s * 1000 + s * n * 50 + s * n * t for s, n, t, _ in points}  # 5800, 8000+800+320, 6000+1500+300
    table = plan.costs(costs, power=0.6)
    assert table["cost"].tolist() == sorted(by_hand.values())
    assert [by_hand[tuple(r)] for r in table[["subjects", "neurons", "trials"]].values] == table["cost"].tolist()
    powers = {se: stats.norm.sf(1.96 - 1 / se) + stats.norm.cdf(-1.96 - 1 / se) for *_, se in points}
    assert table["meets"].tolist() == [powers[se] >= 0.6 for *_, se in sorted(points, key=lambda p: by_hand[p[:3]])]
    best = plan.cheapest(costs, power=0.6)  # (4, 5, 40) has power 0.32; (6, 5, 10) 0.94 at 7800
    assert (best["subjects"], best["cost"]) == (6, 7800.0)
    assert plan.cheapest(costs, power=0.6, budget=8000)["cost"] == 7800.0
    with pytest.raises(ValueError, match="no design point of the grid meets the target within the budget"):
        plan.cheapest(costs, power=0.6, budget=7000)
    with pytest.raises(ValueError, match="this design's units.*did you mean 'neuron'"):
        plan.costs({"neurons": 5})


@pytest.fixture(scope="module")
def pilot():
    """A pilot of 6 subjects: its posterior of the condition effect is wide (SD about 0.4)."""
    rows = Hierarchy.of({"subjects": 6, "neurons": 1, "trials": 10}, condition="between").rows()
    data = lb.simulate(RI, rows, params=RI_TRUTH, seed=8).data
    return lb.LMM(RI, data).fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)


def test_assurance_draws_each_simulations_truth_from_the_pilot(pilot):
    plan = lb.plan_study(RI, {"subjects": 60, "neurons": 1, "trials": 10}, condition="between", truth=pilot,
                         grid={"subjects": [40, 60]}, n_sims=12, seed=9, quantities=["condition", "sigma"], **FAST)
    post = pilot.idata.posterior
    beta = post["beta"].sel(coef="condition").values.reshape(-1)
    sigma = post["sigma"].values.reshape(-1)
    picks = [int(np.random.default_rng(np.random.SeedSequence([9, i])).integers(len(beta))) for i in range(12)]
    sims = plan.simulations.sort_values(["subjects", "quantity", "sim"])
    for n in (40, 60):  # the same truths at every design point
        at = sims[sims["subjects"] == n]
        assert at.loc[at["quantity"] == "condition", "truth"].tolist() == beta[picks].tolist()
        assert at.loc[at["quantity"] == "sigma", "truth"].tolist() == sigma[picks].tolist()
    cond = sims[(sims["quantity"] == "condition") & (sims["subjects"] == 60)]
    se = between_reference(60, 10, float(np.sqrt(pilot.idata.posterior["subject_sd"].mean())), 1.0, 0)[0]
    # the data followed each simulation's own truth: estimates scatter about it by the design's SE,
    # far less than the truths scatter about their mean
    assert (cond["estimate"] - cond["truth"]).std() < 2 * se < (cond["truth"] - cond["truth"].mean()).std()
    assert plan.attrs["assurance"] and "assurance" in repr(plan)
    assert plan.table().loc[(60, 1, 10, "condition"), "truth"] == pytest.approx(beta[picks].mean())
    with pytest.raises(ValueError, match="pilot fit's parameters.*are not the plan's"):
        lb.plan_study("y ~ condition + (1 + condition | subject)", {"subjects": 6, "neurons": 1, "trials": 4},
                      truth=pilot, n_sims=2, seed=1, **FAST)


def test_a_crossed_plan_fits_subjects_by_items():
    """Subjects x items, the condition in a Latin square; a large effect (3 residual SDs) is found in
    every simulation, and the items' SD is reported with its width."""
    plan = lb.plan_study("y ~ condition + (1 | subject) + (1 | item)", {"subjects": 8, "items": 8}, n_sims=2, seed=4,
                         truth={"beta": {"Intercept": 0.0, "condition": 3.0}, "G": {"subject": 0.25, "item": 0.25},
                                "sigma": 1.0}, quantities=["condition", "sd(item)"], **FAST)
    table = plan.table()
    assert table.index.names == ["subjects", "items", "trials", "quantity"]
    row = table.loc[(8, 8, 1, "condition")]
    assert row["n_failed"] == 0 and row["power"] == 1.0
    sd = table.loc[(8, 8, 1, "sd(item)")]
    assert sd["truth"] == 0.5 and np.isnan(sd["power"]) and 0 < sd["width"] < 3


def test_the_analysis_priors_are_those_of_every_fit():
    """A prior Normal(0, 0.01) on the effect pins every estimate near 0: nothing is detected and the
    bias is about minus the effect (with the default priors the same data find it every time)."""
    args = dict(formula=RI, sizes={"subjects": 8, "neurons": 1, "trials": 6}, n_sims=2, seed=6,
                truth={**RI_TRUTH, "beta": {"Intercept": 0.0, "condition": 3.0}}, **FAST)
    pinned = lb.plan_study(**args, priors={"condition": lb.Prior("Normal", mu=0, sigma=0.01)}).table().iloc[0]
    free = lb.plan_study(**args).table().iloc[0]
    assert pinned["power"] == 0 and abs(pinned["bias"] + 3.0) < 0.1
    assert free["power"] == 1 and abs(free["bias"]) < 1
    with pytest.raises(ValueError, match="conditon"):
        lb.plan_study(**args, priors={"conditon": lb.Prior("Normal", mu=0, sigma=1)})


def test_an_interrupted_run_keeps_what_it_finished(tmp_path, monkeypatch):
    real = runner.fit_model
    fits = []

    def interrupted(model, **kwargs):
        fits.append(kwargs["seed"])
        if len(fits) == 5:  # point 4's three fits, point 6's first, then the interrupt
            raise KeyboardInterrupt
        return real(model, **kwargs)

    monkeypatch.setattr(runner, "fit_model", interrupted)
    args = dict(formula=RI, sizes={"subjects": 4, "neurons": 1, "trials": 4}, truth=RI_TRUTH, seed=3, n_sims=3,
                grid={"subjects": [4, 6]}, folder=tmp_path / "plan", **FAST)
    with pytest.raises(KeyboardInterrupt):
        lb.plan_study(**args)
    kept = pd.read_csv(tmp_path / "plan" / "point-subjects=6_neurons=1_trials=4.csv")
    assert kept["sim"].tolist() == [0]  # point 4 finished (3 fits), point 6 had one when interrupted
    monkeypatch.setattr(runner, "fit_model", real)
    plan = lb.plan_study(**args)
    assert plan.table()["n_sims"].tolist() == [3, 3]
    assert plan.simulations.sort_values(["subjects", "sim"])["seed"].tolist() == [
        expected_seed(3, (s, 1, 0, 4), i) for s in (4, 6) for i in range(3)]

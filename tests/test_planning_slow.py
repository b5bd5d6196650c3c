"""The slow tier of the design analysis: the closed forms with hundreds of simulations, type S and M
on fits of a tiny effect, and the same results on a Dask cluster (``bash run.sh test -m slow``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmm_bayes as lb
from test_planning import RI, RI_TRUTH, between_reference, gelman_carlin

pytestmark = pytest.mark.slow
SIZES = {"subjects": 60, "neurons": 1, "trials": 10}


def test_power_and_width_match_the_exact_standard_error_at_400_simulations():
    """As the default tier's test, at 400 simulations: MCSE 0.025 for power, 0.5% of the width."""
    se, power, width = between_reference(60, 10, 1.0, 1.0, 0.6)
    plan = lb.plan_study(RI, SIZES, condition="between", truth=RI_TRUTH, n_sims=400, seed=3, progressbar=False)
    row = plan.table().iloc[0]
    assert row["n_failed"] == 0 and row["n_used"] >= 396
    assert abs(row["power"] - power) < 3 * np.sqrt(power * (1 - power) / 400)
    assert abs(row["width"] - width) < 3 * row["width_mcse"]
    assert abs(row["coverage"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 400)


def test_type_s_and_type_m_of_a_tiny_effect_on_fits():
    """beta = SE / 2 (0.135): power about 0.08, type M about 4.8 and type S about 0.09 by Gelman &
    Carlin's formulas from the exact SE; the fits' values within 3 MCSE (the posterior is a t with
    58 df, slightly wider than the z of the formulas: the tolerance covers it at this K)."""
    se, _, _ = between_reference(60, 10, 1.0, 1.0, 0.0)
    beta = se / 2
    truth = {**RI_TRUTH, "beta": {"Intercept": 0.0, "condition": beta}}
    plan = lb.plan_study(RI, SIZES, condition="between", truth=truth, n_sims=800, seed=4, progressbar=False)
    row = plan.table().iloc[0]
    power, type_s, type_m = gelman_carlin(beta, se)
    assert abs(row["power"] - power) < 3 * np.sqrt(power * (1 - power) / 800)
    assert row["type_m"] > 3 and abs(row["type_m"] - type_m) < 3 * row["type_m_mcse"]
    n_det = row["power"] * 800
    assert row["type_s"] > 0 and abs(row["type_s"] - type_s) < 3 * np.sqrt(type_s * (1 - type_s) / n_det)
    assert stats.norm.ppf(0.975) < 2.01  # the formulas' z, against the t_58 quantile 2.0017


def test_dask_gives_the_same_simulations_as_in_process():
    distributed = pytest.importorskip("distributed")
    args = dict(formula=RI, sizes={"subjects": 4, "neurons": 1, "trials": 4}, truth=RI_TRUTH, n_sims=3, seed=5,
                grid={"subjects": [4, 6]}, draws=300, tune=300, progressbar=False)
    here = lb.plan_study(**args).simulations
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with distributed.Client(cluster) as client:
            there = lb.plan_study(**args, executor=client).simulations
    keys, numbers = ["subjects", "sim", "quantity"], ["seed", "estimate", "lower", "upper", "r_hat"]
    pd.testing.assert_frame_equal(here.sort_values(keys).reset_index(drop=True)[numbers],
                                  there.sort_values(keys).reset_index(drop=True)[numbers])

"""Public paths no other test reached: every prior family in the graph, correlated and independent
blocks on one factor, and documented errors of the inference stage.

Graph checks need no sampling: the PyMC model's random variables are read and their log-densities
compared with scipy's. One small collapsed fit checks the mixed-block model end to end.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from conditional import standardized_b
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.errors import SamplingWarning
from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics

SLOPES = "Reaction ~ Days + (Days | Subject)"
MIXED = "y ~ x + z + (1 + x | g) + (0 + z | g)"
MIXED_G = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.0], [0.0, 0.0, 0.64]])
MIXED_BETA = np.array([1.0, 2.0, -1.0])


def _rv_class(rv) -> str:
    return type(rv.owner.op).__name__


# ---------------------------------------------------------------- priors of every family reach the graph

ROBUST = {
    "Days": {"dist": "StudentT", "nu": 3, "mu": 1, "sigma": 5},
    "sigma": {"dist": "HalfCauchy", "beta": 7},
    "Subject": {"sd": {"dist": "HalfStudentT", "nu": 4, "sigma": 20}},
}


@pytest.mark.parametrize("method", ["full", "collapsed"])
def test_studentt_and_halfcauchy_priors_are_the_graphs_distributions(sleepstudy, method):
    model = lb.LMM(SLOPES, sleepstudy, priors=ROBUST)
    graph = model.pymc_model(method=method)
    # one vector beta from two families: a Normal part (the default intercept) and a StudentT part
    assert _rv_class(graph["beta_parts_Normal"]) == "NormalRV"
    assert _rv_class(graph["beta_parts_StudentT"]) == "StudentTRV"
    assert _rv_class(graph["sigma"]) == "HalfCauchyRV"
    # with their parameters: log-densities equal scipy's
    for value in [-3.0, 2.5, 40.0]:
        got = pm.logp(graph["beta_parts_StudentT"], np.array([value])).eval()[0]
        assert got == pytest.approx(stats.t.logpdf(value, 3, loc=1, scale=5), rel=1e-10)
    intercept = model.priors.fixed_by_name["Intercept"].kwargs
    got = pm.logp(graph["beta_parts_Normal"], np.array([250.0])).eval()[0]
    assert got == pytest.approx(stats.norm.logpdf(250.0, intercept["mu"], intercept["sigma"]), rel=1e-10)
    for value in [0.5, 3.0, 90.0]:  # pymc keeps beta as float32: 1e-6
        assert pm.logp(graph["sigma"], value).eval() == pytest.approx(stats.halfcauchy.logpdf(value, scale=7), rel=1e-6)
    # beta is the two parts in coefficient order
    draws = pm.draw([graph["beta"], graph["beta_parts_Normal"], graph["beta_parts_StudentT"]], draws=5, random_seed=1)
    np.testing.assert_array_equal(draws[0], np.concatenate([draws[1], draws[2]], axis=1))


def test_halfstudentt_sd_prior_of_a_correlated_block(sleepstudy):
    """Inside LKJCholeskyCov the SD prior is not a named variable: its prior draws are tested against
    HalfStudentT(4, 20) with a KS test (4000 draws; p > 0.001, a 0.1% false alarm per SD)."""
    graph = lb.LMM(SLOPES, sleepstudy, priors=ROBUST).pymc_model()
    draws = pm.draw(graph["Subject_sd"], draws=4000, random_seed=1)

    def half_t(x):
        return 2 * stats.t.cdf(x, 4, scale=20) - 1

    for k in range(2):
        assert stats.kstest(draws[:, k], half_t).pvalue > 1e-3
    # the default HalfNormal(s_y) is a different distribution: the same test rejects it
    assert stats.kstest(draws[:, 0], stats.halfnorm(scale=float(np.std(sleepstudy["Reaction"]))).cdf).pvalue < 1e-6


def test_halfstudentt_priors_of_independent_sds(sleepstudy):
    model = lb.LMM("Reaction ~ Days + (Days || Subject)", sleepstudy, priors={
        "Subject": {"sd(Days)": {"dist": "HalfStudentT", "nu": 4, "sigma": 20},
                    "sd(Intercept)": {"dist": "HalfStudentT", "nu": 4, "sigma": 30}},
        "sigma": {"dist": "HalfStudentT", "nu": 3, "sigma": 2}})
    graph = model.pymc_model()
    assert _rv_class(graph["Subject_sd_indep"]) == "HalfStudentTRV"
    values = np.array([3.0, 4.0])
    expected = np.log(2) + stats.t.logpdf(values, 4, scale=[30, 20])
    np.testing.assert_allclose(pm.logp(graph["Subject_sd_indep"], values).eval(), expected, rtol=1e-6)
    assert pm.logp(graph["sigma"], 1.5).eval() == pytest.approx(np.log(2) + stats.t.logpdf(1.5, 3, scale=2), rel=1e-6)


def test_sd_priors_of_one_correlated_block_must_share_a_family(sleepstudy):
    """Refused when the model is made, before any graph or kernel is built."""
    with pytest.raises(ValueError, match=r"priors\['Subject'\]: the correlated effects \['Intercept', 'Days'\].*sd\(Days\) HalfCauchy"):
        lb.LMM(SLOPES, sleepstudy, priors={"Subject": {"sd(Days)": {"dist": "HalfCauchy", "beta": 5}}})


# ---------------------------------------------------------------- correlated and independent blocks on one factor


@pytest.fixture(scope="module")
def mixed():
    rng = np.random.default_rng(0)
    n_g, n_per = 40, 12
    skeleton = pd.DataFrame({
        "g": np.repeat([f"g{i:02d}" for i in range(n_g)], n_per),
        "x": rng.normal(size=n_g * n_per),
        "z": rng.normal(size=n_g * n_per),
    })
    return lb.simulate(MIXED, skeleton, params={"beta": MIXED_BETA, "G": {"g": MIXED_G}, "sigma": 1.0}, seed=3)


@pytest.fixture(scope="module")
def mixed_fit(mixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return lb.LMM(MIXED, mixed.data).fit(method="collapsed", seed=4, draws=500, tune=500, chains=2,
                                            progressbar=False)


def test_mixed_blocks_design_and_graph(mixed):
    model = lb.LMM(MIXED, mixed.data)
    (g,) = model.design.groups
    assert g.effects == ("Intercept", "x", "z") and g.blocks == ((0, 1), (2,)) and g.correlated
    np.testing.assert_array_equal(g.Z, np.column_stack([np.ones(len(mixed.data)), mixed.data["x"], mixed.data["z"]]))
    full = model.pymc_model()
    assert sorted(v.name for v in full.free_RVs) == ["beta", "g_chol_cov_0", "g_sd_indep", "g_z", "sigma"]
    collapsed = model.pymc_model(method="collapsed")
    assert sorted(v.name for v in collapsed.free_RVs) == ["beta", "g_chol_cov_0", "g_sd_indep", "sigma"]
    for graph in (full, collapsed):
        assert graph.named_vars_to_dims["g_corr"] == ("g_effect", "g_effect_bis")
        corr = pm.draw(graph["g_corr"], draws=200, random_seed=2)
        np.testing.assert_array_equal(corr[:, :2, 2], 0.0)  # z is independent of the (1 + x) block
        np.testing.assert_array_equal(corr[:, 2, :2], 0.0)
        assert np.std(corr[:, 0, 1]) > 0.1  # inside the block a correlation is drawn
    # the prior table has one LKJ row, and the model lists three SDs
    assert [name for name, _, _ in model.priors.table()].count("corr(* | g)") == 1
    assert [name for name, _, _ in model.priors.table() if name.startswith("sd(")] == [
        "sd(Intercept | g)", "sd(x | g)", "sd(z | g)"]


def test_mixed_blocks_fit(mixed_fit, mixed):
    post = mixed_fit.posterior
    corr = post["g_corr"].values
    np.testing.assert_array_equal(corr[..., :2, 2], 0.0)
    np.testing.assert_array_equal(corr[..., 2, :2], 0.0)
    vc = mixed_fit.varcorr()
    assert list(vc.index) == [("g", "sd(Intercept)"), ("g", "sd(x)"), ("g", "sd(z)"), ("g", "corr(Intercept,x)"),
                              ("Residual", "sigma")]
    # truth: one z per quantity |z| < 3.5, and sum z^2 below chi2(8)'s 0.999 quantile (false alarm 0.1%);
    # measured max |z| 1.7, sum 7.6 (limit 26.1)
    sd = np.sqrt(np.diag(MIXED_G))
    truth = [*sd, MIXED_G[0, 1] / (sd[0] * sd[1]), 1.0]
    fe = mixed_fit.fixef()
    z = np.concatenate([(vc["mean"] - truth) / vc["sd"], (fe["mean"] - MIXED_BETA) / fe["sd"]])
    assert np.all(np.abs(z) < 3.5), z
    assert np.sum(z**2) < stats.chi2.ppf(0.999, len(z)), z
    # the drawn b given (beta, G, sigma) is exactly N(m, P^-1) with the block-diagonal G: standardised, N(0, I)
    w = standardized_b(mixed_fit)
    for stat, target in [(w.mean(axis=(2, 3)), 0.0), ((w**2).mean(axis=(2, 3)), 1.0)]:
        da = xr.DataArray(stat, dims=("chain", "draw"))
        assert abs(float(da.mean()) - target) < 4 * float(az.mcse(da, method="mean"))


# ---------------------------------------------------------------- documented errors of the inference stage


def test_sufficient_statistics_of_crossed_factors_say_where_crossed_designs_go():
    df = pd.DataFrame({"s": np.repeat([f"s{i}" for i in range(4)], 4), "item": np.tile([f"i{j}" for j in range(4)], 4),
                       "y": np.arange(16.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = lb.LMM("y ~ 1 + (1 | s) + (1 | item)", df).design
    with pytest.raises(ValueError, match=r"need one factor or a chain of nested factors: grouping factors "
                                         r"'s' and 'item' are crossed.*crossed.system.CrossedSystem"):
        sufficient_statistics(design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the factors' labels repeat (implicit nesting): crossed on purpose
        model = lb.LMM("y ~ 1 + (1 | s) + (1 | item)", df)
    with pytest.raises(ValueError, match=r"crossed factors has no PyMC graph.*use method='full'"):
        model.pymc_model(method="collapsed")

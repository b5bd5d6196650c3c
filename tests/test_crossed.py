"""The collapsed method for crossed factors (lmm_bayes.inference.methods.crossed.system).

Exact references: the dense multivariate normal density of y (scipy), lme4's logLik at its
own ML estimates, and the dense Gaussian posterior of b; then the sampled posterior against
the full method, lme4's REML estimates and the simulation's truth.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag
from scipy.stats import binom, multivariate_normal

import lmm_bayes as lb
from lmm_bayes.errors import ImplicitNestingWarning
from lmm_bayes.inference.methods.crossed import system as crossed
from lmm_bayes.inference.methods.crossed.system import CrossedSystem, crossed_model
from lmm_bayes.inference.methods.kernel_loader import load
from lmm_bayes.inference.methods.registry import Collapsed, Crossed, Full, resolve_method
from lmm_bayes.inference.methods.collapsed.sufficient import nesting_chain

DATA = Path(__file__).parent / "data"
SIM_FORMULA = "y ~ cond + (1 + cond | subject) + (1 + cond | item)"
#: the simulation's truth (tests/data/make_crossed_sim.py)
TRUTH = {"beta": [2.0, 0.5], "sigma": 0.8, "subject_sd": [1.0, 0.4], "item_sd": [0.6, 0.3]}


def _design_data(seed: int = 1, subjects: int = 7, items: int = 5, empty: float = 0.2) -> pd.DataFrame:
    """Unbalanced subjects x items with empty cells, 1-3 rows per cell, sessions nested in subjects."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(subjects):
        for i in range(items):
            if rng.random() < empty:
                continue
            for _ in range(rng.integers(1, 4)):
                rows.append((f"s{s}", f"i{i}", f"t{rng.integers(2)}", f"c{rng.integers(3)}", rng.normal()))
    df = pd.DataFrame(rows, columns=["subject", "item", "session", "site", "x"])
    df["y"] = 1.0 + 0.5 * df["x"] + rng.normal(size=len(df))
    return df


def _balanced() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame([(f"s{s}", f"i{i}", x) for s in range(5) for i in range(4) for x in (-1.0, 1.0)],
                      columns=["subject", "item", "x"])
    df["y"] = rng.normal(size=len(df))
    return df


CASES = {
    "intercepts, balanced": ("y ~ x + (1 | subject) + (1 | item)", _balanced),
    "intercepts, empty cells": ("y ~ x + (1 | subject) + (1 | item)", _design_data),
    "slopes on the block factor": ("y ~ x + (x | subject) + (1 | item)", _design_data),
    "slopes on the dense factor": ("y ~ x + (1 | subject) + (x | item)", _design_data),
    "slopes on both, balanced": ("y ~ x + (x | subject) + (x | item)", _balanced),
    "slopes on both, uncorrelated": ("y ~ x + (x || subject) + (x || item)", _design_data),
    "nested within crossed": ("y ~ x + (1 | subject/session) + (1 | item)", _design_data),
    "three crossed factors": ("y ~ x + (1 | subject) + (1 | item) + (1 | site)", _design_data),
    "more items than subjects": ("y ~ x + (1 | subject) + (x | item)",
                                 lambda: _design_data(seed=2, subjects=3, items=9)),
}


def _model(formula: str, df: pd.DataFrame) -> lb.LMM:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplicitNestingWarning)
        return lb.LMM(formula, df)


def _dense_loglik(design, beta, sigma, Ginv) -> float:
    """log N(y | X beta, sigma^2 I + Z (blockdiag of I (x) G_k) Z'), the definition."""
    blocks = [np.kron(np.eye(g.n_levels), np.linalg.inv(Ginv[k, : g.n_effects, : g.n_effects]))
              for k, g in enumerate(design.groups)]
    Z = design.Z.toarray()
    V = sigma**2 * np.eye(design.n) + Z @ block_diag(*blocks) @ Z.T
    return float(multivariate_normal(design.X @ beta, V).logpdf(design.y))


def _parts(km, x):
    lp, grad, sigma, sd, R, Ginv, logdet_G = load().density_start(x, km.ints, km.floats)
    return sigma, Ginv, logdet_G


def _paths(monkeypatch, coupling: str, lapack: str) -> None:
    """Eliminate the coupling cluster by cluster ("sparse") or as BLAS products ("dense"); factorise
    the dense block in compiled code ("compiled") or through scipy ("scipy")."""
    monkeypatch.setattr(crossed, "DENSE_COUPLING", 0.0 if coupling == "dense" else 2.0)
    monkeypatch.setattr(crossed, "SMALL_DENSE_EFFECTS", 10**6 if lapack == "compiled" else 0)


PATHS = pytest.mark.parametrize(("coupling", "lapack"), [(c, f) for c in ("sparse", "dense") for f in ("compiled", "scipy")])


@PATHS
@pytest.mark.parametrize("case", list(CASES))
def test_marginal_equals_dense_normal_density(case, coupling, lapack, monkeypatch):
    """Every way of eliminating the coupling and factorising the dense block."""
    _paths(monkeypatch, coupling, lapack)
    formula, data = CASES[case]
    model = _model(formula, data())
    d = model.design
    with pytest.raises(ValueError):  # these are crossed: not a nesting chain
        nesting_chain(d)
    system = CrossedSystem.from_design(d)
    assert (system.Bd is not None) == (coupling == "dense")
    km = crossed_model(d, model.priors, system)
    rng = np.random.default_rng(0)
    p = len(d.X_columns)
    for _ in range(3):
        x = km.start + rng.normal(scale=0.7, size=km.n_dim)
        sigma, Ginv, logdet_G = _parts(km, x)
        ll, *_ = system.marginal(x[:p], sigma**2, Ginv, logdet_G)
        assert ll == pytest.approx(_dense_loglik(d, x[:p], sigma, Ginv), abs=1e-8, rel=1e-12)


@PATHS
@pytest.mark.parametrize("case", ["slopes on both, balanced", "nested within crossed", "more items than subjects",
                                  "slopes on both, uncorrelated"])
def test_gradient_matches_finite_differences(case, coupling, lapack, monkeypatch):
    _paths(monkeypatch, coupling, lapack)
    formula, data = CASES[case]
    model = _model(formula, data())
    km = crossed_model(model.design, model.priors)
    x = km.start + np.random.default_rng(1).normal(scale=0.5, size=km.n_dim)
    _, grad = km.log_density(x)
    eps = 1e-6
    fd = [(km.log_density(x + eps * e)[0] - km.log_density(x - eps * e)[0]) / (2 * eps) for e in np.eye(km.n_dim)]
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


@PATHS
def test_log_density_is_minus_inf_off_support(coupling, lapack, monkeypatch):
    _paths(monkeypatch, coupling, lapack)
    formula, data = CASES["slopes on both, balanced"]
    model = _model(formula, data())
    km = crossed_model(model.design, model.priors)
    x = km.start.copy()
    x[len(model.design.X_columns) + 1] = -800.0  # an SD of exp(-800) = 0: G singular
    lp, _ = km.log_density(x)
    assert lp == -np.inf


# ---------------------------------------------------------------- lme4


def _lme4(dataset: str, method: str) -> dict:
    entries = json.loads((DATA / "crossed_lme4.json").read_text())["entries"]
    return next(e for e in entries if e["dataset"] == dataset and e["method"] == method)


def _lme4_G(ref: dict, group: str, effects: tuple[str, ...]) -> np.ndarray:
    names = ["(Intercept)" if e == "Intercept" else e for e in effects]
    q = len(names)
    sd = np.zeros(q)
    R = np.eye(q)
    for row in ref["varcorr"]:
        if row["grp"] != group:
            continue
        a = names.index(row["var1"])
        if row["var2"] is None:
            sd[a] = row["sdcor"]
        else:
            c = names.index(row["var2"])
            R[a, c] = R[c, a] = row["sdcor"]
    return np.outer(sd, sd) * R


LME4_DATA = {"penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv"),
             "crossed_sim": (SIM_FORMULA, "crossed_sim.csv")}


@pytest.mark.parametrize("dataset", list(LME4_DATA))
def test_marginal_at_lme4_ml_estimates_equals_lme4_loglik(dataset):
    """Exact: log p(y | beta, sigma, G) at lme4's ML optimum is lme4's logLik (reported to ~15 digits)."""
    formula, file = LME4_DATA[dataset]
    ref = _lme4(dataset, "ML")
    model = _model(formula, pd.read_csv(DATA / file))
    d = model.design
    assert d.n == ref["nobs"]
    beta = np.array([ref["fixef"]["(Intercept)" if c == "Intercept" else c] for c in d.X_columns])
    qmax = max(g.n_effects for g in d.groups)
    Ginv = np.zeros((len(d.groups), qmax, qmax))
    logdet_G = np.zeros(len(d.groups))
    for k, g in enumerate(d.groups):
        G = _lme4_G(ref, g.name, g.effects)
        Ginv[k, : g.n_effects, : g.n_effects] = np.linalg.inv(G)
        logdet_G[k] = np.linalg.slogdet(G)[1]
    ll, *_ = CrossedSystem.from_design(d).marginal(beta, ref["sigma"] ** 2, Ginv, logdet_G)
    assert ll == pytest.approx(ref["logLik"], abs=1e-6)


# ---------------------------------------------------------------- exact draws of b


def test_draws_of_b_follow_the_dense_posterior():
    """At a fixed (beta, sigma, G), b | y is N(M^-1 Z'r, sigma^2 M^-1): 4,000 draws, checked in MC units."""
    formula, data = CASES["nested within crossed"]
    model = _model(formula, data())
    d = model.design
    system = CrossedSystem.from_design(d)
    km = crossed_model(d, model.priors, system)
    x = km.start + np.random.default_rng(2).normal(scale=0.5, size=km.n_dim)
    sigma, Ginv, _ = _parts(km, x)
    p = len(d.X_columns)
    Z = d.Z.toarray()
    Lam_inv = block_diag(*[np.kron(np.eye(g.n_levels), Ginv[k, : g.n_effects, : g.n_effects])
                           for k, g in enumerate(d.groups)])
    M = Z.T @ Z + sigma**2 * Lam_inv
    mean = np.linalg.solve(M, Z.T @ (d.y - d.X @ x[:p]))
    cov = sigma**2 * np.linalg.inv(M)
    rng = np.random.default_rng(5)
    n_draws = 4000
    draws = np.array([system.draw(x[:p], sigma**2, Ginv, rng.standard_normal(Z.shape[1])) for _ in range(n_draws)])
    sd = np.sqrt(np.diag(cov))
    z = (draws.mean(axis=0) - mean) / (sd / np.sqrt(n_draws))
    assert np.max(np.abs(z)) < 4.5
    # every variance and covariance (subject-item ones included), in units of its standard error
    emp = np.cov(draws.T)
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n_draws)
    assert np.max(np.abs(emp - cov) / se) < 5.0


# ---------------------------------------------------------------- choosing the method


def test_auto_picks_the_crossed_collapsed_method():
    formula, data = CASES["slopes on both, balanced"]
    d = _model(formula, data()).design
    method, note = resolve_method(d, "auto")
    assert isinstance(method, Crossed) and method.name == "collapsed" and note == ""
    assert isinstance(resolve_method(d, "collapsed")[0], Crossed)
    assert isinstance(resolve_method(d, "full")[0], Full)
    nested = _model("y ~ x + (1 | subject)", data()).design
    assert isinstance(resolve_method(nested, "auto")[0], Collapsed)


def test_other_samplers_and_huge_dense_blocks_fall_back_to_full_with_a_reason(monkeypatch):
    formula, data = CASES["intercepts, balanced"]
    d = _model(formula, data()).design
    method, note = resolve_method(d, "auto", sampler="pymc")
    assert isinstance(method, Full) and "crossed" in note and "nutpie" in note
    with pytest.raises(ValueError, match="method='collapsed' cannot be used.*nutpie.*use method='full'"):
        resolve_method(d, "collapsed", sampler="pymc")
    with pytest.raises(ValueError, match="centered=True only applies"):
        resolve_method(d, "collapsed", centered=True)
    monkeypatch.setattr("lmm_bayes.inference.methods.crossed.method.MAX_DENSE_EFFECTS", 3)
    method, note = resolve_method(d, "auto")
    assert isinstance(method, Full) and "dense block would hold 4 effects" in note


def test_the_crossed_method_has_no_pymc_graph():
    formula, data = CASES["intercepts, balanced"]
    model = _model(formula, data())
    with pytest.raises(ValueError, match="no PyMC graph.*nutpie"):
        model.pymc_model(method="collapsed")


def test_dense_block_is_every_factor_but_the_largest():
    formula, data = CASES["three crossed factors"]
    d = _model(formula, data()).design
    sizes = {g.name: g.n_levels * g.n_effects for g in d.groups}
    assert crossed.dense_effects(d) == sum(sizes.values()) - max(sizes.values())


# ---------------------------------------------------------------- sampled posteriors


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(DATA / "crossed_sim.csv")


@pytest.fixture(scope="module")
def crossed_fit(sim):
    return _model(SIM_FORMULA, sim).fit(seed=11, progressbar=False)


@pytest.fixture(scope="module")
def full_fit(sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _model(SIM_FORMULA, sim).fit(method="full", seed=12, progressbar=False)


HYPER = ["beta", "sigma", "subject_sd", "item_sd", "subject_corr", "item_corr"]


def _flat(fit, var):
    da = fit.posterior[var].stack(sample=("chain", "draw"))
    if var.endswith("_corr"):
        da = da.isel({da.dims[0]: 1, da.dims[1]: 0})  # the one correlation
    return da


def test_crossed_fit_is_reliable_and_labelled_like_the_full_fit(crossed_fit, full_fit):
    assert crossed_fit.method == "collapsed" and full_fit.method == "full"
    d = crossed_fit.diagnostics()
    assert d["divergences"] == 0 and d["max_r_hat"] < 1.01
    a, b = crossed_fit.idata.posterior, full_fit.idata.posterior
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for v in a.data_vars:
        assert a[v].dims == b[v].dims, v
    for c in a.coords:
        if c not in ("chain", "draw"):
            assert list(a[c].values) == list(b[c].values), c


def test_crossed_and_full_posteriors_agree(crossed_fit, full_fit):
    """Hyperparameter means within 4 combined MCSE, SDs within 15%, b means within 0.1 posterior SD."""
    for var in HYPER:
        xa, xb = crossed_fit.posterior[var], full_fit.posterior[var]
        ma, mb = xa.mean(("chain", "draw")).values, xb.mean(("chain", "draw")).values
        se = np.hypot(np.asarray(az.mcse(xa)), np.asarray(az.mcse(xb)))
        sa, sb = xa.std(("chain", "draw")).values, xb.std(("chain", "draw")).values
        free = sb > 1e-12  # not a correlation matrix's fixed diagonal
        assert np.all(np.abs(ma - mb)[free] < 4 * se[free]), var
        assert np.all(np.abs(sa / np.where(free, sb, 1) - 1)[free] < 0.15), var
    for g in ("subject", "item"):
        ba, bb = crossed_fit.posterior[f"{g}_b"], full_fit.posterior[f"{g}_b"]
        gap = np.abs(ba.mean(("chain", "draw")) - bb.mean(("chain", "draw"))) / bb.std(("chain", "draw"))
        assert float(gap.max()) < 0.1, g


def test_crossed_fit_against_lme4_reml(crossed_fit):
    """Posterior medians near lme4's REML estimates: fixed effects and sigma within 0.2 posterior SD,
    the SDs and correlations (30 subjects, 24 items: right-skewed posteriors, weakly informative
    priors) within 0.6 posterior SD."""
    ref = _lme4("crossed_sim", "REML")
    post = crossed_fit.posterior
    for c in crossed_fit.design.X_columns:
        draws = post["beta"].sel(coef=c)
        est = ref["fixef"]["(Intercept)" if c == "Intercept" else c]
        assert abs(float(draws.median()) - est) < 0.2 * float(draws.std()), c
    assert abs(float(post["sigma"].median()) - ref["sigma"]) < 0.2 * float(post["sigma"].std())
    for g in crossed_fit.design.groups:
        G = _lme4_G(ref, g.name, g.effects)
        sd = post[f"{g.name}_sd"]
        for k, e in enumerate(g.effects):
            draws = sd.isel({g.effect_dim: k})
            assert abs(float(draws.median()) - np.sqrt(G[k, k])) < 0.6 * float(draws.std()), (g.name, e)
        corr = _flat(crossed_fit, f"{g.name}_corr")
        lme4_corr = G[0, 1] / np.sqrt(G[0, 0] * G[1, 1])
        assert abs(float(corr.median()) - lme4_corr) < 0.6 * float(corr.std()), g.name


def _simulation():
    spec = importlib.util.spec_from_file_location("make_crossed_sim", DATA / "make_crossed_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate()


def test_crossed_fit_recovers_the_simulation_truth(crossed_fit, sim):
    """The 108 true b (30 subjects and 24 items, 2 effects each) lie in their 94% HDIs at the
    nominal rate (binomial 99.9% range), and every hyperparameter is within 3 posterior SDs of
    its truth (24 items drew an intercept SD of 0.41 against 0.6: 2.4 SDs away)."""
    df, b_subject, b_item = _simulation()
    pd.testing.assert_frame_equal(df, sim, check_exact=False, atol=1e-6)  # the CSV is this simulation
    post = crossed_fit.posterior
    inside = []
    for g, truth in (("subject", b_subject), ("item", b_item)):
        draws = post[f"{g}_b"].sel({g: [f"{g[0]}{k + 1}" for k in range(len(truth))]})
        interval = np.asarray(az.hdi(draws, prob=0.94))
        inside.append(((interval[..., 0] < truth) & (truth < interval[..., 1])).ravel())
    inside = np.concatenate(inside)
    low, high = binom.ppf([0.0005, 0.9995], inside.size, 0.94)
    assert low <= inside.sum() <= high, inside.mean()
    for var, truth in TRUTH.items():
        draws = post[var]
        z = (draws.mean(("chain", "draw")).values - np.asarray(truth)) / draws.std(("chain", "draw")).values
        assert np.all(np.abs(z) < 3), (var, z)


def test_crossed_fit_predicts_saves_and_keeps_b_as_asked(crossed_fit, sim, tmp_path):
    pred = crossed_fit.predict(sim.head(3))
    assert pred.sizes["obs"] == 3
    # the fitted mean of a seen subject and item is X beta + Z b, draw by draw
    post = crossed_fit.posterior
    row = sim.iloc[0]
    by_hand = (post["beta"].sel(coef="Intercept") + post["beta"].sel(coef="cond") * row["cond"]
               + sum(post[f"{g}_b"].sel({g: row[g], f"{g}_effect": "Intercept"})
                     + post[f"{g}_b"].sel({g: row[g], f"{g}_effect": "cond"}) * row["cond"] for g in ("subject", "item")))
    np.testing.assert_allclose(pred.isel(obs=0).values, by_hand.values, rtol=1e-10)
    path = tmp_path / "fit.nc"
    crossed_fit.save(path)
    back = lb.load(path)
    np.testing.assert_allclose(back.posterior["item_b"].values, crossed_fit.posterior["item_b"].values)
    light = _model(SIM_FORMULA, sim).fit(seed=11, progressbar=False, draws=100, tune=200, chains=2, keep_b="none")
    assert "item_b" not in light.posterior and "item_sd" in light.posterior


def test_ranef_and_coef_without_a_group_stack_every_factor(crossed_fit):
    for table in ("ranef", "coef"):
        every = getattr(crossed_fit, table)()
        assert every.index.names == ["group", "level", "effect"]
        assert list(every.index.unique("group")) == ["subject", "item"]
        for g in ("subject", "item"):
            pd.testing.assert_frame_equal(every.xs(g, level="group"), getattr(crossed_fit, table)(g))


def test_crossed_draws_of_b_repeat_with_the_seed(sim):
    model = _model(SIM_FORMULA, sim)
    a = model.fit(seed=3, progressbar=False, draws=50, tune=100, chains=1)
    b = model.fit(seed=3, progressbar=False, draws=50, tune=100, chains=1)
    np.testing.assert_array_equal(a.posterior["subject_b"].values, b.posterior["subject_b"].values)


# ---------------------------------------------------------------- implicit nesting


def test_implicit_nesting_warns_only_for_labels_that_restart():
    rng = np.random.default_rng(0)
    # neurons numbered from 1 in each subject, 2 to 5 of them: the pitfall
    rows = [(f"s{s}", f"n{k + 1}", rng.normal()) for s in range(6) for k in range(2 + s % 4) for _ in range(3)]
    neurons = pd.DataFrame(rows, columns=["subject", "neuron", "y"])
    with pytest.warns(ImplicitNestingWarning, match=r"restart inside each level of 'subject'.*\(1 \| subject:neuron\)"):
        lb.LMM("y ~ 1 + (1 | subject) + (1 | neuron)", neurons)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplicitNestingWarning)
        lb.LMM("y ~ 1 + (1 | subject) + (1 | subject:neuron)", neurons)
        # crossed on purpose: every subject sees every item, or its own random subset
        lb.LMM("y ~ x + (1 | subject) + (1 | item)", _balanced())
        lb.LMM("y ~ x + (1 | subject) + (1 | item)", _design_data(empty=0.4))
        lb.LMM(SIM_FORMULA, pd.read_csv(DATA / "crossed_sim.csv"))
        lb.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", pd.read_csv(DATA / "penicillin.csv"))


def test_restarted_labels_compares_labels_as_numbers():
    from lmm_bayes.spec.validate import restarted_labels

    labels = sorted(f"n{k}" for k in range(1, 13))  # as text: n1, n10, n11, n12, n2, ...
    first_three = [labels.index(x) for x in ("n1", "n2", "n3")]
    codes = np.array(first_three + list(range(12)))  # subject 0: n1-n3; subject 1: n1-n12
    outer = np.array([0, 0, 0] + [1] * 12)
    assert restarted_labels((codes, labels), outer)

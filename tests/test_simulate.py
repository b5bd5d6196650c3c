"""Simulation with known truth: shapes, labels, seeds, statistics, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb

FORMULA = "y ~ x + (1 + x | g) + (1 | g:h)"
PARAMS = {
    "beta": {"Intercept": 5.0, "x": 1.5},
    "G": {"g": [[1.0, -0.2], [-0.2, 0.25]], "g:h": [[0.49]]},
    "sigma": 2.0,
}
HIER = dict(beta={"Intercept": 10.0, "x": 2.0}, G=[[1.0, 0.3], [0.3, 0.25]], sigma_neuron=0.7, sigma=2.0)


def skeleton(n_g: int = 6, n_h: int = 3, n_rep: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_g * n_h * n_rep
    return pd.DataFrame({
        "g": np.repeat([f"g{k}" for k in range(n_g)], n_h * n_rep),
        "h": np.tile(np.repeat([f"h{k}" for k in range(n_h)], n_rep), n_g),
        "x": rng.normal(size=n),
    })


@pytest.fixture(scope="module")
def big():
    """Many clusters, many rows: empirical statistics close to the truth."""
    return lb.simulate(FORMULA, skeleton(3000, 2, 10), params=PARAMS, seed=11)


@pytest.fixture(scope="module")
def hier():
    return lb.simulate_hierarchy(40, 5, (10, 20), seed=3, **HIER)


# ---------------------------------------------------------------- shapes and labels


def test_simulate_shapes_and_truth_dims():
    df = skeleton()
    sim = lb.simulate(FORMULA, df, params=PARAMS, seed=1)
    assert isinstance(sim, lb.Simulation)
    assert sim.data.columns.tolist() == ["g", "h", "x", "y"]
    assert len(sim.data) == len(df) and sim.data.index.equals(df.index)
    assert "y" not in df.columns  # input not mutated
    t = sim.truth
    assert t["beta"].dims == ("coef",) and t["coef"].values.tolist() == ["Intercept", "x"]
    assert t["g_b"].dims == ("g", "g_effect") and t["g_b"].shape == (6, 2)
    assert t["g:h_b"].dims == ("g:h", "g:h_effect") and t["g:h_b"].shape == (18, 1)
    assert t["g_corr"].dims == ("g_effect", "g_effect_bis")
    assert "g:h_corr" not in t  # a single effect has no correlation
    assert t["g"].values.tolist() == [f"g{k}" for k in range(6)]
    assert "g0:h2" in t["g:h"].values
    np.testing.assert_allclose(t["g_sd"], [1.0, 0.5])
    np.testing.assert_allclose(t["g_corr"].sel(g_effect="Intercept", g_effect_bis="x"), -0.4)
    np.testing.assert_allclose(t["g_cov"], PARAMS["G"]["g"])
    assert float(t["sigma"]) == 2.0 and t.attrs["formula"] == FORMULA


def test_beta_as_list_and_existing_response_replaced():
    df = skeleton().assign(y=np.nan)
    a = lb.simulate(FORMULA, df, params={**PARAMS, "beta": [5.0, 1.5]}, seed=4)
    b = lb.simulate(FORMULA, df.drop(columns="y"), params=PARAMS, seed=4)
    np.testing.assert_array_equal(a.data["y"], b.data["y"])
    assert df["y"].isna().all()


def test_seeds_reproducible():
    df = skeleton()
    a, b = (lb.simulate(FORMULA, df, params=PARAMS, seed=5) for _ in range(2))
    c = lb.simulate(FORMULA, df, params=PARAMS, seed=6)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth.identical(b.truth)
    assert not np.allclose(a.data["y"], c.data["y"])
    h1, h2 = (lb.simulate_hierarchy(4, 3, (2, 9), seed=np.random.default_rng(7), **HIER) for _ in range(2))
    pd.testing.assert_frame_equal(h1.data, h2.data)


def test_model_without_random_effects():
    sim = lb.simulate("y ~ x", skeleton(), params={"beta": [1.0, 2.0], "sigma": 0.5}, seed=1)
    assert set(sim.truth.data_vars) == {"beta", "sigma"}


# ---------------------------------------------------------------- statistics


def test_empirical_statistics_match_truth(big):
    """Statistics of 3000 subjects' b, 6000 g:h intercepts and 60 000 residuals against the truth,
    each within 4 of its own standard errors (normal theory: SE of an SD sigma / sqrt(2n), of a
    correlation (1 - rho^2) / sqrt(n), of a covariance entry sqrt((G_ii G_jj + G_ij^2) / n)).
    A transposed Cholesky factor (b = z L instead of z L') gives sd(x) 0.458 and corr -0.20: > 6 SEs."""
    t = big.truth
    b = t["g_b"].values
    n = len(b)
    G = np.asarray(PARAMS["G"]["g"])
    C = b.T @ b / n  # the true mean is 0
    se_C = np.sqrt((np.outer(np.diag(G), np.diag(G)) + G**2) / n)
    assert np.all(np.abs(C - G) < 4 * se_C), (C - G) / se_C
    sd = np.sqrt(np.diag(G))
    assert np.all(np.abs(b.std(axis=0) - sd) < 4 * sd / np.sqrt(2 * n))
    rho = G[0, 1] / (sd[0] * sd[1])
    assert abs(np.corrcoef(b.T)[0, 1] - rho) < 4 * (1 - rho**2) / np.sqrt(n)
    gh = t["g:h_b"].values
    assert abs(gh.std() - 0.7) < 4 * 0.7 / np.sqrt(2 * gh.size)
    d = lb.LMM(FORMULA, big.data).design
    mu = d.X @ t["beta"].values
    for g in d.groups:
        bg = t[f"{g.name}_b"].sel({g.name: list(g.levels)}).values
        mu += np.einsum("nq,nq->n", g.Z, bg[g.codes])
    e = d.y - mu
    assert abs(e.std() - 2.0) < 4 * 2.0 / np.sqrt(2 * e.size)
    assert abs(e.mean()) < 4 * 2.0 / np.sqrt(e.size)


def test_hierarchy_statistics(hier):
    """As above, 4 SEs: 200 neuron intercepts (SE 0.035), 2000 subjects' b, 2000 subject means of x
    (SD sqrt(3^2 + 0.5^2 / 4) with 4 trials per subject)."""
    t = hier.truth
    neuron = t["subject:neuron_b"].values
    assert abs(neuron.std() - 0.7) < min(0.1, 4 * 0.7 / np.sqrt(2 * neuron.size))  # never looser than before
    big = lb.simulate_hierarchy(2000, 2, 2, seed=1, x_between_sd=3.0, x_within_sd=0.5, **HIER)
    b = big.truth["subject_b"].values
    sd = np.sqrt(np.diag(HIER["G"]))
    assert np.all(np.abs(b.std(axis=0) - sd) < np.minimum(0.06 * sd, 4 * sd / np.sqrt(2 * len(b))))
    means = big.data.groupby("subject", observed=True)["x"].mean()
    sd_means = np.sqrt(3.0**2 + 0.5**2 / 4)
    assert abs(means.std() - sd_means) < min(0.15, 4 * sd_means / np.sqrt(2 * len(means)))


# ---------------------------------------------------------------- the hierarchy skeleton


def test_hierarchy_layout(hier):
    df = hier.data
    assert df.columns.tolist() == ["subject", "neuron", "trial", "x", "y"]
    assert df["subject"].cat.categories.tolist()[:2] == ["s01", "s02"]
    assert df["neuron"].cat.categories.tolist() == ["n1", "n2", "n3", "n4", "n5"]
    per_neuron = df.groupby(["subject", "neuron"], observed=True).size()
    assert len(per_neuron) == 200 and per_neuron.between(10, 20).all() and per_neuron.nunique() > 1
    first = df.groupby(["subject", "neuron"], observed=True)["trial"].agg(["min", "max"])
    assert (first["min"] == 1).all() and (first["max"] == per_neuron).all()
    t = hier.truth
    assert t["subject_b"].shape == (40, 2) and t["subject:neuron_b"].shape == (200, 1)
    assert t.attrs["formula"] == "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
    design = lb.LMM(t.attrs["formula"], df).design
    assert set(design.group("subject:neuron").levels) == set(t["subject:neuron"].values)


def test_hierarchy_unbalanced_neurons_and_speed_shape():
    sim = lb.simulate_hierarchy(3, (1, 4), 2, seed=2, **HIER)
    counts = sim.data.groupby("subject", observed=True)["neuron"].nunique()
    assert counts.between(1, 4).all()
    assert len(sim.truth["subject:neuron"]) == counts.sum()


def test_hierarchy_million_rows():
    sim = lb.simulate_hierarchy(100, 25, 400, seed=1, **HIER)
    assert len(sim.data) == 1_000_000
    assert sim.data["neuron"].dtype == "category"


# ---------------------------------------------------------------- errors


def with_params(**change):
    return {**PARAMS, **change}


ERRORS = [
    ([], TypeError, r"params must be a dict with 'beta', 'G' and 'sigma'"),
    ({"beta": PARAMS["beta"], "G": PARAMS["G"]}, ValueError, r"params lacks \['sigma'\]"),
    (with_params(sigmaa=1), ValueError, r"params has unknown key 'sigmaa' \(did you mean 'sigma'\?\)"),
    (with_params(beta={"Intercept": 5.0}), ValueError, r"params\['beta'\] lacks \['x'\]"),
    (with_params(beta={"Intercept": 5.0, "x": 1, "z": 2}), ValueError,
     r"params\['beta'\] has unknown key 'z'"),
    (with_params(beta=[1.0]), ValueError, r"params\['beta'\] has 1 values for 2 fixed effects"),
    (with_params(beta=1.0), TypeError, r"params\['beta'\] must be a dict like"),
    (with_params(beta={"Intercept": "a", "x": 1}), TypeError,
     r"params\['beta'\]\['Intercept'\] must be a number"),
    (with_params(beta=[np.nan, 1.0]), ValueError, r"must be a finite number"),
    (with_params(G=[[1.0]]), TypeError, r"params\['G'\] must be a dict keyed by grouping factor"),
    (with_params(G={"g": [[1.0, 0], [0, 1]]}), ValueError, r"params\['G'\] lacks \['g:h'\]"),
    (with_params(G={**PARAMS["G"], "gh": 1.0}), ValueError, r"unknown key 'gh' \(did you mean 'g:h'\?\)"),
    (with_params(G={**PARAMS["G"], "g": [[1.0]]}), ValueError,
     r"must be a 2x2 covariance matrix .*got shape \(1, 1\)"),
    (with_params(G={**PARAMS["G"], "g": [[1.0, 2.0], [2.0, 1.0]]}), ValueError, r"must be positive definite"),
    (with_params(G={**PARAMS["G"], "g": [[1.0, 0.1], [0.2, 1.0]]}), ValueError, r"finite symmetric matrix"),
    (with_params(G={**PARAMS["G"], "g:h": [[-1.0]]}), ValueError, r"positive definite"),
    (with_params(G={**PARAMS["G"], "g": "big"}), TypeError, r"must be a 2x2 matrix of numbers"),
    (with_params(sigma=0), ValueError, r"params\['sigma'\] must be a positive finite number, got 0"),
    (with_params(sigma="2"), TypeError, r"params\['sigma'\] must be a number, got str"),
]


@pytest.mark.parametrize(("params", "error", "match"), ERRORS)
def test_simulate_param_errors(params, error, match):
    with pytest.raises(error, match=match):
        lb.simulate(FORMULA, skeleton(), params=params, seed=1)


def test_simulate_other_errors():
    df = skeleton()
    with pytest.raises(ValueError, match=r"independent .*set it to 0"):
        lb.simulate("y ~ x + (1 + x || g)", df, seed=1,
                    params={"beta": [0, 0], "G": {"g": [[1, 0.1], [0.1, 1]]}, "sigma": 1})
    with pytest.raises(TypeError, match=r"seed must be an int"):
        lb.simulate(FORMULA, df, params=PARAMS, seed="1")
    with pytest.raises(ValueError, match=r"cannot simulate the transformed response 'log\(y\)'"):
        lb.simulate("log(y) ~ x + (1 | g)", df, params=PARAMS, seed=1)
    with pytest.raises(ValueError, match=r"column\(s\) not in data: 'z'"):
        lb.simulate("y ~ z + (1 | g)", df, params=PARAMS, seed=1)
    with pytest.raises(TypeError, match=r"data must be a pandas DataFrame"):
        lb.simulate(FORMULA, df.to_dict(), params=PARAMS, seed=1)


HIER_ERRORS = [
    (dict(n_subjects=1), ValueError, r"n_subjects must be at least 2, got 1"),
    (dict(n_subjects=2.0), TypeError, r"n_subjects must be an integer"),
    (dict(n_trials=(5, 2)), ValueError, r"n_trials range must be \(low, high\) with low <= high"),
    (dict(n_trials=(0, 2)), ValueError, r"n_trials\[0\] must be at least 1"),
    (dict(n_trials="5"), TypeError, r"n_trials must be an int or a \(low, high\) pair"),
    (dict(n_neurons=0), ValueError, r"n_neurons must be at least 1"),
    (dict(x_within_sd=-1.0), ValueError, r"x_within_sd and x_between_sd must be >= 0"),
    (dict(G=[[1.0, 2.0], [2.0, 1.0]]), ValueError, r"G must be positive definite"),
    (dict(beta=[1.0]), ValueError, r"beta has 1 values for 2 fixed effects"),
    (dict(sigma_neuron=0.0), ValueError, r"sigma_neuron must be a positive finite number"),
    (dict(sigma=-2.0), ValueError, r"sigma must be a positive finite number"),
]


@pytest.mark.parametrize(("change", "error", "match"), HIER_ERRORS)
def test_hierarchy_errors(change, error, match):
    args = dict(n_subjects=3, n_neurons=2, n_trials=3, seed=1, **HIER)
    args.update(change)
    with pytest.raises(error, match=match):
        lb.simulate_hierarchy(args.pop("n_subjects"), args.pop("n_neurons"), args.pop("n_trials"), **args)


# ---------------------------------------------------------------- families (lb.simulate(family=...))


def _glm_skeleton(n_g: int = 3000, n_rep: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = n_g * n_rep
    return pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(n_g)], n_rep), "x": rng.normal(size=n),
                         "t": rng.uniform(0.5, 2.0, n), "n": rng.integers(1, 20, n)})


@pytest.mark.parametrize("family, link, extra", [
    ("poisson", None, {}), ("negativebinomial", None, {"dispersion": 0.5}),
    ("binomial", None, {}), ("bernoulli", "probit", {}),
])
def test_simulate_families_draw_from_the_truth(family, link, extra):
    """Given the true b, the rows' total response is the family's mean within 4 standard errors
    (a z-check), and for the negative binomial the squared residuals match its variance
    mu + dispersion^2 mu^2 within 5%; the Poisson rows carry their offset."""
    df = _glm_skeleton()
    offset = " + offset(log(t))" if family == "poisson" else ""
    sim = lb.simulate(f"k ~ x{offset} + (1 | g)", df, family=family, link=link, seed=2,
                      trials="n" if family == "binomial" else None,
                      params={"beta": [0.3, 0.4], "G": {"g": 0.25}, **extra})
    b = sim.truth["g_b"].sel(g_effect="Intercept").to_series().reindex(df["g"]).to_numpy()
    eta = 0.3 + 0.4 * df["x"].to_numpy() + b + (np.log(df["t"].to_numpy()) if offset else 0.0)
    y = sim.data["k"].to_numpy()
    if family in ("poisson", "negativebinomial"):
        mu = np.exp(eta)
        var = mu + (0.25 * mu**2 if family == "negativebinomial" else 0.0)
    else:
        from scipy.special import expit, ndtr

        n = df["n"].to_numpy() if family == "binomial" else 1
        p = ndtr(eta) if link == "probit" else expit(eta)
        mu, var = n * p, n * p * (1 - p)
    assert abs(y.sum() - mu.sum()) / np.sqrt(var.sum()) < 4
    if family == "negativebinomial":
        assert np.sum((y - mu) ** 2) / var.sum() == pytest.approx(1.0, abs=0.05)
    assert sim.family.name == family and float(sim.truth["g_sd"].values[0]) == pytest.approx(0.5)
    if family == "binomial":
        assert sim.formula == "cbind(k, n - k) ~ x + (1 | g)" and (y <= df["n"]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(family="poisson", params={"beta": [0.0], "G": {"g": 0.1}, "sigma": 1.0}), "unknown key 'sigma'"),
    (dict(family="negativebinomial", params={"beta": [0.0], "G": {"g": 0.1}}), r"lacks \['dispersion'\]"),
    (dict(family="binomial", params={"beta": [0.0], "G": {"g": 0.1}}), "is for family='binomial', and needed"),
    (dict(family="poisson", trials="n", params={"beta": [0.0], "G": {"g": 0.1}}), "got trials='n' for family='poisson'"),
    (dict(family="gaussian", trials="n", params={"beta": [0.0], "G": {"g": 0.1}, "sigma": 1.0}), "is for family='binomial', not 'gaussian'"),
])
def test_simulate_family_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lb.simulate("k ~ 1 + (1 | g)", _glm_skeleton(5, 2), seed=1, **kwargs)
    with pytest.raises(ValueError, match="plain response with trials='<column>', not cbind"):
        lb.simulate("cbind(k, n - k) ~ 1 + (1 | g)", _glm_skeleton(5, 2), seed=1, family="binomial",
                    params={"beta": [0.0], "G": {"g": 0.1}})


@pytest.mark.parametrize("sizes, rows", [
    ((10**15, 2, 2), "4,000,000,000,000,000"),
    ((2, (1, 10**6), (1, 10**6)), "2,000,000,000,000"),
])
def test_rows_to_simulate_are_limited_before_allocating(sizes, rows):
    """1e15 rows was a MemoryError traceback: the most rows the sizes allow is checked first (ranges at their high end)."""
    with pytest.raises(ValueError, match=rf"would simulate up to {rows} rows; at most 100,000,000 rows are simulated"):
        lb.simulate_hierarchy(*sizes, seed=1, **HIER)

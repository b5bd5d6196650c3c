"""The structured residual likelihood (sigma by cluster, AR(1) over trials) against the dense normal density.

Every value is compared with scipy's multivariate normal of Var(y) = Z G Z' + R built row by row from
the definition (R_j = sigma_j^2 rho^|t_i - t_k|), never with the package's own sums.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.inference.methods.structured.likelihood import marginal_loglik


def _data(seed: int = 0, sizes=(1, 2, 5, 9, 3, 1, 7)) -> pd.DataFrame:
    """Unequal clusters, one-row clusters, gaps in the trials, rows shuffled out of time order."""
    rng = np.random.default_rng(seed)
    rows = []
    for j, n in enumerate(sizes):
        trials = np.sort(rng.choice(np.arange(1, 3 * n + 2), size=n, replace=False))  # gaps of 1, 2, 3, ...
        for t in trials:
            rows.append({"g": f"n{j}", "trial": int(t), "x": rng.normal(), "c": rng.choice(["a", "b"]),
                         "k": rng.choice(["lo", "mid", "hi"])})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df["y"] = 1.0 + 0.5 * df["x"] + rng.normal(size=len(df))
    return df


def _dense_cov(df, formula_Z, G, s_row, rho):
    """Var(y) = Z G Z' + R from the definition: R_ab = s_a s_b rho^|t_a - t_b| within a cluster."""
    n = len(df)
    codes = pd.Categorical(df["g"]).codes
    V = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if codes[a] == codes[b]:
                V[a, b] = formula_Z[a] @ G @ formula_Z[b]
                lag = abs(df["trial"].iloc[a] - df["trial"].iloc[b])
                V[a, b] += s_row[a] * s_row[b] * (rho ** lag if rho is not None else float(a == b))
    return V


def _dense(df, formula_Z, beta, X, G, sigma_j, rho, kappa_row=None):
    """log N(y; X beta, Z G Z' + R); ``sigma_j`` per cluster, ``kappa_row`` each row's category factor."""
    s_row = sigma_j[pd.Categorical(df["g"]).codes] * (1.0 if kappa_row is None else kappa_row)
    V = _dense_cov(df, formula_Z, G, s_row, rho)
    return stats.multivariate_normal(mean=X @ beta, cov=V).logpdf(df["y"].to_numpy())


CASES = [  # (sigma=, ar=)
    ("~ (1 | g)", None),
    (None, "trial | g"),
    ("~ (1 | g)", "trial | g"),
    ("~ k", None),
    ("~ k", "trial | g"),
    ("~ k + (1 | g)", "trial | g"),
]


@pytest.mark.parametrize("sigma, ar", CASES)
@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + c + (1 + x | g)"])
@pytest.mark.parametrize("rho", [0.6, -0.45])
def test_marginal_equals_dense_normal(sigma, ar, formula, rho):
    df = _data()
    d = lb.LMM(formula, df, sigma=sigma, ar=ar).design
    g = d.group("g")
    rng = np.random.default_rng(3)
    beta = rng.normal(size=len(d.X_columns))
    q = g.n_effects
    A = rng.normal(size=(q, q))
    G = A @ A.T + 0.3 * np.eye(q)
    by_group = sigma is not None and "|" in sigma
    u = rng.normal(scale=0.5, size=g.n_levels) if by_group else np.zeros(g.n_levels)
    gamma = np.array([0.4, -0.7]) if sigma and "k" in sigma else None  # log(sigma_c / sigma_hi) for lo, mid
    s = 0.7
    ours = marginal_loglik(d, beta, s, G, rho=rho, sigma_u=u if by_group else None, sigma_beta=gamma)
    # the dense density reads the data frame's own rows (levels coded alphabetically, as the design's)
    assert list(g.levels) == sorted(df["g"].unique())
    kappa = None
    if gamma is not None:
        assert d.residual.categories == ("hi", "lo", "mid")
        kappa = df["k"].map({"hi": 1.0, "lo": np.exp(0.4), "mid": np.exp(-0.7)}).to_numpy()
    dense = _dense(df, g.Z, beta, d.X, G, s * np.exp(u), rho if ar else None, kappa)
    assert abs(ours - dense) < 1e-10 * max(1.0, abs(dense))


def test_one_row_clusters_only_sigma():
    df = _data(sizes=(1, 1, 1, 2, 1))
    d = lb.LMM("y ~ x + (1 | g)", df, sigma="~ (1 | g)", ar="trial | g").design
    u = np.array([0.3, -0.2, 0.1, 0.0, 0.5])
    ours = marginal_loglik(d, np.array([0.9, 0.4]), 1.3, np.array([[0.8]]), rho=0.5, sigma_u=u)
    dense = _dense(df, d.group("g").Z, np.array([0.9, 0.4]), d.X, np.array([[0.8]]), 1.3 * np.exp(u), 0.5)
    assert abs(ours - dense) < 1e-10 * abs(dense)


def _reversed_half(df: pd.DataFrame, level: str) -> pd.DataFrame:
    """The first half of one cluster's trial numbers reversed among its rows (the rows keep their y)."""
    out = df.copy()
    rows = out.index[out["g"] == level][np.argsort(out.loc[out["g"] == level, "trial"].to_numpy())]
    half = rows[: max(2, len(rows) // 2 + 1)]
    out.loc[half, "trial"] = out.loc[half[::-1], "trial"].to_numpy()
    return out


def test_trial_order_matters_only_with_ar():
    df = _data()
    level = "n3"  # nine rows
    moved = _reversed_half(df, level)
    assert not moved["trial"].equals(df["trial"])
    beta, G, u = np.array([1.0, 0.5]), np.array([[0.6]]), np.linspace(-0.3, 0.3, 7)
    off = [marginal_loglik(lb.LMM("y ~ x + (1 | g)", f, sigma="~ (1 | g)").design, beta, 0.9, G, sigma_u=u)
           for f in (df, moved)]
    assert off[0] == pytest.approx(off[1], abs=1e-12)
    on = [marginal_loglik(lb.LMM("y ~ x + (1 | g)", f, sigma="~ (1 | g)", ar="trial | g").design, beta, 0.9, G,
                          rho=0.7, sigma_u=u) for f in (df, moved)]
    assert abs(on[0] - on[1]) > 1e-3
    # reversing a whole cluster's order leaves a stationary AR(1) unchanged: corr = rho^|t - s| is symmetric
    whole = df.copy()
    rows = whole["g"] == level
    whole.loc[rows, "trial"] = whole.loc[rows, "trial"].max() + whole.loc[rows, "trial"].min() - whole.loc[rows, "trial"]
    flipped = marginal_loglik(lb.LMM("y ~ x + (1 | g)", whole, sigma="~ (1 | g)", ar="trial | g").design, beta, 0.9,
                              G, rho=0.7, sigma_u=u)
    assert flipped == pytest.approx(on[0], abs=1e-10)


@pytest.mark.parametrize("sigma, ar", [("~ (1 | g)", None), (None, "trial | g"), ("~ k + (1 | g)", "trial | g")])
def test_graph_potential_equals_reference(sigma, ar):
    """The PyTensor graph a fit samples evaluates the same density as the numpy reference (checked above
    against the dense normal), at a random point of the unconstrained space."""
    from lmm_bayes.inference.methods.structured.likelihood import build_structured_model

    m = lb.LMM("y ~ x + (1 + x | g)", _data(), sigma=sigma, ar=ar)
    model = build_structured_model(m.design, m.priors)
    by_group, fixed = sigma is not None and "|" in sigma, sigma is not None and "k" in sigma
    names = (["beta", "sigma", "g_sd", "g_corr"] + (["rho"] if ar else []) + (["sigma_u"] if by_group else [])
             + (["sigma_beta"] if fixed else []))
    f = model.compile_fn([model.potentials[0]] + [model[n] for n in names], inputs=model.value_vars,
                         point_fn=True, on_unused_input="ignore")
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(scale=0.5, size=np.shape(v)) for k, v in model.initial_point(random_seed=1).items()}
    value, *params = f(point)
    p = dict(zip(names, params))
    G = np.outer(p["g_sd"], p["g_sd"]) * p["g_corr"]
    ref = marginal_loglik(m.design, p["beta"], p["sigma"], G, rho=p.get("rho"), sigma_u=p.get("sigma_u"),
                          sigma_beta=p.get("sigma_beta"))
    assert value == pytest.approx(ref, rel=1e-10)


def test_b_draws_follow_the_dense_conditional():
    """At one theta, 4000 draws of b have the dense Gaussian conditional's mean and variances
    (E[b_j | y] = G Z' V^-1 (y - X beta), Cov = G - G Z' V^-1 Z G), AR(1) and sigma by category on."""
    import xarray as xr

    from lmm_bayes.inference.methods.structured.likelihood import draw_random_effects

    df = _data()
    d = lb.LMM("y ~ x + (1 + x | g)", df, sigma="~ k", ar="trial | g").design
    g = d.group("g")
    N, beta, s, rho, gamma = 4000, np.array([0.8, 0.3]), 0.6, 0.55, np.array([0.4, -0.7])
    sd, corr = np.array([0.9, 0.5]), np.array([[1.0, 0.3], [0.3, 1.0]])
    post = xr.Dataset({
        "beta": (("chain", "draw", "coef"), np.tile(beta, (1, N, 1))),
        "sigma": (("chain", "draw"), np.full((1, N), s)),
        "g_sd": (("chain", "draw", "g_effect"), np.tile(sd, (1, N, 1))),
        "g_corr": (("chain", "draw", "g_effect", "g_effect_bis"), np.tile(corr, (1, N, 1, 1))),
        "rho": (("chain", "draw"), np.full((1, N), rho)),
        "sigma_beta": (("chain", "draw", "sigma_coef"), np.tile(gamma, (1, N, 1))),
    }, coords={"chain": [0], "draw": np.arange(N), "coef": list(d.X_columns), "g_effect": list(g.effects),
               "g_effect_bis": list(g.effects), "sigma_coef": ["lo", "mid"]})
    b = draw_random_effects(d, post, seed=1)["g_b"].values[0]  # (draw, level, effect)
    G = np.outer(sd, sd) * corr
    kappa = df["k"].map({"hi": 1.0, "lo": np.exp(0.4), "mid": np.exp(-0.7)}).to_numpy()
    V = _dense_cov(df, g.Z, G, s * kappa, rho)
    for j in range(g.n_levels):
        rows = np.flatnonzero(g.codes == j)
        Vj, Zj = V[np.ix_(rows, rows)], g.Z[rows]
        mean = G @ Zj.T @ np.linalg.solve(Vj, d.y[rows] - d.X[rows] @ beta)
        cov = G - G @ Zj.T @ np.linalg.solve(Vj, Zj @ G)
        assert np.all(np.abs(b[:, j].mean(axis=0) - mean) < 5 * np.sqrt(np.diag(cov) / N))
        assert np.allclose(b[:, j].var(axis=0), np.diag(cov), rtol=0.12)


def test_pointwise_log_likelihood_uses_each_rows_sigma():
    """sigma by level and category, no ar=: given b the rows are independent N(mu_i, s_i), s_i by hand."""
    import xarray as xr

    from lmm_bayes.inference.layout import fitted_linear_predictor, pointwise_log_likelihood

    df = _data()
    d = lb.LMM("y ~ x + (1 | g)", df, sigma="~ k + (1 | g)").design
    g = d.group("g")
    rng = np.random.default_rng(2)
    D = 3
    post = xr.Dataset({
        "beta": (("chain", "draw", "coef"), rng.normal(size=(1, D, 2))),
        "sigma": (("chain", "draw"), rng.uniform(0.5, 1.5, size=(1, D))),
        "sigma_u": (("chain", "draw", "g"), rng.normal(scale=0.3, size=(1, D, g.n_levels))),
        "sigma_beta": (("chain", "draw", "sigma_coef"), rng.normal(scale=0.3, size=(1, D, 2))),
        "g_b": (("chain", "draw", "g", "g_effect"), rng.normal(size=(1, D, g.n_levels, 1))),
    }, coords={"coef": list(d.X_columns), "g": list(g.levels), "g_effect": ["Intercept"],
               "sigma_coef": ["lo", "mid"]})
    ll = pointwise_log_likelihood(d.y, post, lambda one: fitted_linear_predictor(d, one), d).values[0]
    for k in range(D):
        p = post.isel(chain=0, draw=k)
        mu = d.X @ p["beta"].values + p["g_b"].values[g.codes, 0]
        gamma = df["k"].map({"hi": 0.0, "lo": float(p["sigma_beta"][0]), "mid": float(p["sigma_beta"][1])})
        s = float(p["sigma"]) * np.exp(p["sigma_u"].values[g.codes] + gamma.to_numpy())
        assert np.allclose(ll[k], stats.norm.logpdf(d.y, mu, s), rtol=1e-12)

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
            rows.append({"g": f"n{j}", "trial": int(t), "x": rng.normal(), "c": rng.choice(["a", "b"])})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df["y"] = 1.0 + 0.5 * df["x"] + rng.normal(size=len(df))
    return df


def _dense(df, formula_Z, beta, X, G, sigma_j, rho):
    """log N(y; X beta, Z G Z' + R) from the definition; ``formula_Z`` the per-row Z block (n, q)."""
    n = len(df)
    codes = pd.Categorical(df["g"]).codes
    V = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if codes[a] == codes[b]:
                V[a, b] = formula_Z[a] @ G @ formula_Z[b]
                lag = abs(df["trial"].iloc[a] - df["trial"].iloc[b])
                V[a, b] += sigma_j[codes[a]] ** 2 * (rho ** lag if rho is not None else float(a == b))
    return stats.multivariate_normal(mean=X @ beta, cov=V).logpdf(df["y"].to_numpy())


CASES = [  # (sigma=, ar=)
    ("~ (1 | g)", None),
    (None, "trial | g"),
    ("~ (1 | g)", "trial | g"),
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
    u = rng.normal(scale=0.5, size=g.n_levels) if sigma else np.zeros(g.n_levels)
    s = 0.7
    ours = marginal_loglik(d, beta, s, G, rho=rho, sigma_u=u if sigma else None)
    # the dense density reads the data frame's own rows (levels coded alphabetically, as the design's)
    assert list(g.levels) == sorted(df["g"].unique())
    dense = _dense(df, g.Z, beta, d.X, G, s * np.exp(u), rho if ar else None)
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


@pytest.mark.parametrize("sigma, ar", CASES)
def test_graph_potential_equals_reference(sigma, ar):
    """The PyTensor graph a fit samples evaluates the same density as the numpy reference (checked above
    against the dense normal), at a random point of the unconstrained space."""
    from lmm_bayes.inference.methods.structured.likelihood import build_structured_model

    m = lb.LMM("y ~ x + (1 + x | g)", _data(), sigma=sigma, ar=ar)
    model = build_structured_model(m.design, m.priors)
    names = ["beta", "sigma", "g_sd", "g_corr"] + (["rho"] if ar else []) + (["sigma_u"] if sigma else [])
    f = model.compile_fn([model.potentials[0]] + [model[n] for n in names], inputs=model.value_vars,
                         point_fn=True, on_unused_input="ignore")
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(scale=0.5, size=np.shape(v)) for k, v in model.initial_point(random_seed=1).items()}
    value, *params = f(point)
    p = dict(zip(names, params))
    G = np.outer(p["g_sd"], p["g_sd"]) * p["g_corr"]
    ref = marginal_loglik(m.design, p["beta"], p["sigma"], G, rho=p.get("rho"), sigma_u=p.get("sigma_u"))
    assert value == pytest.approx(ref, rel=1e-10)

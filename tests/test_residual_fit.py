"""A fit with sigma by neuron and AR(1) over trials: recovery, exact b, the refusals, save/load, predict.

One model is fitted once per session (module fixture); the data are simulated here with numpy from the
model's definition, not with the package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb

RHO, BETA = 0.6, (2.0, 0.5)


def simulate(seed: int = 11, J: int = 16, T: int = 50) -> tuple[pd.DataFrame, np.ndarray]:
    """Half the neurons quiet (sigma 0.4), half noisy (1.2); AR(1) errors with rho = 0.6 over trials."""
    rng = np.random.default_rng(seed)
    sig = np.where(np.arange(J) < J // 2, 0.4, 1.2)
    rows = []
    for j in range(J):
        b0, b1 = rng.normal(scale=0.8), rng.normal(scale=0.3)
        e = np.empty(T)
        e[0] = rng.normal()
        for t in range(1, T):
            e[t] = RHO * e[t - 1] + np.sqrt(1 - RHO**2) * rng.normal()
        x = rng.normal(size=T)
        y = BETA[0] + b0 + (BETA[1] + b1) * x + sig[j] * e
        rows += [{"neuron": f"n{j:02d}", "trial": t + 1, "x": x[t], "y": y[t]} for t in range(T)]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # rows out of time order
    return df, sig


@pytest.fixture(scope="module")
def fitted():
    df, sig = simulate()
    model = lb.LMM("y ~ x + (1 + x | neuron)", df, sigma="~ (1 | neuron)", ar="trial | neuron")
    fit = model.fit(draws=300, tune=300, chains=2, seed=5, progressbar=False)
    return df, sig, fit


def test_rho_and_sigma_ratio_recovered(fitted):
    _, sig, fit = fitted
    post = fit.posterior
    rho = post["rho"].values.ravel()
    assert abs(rho.mean() - RHO) < 3 * rho.std()
    sd = post["sigma"] * np.exp(post["sigma_u"])  # sigma_j per draw
    levels = list(post["neuron"].values)
    noisy = np.array([sig[int(lv[1:])] > 1 for lv in levels])
    log_ratio = (np.log(sd.isel(neuron=np.flatnonzero(noisy))).mean("neuron")
                 - np.log(sd.isel(neuron=np.flatnonzero(~noisy))).mean("neuron")).values.ravel()
    assert abs(log_ratio.mean() - np.log(3.0)) < 3 * log_ratio.std()
    table = fit.residual_sd()
    assert list(table.index) == levels
    assert np.allclose(table["mean"], sd.mean(("chain", "draw")).values)
    assert (table["n"] == 50).all()
    vc = fit.varcorr()
    assert ("Residual", "rho") in vc.index and ("Residual", "sd(log sigma)") in vc.index
    assert vc.loc[("Residual", "rho"), "mean"] == pytest.approx(rho.mean())


def test_b_drawn_from_its_exact_conditional(fitted):
    """Draw 0's b against the dense Gaussian conditional E[b | y, theta] = G Z' V^-1 (y - X beta)."""
    df, _, fit = fitted
    d = fit.design
    g = d.group("neuron")
    post = fit.posterior.isel(chain=0)
    b = post["neuron_b"].values  # (draw, level, effect)
    # the draws' mean over many draws is not the conditional mean at one theta, so compare at the posterior:
    # E[b | y] = E_theta[E[b | y, theta]], estimated with the dense formula on 40 draws
    means = []
    time = df.loc[d.index, "trial"].to_numpy()
    for k in range(0, post.sizes["draw"], 8):
        p = post.isel(draw=k)
        beta, s, rho = p["beta"].values, float(p["sigma"]), float(p["rho"])
        sj = s * np.exp(p["sigma_u"].values)
        sd, corr = p["neuron_sd"].values, p["neuron_corr"].values
        G = np.outer(sd, sd) * corr
        out = np.zeros((g.n_levels, 2))
        for j in range(g.n_levels):
            rows = np.flatnonzero(g.codes == j)
            Zj, t = g.Z[rows], time[rows]
            V = Zj @ G @ Zj.T + sj[j] ** 2 * rho ** np.abs(t[:, None] - t[None, :])
            out[j] = G @ Zj.T @ np.linalg.solve(V, d.y[rows] - d.X[rows] @ beta)
        means.append(out)
    dense = np.mean(means, axis=0)
    drawn = b[::8].mean(axis=0)
    spread = b[::8].std(axis=0) / np.sqrt(len(means))
    assert np.all(np.abs(drawn - dense) < 4 * spread + 1e-9)


def test_results_that_assume_sigma2_I_refuse(fitted):
    _, _, fit = fitted
    for call in (fit.loo, fit.r2, fit.icc, fit.posterior_predictive, lambda: fit.implied_covariance([0, 1]),
                 lambda: fit.predict(kind="response"), lambda: fit.shrinkage("neuron")):
        with pytest.raises(ValueError, match="one residual SD and independent rows"):
            call()
    assert "log_likelihood" not in fit.idata.children


def test_predict_mean_and_save_load(fitted, tmp_path):
    df, _, fit = fitted
    mean = fit.predict(kind="mean")
    d = fit.design
    post = fit.posterior
    by_hand = (np.einsum("np,cdp->cdn", d.X, post["beta"].values)
               + np.einsum("ne,cdne->cdn", d.group("neuron").Z,
                           post["neuron_b"].values[:, :, d.group("neuron").codes, :]))
    assert np.allclose(mean.values, by_hand)
    path = tmp_path / "fit.nc"
    fit.save(path)
    loaded = lb.load(path)
    assert loaded.design.residual is not None and loaded.design.residual.ar
    assert np.array_equal(loaded.design.residual.order, d.residual.order)
    assert np.allclose(loaded.posterior["rho"].values, post["rho"].values)
    assert np.allclose(loaded.residual_sd()["mean"], fit.residual_sd()["mean"])
    assert np.allclose(loaded.predict(kind="mean").values, mean.values)


def test_summary_and_standardized_residuals(fitted):
    _, _, fit = fitted
    assert ("Residual", "rho") in fit.summary().varcorr.index
    res = fit.residuals()
    post = fit.posterior
    sd_level = (post["sigma"] * np.exp(post["sigma_u"])).mean(("chain", "draw")).values
    codes = fit.design.group("neuron").codes
    assert np.allclose(res["standardized"], res["residual"] / sd_level[codes])
    assert set(fit.diagnostics()) >= {"max_r_hat", "min_ess_bulk"}

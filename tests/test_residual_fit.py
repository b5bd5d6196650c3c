"""A fit with sigma by neuron and condition and AR(1) over trials: recovery, exact b, refusals, save/load, predict.

One model is fitted once per session (module fixture); the data are simulated here with numpy from the
model's definition, not with the package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmm_bayes as lb

RHO, BETA, NOISY = 0.6, (2.0, 0.5), 1.5  # NOISY: sigma in condition "b" over condition "a"


def simulate(seed: int = 11, J: int = 16, T: int = 50) -> tuple[pd.DataFrame, np.ndarray]:
    """Half the neurons quiet (sigma 0.4), half noisy (1.2), x 1.5 on condition "b" trials; e = s_i a_i with a
    a unit AR(1) (rho = 0.6) over trials, so R = S A S."""
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
        cond = rng.choice(["a", "b"], size=T)
        y = BETA[0] + b0 + (BETA[1] + b1) * x + sig[j] * np.where(cond == "b", NOISY, 1.0) * e
        rows += [{"neuron": f"n{j:02d}", "trial": t + 1, "cond": cond[t], "x": x[t], "y": y[t]} for t in range(T)]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # rows out of time order
    return df, sig


@pytest.fixture(scope="module")
def fitted():
    df, sig = simulate()
    model = lb.LMM("y ~ x + (1 + x | neuron)", df, sigma="~ cond + (1 | neuron)", ar="trial | neuron")
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
    gamma = post["sigma_beta"].sel(sigma_coef="b").values.ravel()  # log(sigma_b / sigma_a)
    assert abs(gamma.mean() - np.log(NOISY)) < 3 * gamma.std()
    table = fit.residual_sd()
    assert list(table.index) == [(lv, c) for lv in levels for c in ("a", "b")]
    by_hand = np.stack([sd, sd * np.exp(post["sigma_beta"].sel(sigma_coef="b"))], axis=-1).mean(axis=(0, 1))
    assert np.allclose(table["mean"], by_hand.ravel())
    df = fitted[0]
    counts = df.groupby(["neuron", "cond"]).size()
    assert table["n"].tolist() == [int(counts.get((lv, c), 0)) for lv in levels for c in ("a", "b")]
    vc = fit.varcorr()
    for term in ("rho", "sd(log sigma)", "log(sigma[b] / sigma[a])"):
        assert ("Residual", term) in vc.index
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
        kap = np.where(df.loc[d.index, "cond"].to_numpy() == "b", np.exp(float(p["sigma_beta"].sel(sigma_coef="b"))), 1.0)
        sd, corr = p["neuron_sd"].values, p["neuron_corr"].values
        G = np.outer(sd, sd) * corr
        out = np.zeros((g.n_levels, 2))
        for j in range(g.n_levels):
            rows = np.flatnonzero(g.codes == j)
            Zj, t = g.Z[rows], time[rows]
            sr = sj[j] * kap[rows]
            V = Zj @ G @ Zj.T + np.outer(sr, sr) * rho ** np.abs(t[:, None] - t[None, :])
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
    logs = np.log(post["sigma"]) + post["sigma_u"] + post["sigma_beta"].sel(sigma_coef="b") * xr.DataArray(
        [0.0, 1.0], dims="cond", coords={"cond": ["a", "b"]})
    sd_cell = np.exp(logs).mean(("chain", "draw")).transpose("neuron", "cond").values
    codes = fit.design.group("neuron").codes
    cond = (fit.design.data["cond"].to_numpy() == "b").astype(int)
    assert np.allclose(res["standardized"], res["residual"] / sd_cell[codes, cond])
    assert set(fit.diagnostics()) >= {"max_r_hat", "min_ess_bulk"}


def test_residual_acf_shows_and_removes_the_autocorrelation(fitted):
    df, _, fit = fitted
    acf = fit.residual_acf(max_lag=3)
    # residuals from the fit, by hand: per neuron, sorted by trial, lag-1 autocorrelation, averaged
    res = fit.residuals()
    frame = df.loc[fit.design.index].assign(z=res["standardized"].to_numpy()).sort_values(["neuron", "trial"])
    centred = [grp["z"].to_numpy() - grp["z"].mean() for _, grp in frame.groupby("neuron")]
    by_hand = np.mean([(v[1:] * v[:-1]).sum() / (v * v).sum() for v in centred])
    assert acf.loc[1, "standardized"] == pytest.approx(by_hand)
    assert acf.loc[1, "standardized"] > 0.3  # the AR(1) with rho = 0.6 shows
    assert abs(acf.loc[1, "innovations"]) < 0.1  # and whitening with rho removes it
    assert (acf["clusters"] == 16).all()
    with pytest.raises(ValueError, match="order= is for a fit without ar="):
        fit.residual_acf(order="trial")


def test_against_nlme_reml(fitted):
    """nlme's lme with varComb(varIdent(~ 1 | neuron), varIdent(~ 1 | cond)) and corAR1(~ trial | neuron), REML,
    on the same data (tests/data/residual_nlme.R): posterior medians within 2 posterior SDs of its rho, its
    condition ratio and its mean log ratio of the noisy to the quiet neurons; every neuron's ratio within 3."""
    import json
    from pathlib import Path

    here = Path(__file__).parent / "data"
    df, _, fit = fitted
    stored = pd.read_csv(here / "residual_ar_sigma.csv")
    ours = df.sort_values(["neuron", "trial"]).reset_index(drop=True)
    assert stored[["neuron", "trial", "cond"]].equals(ours[["neuron", "trial", "cond"]])
    assert np.allclose(stored[["x", "y"]], ours[["x", "y"]], rtol=1e-15, atol=0)
    ref = json.loads((here / "residual_nlme.json").read_text())
    post = fit.posterior

    def close(draws, value, k):
        draws = np.asarray(draws).ravel()
        return abs(np.median(draws) - value) < k * draws.std()

    assert close(post["rho"], ref["rho"], 2)
    # nlme's reference condition is the first row's, "b": its ratio is sigma_a / sigma_b
    assert close(post["sigma_beta"].sel(sigma_coef="b"), -np.log(ref["ratios"]["B.a"]), 2)
    u = post["sigma_u"] - post["sigma_u"].sel(neuron="n00")  # nlme's ratios are to the first neuron
    levels = [f"n{j:02d}" for j in range(16)]
    theirs = np.log([1.0] + [ref["ratios"][f"A.{lv}"] for lv in levels[1:]])
    noisy = np.arange(16) >= 8
    ours_gap = u.sel(neuron=levels).values[..., noisy].mean(-1) - u.sel(neuron=levels).values[..., ~noisy].mean(-1)
    assert close(ours_gap, theirs[noisy].mean() - theirs[~noisy].mean(), 2)
    for j, lv in enumerate(levels[1:], start=1):
        assert close(u.sel(neuron=lv), theirs[j], 3), lv


def test_plot_residual_sd(fitted):
    _, _, fit = fitted
    ax = fit.plot_residual_sd().axes[0]
    table = fit.residual_sd().sort_values("mean")
    points = ax.collections[1].get_offsets()  # the interval lines first, then the means
    assert np.allclose(points[:, 0], table["mean"]) and len(points) == 32
    assert [t.get_text() for t in ax.get_yticklabels()][:1] == [" / ".join(table.index[0])]

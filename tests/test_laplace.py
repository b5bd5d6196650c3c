"""The Laplace method of a GLMM (issue 20's fast path): its marginal likelihood, gradient, draws and check.

References: ``tests/data/laplace_lme4.json``, lme4's own Laplace deviance (glmer ``devFunOnly``,
``tolPwrss = 1e-12``) at fixed parameter points, made by ``Rscript tests/data/laplace_lme4.R`` on
lme4's ``cbpp`` and on ``tests/data/laplace_sim.csv`` (``python tests/data/make_laplace_sim.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

import lmm_bayes as lb
from lmm_bayes.errors import MethodNote, SamplingWarning
from lmm_bayes.inference.methods.laplace.system import MAX_PARETO_K, LaplaceSystem
from lmm_bayes.inference.methods.registry import resolve_method

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "laplace_lme4.json").read_text())["entries"]
NESTED = "~ x + (1 + x | s) + (1 | s:n)"


def _frames():
    return {"cbpp": pd.read_csv(DATA / "cbpp.csv"), "laplace_sim": pd.read_csv(DATA / "laplace_sim.csv")}


def _model(entry, frames):
    formula = entry["formula"].replace("~ period", "~ C(period)")
    family = "negativebinomial" if entry["family"].startswith("Negative Binomial") else entry["family"]
    return lb.GLMM(formula, frames[entry["dataset"]], family=family)


def _marginal(system, beta, G, s2=1.0):
    """LaplaceSystem.marginal at covariance matrices G (one per factor of the chain, by name)."""
    K = len(system.chain)
    qmax = max(g.n_effects for g in system.chain)
    Ginv, logdet = np.zeros((K, qmax, qmax)), np.zeros(K)
    for k, g in enumerate(system.chain):
        Gk = np.asarray(G[g.name], dtype=float)
        Ginv[k, : g.n_effects, : g.n_effects] = np.linalg.inv(Gk)
        logdet[k] = np.linalg.slogdet(Gk)[1]
    return system.marginal(np.asarray(beta, dtype=float), s2, Ginv, logdet)


# ---------------------------------------------------------------------------- the marginal likelihood


@pytest.mark.parametrize("entry", [e for e in REF if not e["family"].startswith("Negative")],
                         ids=lambda e: f"{e['dataset']}-{e['family']}-{e['beta'][0]}")
def test_marginal_is_lme4s_laplace(entry):
    """Binomial and Poisson: the same approximation as glmer's nAGQ = 1, so the same number to the
    modes' tolerance (lme4's penalized IRLS at tolPwrss = 1e-12: agreement to ~1e-6 measured)."""
    system = LaplaceSystem.from_design(_model(entry, _frames()).design)
    ll = _marginal(system, entry["beta"], entry["G"])[0]
    assert ll == pytest.approx(entry["logLik"], abs=5e-6)


def _dense_laplace(design, beta, G, alpha):
    """An independent Laplace for the negative binomial: one dense b for all clusters, scipy's
    likelihood, a BFGS mode and a finite-difference Hessian (no code shared with the kernel)."""
    groups = {g.name: g for g in design.groups}
    blocks = [(groups[name], np.asarray(G[name], dtype=float)) for name in G]
    sizes = [g.n_levels * g.n_effects for g, _ in blocks]
    Pinv = [np.kron(np.eye(g.n_levels), Gk) for g, Gk in blocks]

    def split(b):
        out, at = [], 0
        for (g, _), size in zip(blocks, sizes):
            out.append(b[at: at + size].reshape(g.n_levels, g.n_effects))
            at += size
        return out

    def log_joint(b):
        eta = design.X @ beta + sum(np.sum(g.Z * bb[g.codes], axis=1) for (g, _), bb in zip(blocks, split(b)))
        mu = np.exp(eta)
        ll = stats.nbinom.logpmf(design.y, alpha, alpha / (alpha + mu)).sum()
        prior = sum(stats.multivariate_normal(np.zeros(P.shape[0]), P).logpdf(bb.ravel())
                    for P, bb in zip(Pinv, split(b)))
        return ll + prior

    res = optimize.minimize(lambda b: -log_joint(b), np.zeros(sum(sizes)), method="BFGS", options={"gtol": 1e-9})
    b, h, m = res.x, 1e-4, sum(sizes)
    H = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            ei, ej = np.eye(m)[i] * h, np.eye(m)[j] * h
            H[i, j] = H[j, i] = -(log_joint(b + ei + ej) - log_joint(b + ei - ej) - log_joint(b - ei + ej)
                                  + log_joint(b - ei - ej)) / (4 * h * h)
    return log_joint(b) + 0.5 * m * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(H)[1]


def test_negative_binomial_marginal_is_the_observed_information_laplace():
    """The negative binomial's log link is not canonical: lmm-bayes's Laplace uses the observed
    information (the true curvature at the mode, as INLA and TMB do), glmer the expected one.
    So it matches an independent dense Laplace, and differs from glmer's value."""
    entry = next(e for e in REF if e["family"].startswith("Negative"))
    model = _model(entry, _frames())
    system = LaplaceSystem.from_design(model.design)
    ll = _marginal(system, entry["beta"], entry["G"], s2=1 / entry["alpha"])[0]
    dense = _dense_laplace(model.design, np.asarray(entry["beta"]), entry["G"], entry["alpha"])
    assert ll == pytest.approx(dense, abs=2e-3)
    assert abs(ll - entry["logLik"]) > 0.05  # expected vs observed information: 0.083 here


@pytest.mark.parametrize("column, family, extra", [("spikes", "poisson", {}), ("k", "binomial", {"trials": 5}),
                                                   ("nb", "negativebinomial", {})])
def test_gradient_is_exact(column, family, extra):
    """The implicit-function gradient against central differences, in β, every entry of G and
    the negative binomial's dispersion."""
    model = lb.GLMM(f"{column} {NESTED}", _frames()["laplace_sim"], family=family, **extra)
    system = LaplaceSystem.from_design(model.design)
    beta, s2 = np.array([0.7, 0.2]), 0.3
    G = {"s": np.array([[0.3, 0.02], [0.02, 0.05]]), "s:n": np.array([[0.08]])}
    ll, g_beta, g_sigma, gG = _marginal(system, beta, G, s2)
    h = 1e-6
    for i in range(2):
        e = np.eye(2)[i] * h
        fd = (_marginal(system, beta + e, G, s2)[0] - _marginal(system, beta - e, G, s2)[0]) / (2 * h)
        assert g_beta[i] == pytest.approx(fd, rel=1e-5, abs=1e-6)
    order = [g.name for g in system.chain]
    for name, a, c in [("s", 0, 0), ("s", 0, 1), ("s", 1, 1), ("s:n", 0, 0)]:
        step = np.zeros_like(G[name])
        step[a, c] = step[c, a] = h
        up, down = dict(G, **{name: G[name] + step}), dict(G, **{name: G[name] - step})
        fd = (_marginal(system, beta, up, s2)[0] - _marginal(system, beta, down, s2)[0]) / (2 * h)
        k = order.index(name)
        analytic = gG[k, a, c] + (gG[k, c, a] if a != c else 0.0)
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-6)
    if family == "negativebinomial":
        d = np.sqrt(s2)
        fd = (_marginal(system, beta, G, (d + h) ** 2)[0] - _marginal(system, beta, G, (d - h) ** 2)[0]) / (2 * h)
        assert g_sigma == pytest.approx(fd, rel=1e-5)
    else:
        assert g_sigma == 0.0


def test_modes_do_not_depend_on_the_start():
    """A warm start (each chain's last modes) gives the same modes and likelihood as zero."""
    model = lb.GLMM(f"spikes {NESTED}", _frames()["laplace_sim"], family="poisson")
    system = LaplaceSystem.from_design(model.design)
    G = {"s": np.array([[0.3, 0.02], [0.02, 0.05]]), "s:n": np.array([[0.08]])}
    Ginv = np.zeros((2, 2, 2))
    Ginv[0] = np.linalg.inv(G["s"])
    Ginv[1, 0, 0] = 1 / 0.08
    logdet = np.array([np.linalg.slogdet(G["s"])[1], np.log(0.08)])
    cold = system.marginal(np.array([0.9, 0.25]), 1.0, Ginv, logdet)
    start = system.modes(np.array([0.5, 0.0]), Ginv * 3)  # the modes of other parameters
    warm = system.marginal(np.array([0.9, 0.25]), 1.0, Ginv, logdet, start=start)
    assert warm[0] == pytest.approx(cold[0], abs=1e-10)
    np.testing.assert_allclose(warm[1], cold[1], atol=1e-8)
    np.testing.assert_allclose(start, system.modes(np.array([0.9, 0.25]), Ginv), atol=1e-9)


# ---------------------------------------------------------------------------- choosing the method


def test_auto_takes_laplace_for_nested_glmms_and_says_why_not_elsewhere():
    sim = _frames()["laplace_sim"]
    assert resolve_method(lb.GLMM(f"spikes {NESTED}", sim, family="poisson").design, "auto")[0].name == "laplace"
    probit = lb.GLMM(f"cbind(k, 5 - k) {NESTED}", sim, family="binomial", link="probit")
    strategy, note = resolve_method(probit.design, "auto")
    assert strategy.name == "full" and "not link='probit'" in note
    crossed = lb.GLMM("spikes ~ x + (1 | s) + (1 | n)", sim, family="poisson")
    strategy, note = resolve_method(crossed.design, "auto")
    assert strategy.name == "full" and "crossed" in note
    assert resolve_method(probit.design, "auto", centered=True)[0].name == "full"


def test_laplace_refuses_what_it_cannot_do():
    sim = _frames()["laplace_sim"]
    probit = lb.GLMM(f"cbind(k, 5 - k) {NESTED}", sim, family="binomial", link="probit")
    with pytest.raises(ValueError, match="method='laplace' cannot be used for this model: .*probit.*use method='full'"):
        probit.fit(method="laplace")
    with pytest.raises(ValueError, match="method='laplace' cannot be used.*crossed"):
        lb.GLMM("spikes ~ x + (1 | s) + (1 | n)", sim, family="poisson").fit(method="laplace")
    with pytest.raises(ValueError, match="exact collapsed method"):
        lb.LMM("spikes ~ x + (1 | s)", sim).fit(method="laplace")
    poisson = lb.GLMM(f"spikes {NESTED}", sim, family="poisson")
    with pytest.raises(ValueError, match="nutpie only"):
        poisson.fit(method="laplace", sampler="pymc")
    with pytest.raises(ValueError, match="centered=True only applies to method='full'"):
        poisson.fit(method="laplace", centered=True)


# ---------------------------------------------------------------------------- sampling


def _fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return model.fit(progressbar=False, **{"draws": 600, "tune": 500, "chains": 2, "seed": 2, **kw})


def _simulate_nested(seed=11):
    """Nested Poisson counts: 10 subjects x 6 neurons x 12 trials, log rate 1.2 + 0.3 x + subject (1 + x) + neuron."""
    rng = np.random.default_rng(seed)
    s, nn = np.repeat(np.arange(10), 72), np.repeat(np.arange(60), 12)
    x = rng.normal(size=720)
    b = rng.normal(0, [0.5, 0.2], size=(10, 2))
    eta = 1.2 + 0.3 * x + b[s, 0] + b[s, 1] * x + rng.normal(0, 0.3, 60)[nn]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "s": [f"s{i}" for i in s],
                         "n": [f"n{i % 6}" for i in nn]})


@pytest.fixture(scope="module")
def nested_pair():
    model = lb.GLMM("y ~ x + (1 + x | s) + (1 | s:n)", _simulate_nested(), family="poisson")
    return _fit(model, method="laplace"), _fit(model, method="full", centered=True, draws=1000, tune=700)


def test_laplace_posterior_is_the_full_methods(nested_pair):
    """Posterior means of β, the SDs, the correlation and every b within 4 combined MCSE of the
    full method's (hierarchically centred), and the check passed and stored."""
    laplace, full = nested_pair
    attrs = laplace.idata.attrs
    assert laplace.method == "laplace" and attrs["laplace_check_passed"] == 1
    assert attrs["laplace_pareto_k"] <= MAX_PARETO_K and attrs["laplace_proposals"] == 16
    assert laplace.diagnostics()["divergences"] == 0
    for var in ("beta", "s_sd", "s:n_sd", "s_corr", "s_b", "s:n_b"):
        a, b = laplace.posterior[var], full.posterior[var]
        if var == "s_corr":
            a, b = a[..., 0, 1], b[..., 0, 1]
        mcse = np.hypot(az.mcse(a.to_dataset(name="v"))["v"], az.mcse(b.to_dataset(name="v"))["v"])
        z = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) / mcse
        assert float(z.max()) < 4.5, (var, z.values)  # 4 MCSE, with room for the max over many b


def test_laplace_results_read_as_any_fit(nested_pair, tmp_path):
    laplace, _ = nested_pair
    assert "sigma" not in laplace.posterior and "dispersion" not in laplace.posterior
    assert list(laplace.fixef(exponentiate=True).index) == ["Intercept", "x"]
    assert laplace.ranef("s:n").shape[0] == 60
    laplace.save(tmp_path / "f.nc")
    back = lb.load(tmp_path / "f.nc")
    assert back.method == "laplace" and back.idata.attrs["laplace_check_passed"] == 1
    np.testing.assert_array_equal(back.posterior["beta"].values, laplace.posterior["beta"].values)


def test_same_seed_same_draws():
    model = lb.GLMM("incidence ~ C(period) + (1 | herd)", _frames()["cbpp"], family="binomial", trials="size")
    one = _fit(model, method="laplace", draws=200, tune=200, chains=2, seed=5)
    two = _fit(model, method="laplace", draws=200, tune=200, chains=2, seed=5)
    np.testing.assert_array_equal(one.posterior["beta"].values, two.posterior["beta"].values)
    np.testing.assert_array_equal(one.posterior["herd_b"].values, two.posterior["herd_b"].values)


def test_negative_binomial_names_its_dispersion():
    sim = _frames()["laplace_sim"]
    fit = _fit(lb.GLMM("nb ~ x + (1 | s)", sim, family="negativebinomial"), method="laplace", draws=300, tune=300)
    assert "dispersion" in fit.posterior and "sigma" not in fit.posterior
    # the simulated alpha is 2: dispersion 1/sqrt(2) = 0.71, estimated from 240 rows
    assert 0.45 < float(fit.posterior["dispersion"].mean()) < 1.0


# ---------------------------------------------------------------------------- the case built to break it


def _rare_events(seed=3):
    """300 clusters of 2 Bernoulli trials at logit -4 with cluster SD 2: too little data per cluster
    for Laplace (glmer: SD 8.0 at nAGQ = 1, 2.1 with 25-point quadrature on this very data)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(300), 2)
    eta = -4.0 + rng.normal(0, 2.0, 300)[g]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "g": [f"c{i}" for i in g]})


def test_the_check_catches_a_laplace_posterior_that_is_off():
    model = lb.GLMM("y ~ 1 + (1 | g)", _rare_events(), family="bernoulli")
    with pytest.warns(SamplingWarning, match="importance check failed: Pareto k = .*refit with method='full'"):
        fit = model.fit(method="laplace", draws=400, tune=400, chains=2, seed=1, progressbar=False)
    assert fit.idata.attrs["laplace_check_passed"] == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = model.fit(draws=400, tune=400, chains=2, seed=1, progressbar=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, MethodNote)]
    assert auto.method == "full"
    assert any(n.startswith("method='auto' chose 'full': the Laplace approximation's importance check failed")
               for n in notes)
    assert auto.idata.attrs["method_note"].startswith("method='auto' chose 'full'")


def test_offset_and_trials_enter_the_linear_predictor():
    """A constant offset c is an intercept shift: the marginal at β0 with the offset is the one at β0 + c
    without it; binomial trials given as a column and as cbind are one model."""
    sim = _frames()["laplace_sim"].assign(t=np.exp(0.4), five=5)
    G = {"s": np.array([[0.3]])}
    plain = LaplaceSystem.from_design(lb.GLMM("spikes ~ x + (1 | s)", sim, family="poisson").design)
    shifted = LaplaceSystem.from_design(lb.GLMM("spikes ~ x + offset(log(t)) + (1 | s)", sim,
                                                family="poisson").design)
    assert _marginal(shifted, [0.5, 0.3], G)[0] == pytest.approx(_marginal(plain, [0.9, 0.3], G)[0], abs=1e-9)
    column = LaplaceSystem.from_design(lb.GLMM("k ~ x + (1 | s)", sim, family="binomial", trials="five").design)
    cbind = LaplaceSystem.from_design(lb.GLMM("cbind(k, 5 - k) ~ x + (1 | s)", sim, family="binomial").design)
    assert _marginal(column, [-0.5, 0.3], G)[0] == pytest.approx(_marginal(cbind, [-0.5, 0.3], G)[0], abs=1e-9)


def test_independent_effects_and_dropped_draws():
    """``(1 + x || s)``: G block diagonal, no correlation in the posterior; keep_b='none' keeps the rest."""
    sim = _frames()["laplace_sim"]
    fit = _fit(lb.GLMM("spikes ~ x + (1 + x || s)", sim, family="poisson"), method="laplace", draws=200, tune=200,
               keep_b="none")
    assert "s_corr" not in fit.posterior and "s_b" not in fit.posterior
    assert fit.posterior["s_sd"].shape[-1] == 2 and fit.idata.attrs["laplace_check_passed"] in (0, 1)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_pooled_rows_give_the_same_marginal(family, monkeypatch):
    """Trials under the same condition pool into one row (sums of counts, of successes and trials):
    the same log marginal likelihood and gradient to rounding, from a quarter of the rows."""
    from lmm_bayes.inference.methods.laplace import system as laplace

    sim = _frames()["laplace_sim"].assign(cond=lambda d: (d["x"] > 0).astype(float))
    response = "spikes" if family == "poisson" else "cbind(k, 5 - k)"
    model = lb.GLMM(f"{response} ~ cond + (1 + cond | s) + (1 | s:n)", sim, family=family)
    pooled = LaplaceSystem.from_design(model.design)
    monkeypatch.setattr(laplace, "_pooled", lambda arrays, top, n_top: arrays)
    rows = LaplaceSystem.from_design(model.design)
    assert pooled.arrays[1].size <= 48 < rows.arrays[1].size == 240  # 24 neurons x 2 conditions
    G = {"s": np.array([[0.3, 0.02], [0.02, 0.05]]), "s:n": np.array([[0.08]])}
    a, b = _marginal(pooled, [0.8, 0.2], G), _marginal(rows, [0.8, 0.2], G)
    assert a[0] == pytest.approx(b[0], abs=1e-9)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-9)
    np.testing.assert_allclose(a[3], b[3], rtol=1e-9, atol=1e-12)


def test_the_check_reads_a_correlation_below_its_diagonal_only():
    """A correlation's diagonal is 1 up to rounding: read as a parameter, its tiny MCSE made any
    weight noise look like a shift of many standard errors (seen on issue 20's benchmark). The
    check reads the hyperparameters the layout names (layout.hyperparameters), as every table does."""
    from lmm_bayes.inference.methods.laplace.system import check_laplace
    from lmm_bayes.inference.layout import bis, hyperparameter_draws, hyperparameters

    design = lb.GLMM("spikes ~ 1 + (1 + x | s)", _frames()["laplace_sim"], family="poisson").design
    g = design.group("s")
    rng = np.random.default_rng(0)
    r = rng.uniform(-0.5, 0.5, (2, 500))
    corr = np.ones((2, 500, 2, 2))
    corr[..., 0, 1] = corr[..., 1, 0] = r
    corr[..., 1, 1] -= rng.uniform(0, 1e-15, (2, 500))  # rounding on the diagonal
    effects = list(g.effects)
    post = xr.Dataset({"s_sd": (("chain", "draw", g.effect_dim), np.ones((2, 500, 2))),
                       "s_corr": (("chain", "draw", g.effect_dim, bis(g.effect_dim)), corr)},
                      coords={g.effect_dim: effects, bis(g.effect_dim): effects})
    hyper = hyperparameter_draws(post, hyperparameters(design, fixed=False)).transpose("chain", "draw", "parameter")
    check = check_laplace(hyper, rng.normal(0, 0.3, (2, 500)), 16)
    assert check.worst == "s_corr[Intercept, x]" and check.max_shift < 3 and check.passed


@given(eta=st.floats(-8, 8), y=st.integers(0, 40), extra=st.integers(0, 20), dispersion=st.floats(0.05, 3.0))
@settings(max_examples=200, deadline=None)
def test_the_kernel_rows_agree_with_the_results_working_weights(eta, y, extra, dispersion):
    """The Laplace loops (numba, laplace.kernel._row) and the results' shrinkage
    (numpy, results.glm_pooling) each write a row's score and information: the same numbers,
    so a change to one family's formulas in one place cannot drift from the other."""
    from lmm_bayes.inference.methods.laplace.kernel import FAMILY_CODE, _row
    from lmm_bayes.results.glm_pooling import score_and_weights, working_weights
    from lmm_bayes.spec.families.registry import get_family

    n = float(y + extra)
    cases = {  # family: (the loops' family code, trials or pooled rows, alpha; the results' trials, aux)
        "poisson": ("poisson", 1.0, 1.0, None, None),
        "negativebinomial": ("negativebinomial", 1.0, 1.0 / dispersion**2, None, dispersion),
        "binomial": ("logit", n, 1.0, np.array([n]), None),
    }
    for family, (code, kernel_n, alpha, trials, aux) in cases.items():
        _, s, w, _ = _row(FAMILY_CODE[code], float(y), eta, kernel_n, alpha)
        fam, e, obs = get_family(family), np.array([eta]), np.array([float(y)])
        score = score_and_weights(fam, e, obs, trials=trials, aux=aux)[0][0]
        weight = working_weights(fam, e, obs, trials=trials, aux=aux)[0]
        assert s == pytest.approx(score, rel=1e-10, abs=1e-10), family
        assert w == pytest.approx(weight, rel=1e-10, abs=1e-12), family

"""The collapsed method: marginal likelihood, exact draws of b, and agreement with the full model.

Exact checks compare against dense linear algebra on small data (scipy's multivariate
normal, ``M^-1`` by ``numpy.linalg``). Sampling checks fit each model once per module
(collapsed and full, 4 chains x 1000 draws) and compare the posteriors.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
import xarray as xr
from scipy.stats import multivariate_normal

import lmm_bayes as lb
from lmm_bayes.inference.methods.collapsed import likelihood as collapsed
from lmm_bayes.inference.methods.registry import Collapsed, Crossed, choose_method, resolve_method

NESTED = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def nested_data(trials: int, *, subjects: int = 20, neurons: int = 25, seed: int = 0) -> pd.DataFrame:
    """Subject / neuron / trial data of BENCHMARK.md (neuron labels repeat across subjects)."""
    rng = np.random.default_rng(seed)
    n = subjects * neurons * trials
    s = np.repeat(np.arange(subjects), neurons * trials)
    nn = np.tile(np.repeat(np.arange(neurons), trials), subjects)
    x = rng.standard_normal(n)
    sd, corr = np.array([1.0, 0.5]), -0.4
    G = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b_subject = rng.multivariate_normal(np.zeros(2), G, size=subjects)
    b_neuron = rng.normal(0.0, 0.7, size=(subjects, neurons))
    y = 5.0 + 1.5 * x + b_subject[s, 0] + b_subject[s, 1] * x + b_neuron[s, nn] + rng.normal(0.0, 2.0, n)
    labels = np.array([f"n{j + 1}" for j in range(neurons)])
    return pd.DataFrame({"y": y, "x": x, "subject": np.array([f"s{i + 1}" for i in range(subjects)])[s],
                         "neuron": labels[nn]})


# ---------------------------------------------------------------------------- dense references


def dense_G(design, G) -> np.ndarray:
    blocks = [np.kron(np.eye(g.n_levels), G[g.name]) for g in design.groups]
    return sl.block_diag(*blocks) if blocks else np.zeros((0, 0))


def dense_loglik(design, beta, sigma, G) -> float:
    Gfull = dense_G(design, G)
    Z = design.Z.toarray()
    V = sigma**2 * np.eye(design.n) + Z @ Gfull @ Z.T
    return float(multivariate_normal(design.X @ beta, V).logpdf(design.y))


def dense_conditional(design, beta, sigma, G):
    """Mean and covariance of all b (Design.Z column order) given beta, sigma, G."""
    Gfull = dense_G(design, G)
    Z = design.Z.toarray()
    M = Z.T @ Z + sigma**2 * np.linalg.inv(Gfull)
    Minv = np.linalg.inv(M)
    return Minv @ Z.T @ (design.y - design.X @ beta), sigma**2 * Minv


SMALL = {
    "random slopes": (SLEEP, None, {"Subject": np.array([[600.0, 10.0], [10.0, 35.0]])}, 25.6),
    "nested": (NESTED, (3, 5, 4), {"subject": np.array([[1.0, -0.2], [-0.2, 0.25]]),
                                   "subject:neuron": np.array([[0.49]])}, 2.0),
    "nested slopes": ("y ~ x + (1 + x | subject) + (1 + x | subject:neuron)", (3, 5, 4),
                      {"subject": np.array([[1.0, -0.2], [-0.2, 0.25]]),
                       "subject:neuron": np.array([[0.49, 0.05], [0.05, 0.3]])}, 2.0),
    "independent slopes": ("y ~ x + (1 + x || subject)", (3, 5, 4),
                           {"subject": np.diag([1.0, 0.25])}, 1.5),
    "no random terms": ("y ~ x", (3, 5, 4), {}, 2.0),
    "three levels": ("y ~ x + (1 + x | subject) + (1 | subject:neuron) + (1 + x | subject:neuron:day)",
                     (6, 3, 3), {"subject": np.array([[1.0, -0.2], [-0.2, 0.25]]),
                                 "subject:neuron": np.array([[0.49]]),
                                 "subject:neuron:day": np.array([[0.3, 0.05], [0.05, 0.2]])}, 1.5),
}


def small_design(key, sleepstudy):
    formula, shape, G, sigma = SMALL[key]
    data = sleepstudy if shape is None else nested_data(shape[0], subjects=shape[1], neurons=shape[2], seed=3)
    if shape is not None:  # trials split over two days per neuron
        data = data.assign(day=np.where(np.arange(len(data)) % shape[0] < shape[0] // 2, "d1", "d2"))
    model = lb.LMM(formula, data)
    beta = np.array([251.4, 10.5]) if shape is None else np.array([5.0, 1.5])
    return model, beta, sigma, G


@pytest.mark.parametrize("key", list(SMALL))
def test_marginal_loglik_equals_dense_mvn(key, sleepstudy):
    model, beta, sigma, G = small_design(key, sleepstudy)
    got = collapsed.marginal_loglik(model.design, beta, sigma, G)
    assert got == pytest.approx(dense_loglik(model.design, beta, sigma, G), rel=0, abs=1e-8)


@pytest.mark.parametrize("key", ["random slopes", "nested", "three levels", "no random terms"])
def test_pymc_likelihood_term_equals_reference(key, sleepstudy):
    model, *_ = small_design(key, sleepstudy)
    pm_model = collapsed.build_collapsed_model(model.design, model.priors)
    chain = collapsed.nesting_chain(model.design)
    names = ["beta", "sigma"] + [f"{g.name}_sd" for g in chain] + [f"{g.name}_corr" for g in chain if g.correlated]
    outs = pm_model.replace_rvs_by_values([pm_model[collapsed.LIKELIHOOD_NAME]] + [pm_model[n] for n in names])
    fn = pm_model.compile_fn(outs, inputs=pm_model.value_vars, point_fn=True)
    rng = np.random.default_rng(1)
    start = pm_model.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}
        value, beta, sigma, *rest = fn(point)
        values = dict(zip(names[2:], rest))
        G = {}
        for g in chain:
            sd = values[f"{g.name}_sd"]
            corr = values.get(f"{g.name}_corr", np.eye(g.n_effects))
            G[g.name] = np.outer(sd, sd) * corr
        assert float(value) == pytest.approx(collapsed.marginal_loglik(model.design, beta, sigma, G), abs=1e-8)


def test_sufficient_statistics_match_dense_products():
    design = lb.LMM(NESTED, nested_data(3, subjects=4, neurons=3, seed=2)).design
    stats = collapsed.sufficient_statistics(design)
    top, leaf = design.groups
    assert stats.n == design.n
    np.testing.assert_allclose(stats.XtX, design.X.T @ design.X)
    np.testing.assert_allclose(stats.Xty, design.X.T @ design.y)
    assert stats.yty == pytest.approx(design.y @ design.y)
    for i in range(top.n_levels):
        rows = top.codes == i
        Zi = top.Z[rows]
        np.testing.assert_allclose(stats.levels[0].ZtZ[i], Zi.T @ Zi)
        np.testing.assert_allclose(stats.levels[0].ZtX[i], Zi.T @ design.X[rows])
        np.testing.assert_allclose(stats.levels[0].Zty[i], Zi.T @ design.y[rows])
    for j in range(leaf.n_levels):
        rows = leaf.codes == j
        np.testing.assert_allclose(stats.levels[1].ZtZ[j], leaf.Z[rows].T @ leaf.Z[rows])
        np.testing.assert_allclose(stats.levels[1].ZtA[j], leaf.Z[rows].T @ top.Z[rows])
        assert stats.levels[1].parent[j] == top.codes[rows][0]


@pytest.mark.parametrize("key", ["random slopes", "nested", "nested slopes", "three levels"])
def test_draws_of_b_have_the_exact_conditional_mean_and_covariance(key, sleepstudy):
    # b = mean + sigma T z is linear in the innovations z: feeding z = 0 gives the mean,
    # feeding unit vectors gives T, so mean and covariance are checked exactly
    model, beta, sigma, G = small_design(key, sleepstudy)
    design = model.design
    chain = collapsed.nesting_chain(design)
    stats = collapsed.sufficient_statistics(design)
    sizes = [g.n_levels * g.n_effects for g in chain]
    D = 1 + sum(sizes)
    z_flat = np.vstack([np.zeros(D - 1), np.eye(D - 1)])
    # the compiled kernel's draws (what fits use), fed the innovations directly
    from lmm_bayes.inference.methods.kernel_loader import load
    from lmm_bayes.inference.methods.collapsed.packing import pack

    packed = pack(design, None, stats)
    qmax = max(g.n_effects for g in chain)
    Gs = np.zeros((D, len(chain), qmax, qmax))
    for k, g in enumerate(chain):
        Gs[:, k, : g.n_effects, : g.n_effects] = G[g.name]
    out = np.empty((D, D - 1))
    load().draw_effects(np.tile(beta, (D, 1)), np.full(D, sigma), Gs, packed.ints, packed.floats, z_flat, out)
    by_name, start = {}, 0
    for g, size in zip(chain, sizes):
        by_name[g.name] = out[:, start : start + size]
        start += size
    flat = np.hstack([by_name[g.name] for g in design.groups])  # Design.Z column order
    mean, cov = dense_conditional(design, beta, sigma, G)
    np.testing.assert_allclose(flat[0], mean, atol=1e-8, rtol=1e-8)
    T = (flat[1:] - flat[0]).T / sigma  # column d: the response of b to unit innovation d
    np.testing.assert_allclose(sigma**2 * T @ T.T, cov, atol=1e-8, rtol=1e-8)


def test_fitted_draws_of_b_are_the_exact_conditional_given_each_draws_hyperparameters():
    """Through ``LMM(...).fit(method="collapsed")`` (nutpie, the compiled kernel, the working scale and
    back): b | beta, sigma, G, y is N(m, P^-1), P = Z'Z / sigma^2 + G^-1, m = P^-1 Z'(y - X beta) / sigma^2
    (beta conditioned on, as ``draw_random_effects`` samples it), computed per draw with numpy from the
    stored beta, sigma, {g}_sd, {g}_corr; b read by level label. With P = L L', w = L'(b - m) is N(0, I)
    in every draw, and the draws' innovations are independent given the hyperparameters, so over
    N = 1000 draws of D = 56 effects: sum |w|^2 ~ chi2(N D) and N |mean w|^2 ~ chi2(D), each within its
    two-sided 1e-4 interval (3.9 SD; measured -0.7 and -1.0 SD). b 2% too wide moves the first by
    6.7 SD. Measured on a scratch edit: the finest factor's innovations x 1.03 in the kernel's
    draw_effects (40 of the 56 effects) put the first at +6.5 SD."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny design's short chains may warn; the check is given theta
        model = lb.LMM(NESTED, nested_data(3, subjects=8, neurons=5, seed=4))
        fit = model.fit(method="collapsed", draws=500, tune=500, chains=2, seed=7, progressbar=False)
    assert fit.method == "collapsed"
    d = model.design
    post = fit.posterior.transpose("chain", "draw", ...)
    N = post.sizes["chain"] * post.sizes["draw"]
    Z = d.Z.toarray()  # columns: factors in design order, level-major, effects within
    b_parts, Ginv_parts = [], []
    for g in d.groups:
        b_parts.append(post[f"{g.name}_b"].sel({g.name: list(g.levels)}).values.reshape(N, -1))
        sd = post[f"{g.name}_sd"].values.reshape(N, -1)
        corr = (post[f"{g.name}_corr"].values.reshape(N, g.n_effects, g.n_effects) if f"{g.name}_corr" in post
                else np.eye(g.n_effects))
        Ginv = np.linalg.inv(sd[:, :, None] * corr * sd[:, None, :])
        Ginv_parts.append(Ginv)
    b = np.hstack(b_parts)
    beta = post["beta"].values.reshape(N, -1)
    s2 = post["sigma"].values.reshape(N) ** 2
    D = b.shape[1]
    assert D == Z.shape[1] == 56
    w = np.empty((N, D))
    for i in range(N):
        Ginv_full = sl.block_diag(*[np.kron(np.eye(g.n_levels), Gi[i]) for g, Gi in zip(d.groups, Ginv_parts)])
        P = Z.T @ Z / s2[i] + Ginv_full
        m = np.linalg.solve(P, Z.T @ (d.y - d.X @ beta[i]) / s2[i])
        w[i] = np.linalg.cholesky(P).T @ (b[i] - m)
    scale, centre = float(np.sum(w**2)), float(N * np.sum(w.mean(axis=0) ** 2))
    lo, hi = stats.chi2(N * D).ppf([5e-5, 1 - 5e-5])
    assert lo < scale < hi, (scale, N * D, lo, hi)
    lo, hi = stats.chi2(D).ppf([5e-5, 1 - 5e-5])
    assert lo < centre < hi, (centre, D, lo, hi)


def test_draw_random_effects_labels_and_seed():
    design = lb.LMM(NESTED, nested_data(3, subjects=4, neurons=3, seed=2)).design
    post = xr.Dataset({
        "beta": (("chain", "draw", "coef"), np.tile([5.0, 1.5], (2, 7, 1))),
        "sigma": (("chain", "draw"), np.full((2, 7), 2.0)),
        "subject_sd": (("chain", "draw", "subject_effect"), np.tile([1.0, 0.5], (2, 7, 1))),
        "subject_corr": (("chain", "draw", "subject_effect", "subject_effect_bis"),
                         np.tile([[1.0, -0.4], [-0.4, 1.0]], (2, 7, 1, 1))),
        "subject:neuron_sd": (("chain", "draw", "subject:neuron_effect"), np.full((2, 7, 1), 0.7)),
    })
    one = collapsed.draw_random_effects(design, post, seed=5)
    again = collapsed.draw_random_effects(design, post, seed=5)
    other = collapsed.draw_random_effects(design, post, seed=6)
    assert set(one) == {"subject_b", "subject:neuron_b"}
    b = one["subject:neuron_b"]
    assert b.dims == ("chain", "draw", "subject:neuron", "subject:neuron_effect")
    assert list(b["subject:neuron"].values) == list(design.group("subject:neuron").levels)
    assert list(one["subject_b"]["subject_effect"].values) == ["Intercept", "x"]
    xr.testing.assert_equal(one["subject_b"], again["subject_b"])
    assert not np.allclose(one["subject_b"].values, other["subject_b"].values)


# ---------------------------------------------------------------------------- which models


def crossed_data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    subj, item = np.meshgrid(np.arange(6), np.arange(5), indexing="ij")
    n = subj.size
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "subject": subj.ravel().astype(str), "item": item.ravel().astype(str)})


def siblings_data() -> pd.DataFrame:
    """neuron and session both nested in subject, crossed with each other."""
    rng = np.random.default_rng(0)
    s, nrn, ses = (a.ravel() for a in np.meshgrid(np.arange(4), np.arange(3), np.arange(2), indexing="ij"))
    return pd.DataFrame({"y": rng.normal(size=s.size), "subject": s.astype(str),
                         "neuron": nrn.astype(str), "session": ses.astype(str)})


SUPPORT_CASES = [
    ("sleepstudy", SLEEP, True, ""),
    ("nested", NESTED, True, ""),
    ("unique neurons", "y ~ x + (1 | subject) + (1 | neuron)", True, ""),  # nesting found in the data
    ("nested", "y ~ x + (1 | subject) + (1 | neuron)", False, "'subject' and 'neuron' are crossed"),
    ("nested", "y ~ x", True, ""),
    ("crossed", "y ~ x + (1 | subject) + (1 | item)", False, "'subject' and 'item' are crossed"),
    ("siblings", "y ~ 1 + (1 | subject) + (1 | subject:neuron) + (1 | subject:session)", False, "both nested"),
]


@pytest.mark.parametrize(("data", "formula", "ok", "why"), SUPPORT_CASES)
def test_supports(data, formula, ok, why, sleepstudy):
    frames = {"sleepstudy": lambda: sleepstudy, "nested": lambda: nested_data(2, subjects=3, neurons=2),
              "crossed": crossed_data, "siblings": siblings_data,
              "unique neurons": lambda: nested_data(2, subjects=3, neurons=2).assign(neuron=lambda d: d.subject + d.neuron)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lb.LMM(formula, frames[data]())
    design = model.design
    got, reason = collapsed.supports(design)
    assert got is ok
    assert why in reason
    assert ("\n" not in reason) and (ok or reason)
    # crossed designs go to the crossed collapsed method (tests/test_crossed.py), also without a note
    method, note = resolve_method(design, "auto")
    assert isinstance(method, Collapsed if ok else Crossed) and note == ""
    assert choose_method(design, "auto") == ("collapsed", "")
    if not ok:
        with pytest.raises(ValueError, match="crossed"):
            collapsed.build_collapsed_model(design, model.priors)


# ---------------------------------------------------------------------------- agreement with the full model


def fit_both(model):
    kw = {"draws": 1000, "tune": 1000, "chains": 4, "seed": 11, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(method="collapsed", **kw), model.fit(method="full", **kw)


@pytest.fixture(scope="module")
def sleep_fits(sleepstudy):
    return fit_both(lb.LMM(SLEEP, sleepstudy))


@pytest.fixture(scope="module")
def nested_fits():
    return fit_both(lb.LMM(NESTED, nested_data(4)))


def hyper_draws(post: xr.Dataset) -> dict[str, xr.DataArray]:
    """Every hyperparameter as its own (chain, draw) array; each correlation once."""
    out = {}
    for name, da in post.data_vars.items():
        if name.endswith("_b"):
            continue
        values = da.transpose("chain", "draw", ...).values
        if name.endswith("_corr"):
            i, j = np.triu_indices(values.shape[-1], k=1)
            values = values[..., i, j]
        values = values.reshape(values.shape[0], values.shape[1], -1)
        for k in range(values.shape[-1]):
            out[f"{name}[{k}]"] = xr.DataArray(values[..., k], dims=("chain", "draw"))
    return out


@pytest.mark.parametrize("fits", ["sleep_fits", "nested_fits"])
def test_collapsed_and_full_hyperparameters_agree(fits, request):
    col, full = request.getfixturevalue(fits)
    a, b = hyper_draws(col.posterior), hyper_draws(full.posterior)
    assert set(a) == set(b) and len(a) >= 5
    for key in a:
        se = np.hypot(float(az.mcse(a[key], method="mean")), float(az.mcse(b[key], method="mean")))
        assert abs(float(a[key].mean()) - float(b[key].mean())) < 4 * se, key
        assert float(a[key].std()) == pytest.approx(float(b[key].std()), rel=0.15), key


@pytest.mark.parametrize("fits", ["sleep_fits", "nested_fits"])
def test_collapsed_and_full_random_effects_agree(fits, request):
    col, full = request.getfixturevalue(fits)
    for g in col.design.groups:
        bc, bf = col.posterior[f"{g.name}_b"], full.posterior[f"{g.name}_b"]
        sd = np.sqrt((bc.var(("chain", "draw")) + bf.var(("chain", "draw"))) / 2)
        gap = abs(bc.mean(("chain", "draw")) - bf.mean(("chain", "draw"))) / sd
        assert float(gap.max()) < 0.1, g.name


@pytest.mark.parametrize("fits", ["sleep_fits", "nested_fits"])
def test_collapsed_fit_has_the_layout_of_a_full_fit(fits, request):
    col, full = request.getfixturevalue(fits)
    assert col.idata.attrs["method"] == "collapsed" and full.idata.attrs["method"] == "full"
    assert list(col.posterior.data_vars) == list(full.posterior.data_vars)
    for name, da in full.posterior.data_vars.items():
        assert col.posterior[name].dims == da.dims, name
        for dim in da.dims:
            np.testing.assert_array_equal(col.posterior[name][dim].values, da[dim].values)
    assert set(col.idata.children) == set(full.idata.children)
    d = col.diagnostics()
    assert d["divergences"] == 0 and d["max_r_hat"] < 1.01


@pytest.fixture(scope="module")
def nested_50k():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(NESTED, nested_data(100)).fit(seed=3, progressbar=False)


def test_nested_50k_rows_default_settings(nested_50k):
    fit = nested_50k
    assert fit.design.n == 50_000 and fit.idata.attrs["method"] == "collapsed"
    d = fit.diagnostics()
    assert d["divergences"] == 0
    assert d["max_r_hat"] < 1.01
    assert d["min_ess_bulk"] > 1000
    post = fit.posterior
    truth = {"beta": [5.0, 1.5], "sigma": 2.0, "subject_sd": [1.0, 0.5], "subject:neuron_sd": [0.7]}
    for name, value in truth.items():
        mean, sd = post[name].mean(("chain", "draw")).values, post[name].std(("chain", "draw")).values
        assert np.all(np.abs(mean - np.asarray(value)) < 4 * sd), name
    assert post["subject:neuron_b"].shape == (4, 1000, 500, 1)


def test_refit_on_new_data_reuses_the_compiled_model(nested_fits):
    col, _ = nested_fits
    data = nested_data(4)
    shifted = lb.LMM(NESTED, data.assign(y=data["y"] + 10.0), priors=col.model.priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = shifted.fit(method="collapsed", draws=300, tune=300, chains=2, seed=2, progressbar=False)
    assert fit.idata.attrs["compiled_model_reused"] == 1
    intercept = [f.posterior["beta"].sel(coef="Intercept").mean() for f in (fit, col)]
    assert float(intercept[0] - intercept[1]) == pytest.approx(10.0, abs=0.3)
    b = [f.posterior["subject_b"].mean(("chain", "draw")) for f in (fit, col)]
    np.testing.assert_allclose(b[0], b[1], atol=0.3)


def _lme4_point(values: dict, model) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """lme4's ML estimates as (beta in X column order, sigma, {group: G}).

    lme4 lists an ``||`` term's effects as separate groups ``Subject``, ``Subject.1``: they
    are one factor with independent effects here.
    """
    def name(term: str) -> str:
        return "Intercept" if term == "(Intercept)" else term

    beta = np.array([values["fixef"]["(Intercept)" if c == "Intercept" else c] for c in model.design.X_columns])
    sds: dict[str, dict[str, float]] = {}
    corrs: dict[str, list] = {}
    for re in values["random_effects"]:
        group = re["group"].split(".")[0]
        sds.setdefault(group, {}).update({name(t): s for t, s in zip(re["terms"], re["sd"])})
        corrs.setdefault(group, []).extend(re.get("corr", []))
    G = {}
    for group, by_effect in sds.items():
        g = model.design.group(group)
        assert sorted(g.effects) == sorted(by_effect)
        sd = np.array([by_effect[e] for e in g.effects])
        corr = np.eye(g.n_effects)
        for pair in corrs[group]:
            i, j = (g.effects.index(name(t)) for t in pair["terms"])
            corr[i, j] = corr[j, i] = pair["corr"]
        G[g.name] = corr * np.outer(sd, sd)
    return beta, float(values["residual_sd"]), G


ML_ENTRIES = [
    (dataset, formula)
    for dataset, formula in [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
        ("sleepstudy", "Reaction ~ Days + (1 | Subject)"),
        ("radon_mn", "log_radon ~ 1 + (1 | county)"),
        ("radon_mn", "log_radon ~ floor + (1 | county)"),
        ("radon_mn", "log_radon ~ floor + log_uranium + (1 | county)"),
        ("radon_mn", "log_radon ~ floor + (1 + floor | county)"),
        ("radon_mn", "log_radon_gh ~ floor + (1 | county)"),
        ("radon_mn", "log_radon_gh ~ floor + log_uranium + (1 | county)"),
    ]
]


@pytest.mark.parametrize("dataset, formula", ML_ENTRIES)
def test_marginal_loglik_at_lme4_ml_estimates_equals_lme4_loglik(lme4_reference, sleepstudy, radon, dataset, formula):
    """An exact reference: log p(y | beta, sigma, G) at lme4's ML optimum is lme4's logLik.

    lme4 reports the estimates to ~15 digits, so the two agree to far better than 1e-6;
    a wrong log-determinant, a variance for an SD, or a dropped Woodbury term is off by
    whole units.
    """
    values = lme4_reference[(dataset, formula, "ML")]
    data = sleepstudy if dataset == "sleepstudy" else radon
    model = lb.LMM(formula, data)
    assert model.design.n == values["nobs"]
    beta, sigma, G = _lme4_point(values, model)
    got = collapsed.marginal_loglik(model.design, beta, sigma, G)
    assert got == pytest.approx(values["logLik"], abs=1e-6)


def test_all_computed_ml_entries_are_checked(lme4_reference):
    assert sorted(k[:2] for k in lme4_reference if k[2] == "ML") == sorted(ML_ENTRIES)

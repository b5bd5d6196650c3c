"""The compiled collapsed kernel: exact density, exact gradient, exact prior, same posterior.

References are independent of the kernel: the dense multivariate normal density of y
(scipy), central finite differences, scipy's prior densities and the LKJ density written
on the correlation matrix itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import lmm_bayes as lb
from lmm_bayes.inference.methods.collapsed import kernel
from lmm_bayes.inference.methods.collapsed.packing import pack
from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics

FORMULAS = [
    "y ~ x + (1 | s)",
    "y ~ x + (1 + x | s)",
    "y ~ 1 + (1 + x + z | s) + (1 | s:n)",
    "y ~ x + (1 + x | s) + (1 + z | s:n) + (1 | s:n:t)",
    "y ~ 0 + x + (1 + x | s) + (0 + z | s)",
    "y ~ x + z",
    "y ~ 0 + (1 | s)",
]


def _data(seed: int, n: int = 120, subjects: int = 5) -> pd.DataFrame:
    """Unbalanced nested data with many tiny clusters (some of one row)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"s": rng.integers(0, subjects, n), "x": rng.normal(size=n), "z": rng.normal(size=n)})
    df["n"] = df["s"].astype(str) + "_" + rng.integers(0, 6, n).astype(str)
    df["t"] = df["n"] + "_" + rng.integers(0, 3, n).astype(str)
    df["y"] = rng.normal(size=n) + df["x"] + 0.5 * df["s"]
    return df


def _packed(formula: str, seed: int):
    m = lb.LMM(formula, _data(seed))
    stats = sufficient_statistics(m.design)
    return m, stats, pack(m.design, m.priors, stats)


def _covariances(km, stats, x):
    sigma, sd, R = kernel.constrain(x, km.ints, km.floats)
    G = {}
    for k, g in enumerate(stats.chain):
        q = g.n_effects
        G[g.name] = sd[k, :q, None] * sd[k, None, :q] * R[k, :q, :q]
    return sigma, G


def _dense_loglik(design, beta, sigma, G) -> float:
    """log N(y; X beta, sigma^2 I + sum_g Z_g G_g Z_g') with a dense covariance (scipy)."""
    V = sigma**2 * np.eye(design.n)
    for g in design.groups:
        W = np.zeros((design.n, g.n_levels * g.n_effects))
        for e in range(g.n_effects):
            W[np.arange(design.n), g.codes * g.n_effects + e] = g.Z[:, e]
        V += W @ np.kron(np.eye(g.n_levels), G[g.name]) @ W.T
    mean = design.X @ beta if design.X.shape[1] else np.zeros(design.n)
    return float(st.multivariate_normal(mean, V).logpdf(design.y))


def _marginal(km, stats, x):
    """The kernel's marginal log-likelihood alone at x."""
    p = stats.XtX.shape[0]
    sigma, G = _covariances(km, stats, x)
    K = len(stats.chain)
    Ginv = np.zeros((K, 3, 3))
    logdet = np.zeros(K)
    for k, g in enumerate(stats.chain):
        q = g.n_effects
        Ginv[k, :q, :q] = np.linalg.inv(G[g.name])
        logdet[k] = np.linalg.slogdet(G[g.name])[1]
    return kernel._marginal(x[:p].copy(), sigma**2, Ginv, logdet, km.ints, km.floats)[0], sigma, G


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("seed", [0, 1])
def test_marginal_equals_dense_multivariate_normal(formula, seed):
    m, stats, km = _packed(formula, seed)
    rng = np.random.default_rng(seed + 10)
    x = km.start + rng.normal(scale=0.5, size=km.n_dim)
    ll, sigma, G = _marginal(km, stats, x)
    p = stats.XtX.shape[0]
    assert ll == pytest.approx(_dense_loglik(m.design, x[:p], sigma, G), rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(formula, seed):
    _, _, km = _packed(formula, seed)
    rng = np.random.default_rng(seed)
    x = km.start + rng.normal(scale=0.7, size=km.n_dim)
    _, grad = km.log_density(x)
    eps = 1e-6
    fd = np.array([(km.log_density(x + eps * e)[0] - km.log_density(x - eps * e)[0]) / (2 * eps)
                   for e in np.eye(km.n_dim)])
    # central differences are accurate to ~1e-8 relative here; a wrong term is off by O(1)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(fd).max()))


PRIORS = [
    (lb.Prior("Normal", mu=1.0, sigma=2.0), st.norm(1.0, 2.0), False),
    (lb.Prior("StudentT", nu=3.0, mu=-1.0, sigma=0.5), st.t(3.0, -1.0, 0.5), False),
    (lb.Prior("HalfNormal", sigma=2.0), st.halfnorm(scale=2.0), True),
    (lb.Prior("Exponential", lam=0.7), st.expon(scale=1 / 0.7), True),
    (lb.Prior("HalfStudentT", nu=4.0, sigma=1.5), st.t(4.0, 0.0, 1.5), True),
    (lb.Prior("HalfCauchy", beta=2.5), st.halfcauchy(scale=2.5), True),
]


@pytest.mark.parametrize(("prior", "ref", "positive"), PRIORS, ids=[p[0].dist for p in PRIORS])
def test_prior_families_match_scipy(prior, ref, positive):
    """Each prior's log density (and derivative) against scipy's, at several values."""
    code, (nu, mu, scale) = kernel.FAMILY_CODES[prior.dist], _params(prior)
    for value in [0.3, 1.7, 4.0]:
        lp, dlp = kernel._prior(code, nu, mu, scale, value)
        expected = ref.logpdf(value) + (np.log(2) if prior.dist == "HalfStudentT" else 0.0)
        assert lp == pytest.approx(expected, rel=1e-12)
        h = 1e-6
        numeric = (kernel._prior(code, nu, mu, scale, value + h)[0] - kernel._prior(code, nu, mu, scale, value - h)[0])
        assert dlp == pytest.approx(numeric / (2 * h), rel=1e-6)


def test_every_prior_family_a_model_accepts_has_a_compiled_form():
    """A family added to the priors fails here until the kernel learns its density."""
    from lmm_bayes.spec import distribution

    assert set(kernel.FAMILY_CODES) == set(distribution._LOCATION_DISTS) | set(distribution._SCALE_DISTS)


def _params(prior):
    kw = prior.kwargs
    return kw.get("nu", 0.0), kw.get("mu", 0.0), kw.get("sigma", kw.get("lam", kw.get("beta", 1.0)))


@pytest.mark.parametrize(("formula", "m", "eta"), [("y ~ 1 + (1 + x | s)", 2, 1.0), ("y ~ 1 + (1 + x + z | s)", 3, 2.0),
                                               ("y ~ 1 + (1 + x + z | s)", 3, 0.7)])
def test_lkj_density_on_the_correlation_matrix(formula, m, eta):
    """The kernel's correlation prior is LKJ(eta): det(R)^(eta-1) |d r / d y|, up to one constant.

    Moving only the correlation coordinates y of a fitted model's kernel, its log density
    minus the marginal likelihood must follow (eta - 1) log det R plus the log-Jacobian from
    y to R's free entries, recomputed here from the correlation matrix with a numerical
    Jacobian (not from the kernel's Cholesky-factor formulas).
    """
    model = lb.LMM(formula, _data(0), priors={"s": {"eta": eta}})
    stats = sufficient_statistics(model.design)
    km = pack(model.design, model.priors, stats)
    rng = np.random.default_rng(m)
    n_free = m * (m - 1) // 2
    lower = np.tril_indices(m, -1)
    at = 2 + m  # after the intercept, log sigma and the m log SDs

    def corr(y):
        L, _ = kernel._corr_cholesky(y, m)
        return L @ L.T

    gaps = []
    for _ in range(5):
        x = km.start.copy()
        y = rng.normal(scale=0.6, size=n_free)
        x[at : at + n_free] = y
        prior_part = km.log_density(x)[0] - _marginal(km, stats, x)[0]
        h = 1e-6
        J = np.column_stack([(corr(y + h * e)[lower] - corr(y - h * e)[lower]) / (2 * h) for e in np.eye(n_free)])
        reference = (eta - 1) * np.linalg.slogdet(corr(y))[1] + np.linalg.slogdet(J)[1]
        gaps.append(prior_part - reference)
    assert np.ptp(gaps) < 1e-6


def test_correlation_gradient_includes_lkj_and_jacobian():
    """The reverse pass through the correlation transform against finite differences."""
    rng = np.random.default_rng(3)
    m = 4
    y = rng.normal(size=m * (m - 1) // 2)
    gL = np.tril(rng.normal(size=(m, m)))

    def f(v):
        L, logjac = kernel._corr_cholesky(v, m)
        return float((gL * L).sum() + logjac)

    fd = np.array([(f(y + 1e-6 * e) - f(y - 1e-6 * e)) / 2e-6 for e in np.eye(y.size)])
    np.testing.assert_allclose(kernel._corr_cholesky_grad(y, m, gL), fd, rtol=1e-6, atol=1e-8)


def test_expand_gives_the_layout_names_and_values():
    _, _, km = _packed("y ~ 0 + x + (1 + x | s) + (0 + z | s)", 0)
    x = km.start + 0.3
    out = km.expand(x)
    names, shapes, dims = km.variables()
    assert list(out) == names == ["beta", "sigma", "s_sd", "s_corr"]
    assert [np.shape(out[n]) for n in names] == [tuple(s) for s in shapes]
    assert out["sigma"] == pytest.approx(np.exp(x[1]))
    np.testing.assert_allclose(out["s_sd"], np.exp([x[2], x[3], x[5]]))
    # z is its own block: correlated with nothing
    assert out["s_corr"][0, 2] == 0.0 and out["s_corr"][1, 2] == 0.0
    assert out["s_corr"][0, 1] == pytest.approx(np.tanh(x[4]))
    flat = np.empty(sum(int(np.prod(s)) for s in shapes))
    kernel.expand_flat(x, km.ints, km.floats, flat)
    np.testing.assert_array_equal(flat, np.concatenate([np.ravel(out[n]) for n in names]))
    assert dims["s_corr"] == ("s_effect", "s_effect_bis")


def test_log_density_is_minus_infinity_off_support():
    """A covariance that is not positive definite is refused, not turned into a number."""
    _, _, km = _packed("y ~ x + (1 | s)", 0)
    x = km.start.copy()
    x[2] = -800.0  # the SD underflows to 0
    assert km.log_density(x)[0] == -np.inf


def test_balanced_neurons_are_grouped_and_still_exact():
    """Equal-sized neurons share one group per subject: the lean path against the dense density."""
    rng = np.random.default_rng(4)
    subjects, neurons, trials = 4, 5, 3
    n = subjects * neurons * trials
    df = pd.DataFrame({"s": np.repeat(np.arange(subjects), neurons * trials),
                       "n": np.tile(np.repeat(np.arange(neurons), trials), subjects), "x": rng.normal(size=n)})
    df["y"] = rng.normal(size=n) + df["x"] + df["s"]
    m = lb.LMM("y ~ x + (1 + x | s) + (1 | s:n)", df)
    stats = sufficient_statistics(m.design)
    km = pack(m.design, m.priors, stats)
    row = int(km.ints[kernel.HEADER.index("levels")]) + kernel.LEVEL_WIDTH
    assert km.ints[row + 9] == subjects  # 20 neurons, 4 groups
    x = km.start + rng.normal(scale=0.5, size=km.n_dim)
    ll, sigma, G = _marginal(km, stats, x)
    assert ll == pytest.approx(_dense_loglik(m.design, x[:2], sigma, G), rel=1e-10)
    _, grad = km.log_density(x)
    fd = np.array([(km.log_density(x + 1e-6 * e)[0] - km.log_density(x - 1e-6 * e)[0]) / 2e-6
                   for e in np.eye(km.n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(fd).max()))


def _kernel_point(sd: np.ndarray, corr: np.ndarray) -> list[float]:
    """The kernel's unconstrained coordinates of one correlated block: log SDs, then atanh of the CPCs."""
    L = np.linalg.cholesky(corr)
    m = len(sd)
    cpc = [L[i, j] / np.sqrt(1 - (L[i, :j] ** 2).sum()) for i in range(1, m) for j in range(i)]
    return list(np.log(sd)) + list(np.arctanh(cpc))


def test_beta_and_sigma_gradient_equal_the_pymc_graphs():
    """At points the PyMC collapsed graph and the kernel share, d/d beta and d/d log sigma agree,
    and so do log-density differences between points that differ in beta and sigma only.

    (The covariance parameters have different unconstrained coordinates in the two, hence the
    comparison along beta and sigma, G held at the graph's value.)
    """
    from lmm_bayes.inference.methods.collapsed import likelihood as collapsed

    m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    stats = sufficient_statistics(m.design)
    km = pack(m.design, m.priors, stats)
    graph = collapsed.build_collapsed_model(m.design, m.priors, stats)
    logp, dlogp = graph.compile_logp(), graph.compile_dlogp()

    def sd_corr(point):
        # PyMC's CholeskyCovPacked: the lower triangle row by row, log on the diagonal
        L = np.zeros((2, 2))
        L[np.tril_indices(2)] = point["Subject_chol_cov_cholesky-cov-packed__"]
        L[np.diag_indices(2)] = np.exp(np.diag(L))
        cov = L @ L.T
        sd = np.sqrt(np.diag(cov))
        return sd, cov / np.outer(sd, sd)

    rng = np.random.default_rng(2)
    for _ in range(3):
        point = graph.initial_point()
        point["beta"] = point["beta"] + rng.normal(scale=[5.0, 1.0])
        point["sigma_log__"] = np.asarray(np.log(25.0) + rng.normal(scale=0.2))
        point["Subject_chol_cov_cholesky-cov-packed__"] = rng.normal(scale=0.5, size=3) + [3.0, 0.0, 1.5]
        sd, corr = sd_corr(point)
        x = np.array([*point["beta"], point["sigma_log__"], *_kernel_point(sd, corr)])
        _, grad = km.log_density(x)
        flat = dlogp(point)  # ordered as graph.value_vars: beta, chol_cov, sigma
        np.testing.assert_allclose(grad[:2], flat[:2], rtol=1e-8)
        np.testing.assert_allclose(grad[2], flat[-1], rtol=1e-8)
    # G differs between the points, so only beta/sigma-only differences are comparable: redo at one G
    point = graph.initial_point()
    base = np.array([*point["beta"], point["sigma_log__"], *_kernel_point(*sd_corr(point))])
    moved = dict(point, beta=point["beta"] + [3.0, -0.5], sigma_log__=point["sigma_log__"] + 0.1)
    shift = base.copy()
    shift[:3] += [3.0, -0.5, 0.1]
    assert km.log_density(shift)[0] - km.log_density(base)[0] == pytest.approx(
        float(logp(moved)) - float(logp(point)), rel=1e-9, abs=1e-9)

"""Fits through the compiled kernel: the same posterior as the PyMC graph, reproducible, and honest about compiling."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from arviz_stats import mcse

import lmm_bayes as lb
from lmm_bayes.inference import sampling
from lmm_bayes.inference.methods import kernel_loader
from lmm_bayes.inference.methods.collapsed import kernel_sampler
from lmm_bayes.inference.methods.registry import resolve_method
from lmm_bayes.inference.sampling import SamplerSettings


@pytest.fixture(scope="module")
def sleep():
    return lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def kernel_fit(sleep):
    return sleep.fit(seed=11, progressbar=False)


@pytest.fixture(scope="module")
def graph_fit(sleep):
    sampling.USE_KERNEL = False
    try:
        return sleep.fit(seed=12, progressbar=False)
    finally:
        sampling.USE_KERNEL = True


def test_default_collapsed_fit_runs_on_the_kernel(kernel_fit):
    assert kernel_fit.idata.attrs["method"] == "collapsed"
    assert kernel_loader.is_loaded()
    post = kernel_fit.posterior
    assert set(post.data_vars) == {"beta", "sigma", "Subject_sd", "Subject_corr", "Subject_b"}
    assert post["Subject_corr"].dims == ("chain", "draw", "Subject_effect", "Subject_effect_bis")


@pytest.mark.parametrize(
    ("var", "index"),
    [("beta", {"coef": "Intercept"}), ("beta", {"coef": "Days"}), ("sigma", {}),
     ("Subject_sd", {"Subject_effect": "Intercept"}), ("Subject_sd", {"Subject_effect": "Days"}),
     ("Subject_corr", {"Subject_effect": "Intercept", "Subject_effect_bis": "Days"})],
)
def test_kernel_and_pymc_graph_give_the_same_posterior(kernel_fit, graph_fit, var, index):
    """One z per quantity: means differ by less than 4 combined MCSE (two independent runs).

    4 MCSE: with 6 quantities a false alarm has probability ~4e-4; a wrong prior or
    likelihood term moves these means by tens of MCSE (the MCSE is ~1% of a posterior SD).
    """
    a = kernel_fit.posterior[var].sel(index)
    b = graph_fit.posterior[var].sel(index)
    se = np.hypot(float(mcse(a, method="mean")), float(mcse(b, method="mean")))
    z = (float(a.mean()) - float(b.mean())) / se
    assert abs(z) < 4, f"{var} {index}: kernel {float(a.mean()):.4g} vs graph {float(b.mean()):.4g}, z = {z:.1f}"
    # and the spread: posterior SDs within 10% (each SD estimate is within ~2% at ESS ~4000)
    assert float(a.std()) == pytest.approx(float(b.std()), rel=0.1)


def test_c_entry_points_equal_the_python_entry_point(sleep):
    """What nutpie calls (C, no Python) computes exactly what the tests check (Python)."""
    kernel = kernel_loader.load()
    method, _ = resolve_method(sleep.design, "collapsed")
    model = method.kernel_model(sleep.priors)
    user_data = np.array([model.ints.ctypes.data, model.ints.size, model.floats.ctypes.data, model.floats.size])
    _, shapes, _ = model.variables()
    n_expanded = sum(int(np.prod(s)) for s in shapes)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = model.start + rng.normal(scale=0.5, size=model.n_dim)
        grad, logp, out = np.zeros(model.n_dim), np.zeros(1), np.zeros(n_expanded)
        assert kernel.logp_cfunc.ctypes(
            model.n_dim, *[a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for a in (x, grad, logp)],
            ctypes.c_void_p(user_data.ctypes.data)) == 0
        value, expected = model.log_density(x)
        assert logp[0] == value
        np.testing.assert_array_equal(grad, expected)
        assert kernel.expand_cfunc.ctypes(
            model.n_dim, n_expanded, *[a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for a in (x, out)],
            ctypes.c_void_p(user_data.ctypes.data)) == 0
        np.testing.assert_array_equal(out, np.concatenate([np.ravel(v) for v in model.expand(x).values()]))


def test_same_seed_same_draws_and_the_python_callback_path_samples_the_same_model(sleep):
    """Reproducible by seed; nutpie's public Python-callback interface (the fallback) agrees in distribution."""
    import nutpie

    settings = SamplerSettings(draws=300, tune=300, chains=2, seed=5, progressbar=False)
    method, _ = resolve_method(sleep.design, "collapsed")
    model = method.kernel_model(sleep.priors)
    coords = {"coef": list(sleep.design.X_columns), "Subject_effect": ["Intercept", "Days"],
              "Subject_effect_bis": ["Intercept", "Days"]}
    first, _ = sampling.sample_nutpie(kernel_sampler.nutpie_model(model, coords), settings)
    again, _ = sampling.sample_nutpie(kernel_sampler.nutpie_model(model, coords), settings)
    np.testing.assert_array_equal(first["beta"].values, again["beta"].values)
    trace = nutpie.sample(kernel_sampler._python_callback_model(model, coords), draws=300, tune=300, chains=2,
                          seed=6, progress_bar=False)
    other = trace.posterior
    for var in ("beta", "sigma", "Subject_sd"):
        a, b = first[var], other[var]
        se = np.hypot(np.asarray(mcse(a, method="mean")), np.asarray(mcse(b, method="mean")))
        z = (np.asarray(a.mean(("chain", "draw"))) - np.asarray(b.mean(("chain", "draw")))) / se
        assert np.all(np.abs(z) < 4), f"{var}: z = {z}"


def test_a_compile_says_so(monkeypatch, capsys):
    """When loading takes longer than the notice delay (a compile), the user is told where it is cached."""
    import sys

    kernel_loader.warm_up()
    for name in ("lmm_bayes.inference.methods.collapsed.kernel", "lmm_bayes.inference.methods.crossed.kernel"):
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setattr(kernel_loader, "NOTICE_AFTER_S", 0.0)
    monkeypatch.setattr(kernel_loader, "_NOTICED", [])
    assert not kernel_loader.is_loaded()
    assert kernel_loader.warm_up() >= 0 and kernel_loader.is_loaded()
    err = capsys.readouterr().err
    # one notice for each compiled file that loads slowly, naming it (the Laplace kernel, loaded, says nothing)
    assert err.count("compiling the collapsed sampler's kernel once for this machine") == 1
    assert err.count("compiling the crossed method's loops once for this machine") == 1
    assert "Laplace" not in err
    assert kernel_loader.cache_location() in err
    # loaded: no second notice
    kernel_loader.warm_up()
    assert capsys.readouterr().err == ""


def test_a_graph_compile_says_so(capsys):
    """A model graph nutpie compiles (a GLMM's, a pooling model's) gets one line; a reused one none."""
    import pymc as pm

    from lmm_bayes.inference.sampling import SamplerSettings, run_sampler

    def build():
        with pm.Model() as model:
            pm.Normal("mu", 0.0, 1.0)
        return model

    settings = SamplerSettings(draws=20, tune=20, chains=1, seed=1, progressbar=True)
    key = "test_a_graph_compile_says_so"
    run_sampler(build, key, dict, settings)
    assert capsys.readouterr().err.count("lmm-bayes: compiling this model's graph") == 1
    run_sampler(build, key, dict, settings)
    assert "compiling" not in capsys.readouterr().err

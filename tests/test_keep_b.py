"""keep_b: the draws of b kept in float64, float32 or not at all, and what each disables."""

from __future__ import annotations

import numpy as np
import pytest

import lmm_bayes as lb

# small fits: the tests compare the kept draws with each other, not with truth
pytestmark = pytest.mark.filterwarnings("ignore::lmm_bayes.SamplingWarning")
FAST = {"draws": 200, "tune": 200, "chains": 2, "seed": 7, "progressbar": False}
NESTED = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    subjects, neurons, trials = 8, 6, 5
    n = subjects * neurons * trials
    s = np.repeat(np.arange(subjects), neurons * trials)
    nn = np.tile(np.repeat(np.arange(neurons), trials), subjects)
    x = rng.normal(size=n)
    y = 2 + x + rng.normal(size=subjects)[s] + 0.5 * rng.normal(size=(subjects, neurons))[s, nn] + rng.normal(size=n)
    import pandas as pd

    data = pd.DataFrame({"y": y, "x": x, "subject": [f"s{i}" for i in s], "neuron": [f"n{j}" for j in nn]})
    return lb.LMM(NESTED, data)


@pytest.fixture(scope="module")
def fits(model):
    return {keep: model.fit(keep_b=keep, **FAST) for keep in ("all", "float32", "none")}


def test_same_hyperparameter_draws_whatever_is_kept(fits):
    """b is drawn after sampling, so the seed gives the same hyperparameter draws in all three."""
    for var in ("beta", "sigma", "subject_sd", "subject_corr", "subject:neuron_sd"):
        for keep in ("float32", "none"):
            np.testing.assert_array_equal(fits[keep].posterior[var].values, fits["all"].posterior[var].values)
    assert fits["none"].fixef().equals(fits["all"].fixef())
    assert fits["none"].varcorr().equals(fits["all"].varcorr())


def test_float32_keeps_the_same_draws_at_half_the_memory(fits):
    for name in ("subject_b", "subject:neuron_b"):
        b32, b64 = fits["float32"].posterior[name], fits["all"].posterior[name]
        assert b32.dtype == np.float32 and b64.dtype == np.float64
        np.testing.assert_array_equal(b32.values, b64.values.astype(np.float32))
        assert b32.nbytes * 2 == b64.nbytes
    table = fits["float32"].ranef("subject")
    np.testing.assert_allclose(table["mean"], fits["all"].ranef("subject")["mean"], rtol=1e-5, atol=1e-6)


def test_none_keeps_no_b_and_no_log_likelihood(fits):
    fit = fits["none"]
    assert not {"subject_b", "subject:neuron_b"} & set(fit.posterior.data_vars)
    assert "log_likelihood" not in fit.idata.children
    assert fit.idata.attrs["keep_b"] == "none"


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda f: f.ranef("subject"), "ranef"),
        (lambda f: f.coef("subject"), "coef"),
        (lambda f: f.coef_draws("subject:neuron"), "coef"),
        (lambda f: f.shrinkage("subject:neuron"), "shrinkage"),
        (lambda f: f.predict(), "a prediction for fitted clusters"),
        (lambda f: f.posterior_predictive(), "a prediction for fitted clusters"),
    ],
    ids=["ranef", "coef", "coef_draws", "shrinkage", "predict", "posterior_predictive"],
)
def test_what_needs_b_says_so(fits, call, what):
    with pytest.raises(lb.RandomEffectsNotKept, match=rf"{what} needs the draws of the '[a-z:]+' random effects.*keep_b='all'"):
        call(fits["none"])


def test_what_needs_no_b_still_works(fits):
    fit = fits["none"]
    assert set(fit.icc().index) >= {"subject"}
    population = fit.predict(levels="population")
    np.testing.assert_array_equal(population.values, fits["all"].predict(levels="population").values)


def test_a_fit_without_b_saves_and_loads(fits, tmp_path):
    path = tmp_path / "fit.nc"
    fits["none"].save(path)
    loaded = lb.load(path)
    assert loaded.fixef().equals(fits["none"].fixef())
    with pytest.raises(lb.RandomEffectsNotKept):
        loaded.ranef("subject")


def test_keep_b_is_checked(model):
    with pytest.raises(ValueError, match="keep_b must be one of"):
        model.fit(keep_b="some", **FAST)
    with pytest.raises(ValueError, match="log_likelihood=True needs the draws of b, which keep_b='none' drops"):
        model.fit(keep_b="none", log_likelihood=True, **FAST)


def test_full_method_keeps_b_the_same_way(model):
    fit = model.fit(method="full", keep_b="none", **FAST)
    assert "subject_b" not in fit.posterior and fit.idata.attrs["keep_b"] == "none"

"""The response families as types: the registry, each family's formulas against one another, no name branches."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from lmm_bayes.spec import families
from lmm_bayes.spec.families.registry import FAMILIES, GAUSSIAN, REGISTERED, Family, get_family

PACKAGE = Path(__file__).resolve().parents[1] / "lmm_bayes"
ALL = [(f.name, link) for f in REGISTERED for link in f.links]
GLM = [(name, link) for name, link in ALL if name != "gaussian"]


def _every_subclass(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _every_subclass(sub)


def test_every_family_class_is_registered_and_found_by_its_name():
    """A family class left out of REGISTERED would be unreachable by name."""
    defined = {c for c in _every_subclass(Family) if c.__module__.startswith("lmm_bayes.spec.families")}
    assert defined == set(REGISTERED)
    assert list(FAMILIES) == ["gaussian", "poisson", "negativebinomial", "bernoulli", "binomial"]
    for cls in REGISTERED:
        for link in cls.links:
            fam = get_family(cls.name, link)
            assert type(fam) is cls and fam.link == link and fam == cls(link) and hash(fam) == hash(cls(link))
            assert repr(fam) == f"Family(name={cls.name!r}, link={link!r})"
        for alias in cls.aliases:
            assert get_family(alias) == cls()
    assert get_family("gaussian") == GAUSSIAN and get_family("poisson") != get_family("negativebinomial")


@pytest.mark.parametrize(("name", "link"), ALL)
def test_the_link_and_its_inverse_agree(name, link):
    fam = get_family(name, link)
    eta = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(fam.link_function(fam.inverse_link(eta)), eta, atol=1e-10)


def _data(fam, rng):
    n = 6
    trials = np.arange(1, n + 1, dtype=float) + 3 if fam.needs_trials else None
    y = fam.draw(rng, np.linspace(-1, 1, n), np.array(0.7) if fam.aux else None, trials)
    return y, trials


@pytest.mark.parametrize(("name", "link"), ALL)
def test_the_score_is_the_derivative_of_the_log_likelihood(name, link):
    """score_and_weights against a central difference of log_likelihood, at the data's own draws."""
    fam = get_family(name, link)
    y, trials = _data(fam, np.random.default_rng(1))
    aux = 0.7 if fam.aux else None
    eta, h = np.linspace(-1, 1, y.size) + 0.1, 1e-5
    score, _ = fam.score_and_weights(eta, y, trials=trials, aux=aux)
    numeric = (fam.log_likelihood(y, eta + h, aux, trials) - fam.log_likelihood(y, eta - h, aux, trials)) / (2 * h)
    np.testing.assert_allclose(score, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "link"), ALL)
def test_the_working_weights_are_the_information(name, link):
    """The (observed or expected) information: minus the second difference of the log-likelihood, or its mean."""
    fam = get_family(name, link)
    y, trials = _data(fam, np.random.default_rng(2))
    aux = 0.7 if fam.aux else None
    eta, h = np.linspace(-1, 1, y.size), 1e-4
    w = fam.working_weights(eta, y, trials=trials, aux=aux)
    second = (fam.log_likelihood(y, eta + h, aux, trials) - 2 * fam.log_likelihood(y, eta, aux, trials)
              + fam.log_likelihood(y, eta - h, aux, trials)) / h**2
    if name in ("gaussian", "poisson", "negativebinomial") or link == "logit":  # observed = its own formula
        np.testing.assert_allclose(w, -second, rtol=1e-4)
    assert np.all(w > 0) and w.shape == eta.shape


@pytest.mark.parametrize(("name", "link"), GLM)
def test_draws_have_the_family_mean_and_variance(name, link):
    fam = get_family(name, link)
    rng = np.random.default_rng(3)
    eta = np.full(200_000, 0.3)
    trials = np.full(eta.size, 5.0) if fam.needs_trials else None
    aux = np.array(0.5) if fam.aux else None
    y = fam.draw(rng, eta, aux, trials)
    n = 1.0 if trials is None else 5.0
    mu = float(fam.inverse_link(0.3)) * n
    assert y.mean() == pytest.approx(mu, rel=0.02)
    assert y.var() == pytest.approx(float(fam.variance(mu, aux, n)), rel=0.03)
    fam.check_response(y, "y", trials)  # its own draws pass its check


def test_the_laplace_kernel_codes_are_the_kernel_s():
    from lmm_bayes.inference.methods.laplace.kernel import FAMILY_CODE

    assert {f.name: f.kernel_code for f in REGISTERED if f.kernel_code is not None} == {
        "poisson": FAMILY_CODE["poisson"], "negativebinomial": FAMILY_CODE["negativebinomial"],
        "bernoulli": FAMILY_CODE["logit"], "binomial": FAMILY_CODE["logit"]}


# a family's name compared, or a design probed for a field it always has
_NAME_BRANCH = re.compile(r"""\.name\s*(==|!=|in|not in)\s*[("']+(gaussian|poisson|negativebinomial|bernoulli|binomial)""")
_PROBE = re.compile(r"""getattr\([\w.]+,\s*["'](family|offset|trials)["']""")


def test_no_module_branches_on_a_family_name_or_probes_a_design():
    """Formulas that differ between families live in their classes (lmm_bayes/spec/families/)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "families" in path.parts:
            continue
        text = path.read_text()
        ast.parse(text)
        bad += [f"{path.relative_to(PACKAGE)}: {m.group(0)}" for m in _NAME_BRANCH.finditer(text)]
        bad += [f"{path.relative_to(PACKAGE)}: {m.group(0)}" for m in _PROBE.finditer(text)]
    assert not bad, bad


def test_the_package_docstring_says_how_to_add_a_family():
    assert "Adding a family" in families.__doc__ and "REGISTERED" in families.__doc__

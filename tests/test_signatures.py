"""Every public function and method shows its keywords, documents them, and names itself on a typo.

Walks ``lmm_bayes.__all__`` and the public methods of ``Fit``, ``PoolingFit``, ``LMM`` and ``GLMM``
(issue 38): no bare ``**kwargs``, a numpydoc Parameters section naming every parameter, the same
defaults as the stage function a method hands the work to, and an unknown keyword's TypeError that
names the public method, its keywords and the closest one.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
from numpydoc.docscrape import FunctionDoc

import lmm_bayes as lb
from lmm_bayes.results import fitting, predict, predictive
from lmm_bayes.results.contextual import contextual_effect
from lmm_bayes.results.contrasts import contrasts
from lmm_bayes.results.covariance import group_covariance, implied_covariance
from lmm_bayes.results.effects import conditional_effects
from lmm_bayes.results.glm_checks import binned_calibration, rootogram
from lmm_bayes.results.io import save
from lmm_bayes.results.residuals import fitted, residuals
from lmm_bayes.results.shrinkage import shrinkage
from lmm_bayes.teaching import check_plots, effects_plot, plots

#: the only open-ended keyword pass-throughs, each with its reason
OPEN_KWARGS: dict[str, str] = {}
CLASSES = (lb.Fit, lb.PoolingFit, lb.LMM, lb.GLMM)

#: each forwarding method and the stage functions whose keywords it states (the first that has one wins)
FORWARDS = {
    lb.LMM.fit: [fitting.fit_model],
    lb.LMM.prior_predictive: [predictive.prior_predictive],
    lb.Fit.save: [save],
    lb.Fit.contrasts: [contrasts],
    lb.Fit.shrinkage: [shrinkage],
    lb.Fit.contextual_effect: [contextual_effect],
    lb.Fit.G: [group_covariance],
    lb.Fit.implied_covariance: [implied_covariance],
    lb.Fit.predict: [predict.predict],
    lb.Fit.predict_summary: [predict.predict_summary],
    lb.Fit.posterior_predictive: [predictive.posterior_predictive],
    lb.Fit.rootogram: [rootogram],
    lb.Fit.binned_calibration: [binned_calibration],
    lb.Fit.fitted: [fitted],
    lb.Fit.residuals: [residuals],
    lb.Fit.conditional_effects: [conditional_effects],
    lb.Fit.plot_effects: [effects_plot.plot_effects],
    lb.Fit.plot_residuals: [check_plots.plot_residuals, residuals],  # the rest go to residuals
    lb.Fit.plot_trace: [check_plots.plot_trace],
    lb.Fit.plot_rank: [check_plots.plot_rank],
    lb.Fit.plot_pair: [check_plots.plot_pair],
    lb.Fit.plot_loo_pit: [check_plots.plot_loo_pit],
    lb.Fit.plot_ppc: [plots.plot_ppc],
    lb.Fit.plot_caterpillar: [plots.plot_caterpillar],
}


def public_callables() -> list[tuple[str, object]]:
    found = [(name, getattr(lb, name)) for name in lb.__all__ if inspect.isfunction(getattr(lb, name))]
    for cls in CLASSES:
        for name in dir(cls):
            if name.startswith("_") or isinstance(inspect.getattr_static(cls, name), property):
                continue
            if callable(getattr(cls, name)):
                found.append((f"{cls.__name__}.{name}", getattr(cls, name)))
    return found


def own_parameters(func) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values() if p.name not in ("self", "cls")]


def test_the_walk_finds_the_public_api():
    names = {name for name, _ in public_callables()}
    assert {"load", "compare_pooling", "LMM.fit", "GLMM.fit", "Fit.predict", "Fit.fixef", "PoolingFit.coef"} <= names
    assert len(names) > 60


def test_no_bare_kwargs():
    hidden = []
    for name, func in public_callables():
        for p in own_parameters(func):
            if p.kind is p.VAR_KEYWORD and OPEN_KWARGS.get(name.split(".")[-1]) != p.name:
                hidden.append(f"{name}(**{p.name})")
    assert hidden == [], f"signatures hiding their keywords: {hidden}"


def test_every_parameter_is_documented():
    missing = []
    for name, func in public_callables():
        params = [p.name for p in own_parameters(func)]
        if not params:
            continue
        documented = {n.strip().lstrip("*") for entry in FunctionDoc(func)["Parameters"] for n in entry.name.split(",")}
        if not documented:
            missing.append(f"{name}: no Parameters section")
        elif set(params) - documented:
            missing.append(f"{name}: {sorted(set(params) - documented)} undocumented")
    assert missing == [], "\n".join(missing)


@pytest.mark.parametrize("method", list(FORWARDS), ids=lambda m: m.__qualname__)
def test_defaults_are_the_stage_functions(method):
    stages = FORWARDS[method]
    stage_params = {}
    for stage in reversed(stages):  # the first stage that has a keyword wins
        stage_params.update({p.name: p for p in list(inspect.signature(stage).parameters.values())[1:]})
    mine = {p.name: p for p in own_parameters(method)}
    first = {p.name for p in list(inspect.signature(stages[0]).parameters.values())[1:] if p.kind is not p.VAR_KEYWORD}
    assert first <= set(mine), f"{method.__qualname__} drops {sorted(first - set(mine))}"
    for name, p in mine.items():
        assert name in stage_params, f"{method.__qualname__} takes {name!r}, which no stage function takes"
        assert p.default == stage_params[name].default, (name, p.default, stage_params[name].default)
        assert p.kind == stage_params[name].kind, (name, p.kind, stage_params[name].kind)


@pytest.fixture(scope="module")
def fit():
    model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(draws=40, tune=40, chains=2, seed=1, progressbar=False)
    return result, caught


@pytest.mark.parametrize(
    ("call", "where", "given", "suggested"),
    [
        (lambda m, f: m.fit(iter=2000), "LMM.fit", "iter", "draws"),
        (lambda m, f: m.fit(warmup=500), "LMM.fit", "warmup", "tune"),
        (lambda m, f: m.fit(chain=2), "LMM.fit", "chain", "chains"),
        (lambda m, f: f.fixef(prb=0.9), "Fit.fixef", "prb", "prob"),
        (lambda m, f: f.predict(newdata=None), "Fit.predict", "newdata", "data"),
        (lambda m, f: f.plot_effects("Days", grop="Subject"), "Fit.plot_effects", "grop", "group"),
        (lambda m, f: f.icc(at_x={"Days": 1}), "Fit.icc", "at_x", "at"),
    ],
)
def test_unknown_keyword_names_the_public_method(fit, call, where, given, suggested):
    model = fit[0].model
    with pytest.raises(TypeError) as info:
        call(model, fit[0])
    text = str(info.value)
    assert text.startswith(f"{where}() got an unexpected keyword argument {given!r}; did you mean {suggested!r}?")
    method = getattr(type(model) if where.startswith("LMM") else lb.Fit, where.split(".")[1])
    valid = ", ".join(p.name for p in own_parameters(method) if p.kind is not p.POSITIONAL_ONLY)
    assert text.endswith(f"Its keywords: {valid}")
    assert "fit_model" not in text and "MixedModelFit" not in text


def test_unknown_keyword_without_a_close_one_lists_them(fit):
    with pytest.raises(TypeError, match=r"^GLMM\.fit\(\) got an unexpected keyword argument 'zzz'\. Its keywords: draws"):
        lb.GLMM("y ~ 1 + (1 | g)", __import__("pandas").DataFrame({"y": [0, 1, 2, 1], "g": list("aabb")}),
                family="poisson").fit(zzz=1)


def test_the_warnings_of_a_fit_point_at_the_callers_line(fit):
    caught = fit[1]
    assert caught, "40 draws should give a SamplingWarning (bulk ESS < 400)"
    assert {w.filename for w in caught} == {__file__}, [(w.category.__name__, w.filename) for w in caught]


def test_keywords_reach_the_stage_function(fit):
    f = fit[0]
    a = f.shrinkage("Subject", ci="eti", prob=0.5)
    b = shrinkage(f, "Subject", ci="eti", prob=0.5)
    assert a.equals(b)
    assert "eti_low" in f.fixef(ci="eti", prob=0.5).columns
    assert f.G("Subject", kind="correlation").iloc[0, 0] == pytest.approx(1.0)


def test_compare_pooling_sampler_defaults_are_fit_models():
    """compare_pooling states fit_model's sampler keywords itself (it leaves out log_likelihood, keep_b and
    scales, which the comparison needs fixed): their defaults must not drift from fit_model's."""
    mine = inspect.signature(lb.compare_pooling).parameters
    stage = inspect.signature(fitting.fit_model).parameters
    shared = [n for n in mine if n in stage]
    assert set(stage) - set(shared) == {"model", "log_likelihood", "keep_b", "scales"}
    for name in shared:
        assert mine[name].default == stage[name].default, (name, mine[name].default, stage[name].default)
        assert mine[name].kind is inspect.Parameter.KEYWORD_ONLY

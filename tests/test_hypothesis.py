"""fit.hypothesis (lmm_bayes.results.hypothesis): every number against the draws it summarises."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb


@pytest.fixture(scope="module")
def fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(seed=5, progressbar=False)


@pytest.fixture(scope="module")
def coded_fit():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"s": np.repeat([f"s{i}" for i in range(8)], 10), "cond": np.tile(["a", "b"], 40)})
    df["y"] = rng.normal(size=len(df)) + (df["cond"] == "b") * 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM("y ~ cond + (1 | s)", df).fit(seed=1, progressbar=False, draws=300, tune=300)


def test_one_sided_hypothesis_is_the_share_of_draws(fit):
    days = fit.posterior["beta"].sel(coef="Days")
    row = fit.hypothesis("Days > 5").loc["Days > 5"]
    prob = float((days > 5).mean())
    assert row["post_prob"] == prob
    assert row["estimate"] == pytest.approx(float(days.mean()) - 5, rel=1e-12)
    assert row["sd"] == pytest.approx(float(days.std(ddof=1)), rel=1e-12)
    assert row["evidence_ratio"] == (np.inf if prob == 1 else pytest.approx(prob / (1 - prob)))
    low = fit.hypothesis("Days < 10.5").loc["Days < 10.5"]
    assert low["post_prob"] == float((days < 10.5).mean())
    assert 0.2 < low["post_prob"] < 0.8  # near the posterior mean: an uncertain hypothesis
    assert low["evidence_ratio"] == pytest.approx(low["post_prob"] / (1 - low["post_prob"]))
    assert fit.hypothesis("Days >= 5").iloc[0]["post_prob"] == prob


def test_linear_combination_and_its_interval(fit):
    post = fit.posterior["beta"]
    combo = post.sel(coef="Intercept") + 10 * post.sel(coef="Days") - 355
    row = fit.hypothesis("Intercept + 10 * Days = 355", prob=0.9).iloc[0]
    assert row["estimate"] == pytest.approx(float(combo.mean()), rel=1e-12)
    low, high = az.hdi(combo, prob=0.9).values
    assert (row["hdi_low"], row["hdi_high"]) == pytest.approx((low, high), rel=1e-12)
    assert np.isnan(row["post_prob"]) and np.isnan(row["evidence_ratio"])
    both = fit.hypothesis(["(Intercept - 250) / 2 > -Days", "2 * Days - Days > 0"])
    assert list(both.index) == ["(Intercept - 250) / 2 > -Days", "2 * Days - Days > 0"]
    assert both.iloc[1]["estimate"] == pytest.approx(float(post.sel(coef="Days").mean()))


def test_backticks_name_coefficients_that_are_not_identifiers(coded_fit):
    b = coded_fit.posterior["beta"].sel(coef="cond[b]")
    row = coded_fit.hypothesis("`cond[b]` > 0.5").iloc[0]
    assert row["post_prob"] == float((b > 0.5).mean())


@pytest.mark.parametrize(("text", "error", "match"), [
    ("Dayz > 5", ValueError, r"'Dayz' is not a fixed effect \(did you mean 'Days'\?\).*backticks"),
    ("Days ** 2 > 1", ValueError, r"only \+ - \* /.*not 'Days \*\* 2'"),
    ("exp(Days) > 1", ValueError, r"only \+ - \* /.*not 'exp\(Days\)'"),
    ("Days", ValueError, "needs exactly one of <, > or ="),
    ("1 < Days < 2", ValueError, "needs exactly one of <, > or ="),
    ("3 > 2", ValueError, "names no fixed effect"),
    ("Days > ", ValueError, "not arithmetic"),
    ("", TypeError, "must be a string"),
    (5, TypeError, "must be a string"),
    ("__import__('os') > 1", ValueError, "only \\+ - \\* /"),
])
def test_bad_hypotheses_say_what_is_wrong(fit, text, error, match):
    with pytest.raises(error, match=match):
        fit.hypothesis(text)
    with pytest.raises(ValueError, match="at least one"):
        fit.hypothesis([])



@pytest.mark.parametrize("text, match", [
    ("Days + " * 20000 + "0 > 0", r"hypothesis 'Days \+ Days \+ .*' \(140,005 characters\) is longer than "
                                  r"2,000 characters"),
    ("-" * 20000 + "Days > 0", r"\(20,008 characters\) is longer than 2,000 characters"),
    ("-" * 1000 + "Days > 0", r"nests 1001 levels deep; at most 200 levels"),
    ("(" * 300 + "Days" + ")" * 300 + " > 0", r"nests 300 parentheses deep; at most 200 levels"),
])
def test_hypothesis_length_and_depth_are_limited_before_parsing(fit, text, match):
    """No RecursionError or MemoryError: the limit is named, and the message quotes only the text's start."""
    with pytest.raises(ValueError, match=match) as info:
        fit.hypothesis(text)
    assert len(str(info.value)) < 500


def test_a_long_sum_within_the_limits_is_evaluated(fit):
    days = fit.posterior["beta"].sel(coef="Days")
    row = fit.hypothesis("Days + " * 150 + "0 > 0").iloc[0]
    assert row["estimate"] == pytest.approx(150 * float(days.mean()), rel=1e-9)  # depth 151: under the limit

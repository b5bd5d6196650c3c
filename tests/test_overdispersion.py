"""An observation-level random effect (one level per row) in a GLMM: accepted and fitted as glmer fits it.

Reference: lme4 1.1-31's glmer (Laplace ML) of lme4's grouseticks example with its overdispersion
term (1 | INDEX), made by ``Rscript tests/data/olre_lme4.R`` (tests/data/SOURCE.md).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "olre_lme4.json").read_text())


@pytest.fixture(scope="module")
def ticks():
    gt = pd.read_csv(DATA / "grouseticks.csv")
    return gt.assign(YEAR=gt["YEAR"].astype(str), cHEIGHT=gt["HEIGHT"] - gt["HEIGHT"].mean())


@pytest.fixture(scope="module")
def fit(ticks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.GLMM(REF["formula"], ticks, family="poisson").fit(draws=600, tune=600, chains=2, seed=1,
                                                                     progressbar=False)


def test_observation_level_effect_matches_glmer(fit):
    """Fixed effects within 0.5 posterior SD of glmer's; the overdispersion SD within 10% (the others 20%)."""
    assert fit.design.group("INDEX").n_levels == fit.design.n == REF["nobs"]
    fixef = fit.fixef()
    names = {"(Intercept)": "Intercept", "YEAR96": "YEAR[96]", "YEAR97": "YEAR[97]", "cHEIGHT": "cHEIGHT"}
    for r_name, ours in names.items():
        z = (fixef.loc[ours, "mean"] - REF["fixef"][r_name]) / fixef.loc[ours, "sd"]
        assert abs(z) < 0.5, (ours, z)
    sds = fit.varcorr()["mean"]
    assert sds.loc[("INDEX", "sd(Intercept)")] == pytest.approx(REF["sd"]["INDEX"], rel=0.10)
    for group in ("BROOD", "LOCATION"):
        assert sds.loc[(group, "sd(Intercept)")] == pytest.approx(REF["sd"][group], rel=0.20)


def test_one_level_per_row_is_refused_where_it_cannot_be_identified(ticks):
    with pytest.raises(ValueError, match="403 levels for 403 rows"):  # a Gaussian model: it is the residual
        lb.LMM("TICKS ~ cHEIGHT + (1 | INDEX)", ticks)
    binary = ticks.assign(any_ticks=(ticks["TICKS"] > 0).astype(int))
    with pytest.raises(ValueError, match="one level per row: an observation-level random effect models overdispersion"):
        lb.GLMM("any_ticks ~ cHEIGHT + (1 | BROOD) + (1 | INDEX)", binary, family="bernoulli")
    with pytest.raises(ValueError, match="a 0/1 response cannot show"):
        lb.GLMM("any_ticks ~ cHEIGHT + (1 | INDEX)", binary, family="binomial", trials=1)
    # counts out of several trials can be overdispersed: accepted
    model = lb.GLMM("k ~ cHEIGHT + (1 | INDEX)", ticks.assign(k=np.minimum(ticks["TICKS"], 5)), family="binomial",
                    trials=5)
    assert model.design.group("INDEX").n_levels == len(ticks)

"""Shared fixtures: each model is fitted once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmm_bayes as lb

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def sleepstudy():
    return lb.datasets.load("sleepstudy")


@pytest.fixture(scope="session")
def radon():
    return lb.datasets.load("radon")


@pytest.fixture(scope="session")
def lme4_reference():
    """lme4 estimates keyed by (dataset, formula, method), 'computed' entries only."""
    entries = json.loads((DATA / "reference_lme4.json").read_text())["entries"]
    return {
        (e["dataset"], e["formula"], e["method"]): e["values"] for e in entries if e["kind"] == "computed"
    }


@pytest.fixture(scope="session")
def chromium():
    """The headless browser's path; skips where it is missing, fails where .ci/run promised it."""
    import os
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("LMM_BAYES_REQUIRE_CHROMIUM") == "1":  # set by .ci/run: CI must not skip this
            pytest.fail("chromium is not installed, but .ci/run promised it (LMM_BAYES_REQUIRE_CHROMIUM=1)")
        pytest.skip("Debian's chromium package is not installed here (.ci/run installs it)")
    return browser

"""lmm-bayes: Bayesian linear mixed-effects models for hierarchical data.

The user's objects sit in the top layer, :mod:`lmm_bayes.api`, on one sub-package per pipeline
stage below it (``spec`` → ``inference`` → ``results`` → ``teaching`` → ``calibration``, and
``app`` for the command); each imports only the layers below it. The module map, every module
named once on a row's way from ``LMM(...)`` to a table, is ``docs/architecture.md``.

>>> import lmm_bayes as lb
>>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
>>> model.design.Z.shape
(180, 36)
"""

# arviz_stats first, on purpose: every fit's diagnostics need it, and imported after the stages it
# walks sys.modules through inspect.getmodule, which loads PyMC and PyTensor behind their lazy
# proxies (about 0.4 s more for a fit in a new process: benchmarks/import_time.py)
import arviz_stats  # noqa: F401, I001

from lmm_bayes import datasets
from lmm_bayes.api.fit import Fit, PoolingFit
from lmm_bayes.api.io import load
from lmm_bayes.api.model import GLMM, LMM
from lmm_bayes.api.planning import plan_study
from lmm_bayes.api.pooling import compare_pooling
from lmm_bayes.calibration.sbc import SBCResult, sbc
from lmm_bayes.calibration.simulate import Simulation, simulate, simulate_hierarchy
from lmm_bayes.errors import (
    FitFileError,
    FormulaError,
    ImplicitNestingWarning,
    MethodNote,
    ModelFileError,
    RandomEffectsNotKept,
    RowsDroppedWarning,
    SamplingWarning,
    SeparationWarning,
)
from lmm_bayes.planning.result import StudyPlan
from lmm_bayes.results.base import FittedModel
from lmm_bayes.results.comparison import compare
from lmm_bayes.results.contextual import within_between
from lmm_bayes.spec.design import Design, GroupDesign, build_design
from lmm_bayes.spec.families.registry import Family
from lmm_bayes.spec.formula import ModelSpec, parse_formula
from lmm_bayes.spec.priors import Prior, Priors
from lmm_bayes.teaching.explorer import explore_pooling
from lmm_bayes.teaching.pooling import PoolingComparison
from lmm_bayes.version import __version__

__all__ = [
    "__version__",
    "datasets",
    "LMM",
    "GLMM",
    "Family",
    "ModelSpec",
    "Design",
    "GroupDesign",
    "Prior",
    "Priors",
    "Fit",
    "FittedModel",
    "load",
    "PoolingComparison",
    "PoolingFit",
    "compare_pooling",
    "explore_pooling",
    "compare",
    "within_between",
    "parse_formula",
    "build_design",
    "Simulation",
    "simulate",
    "simulate_hierarchy",
    "SBCResult",
    "sbc",
    "plan_study",
    "StudyPlan",
    "FormulaError",
    "FitFileError",
    "ModelFileError",
    "RandomEffectsNotKept",
    "SamplingWarning",
    "MethodNote",
    "ImplicitNestingWarning",
    "RowsDroppedWarning",
    "SeparationWarning",
]

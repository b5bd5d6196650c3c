"""lmm-bayes: Bayesian linear mixed-effects models for hierarchical data.

>>> import lmm_bayes as lb
>>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
>>> model.design.Z.shape
(180, 36)
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets
from .calibration import SBCResult, sbc
from .contextual import within_between
from .design import Design, GroupDesign, build_design
from .formula import FormulaError, ModelSpec, parse_formula
from .io import load
from .model import LMM
from .pooling import PoolingComparison, compare_pooling
from .priors import Prior, Priors
from .results import Fit
from .simulate import Simulation, simulate, simulate_hierarchy

try:
    __version__ = version("lmm-bayes")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "datasets",
    "LMM",
    "ModelSpec",
    "Design",
    "GroupDesign",
    "FormulaError",
    "Prior",
    "Priors",
    "Fit",
    "load",
    "PoolingComparison",
    "compare_pooling",
    "within_between",
    "parse_formula",
    "build_design",
    "Simulation",
    "simulate",
    "simulate_hierarchy",
    "SBCResult",
    "sbc",
]

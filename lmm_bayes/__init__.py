"""lmm-bayes: Bayesian linear mixed-effects models for hierarchical data.

>>> import lmm_bayes as lb
>>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
>>> model.design.Z.shape
(180, 36)
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets
from .design import Design, GroupDesign, build_design
from .formula import FormulaError, ModelSpec, parse_formula
from .model import LMM
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
    "parse_formula",
    "build_design",
    "Simulation",
    "simulate",
    "simulate_hierarchy",
]

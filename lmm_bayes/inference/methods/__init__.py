"""How a model is sampled: one package per method, each behind one protocol.

* :mod:`.full`: :class:`Full`, every cluster's b a parameter of the PyMC graph (takes every model);
* :mod:`.collapsed`: :class:`Collapsed`, b integrated out for one factor or nested factors, on the
  kernel compiled once per machine;
* :mod:`.crossed`: :class:`Crossed`, the collapsed method for crossed factors (a blocked Cholesky);
  a fit names it ``"collapsed"`` too;
* :mod:`.gibbs`: :class:`Gibbs`, a collapsed Gibbs sampler for random intercepts, not NUTS;
* :mod:`.laplace`: :class:`Laplace`, a GLMM's b integrated out by Laplace per cluster, then checked.

Each package holds its Python half (``method``), its compiled half (``kernel``) and its linear
system. The protocol, :class:`~lmm_bayes.inference.methods.base.Method`, and the helpers the methods
share are in :mod:`.base`; the order of preference, ``method="auto"`` and the fallback after sampling
in :mod:`.registry`; the loading of the compiled files, with a notice while they compile, in
:mod:`.kernel_loader`.
"""

from lmm_bayes.inference.methods.base import Method
from lmm_bayes.inference.methods.collapsed.method import Collapsed
from lmm_bayes.inference.methods.crossed.method import Crossed
from lmm_bayes.inference.methods.full.method import Full
from lmm_bayes.inference.methods.gibbs.method import Gibbs
from lmm_bayes.inference.methods.laplace.method import Laplace
from lmm_bayes.inference.methods.registry import (
    LAST_RESORT,
    METHODS,
    PREFERENCE,
    Fallback,
    choose_method,
    fallback_after,
    resolve_method,
)

__all__ = [
    "LAST_RESORT", "METHODS", "PREFERENCE", "Collapsed", "Crossed", "Fallback", "Full", "Gibbs", "Laplace", "Method",
    "choose_method", "fallback_after", "resolve_method",
]

"""The likelihood of a generalized model in the PyMC graph: link, offset, trials, family.

:func:`~lmm_bayes.inference.graph.build_model` builds the same fixed effects and
non-centered random effects for every family; this module adds the part that differs,
``y ~ family(g⁻¹(X beta + Z b + offset))``, with the family's extra parameter
(:attr:`~lmm_bayes.Family.aux`) named as in the posterior layout.
"""

from __future__ import annotations

import lazy_loader as lazy
import numpy as np

from lmm_bayes import names
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.families.registry import Family
from lmm_bayes.spec.priors import Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")
pytensor = lazy.load("pytensor")  # its .tensor (imported by pytensor itself) is the graphs' algebra

__all__ = ["OFFSET", "TRIALS", "add_glm_likelihood", "glm_data", "inverse_link"]

#: names of the offset and trials ``pm.Data`` in the graph
OFFSET = names.OFFSET
TRIALS = names.TRIALS


def inverse_link(family: Family, eta: pytensor.tensor.TensorVariable) -> pytensor.tensor.TensorVariable:
    """``g⁻¹(eta)`` as a PyTensor expression."""
    return family.link_object.inverse_pt(eta)


def glm_data(design: Design) -> dict[str, np.ndarray]:
    """The family's ``pm.Data`` values (offset, trials) by name, for a cached compiled model."""
    out = {}
    offset = design.offset
    trials = design.trials
    if offset is not None:
        out[OFFSET] = offset
    if trials is not None:
        out[TRIALS] = trials.astype(np.int64)
    return out


def add_glm_likelihood(design: Design, priors: Priors, eta: pytensor.tensor.TensorVariable, y: pytensor.tensor.TensorVariable) -> None:
    """The observed ``y`` of a non-Gaussian family; call inside the model context.

    ``eta`` is ``X beta + Z b``; the offset is added here, and the trials become
    ``pm.Data``; the family builds its distribution (:meth:`~lmm_bayes.Family.add_likelihood`).
    """
    family = design.family
    data = glm_data(design)
    if OFFSET in data:
        eta = eta + pm.Data(OFFSET, data[OFFSET], dims=names.OBS)
    trials = pm.Data(TRIALS, data[TRIALS], dims=names.OBS) if TRIALS in data else None
    family.add_likelihood(eta, y, trials=trials, priors=priors)

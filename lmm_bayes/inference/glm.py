"""The likelihood of a generalized model in the PyMC graph: link, offset, trials, family.

:func:`~lmm_bayes.inference.graph.build_model` builds the same fixed effects and
non-centered random effects for every family; this module adds the part that differs,
``y ~ family(g⁻¹(X beta + Z b + offset))``, with the family's extra parameter
(:attr:`~lmm_bayes.Family.aux`) named as in the posterior layout.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from lmm_bayes.spec.design import Design
from lmm_bayes.spec.family import Family, family_of
from lmm_bayes.spec.priors import Priors

__all__ = ["OFFSET", "TRIALS", "add_glm_likelihood", "glm_data", "inverse_link"]

#: names of the offset and trials ``pm.Data`` in the graph
OFFSET = "offset"
TRIALS = "trials"


def inverse_link(family: Family, eta: pt.TensorVariable) -> pt.TensorVariable:
    """``g⁻¹(eta)`` as a PyTensor expression."""
    if family.link == "identity":
        return eta
    if family.link == "log":
        return pt.exp(eta)
    if family.link == "logit":
        return pt.sigmoid(eta)
    return 0.5 * (1.0 + pt.erf(eta / np.sqrt(2.0)))  # probit


def glm_data(design: Design) -> dict[str, np.ndarray]:
    """The family's ``pm.Data`` values (offset, trials) by name, for a cached compiled model."""
    out = {}
    offset = getattr(design, "offset", None)
    trials = getattr(design, "trials", None)
    if offset is not None:
        out[OFFSET] = offset
    if trials is not None:
        out[TRIALS] = trials.astype(np.int64)
    return out


def add_glm_likelihood(design: Design, priors: Priors, eta: pt.TensorVariable, y: pt.TensorVariable) -> None:
    """The observed ``y`` of a non-Gaussian family; call inside the model context.

    ``eta`` is ``X beta + Z b``; the offset is added here. Bernoulli and binomial with the
    logit link use PyMC's ``logit_p`` (stable for large ``|eta|``).
    """
    family = family_of(design)
    data = glm_data(design)
    if OFFSET in data:
        eta = eta + pm.Data(OFFSET, data[OFFSET], dims="obs")
    if family.name == "poisson":
        pm.Poisson("y", mu=pt.exp(eta), observed=y, dims="obs")
    elif family.name == "negativebinomial":
        p = priors.dispersion
        dispersion = getattr(pm, p.dist)(family.aux, **p.kwargs)
        pm.NegativeBinomial("y", mu=pt.exp(eta), alpha=1.0 / dispersion**2, observed=y, dims="obs")
    elif family.name in ("bernoulli", "binomial"):
        n = pm.Data(TRIALS, data[TRIALS], dims="obs") if family.name == "binomial" else None
        kw = {"logit_p": eta} if family.link == "logit" else {"p": pt.clip(inverse_link(family, eta), 1e-12, 1 - 1e-12)}
        if n is None:
            pm.Bernoulli("y", **kw, observed=y, dims="obs")
        else:
            pm.Binomial("y", n=n, **kw, observed=y, dims="obs")
    else:
        raise ValueError(f"family {family.name!r} has no likelihood here; this is a bug, please report it")

"""A model's PyMC graph, to read or to extend: the full or collapsed one, on the user's or the working scale.

:meth:`lmm_bayes.LMM.pymc_model` and the prior predictive
(:func:`lmm_bayes.results.predictive.prior_predictive`) take their graph from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmm_bayes.inference.methods.registry import resolve_method
from lmm_bayes.inference.standardize import standardize
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from lmm_bayes.spec.model import MixedModel

__all__ = ["model_graph"]


def model_graph(model: MixedModel, *, method: str = "full", centered: bool = False,
                standardized: bool = False) -> pm.Model:
    """The PyMC model of ``model``.

    Parameters
    ----------
    model : MixedModel
    method : {"full", "collapsed"}
        Every cluster's b a parameter (non-centered unless ``centered``), or b integrated out.
    centered : bool
    standardized : bool
        False: the graph on the data as given, each prior on the parameter it names. True: the
        graph a fit samples, on centred, scaled columns with the priors mapped to them
        (:mod:`lmm_bayes.inference.standardize`).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> sorted(rv.name for rv in model_graph(model, method="collapsed").free_RVs)
    ['Subject_sd_indep', 'beta', 'sigma']
    """
    validate.check_choice(method, ("full", "collapsed"), "method")
    if not isinstance(standardized, bool):
        raise TypeError(f"standardized must be True or False, got {type(standardized).__name__}")
    if not standardized:
        return resolve_method(model.design, method, centered=centered)[0].build(model.priors)
    working = standardize(model.design, centered=model.priors.centered)
    return resolve_method(working.design, method, centered=centered)[0].build(working.priors(model.priors))

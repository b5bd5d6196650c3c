"""The full method: every cluster's b a parameter of the PyMC graph (:mod:`lmm_bayes.inference.methods.full.method`), non-centered, or
centered with ``centered=True`` (a GLMM's hierarchical centering: :mod:`lmm_bayes.inference.methods.full.centered`).

The graph's building blocks (:mod:`lmm_bayes.inference.graph`, :mod:`lmm_bayes.inference.glm`) stay in
:mod:`lmm_bayes.inference`: the collapsed method's graph, the pooling models and the calibration's
prior draws build on them too.
"""

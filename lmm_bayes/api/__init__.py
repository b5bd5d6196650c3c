"""The top layer: the user's objects, wired by ordinary imports of the stages below.

:class:`~lmm_bayes.api.model.LMM` and :class:`~lmm_bayes.api.model.GLMM` (a model's definition
from ``spec`` plus ``fit``, ``pymc_model`` and ``prior_predictive``),
:class:`~lmm_bayes.api.fit.Fit` and :class:`~lmm_bayes.api.fit.PoolingFit` (the results stage's
tables plus every analysis and picture as a method), :func:`~lmm_bayes.api.pooling.compare_pooling`
and :func:`~lmm_bayes.api.io.load`. Nothing below imports this layer.
"""

"""The top layer: the user's objects, wired by ordinary imports of the stages below.

:class:`~lmm_bayes.LMM` and :class:`~lmm_bayes.GLMM` (a model's definition
from ``spec`` plus ``fit``, ``pymc_model`` and ``prior_predictive``),
:class:`~lmm_bayes.Fit` and :class:`~lmm_bayes.PoolingFit` (the results stage's
tables plus every analysis and picture as a method), :func:`~lmm_bayes.compare_pooling`
and :func:`~lmm_bayes.load`. Nothing below imports this layer.
"""

"""Residuals beyond ``sigma^2 I`` with b integrated out (:mod:`lmm_bayes.inference.methods.structured.method`):
a residual SD per cluster and AR(1) over trials, the likelihood from per-cluster sums
(:mod:`lmm_bayes.inference.methods.structured.sums`, :mod:`lmm_bayes.inference.methods.structured.likelihood`).
"""

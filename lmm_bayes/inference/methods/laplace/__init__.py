"""The Laplace method of a GLMM: b integrated out approximately per top-level cluster, then drawn by
importance resampling and the approximation checked.

* :mod:`.method`: the method (:class:`~.method.Laplace`), which a fit names ``"laplace"``, and its
  fallback to the full method when the check fails;
* :mod:`.system`: the design in blocks (``LaplaceSystem``), its marginal likelihood, the draws of b and
  the importance check (``check_laplace``);
* :mod:`.kernel`: the compiled Newton modes, gradient and proposals.
"""

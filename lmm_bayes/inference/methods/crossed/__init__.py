"""The collapsed method for crossed factors: b integrated out by a blocked Cholesky, then drawn exactly.

* :mod:`.method`: the method (:class:`~.method.Crossed`), which a fit names ``"collapsed"``;
* :mod:`.system`: the linear system (``CrossedSystem``: the block-diagonal factor and the dense
  Schur complement), its marginal likelihood with the exact gradient, and the draws of b;
* :mod:`.kernel`: its compiled loops, which import nothing from the collapsed kernel's file (numba
  checks its cache against each function's own file, so one can never run with a stale other).
"""

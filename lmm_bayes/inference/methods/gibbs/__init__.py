"""The collapsed Gibbs sampler for random-intercept designs (``method="gibbs"``): its own sampler, not NUTS.

* :mod:`.method`: the method (:class:`~.method.Gibbs`), which a fit names ``"gibbs"``, sampler ``"gibbs"``;
* :mod:`.sampler`: the per-level sums (``GibbsSystem``), the design check (``gibbs_obstacle``) and the
  chains, one per thread;
* :mod:`.kernel`: the compiled sweeps, which import nothing from the other compiled files (numba's
  per-file cache check).
"""

"""The collapsed method for one grouping factor or a chain of nested ones: b integrated out of the
Gaussian likelihood, then drawn exactly.

* :mod:`.method`: the method (:class:`~.method.Collapsed`), which a fit names ``"collapsed"``;
* :mod:`.sufficient`: the sufficient statistics and the nesting chain (also the Laplace method's);
* :mod:`.likelihood`: the numpy reference, the PyMC graph (``LMM.pymc_model(method="collapsed")``)
  and the exact draws of b;
* :mod:`.packing`: the model as two flat arrays for the compiled kernel (the crossed and Laplace
  methods pack their parameters with it too);
* :mod:`.kernel`: the log density and its gradient, compiled once per machine by numba (one file
  with its C entry points: numba checks its cache against each function's own file);
* :mod:`.kernel_sampler`: the packed model as a nutpie model, and sampling it.
"""

"""How a model is sampled: one package per method, each behind one protocol.

* :mod:`.full`: :class:`~lmm_bayes.inference.methods.full.method.Full`, every cluster's b a parameter of the PyMC graph (takes every model);
* :mod:`.collapsed`: :class:`~lmm_bayes.inference.methods.collapsed.method.Collapsed`, b integrated out for one factor or nested factors, on the
  kernel compiled once per machine;
* :mod:`.crossed`: :class:`~lmm_bayes.inference.methods.crossed.method.Crossed`, the collapsed method for crossed factors (a blocked Cholesky);
  a fit names it ``"collapsed"`` too;
* :mod:`.gibbs`: :class:`~lmm_bayes.inference.methods.gibbs.method.Gibbs`, a collapsed Gibbs sampler for random intercepts, not NUTS;
* :mod:`.laplace`: :class:`~lmm_bayes.inference.methods.laplace.method.Laplace`, a GLMM's b integrated out by Laplace per cluster, then checked.

Each package holds its Python half (``method``), its compiled half (``kernel``) and its linear
system. The protocol, :class:`~lmm_bayes.inference.methods.base.Method`, and the helpers the methods
share are in :mod:`.base`; the order of preference, ``method="auto"`` and the fallback after sampling
in :mod:`.registry`, which is also where the methods are imported from (this package runs no
code, so no method module imports back through it); the loading of the compiled files, with a
notice while they compile, in :mod:`.kernel_loader`.
"""

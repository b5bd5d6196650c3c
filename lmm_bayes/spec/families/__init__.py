"""Response families of a generalized linear mixed model: one class per family, found by name.

A family says how the linear predictor ``eta = X beta + Z b + offset`` meets the data:
the mean is ``g⁻¹(eta)`` for the link ``g``, and the response is drawn from the family's
distribution around that mean. Every formula that differs between families lives in its
class (:class:`~lmm_bayes.spec.families.base.Family` lists them): callers ask the
design's family (``design.family``) and never branch on its name.

================  ======================  ==========================  ==============================
family            links (first: default)  response                    extra parameter
================  ======================  ==========================  ==============================
gaussian          identity                any real number             ``sigma`` (residual SD)
poisson           log                     counts 0, 1, 2, ...         —
negativebinomial  log                     counts 0, 1, 2, ...         ``dispersion`` = 1/√alpha
bernoulli         logit, probit           0 or 1                      —
binomial          logit, probit           successes 0..n of n trials  —
================  ======================  ==========================  ==============================

The negative binomial is NB2 (lme4's ``glmer.nb``, brms's ``negbinomial``):
``Var(y) = mu + mu² / alpha``. Its extra parameter is reported as ``dispersion = 1/√alpha``,
the coefficient of variation of the gamma-distributed rate multiplier behind the
overdispersion: 0 is Poisson, and on the log scale it is close to the SD of an
observation-level random effect, so it reads next to the model's other SDs.

The latent-scale variance (:meth:`Family.latent_variance`) is the distribution-specific
variance of Nakagawa, Johnson & Schielzeth (2017, *J. R. Soc. Interface* 14: 20170213)
used for the ICC and the variance partition on the link scale: π²/3 for the logit link, 1
for the probit link, and the lognormal approximation ``log(1 + 1/lambda)`` (Poisson) or
``log(1 + 1/lambda + 1/alpha)`` (negative binomial) for the log link, ``lambda`` the
expected count.

Modules: ``registry`` (the families by name: :func:`~lmm_bayes.spec.families.registry.get_family`;
callers import from it, and this package runs no code, so no family module imports back through
it), ``base`` (the :class:`Family` base class), ``links`` (link objects), ``checks``
(row checks, trials), and one module per family: ``gaussian``, ``poisson``,
``negative_binomial``, ``binomial`` (binomial and Bernoulli, its one-trial case).

Adding a family (say Gamma)
---------------------------
1. Write ``families/gamma.py``: a frozen dataclass ``Gamma(Family)`` that sets the class
   attributes (``name``, ``links``, ``aux`` and whichever of ``counts``, ``successes``,
   ``needs_trials``, ``latent_needs_mean`` apply; ``kernel_code`` only with a case in the
   Laplace kernel) and defines the base's methods that raise ``NotImplementedError``
   (response check, log-likelihood, draws, variance, latent variance, working weights,
   score, default intercept, PyMC likelihood). A new link is one class in ``links.py``.
2. Add ``Gamma`` to :data:`~lmm_bayes.spec.families.registry.REGISTERED` (one line); ``get_family("gamma")``,
   ``lb.GLMM(..., family="gamma")`` and the error messages' lists of names follow.
3. Add its tests (``tests/test_families.py``: its doctests run with the package; a
   simulate-and-fit check in ``tests/test_glmm_surface.py``). An extra parameter other
   than ``sigma`` or ``dispersion`` also needs its field in
   :class:`~lmm_bayes.spec.priors.Priors`.

Examples
--------
>>> from lmm_bayes.spec.families.registry import get_family
>>> get_family("poisson")
Family(name='poisson', link='log')
>>> get_family("binomial", "cloglog")
Traceback (most recent call last):
...
ValueError: link='cloglog' is not available for family='binomial'; choose one of ['logit', 'probit']
"""

"""The Gaussian family: the linear mixed model's response, any real number, with residual SD ``sigma``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmm_bayes.spec.families.base import Family

__all__ = ["Gaussian"]


@dataclass(frozen=True, repr=False)
class Gaussian(Family):
    """``y ~ Normal(eta, sigma)`` with the identity link.

    Its priors are scaled to the data (:func:`~lmm_bayes.spec.priors.resolve_priors`), not
    set on a link scale, so :meth:`default_intercept` and :meth:`default_aux_prior` are the base's.

    Examples
    --------
    >>> g = Gaussian()
    >>> g, g.aux, float(g.latent_variance(aux=np.array(2.0)))
    (Family(name='gaussian', link='identity'), 'sigma', 4.0)
    """

    name = "gaussian"
    links = ("identity",)
    aliases = ("normal",)
    aux = "sigma"
    is_gaussian = True

    def check_response(self, y, name, trials=None, index=None):
        return

    def log_likelihood(self, y, eta, aux=None, trials=None):
        # the formula of inference/layout.py's pointwise log-likelihood, so both agree to the bit
        return -0.5 * ((y - eta) / aux) ** 2 - np.log(aux) - 0.5 * np.log(2 * np.pi)

    def draw(self, rng, eta, aux=None, trials=None):
        eta = np.asarray(eta, dtype=float)
        return eta + aux * rng.standard_normal(np.broadcast_shapes(eta.shape, np.shape(aux)))

    def variance(self, mu, aux=None, trials=None):
        return aux**2 + 0.0 * mu  # sigma² on every row: broadcast to mu's shape

    def latent_variance(self, mean_count=None, aux=None):
        return np.asarray(aux, dtype=float) ** 2

    def working_weights(self, eta, y, trials=None, aux=None):
        eta = np.asarray(eta, dtype=float)
        return np.broadcast_to(1.0 / np.asarray(aux, dtype=float) ** 2, eta.shape).copy()

    def score_and_weights(self, eta, y, trials=None, aux=None):
        return (y - eta) / aux**2, np.full_like(eta, 1.0 / aux**2)

    def add_likelihood(self, eta, y, *, trials=None, priors=None):
        import pymc as pm

        p = priors.sigma
        pm.Normal("y", mu=eta, sigma=getattr(pm, p.dist)(self.aux, **p.kwargs), observed=y, dims="obs")

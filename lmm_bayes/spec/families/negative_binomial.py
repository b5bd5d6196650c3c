"""The negative binomial family (NB2): overdispersed counts, log link, ``dispersion = 1/√alpha``.

``Var(y) = mu + mu² / alpha`` (lme4's ``glmer.nb``, brms's ``negbinomial``). The extra
parameter is reported as ``dispersion = 1/√alpha``, the coefficient of variation of the
gamma-distributed rate multiplier behind the overdispersion: 0 is Poisson, and on the log
scale it is close to the SD of an observation-level random effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import lazy_loader as lazy
import numpy as np

from lmm_bayes.spec.distribution import Prior
from lmm_bayes.spec.families.base import Family
from lmm_bayes.spec.families.poisson import check_counts, count_intercept, empty_count_notes

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
special = lazy.load("scipy.special", suppress_warning=True)
stats = lazy.load("scipy.stats", suppress_warning=True)

__all__ = ["NegativeBinomial"]


@dataclass(frozen=True, repr=False)
class NegativeBinomial(Family):
    """``y ~ NegativeBinomial(mu = exp(eta), alpha = 1 / dispersion²)``.

    Examples
    --------
    >>> nb = NegativeBinomial()
    >>> nb.aux, float(nb.latent_variance(np.array(1.0), np.array(1.0)))  # log(1 + 1/1 + 1)
    ('dispersion', 1.0986122886681098)
    """

    name = "negativebinomial"
    links = ("log",)
    aliases = ("negbinomial", "nb")
    aux = "dispersion"
    counts = True
    latent_needs_mean = True
    kernel_code = 1

    def check_response(self, y, name, trials=None, index=None):
        check_counts(self, y, name, index)

    def log_likelihood(self, y, eta, aux=None, trials=None):
        alpha = 1.0 / np.asarray(aux) ** 2
        mu = np.exp(eta)
        return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))

    def draw(self, rng, eta, aux=None, trials=None):
        mu = self.inverse_link(eta)
        alpha = 1.0 / np.asarray(aux) ** 2
        return rng.poisson(rng.gamma(alpha, mu / alpha)).astype(float)

    def variance(self, mu, aux=None, trials=None):
        return mu + mu**2 * aux**2  # 1/alpha = dispersion²

    def latent_variance(self, mean_count=None, aux=None):
        lam = np.asarray(mean_count, dtype=float)
        return np.log1p(1.0 / lam + np.asarray(aux, dtype=float) ** 2)  # 1/alpha = dispersion²

    def working_weights(self, eta, y, trials=None, aux=None):
        # observed information: the expected one, alpha mu / (alpha + mu), ignores y
        alpha = 1.0 / np.asarray(aux, dtype=float) ** 2
        mu = np.exp(np.asarray(eta, dtype=float))
        return alpha * mu * (y + alpha) / (alpha + mu) ** 2

    def score_and_weights(self, eta, y, trials=None, aux=None):
        alpha, mu = 1.0 / aux**2, np.exp(eta)
        return alpha * (y - mu) / (alpha + mu), alpha * mu / (alpha + mu)

    def empty_cluster_notes(self, y, codes, levels, trials=None):
        return empty_count_notes(y, codes, levels)

    def default_intercept(self, y, trials, offset):
        return count_intercept(y, offset)

    def default_aux_prior(self):
        return Prior("HalfNormal", sigma=1.0)

    def add_likelihood(self, eta, y, *, trials=None, priors=None):
        import pymc as pm
        import pytensor.tensor as pt

        p = priors.dispersion
        dispersion = getattr(pm, p.dist)(self.aux, **p.kwargs)
        pm.NegativeBinomial("y", mu=pt.exp(eta), alpha=1.0 / dispersion**2, observed=y, dims="obs")

    def kernel_constant(self, y, trials):
        return float(np.sum(-special.gammaln(y + 1)))  # alpha's own terms: LaplaceSystem._alpha_terms

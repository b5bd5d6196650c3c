"""The Poisson family: counts 0, 1, 2, ... with the log link and no extra parameter."""

from __future__ import annotations

from dataclasses import dataclass

import lazy_loader as lazy
import numpy as np

from lmm_bayes.spec.families.base import Family
from lmm_bayes.spec.families.checks import raise_if_rows

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
special = lazy.load("scipy.special", suppress_warning=True)
stats = lazy.load("scipy.stats", suppress_warning=True)

__all__ = ["Poisson", "check_counts", "count_intercept", "empty_count_notes"]


@dataclass(frozen=True, repr=False)
class Poisson(Family):
    """``y ~ Poisson(exp(eta))``.

    Examples
    --------
    >>> p = Poisson()
    >>> p, float(p.latent_variance(np.array(1.0)))  # log(1 + 1/1)
    (Family(name='poisson', link='log'), 0.6931471805599453)
    >>> p.check_response(np.array([0, 2, -1, 1.5]), "spikes")
    Traceback (most recent call last):
    ...
    ValueError: the response 'spikes' must be counts (0, 1, 2, ...) for family='poisson', but 2 of 4 rows are not (first: row 2 = -1, row 3 = 1.5); check the column, or use family='gaussian' for a continuous response
    """

    name = "poisson"
    links = ("log",)
    counts = True
    latent_needs_mean = True
    kernel_code = 0

    def check_response(self, y, name, trials=None, index=None):
        check_counts(self, y, name, index)

    def log_likelihood(self, y, eta, aux=None, trials=None):
        return stats.poisson.logpmf(y, np.exp(eta))

    def draw(self, rng, eta, aux=None, trials=None):
        return rng.poisson(self.inverse_link(eta)).astype(float)

    def variance(self, mu, aux=None, trials=None):
        return mu

    def latent_variance(self, mean_count=None, aux=None):
        return np.log1p(1.0 / np.asarray(mean_count, dtype=float) + 0.0)

    def working_weights(self, eta, y, trials=None, aux=None):
        return np.exp(np.asarray(eta, dtype=float))

    def score_and_weights(self, eta, y, trials=None, aux=None):
        mu = np.exp(eta)
        return y - mu, mu

    def empty_cluster_notes(self, y, codes, levels, trials=None):
        return empty_count_notes(y, codes, levels)

    def default_intercept(self, y, trials, offset):
        return count_intercept(y, offset)

    def add_likelihood(self, eta, y, *, trials=None, priors=None):
        import pymc as pm
        import pytensor.tensor as pt

        pm.Poisson("y", mu=pt.exp(eta), observed=y, dims="obs")

    def kernel_constant(self, y, trials):
        return float(np.sum(-special.gammaln(y + 1)))


def check_counts(family: Family, y: np.ndarray, name: str, index=None) -> None:
    """A count family's response check: whole numbers ≥ 0."""
    y = np.asarray(y, dtype=float)
    bad = (y < 0) | (y != np.round(y))
    raise_if_rows(bad, y, f"the response {name!r} must be counts (0, 1, 2, ...) for family={family.name!r}",
                  "check the column, or use family='gaussian' for a continuous response", index=index)


def empty_count_notes(y: np.ndarray, codes: np.ndarray, levels: int) -> np.ndarray:
    """Counts: a cluster whose every count is 0 has a rate estimated as 0, its log as −∞."""
    notes = np.full(levels, "", dtype=object)
    total = np.bincount(codes, weights=y, minlength=levels)
    notes[total == 0] = "every count 0: the rate is estimated as 0, its log as -inf"
    return notes


def count_intercept(y: np.ndarray, offset: np.ndarray | None) -> float:
    """The log of the mean count per unit of exposure (at least half a count over all rows)."""
    exposure = 1.0 if offset is None else float(np.mean(np.exp(offset)))
    return float(np.log(max(np.mean(y), 0.5 / len(y)) / exposure))

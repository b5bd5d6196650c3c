"""The binomial family and the Bernoulli family, its one-trial case: successes with a logit or probit link.

One module for both: Bernoulli is the binomial with one trial per row, so every formula
(link, likelihood, draws, weights, latent variance) is the binomial's with ``trials=None``
read as 1; the Bernoulli class changes only its name, its response check (0 or 1, no
trials) and PyMC's distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import lazy_loader as lazy
import numpy as np

from lmm_bayes.spec.families.base import Family
from lmm_bayes.spec.families.checks import raise_if_rows

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
special = lazy.load("scipy.special", suppress_warning=True)
stats = lazy.load("scipy.stats", suppress_warning=True)

__all__ = ["Bernoulli", "Binomial"]


def _probit_parts(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi(eta) and Phi (1 - Phi), the latter kept away from 0 in the tails."""
    Phi = special.ndtr(eta)
    return stats.norm.pdf(eta), np.clip(Phi * (1.0 - Phi), 1e-300, None)


@dataclass(frozen=True, repr=False)
class Binomial(Family):
    """``y ~ Binomial(trials, g⁻¹(eta))``; ``trials`` per row.

    Examples
    --------
    >>> b = Binomial()
    >>> b, round(float(b.latent_variance()), 4), float(Binomial("probit").latent_variance())
    (Family(name='binomial', link='logit'), 3.2899, 1.0)
    >>> b.working_weights(np.array([0.0]), np.array([3.0]), trials=np.array([10.0]))
    array([2.5])
    """

    name = "binomial"
    links = ("logit", "probit")
    successes = True
    needs_trials = True
    kernel_code = 2  # the logit link's

    def check_response(self, y, name, trials=None, index=None):
        y = np.asarray(y, dtype=float)
        bad = (y < 0) | (y != np.round(y))
        raise_if_rows(bad, y, f"the response {name!r} must be numbers of successes (0, 1, 2, ...) for family={self.name!r}",
                      "give the successes, with the trials as cbind(successes, failures) or trials=", index=index)
        if trials is None:
            raise ValueError(
                "family='binomial' needs the number of trials per row: write the response as "
                "cbind(successes, failures) or give trials='<column>' (or a number)"
            )
        raise_if_rows(y > trials, y, f"the successes {name!r} must not exceed the trials",
                      "check that the successes and trials columns are the ones you meant", extra=trials, index=index)

    def separation_note(self, y, name, trials=None, X=None, columns=()):
        """Every response one outcome, or one binary column of X that splits the outcomes exactly.

        Examples
        --------
        >>> Bernoulli().separation_note(np.array([1.0, 1.0, 1.0]), "correct")[:40]
        "the response 'correct' is 1 in every row"
        >>> Bernoulli().separation_note(np.array([0.0, 1.0, 1.0]), "correct") is None
        True
        """
        y = np.asarray(y, dtype=float)
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        prior = (f"the likelihood has no finite maximum (complete separation), so the estimate of the intercept "
                 f"(the {self.link} of the probability) is driven by its prior, not by the data")
        if len(y) and np.all(y == 0):
            return f"the response {name!r} is 0 in every row: {prior}; report it as such, or model data with both outcomes"
        if len(y) and np.all(y == n):
            what = "1 in every row" if trials is None else "a success in every trial"
            return f"the response {name!r} is {what}: {prior}; report it as such, or model data with both outcomes"
        none, every = y == 0, y == n
        if X is None or not np.all(none | every):
            return None  # a row with both outcomes: no single column separates them
        for j, col in enumerate(columns):  # one pass per column: one value at every success, another at none
            at_every, at_none = X[every, j], X[none, j]
            if at_every.min() == at_every.max() != at_none.min() == at_none.max():
                hi = at_every[0]
                return (f"the predictor {col!r} separates the response {name!r} perfectly ({name} is "
                        f"{'1' if trials is None else 'a success in every trial'} exactly where {col} = {hi:g}): "
                        f"its coefficient's likelihood has no finite maximum, so its estimate (and the "
                        f"intercept's) is driven by its prior, not by the data")
        return None

    def log_likelihood(self, y, eta, aux=None, trials=None):
        n = 1 if trials is None else trials
        if self.link == "logit":
            # stable: log p = -log1p(exp(-eta)), log(1-p) = -log1p(exp(eta))
            return (special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
                    - y * np.logaddexp(0, -eta) - (n - y) * np.logaddexp(0, eta))
        return stats.binom.logpmf(y, n, special.ndtr(eta))

    def draw(self, rng, eta, aux=None, trials=None):
        mu = self.inverse_link(eta)
        n = np.ones_like(mu, dtype=np.int64) if trials is None else np.broadcast_to(trials, mu.shape).astype(np.int64)
        return rng.binomial(n, mu).astype(float)

    def variance(self, mu, aux=None, trials=None):
        n = 1.0 if trials is None else trials
        p = mu / n
        return n * p * (1 - p)

    def latent_variance(self, mean_count=None, aux=None):
        return np.asarray(np.pi**2 / 3) if self.link == "logit" else np.asarray(1.0)

    def working_weights(self, eta, y, trials=None, aux=None):
        eta = np.asarray(eta, dtype=float)
        n = 1.0 if trials is None else trials
        if self.link == "logit":
            p = special.expit(eta)
            return n * p * (1.0 - p)
        phi, v = _probit_parts(eta)
        return n * phi**2 / v

    def score_and_weights(self, eta, y, trials=None, aux=None):
        n = 1.0 if trials is None else trials
        if self.link == "logit":
            p = special.expit(eta)
            return y - n * p, n * p * (1.0 - p)
        phi, v = _probit_parts(eta)
        return (y - n * special.ndtr(eta)) * phi / v, n * phi**2 / v

    def empty_cluster_notes(self, y, codes, levels, trials=None):
        notes = np.full(levels, "", dtype=object)
        total = np.bincount(codes, weights=y, minlength=levels)
        n = np.bincount(codes, weights=np.ones_like(y) if trials is None else trials, minlength=levels)
        notes[total == 0] = f"every response 0: the probability is estimated as 0, its {self.link} as -inf"
        notes[(total == n) & (n > 0)] = f"every response 1: the probability is estimated as 1, its {self.link} as +inf"
        return notes

    def default_intercept(self, y, trials, offset):
        n = np.ones_like(y) if trials is None else trials
        total = float(np.sum(n))
        p = float(np.clip(np.sum(y) / total, 0.5 / total, 1 - 0.5 / total))
        return float(self.link_function(p))

    def add_likelihood(self, eta, y, *, trials=None, priors=None):
        import pymc as pm
        import pytensor.tensor as pt

        # the logit link through PyMC's logit_p: stable for large |eta|
        kw = {"logit_p": eta} if self.link == "logit" else {
            "p": pt.clip(self.link_object.inverse_pt(eta), 1e-12, 1 - 1e-12)}
        if trials is None:
            pm.Bernoulli("y", **kw, observed=y, dims="obs")
        else:
            pm.Binomial("y", n=trials, **kw, observed=y, dims="obs")

    def kernel_constant(self, y, trials):
        constant = float(np.sum(-special.gammaln(y + 1)))
        return constant + float(np.sum(special.gammaln(trials + 1) - special.gammaln(trials - y + 1)))


@dataclass(frozen=True, repr=False)
class Bernoulli(Binomial):
    """``y ~ Bernoulli(g⁻¹(eta))``: 0 or 1, one trial per row.

    Examples
    --------
    >>> Bernoulli().check_response(np.array([0, 1, 2]), "correct")
    Traceback (most recent call last):
    ...
    ValueError: the response 'correct' must be 0 or 1 for family='bernoulli', but 1 of 3 rows are not (first: row 2 = 2); recode it (e.g. correct = 1, incorrect = 0), or use family='binomial' for k of n trials
    """

    name = "bernoulli"
    needs_trials = False

    def check_response(self, y, name, trials=None, index=None):
        y = np.asarray(y, dtype=float)
        raise_if_rows((y != 0) & (y != 1), y, f"the response {name!r} must be 0 or 1 for family='bernoulli'",
                      "recode it (e.g. correct = 1, incorrect = 0), or use family='binomial' for k of n trials",
                      index=index)

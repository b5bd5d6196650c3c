"""Response families of a generalized linear mixed model: name, link, response checks, latent variance.

A family says how the linear predictor ``eta = X beta + Z b + offset`` meets the data:
the mean is ``g⁻¹(eta)`` for the link ``g``, and the response is drawn from the family's
distribution around that mean.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = ["FAMILIES", "GAUSSIAN", "Family", "check_trials", "family_of", "get_family", "require_gaussian"]

#: family name → its links, the canonical (default) one first
FAMILIES: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity",),
    "poisson": ("log",),
    "negativebinomial": ("log",),
    "bernoulli": ("logit", "probit"),
    "binomial": ("logit", "probit"),
}
_AUX = {"gaussian": "sigma", "negativebinomial": "dispersion"}


@dataclass(frozen=True)
class Family:
    """A response distribution and its link.

    Parameters
    ----------
    name : {"gaussian", "poisson", "negativebinomial", "bernoulli", "binomial"}
    link : str
        One of the family's links (:data:`FAMILIES`).

    Examples
    --------
    >>> f = get_family("bernoulli", "probit")
    >>> f, f.aux, float(f.inverse_link(np.array([0.0]))[0])
    (Family(name='bernoulli', link='probit'), None, 0.5)
    """

    name: str
    link: str

    @property
    def aux(self) -> str | None:
        """The family's extra parameter in the posterior (``"sigma"``, ``"dispersion"``) or None."""
        return _AUX.get(self.name)

    @property
    def is_gaussian(self) -> bool:
        """True for the Gaussian family (the linear mixed model)."""
        return self.name == "gaussian"

    @property
    def counts(self) -> bool:
        """True for Poisson and negative binomial responses."""
        return self.name in ("poisson", "negativebinomial")

    @property
    def ratio_name(self) -> str:
        """What ``exp(beta)`` is: ``"rate ratio"`` (log link), ``"odds ratio"`` (logit), or ""."""
        return {"log": "rate ratio", "logit": "odds ratio"}.get(self.link, "")

    # ------------------------------------------------------------ the link
    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """The mean per trial (a probability) or per row (a rate) from the linear predictor."""
        eta = np.asarray(eta, dtype=float)
        if self.link == "identity":
            return eta
        if self.link == "log":
            return np.exp(eta)
        if self.link == "logit":
            return special.expit(eta)
        return special.ndtr(eta)  # probit

    def link_function(self, mu: np.ndarray) -> np.ndarray:
        """``g(mu)``, the inverse of :meth:`inverse_link`."""
        mu = np.asarray(mu, dtype=float)
        if self.link == "identity":
            return mu
        if self.link == "log":
            return np.log(mu)
        if self.link == "logit":
            return special.logit(mu)
        return special.ndtri(mu)

    # ------------------------------------------------------------ the response
    def check_response(self, y: np.ndarray, name: str, trials: np.ndarray | None = None, index=None) -> None:
        """``ValueError`` naming the column, how many rows are bad, the first of them, and what to do.

        ``index`` holds the rows' labels in the data (default: their positions).

        Examples
        --------
        >>> get_family("poisson").check_response(np.array([0, 2, -1, 1.5]), "spikes")
        Traceback (most recent call last):
        ...
        ValueError: the response 'spikes' must be counts (0, 1, 2, ...) for family='poisson', but 2 of 4 rows are not (first: row 2 = -1, row 3 = 1.5); check the column, or use family='gaussian' for a continuous response
        """
        y = np.asarray(y, dtype=float)
        if self.name == "gaussian":
            return
        if self.counts or self.name == "binomial":
            bad = (y < 0) | (y != np.round(y))
            what = "counts (0, 1, 2, ...)" if self.counts else "numbers of successes (0, 1, 2, ...)"
            fix = ("check the column, or use family='gaussian' for a continuous response" if self.counts
                   else "give the successes, with the trials as cbind(successes, failures) or trials=")
            _raise_if(bad, y, f"the response {name!r} must be {what} for family={self.name!r}", fix, index=index)
        if self.name == "bernoulli":
            bad = (y != 0) & (y != 1)
            _raise_if(bad, y, f"the response {name!r} must be 0 or 1 for family='bernoulli'",
                      "recode it (e.g. correct = 1, incorrect = 0), or use family='binomial' for k of n trials",
                      index=index)
        if self.name == "binomial":
            if trials is None:
                raise ValueError(
                    "family='binomial' needs the number of trials per row: write the response as "
                    "cbind(successes, failures) or give trials='<column>' (or a number)"
                )
            over = y > trials
            _raise_if(over, y, f"the successes {name!r} must not exceed the trials",
                      "check that the successes and trials columns are the ones you meant", extra=trials,
                      index=index)

    # ------------------------------------------------------------ latent scale
    def latent_variance(self, mean_count: np.ndarray | None = None, aux: np.ndarray | None = None) -> np.ndarray:
        """The distribution-specific variance on the link scale (Nakagawa et al. 2017).

        Parameters
        ----------
        mean_count : ndarray, optional
            The expected count lambda per draw (log link only).
        aux : ndarray, optional
            The family's extra parameter per draw (``sigma`` or ``dispersion``).

        Examples
        --------
        >>> round(float(get_family("binomial").latent_variance()), 4)
        3.2899
        >>> float(get_family("poisson").latent_variance(np.array(1.0)))  # log(1 + 1/1)
        0.6931471805599453
        """
        if self.name == "gaussian":
            return np.asarray(aux, dtype=float) ** 2
        if self.link == "logit":
            return np.asarray(np.pi**2 / 3)
        if self.link == "probit":
            return np.asarray(1.0)
        lam = np.asarray(mean_count, dtype=float)
        extra = 0.0 if self.name == "poisson" else np.asarray(aux, dtype=float) ** 2  # 1/alpha = dispersion²
        return np.log1p(1.0 / lam + extra)

    # ------------------------------------------------------------ the distribution
    def log_likelihood(self, y: np.ndarray, eta: np.ndarray, aux: np.ndarray | None = None,
                       trials: np.ndarray | None = None) -> np.ndarray:
        """Pointwise log-likelihood of ``y`` at linear predictors ``eta`` (broadcast; ``aux`` per draw with a trailing axis)."""
        if self.name == "gaussian":
            return stats.norm.logpdf(y, eta, aux)
        if self.name == "poisson":
            return stats.poisson.logpmf(y, np.exp(eta))
        if self.name == "negativebinomial":
            alpha = 1.0 / np.asarray(aux) ** 2
            mu = np.exp(eta)
            return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))
        n = 1 if trials is None else trials
        if self.link == "logit":
            # stable: log p = -log1p(exp(-eta)), log(1-p) = -log1p(exp(eta))
            return (special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
                    - y * np.logaddexp(0, -eta) - (n - y) * np.logaddexp(0, eta))
        return stats.binom.logpmf(y, n, special.ndtr(eta))

    def draw(self, rng: np.random.Generator, eta: np.ndarray, aux: np.ndarray | None = None,
             trials: np.ndarray | None = None) -> np.ndarray:
        """Responses drawn at linear predictors ``eta`` (the posterior predictive)."""
        mu = self.inverse_link(eta)
        if self.name == "gaussian":
            return rng.normal(mu, aux)
        if self.name == "poisson":
            return rng.poisson(mu).astype(float)
        if self.name == "negativebinomial":
            alpha = 1.0 / np.asarray(aux) ** 2
            return rng.poisson(rng.gamma(alpha, mu / alpha)).astype(float)
        n = np.ones_like(mu, dtype=np.int64) if trials is None else np.broadcast_to(trials, mu.shape).astype(np.int64)
        return rng.binomial(n, mu).astype(float)


GAUSSIAN = Family("gaussian", "identity")


def get_family(family: str | Family, link: str | None = None) -> Family:
    """The :class:`Family` for a name (and link; ``None`` takes the canonical one).

    Examples
    --------
    >>> get_family("poisson")
    Family(name='poisson', link='log')
    >>> get_family("binomial", "cloglog")
    Traceback (most recent call last):
    ...
    ValueError: link='cloglog' is not available for family='binomial'; choose one of ['logit', 'probit']
    """
    if isinstance(family, Family):
        if link is not None and link != family.link:
            raise ValueError(f"link={link!r} contradicts the family's own link {family.link!r}; give one of them")
        return family
    if not isinstance(family, str):
        raise TypeError(f"family must be a name such as 'poisson', got {type(family).__name__}")
    key = family.lower().replace("_", "").replace(" ", "")
    key = {"negbinomial": "negativebinomial", "nb": "negativebinomial", "normal": "gaussian"}.get(key, key)
    if key not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {list(FAMILIES)}")
    links = FAMILIES[key]
    if link is None:
        return Family(key, links[0])
    if not isinstance(link, str):
        raise TypeError(f"link must be a name such as {links[0]!r}, got {type(link).__name__}")
    if link not in links:
        raise ValueError(f"link={link!r} is not available for family={key!r}; choose one of {list(links)}")
    return Family(key, link)


def family_of(design: object) -> Family:
    """The family of a design: a GLMM's own, Gaussian for an LMM's."""
    return getattr(design, "family", GAUSSIAN)


def require_gaussian(design: object, what: str) -> None:
    """``ValueError`` unless the design is Gaussian: ``what`` is built for Gaussian models only (so far)."""
    family = family_of(design)
    if not family.is_gaussian:
        raise ValueError(
            f"{what} is built for Gaussian models only so far; this model is family={family.name!r} "
            "(not built yet for generalized models: issue 20)"
        )


def check_trials(trials: np.ndarray, name: str, index=None) -> np.ndarray:
    """Trials must be whole numbers ≥ 1; returns them as floats."""
    trials = np.asarray(trials, dtype=float)
    bad = ~np.isfinite(trials) | (trials < 1) | (trials != np.round(trials))
    _raise_if(bad, trials, f"the trials {name!r} must be whole numbers of at least 1",
              "drop rows with no trials (they carry no information) or fix the column", index=index)
    return trials


def _raise_if(bad: np.ndarray, values: np.ndarray, what: str, fix: str, extra: np.ndarray | None = None,
              index=None) -> None:
    if not np.any(bad):
        return
    rows = np.flatnonzero(bad)
    labels = np.arange(len(values)) if index is None else np.asarray(index)
    shown = ", ".join(
        f"row {labels[i]} = {values[i]:g}" + ("" if extra is None else f" of {extra[i]:g}") for i in rows[:2]
    )
    raise ValueError(f"{what}, but {len(rows)} of {len(values)} rows are not (first: {shown}); {fix}")

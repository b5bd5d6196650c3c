"""Results of a generalized model in the family's terms: scales of a prediction, ratios, latent variance.

* :func:`on_scale`: a prediction's linear predictor turned into ``kind="link"`` (log rate,
  log odds, probit), ``"mean"`` (rate per row, probability per trial) or ``"response"``
  (a new observation drawn from the family);
* :func:`ratio_table`: ``exp(beta)`` summarised draw by draw (rate or odds ratios);
* :func:`residual_variance_draws`: the residual's share of the variance partition on the
  latent (link) scale, the distribution-specific variance of Nakagawa, Johnson &
  Schielzeth (2017) (see :mod:`lmm_bayes.spec.families`);
* :func:`require_gaussian`: the clear error of a summary that exists for Gaussian models only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import BETA, covariance_values
from lmm_bayes.results.summary import summarize_draws
from lmm_bayes.spec.families.registry import require_gaussian as require_gaussian_design

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["KINDS", "describe", "on_scale", "ratio_table", "require_gaussian", "residual_variance_draws"]

#: the scales a prediction may be on
KINDS = ("mean", "response", "link")


def require_gaussian(fit: Fit, what: str) -> None:
    """``ValueError`` when ``fit`` is not Gaussian: ``what`` is built for Gaussian models only (so far)."""
    require_gaussian_design(fit.design, what)


def on_scale(fit: Fit, eta: np.ndarray, kind: str, rng: np.random.Generator,
             offset: np.ndarray | None, trials: np.ndarray | None) -> np.ndarray:
    """The draws of a prediction on the scale ``kind``, from ``eta = X beta + Z b`` (chain, draw, obs).

    ``offset`` and ``trials`` are the rows' (None: none). ``"mean"`` is the expected
    response per row for counts (offset included) and the probability per trial for
    Bernoulli and binomial data (as lme4's ``predict(type="response")``); ``"response"``
    draws a count, a 0/1 or the successes of the row's trials.
    """
    family = fit.design.family
    if offset is not None:
        eta = eta + offset
    if kind == "link":
        return eta
    if kind == "mean":
        return family.inverse_link(eta)
    post = fit.posterior.transpose("chain", "draw", ...)
    aux = post[family.aux].values[:, :, None] if family.aux else None
    return family.draw(rng, eta, aux, trials)


def ratio_table(fit: Fit, *, ci: str, prob: float) -> pd.DataFrame:
    """``exp(beta)`` per coefficient, each draw exponentiated before it is summarised.

    The mean of ``exp(beta)`` is not ``exp`` of the mean; the interval is ``exp`` of
    the interval (both kinds of interval are invariant under a monotone map, up to the
    HDI's own approximation).
    """
    family = fit.design.family
    if not family.ratio_name:
        raise ValueError(
            f"exponentiate=True gives rate ratios (log link) or odds ratios (logit link); this fit's link is "
            f"{family.link!r}, whose exp(beta) has no such meaning; read the coefficients on the link scale"
        )
    table = summarize_draws(np.exp(fit.posterior[BETA]), ci=ci, prob=prob)
    table.index.name = "coef"
    table.attrs["scale"] = family.ratio_name
    return table


def residual_variance_draws(fit: Fit, at: dict[str, float], *, random: np.ndarray | None = None) -> np.ndarray:
    """The residual's variance on the latent scale per draw (chain, draw).

    Gaussian: ``sigma²``. Logit: π²/3; probit: 1. Log link: ``log(1 + 1/lambda [+ 1/alpha])``
    with ``lambda = mean over the fitted rows of exp(X beta + offset) · exp(½ Σ var)``, the
    expected count of an average row (Nakagawa et al. 2017, their eq. for the lognormal
    approximation), Σ var the random-effect variances at ``at``, or ``random`` (chain, draw)
    when given (R² passes its mean over the rows).
    """
    post = fit.posterior.transpose("chain", "draw", ...)
    design = fit.design
    family = design.family
    shape = (post.sizes["chain"], post.sizes["draw"])
    if not family.latent_needs_mean:  # sigma² (Gaussian), π²/3 (logit), 1 (probit)
        aux = post[family.aux].values if family.aux else None
        return np.broadcast_to(family.latent_variance(aux=aux), shape).copy()
    if random is None:
        random = np.zeros(shape)
        for g in design.groups:
            z = np.array([1.0 if e == "Intercept" else float(at.get(e, 0.0)) for e in g.effects])
            random = random + np.einsum("i,cdij,j->cd", z, covariance_values(post, g), z)
    beta = post[BETA].values if BETA in post else np.zeros(shape + (0,))
    eta = np.einsum("cdp,np->cdn", beta, design.X) if design.X.shape[1] else np.zeros(shape + (design.n,))
    offset = design.offset
    if offset is not None:
        eta = eta + offset
    lam = np.exp(eta).mean(axis=-1) * np.exp(0.5 * random)
    aux = post[family.aux].values if family.aux else None
    return family.latent_variance(lam, aux)


def describe(fit: Fit) -> str:
    """``"Bayesian linear mixed model"`` or ``"Bayesian generalized linear mixed model (poisson, log link)"``."""
    family = fit.design.family
    if family.is_gaussian:
        return "Bayesian linear mixed model"
    return f"Bayesian generalized linear mixed model ({family.name}, {family.link} link)"

"""Pooling of a generalized model's clusters: their own GLM fits, the GLM without groups, the model's shrinkage.

What :func:`lmm_bayes.results.shrinkage.shrinkage` and :func:`lmm_bayes.compare_pooling`
need for a :class:`~lmm_bayes.GLMM`, on the link scale:

* :func:`working_weights`: the information about the linear predictor that one row carries,
  ``W = -d² log p(y | eta) / d eta²`` (expected, or observed where stated): ``mu`` for
  Poisson, ``n p (1 - p)`` for the logit link, ``alpha mu (y + alpha) / (alpha + mu)²``
  (observed) for the negative binomial NB2, ``n phi(eta)² / (Phi (1 - Phi))`` (expected)
  for the probit link, ``1 / sigma²`` for a Gaussian;
* :func:`glm_model_shrinkage`: the model's shrinkage factor of every cluster,
  ``B_j = diag(C_j G⁻¹)`` with the Laplace covariance ``C_j = (Z_jᵀ W_j Z_j + G⁻¹)⁻¹`` of
  ``b_j`` given y and the hyperparameters, W at each draw's own fitted eta, averaged over
  the posterior. It is the Gaussian ``σ² / (σ² + n_j τ²)`` with ``n_j / σ²`` replaced by the
  cluster's total information ``Σ_i W_ij``: approximate (the Laplace approximation of a
  non-Gaussian conditional posterior) and on the latent scale;
* :func:`cluster_glm`: maximum likelihood of every cluster's own coefficients with
  everything else held fixed (Fisher scoring, step halving), and of the GLM without
  groups; a cluster whose likelihood has no finite maximum (all counts 0; all choices 0
  or all 1; separation) gets NaN and a note saying why, never a number made up by the
  optimizer.
"""

from __future__ import annotations

import numpy as np

from lmm_bayes.spec.families.registry import Family

__all__ = ["cluster_glm", "glm_model_shrinkage", "no_finite_estimate", "score_and_weights", "working_weights"]

#: a coefficient beyond this (on the link scale) after convergence means the maximum is at infinity
_DIVERGED = 25.0


def working_weights(family: Family, eta: np.ndarray, y: np.ndarray, *, trials: np.ndarray | None = None,
                    aux: np.ndarray | float | None = None) -> np.ndarray:
    """Information per row about the linear predictor (module docstring), broadcast over draws.

    Parameters
    ----------
    family : Family
    eta : ndarray (..., n)
        Linear predictors, offset included.
    y : ndarray (n,)
    trials : ndarray (n,), optional
        Binomial trials (1 otherwise).
    aux : ndarray (..., 1) or float, optional
        The family's extra parameter (σ; the negative binomial's dispersion 1/√alpha).

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> working_weights(get_family("binomial"), np.array([0.0]), np.array([3.0]), trials=np.array([10.0]))
    array([2.5])
    >>> working_weights(get_family("poisson"), np.log(np.array([4.0])), np.array([2.0]))
    array([4.])
    """
    return family.working_weights(eta, y, trials=trials, aux=aux)


def score_and_weights(family: Family, eta: np.ndarray, y: np.ndarray, *, trials: np.ndarray | None = None,
                      aux: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``d log p / d eta`` per row and the expected information (Fisher scoring's weights).

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> s, w = score_and_weights(get_family("poisson"), np.log(np.array([4.0])), np.array([2.0]))
    >>> s.tolist(), w.tolist()
    ([-2.0], [4.0])
    """
    return family.score_and_weights(eta, y, trials=trials, aux=aux)


def no_finite_estimate(family: Family, y: np.ndarray, codes: np.ndarray, levels: int,
                       trials: np.ndarray | None = None) -> np.ndarray:
    """A note per cluster whose own intercept has no finite maximum likelihood estimate ("" where it has).

    Counts: every count 0 (the rate's estimate is 0, its log −∞). Bernoulli and binomial:
    every trial a failure, or every one a success (a probability of 0 or 1).

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> no_finite_estimate(get_family("bernoulli"), np.array([0, 0, 1, 1, 0, 1.0]), np.array([0, 0, 1, 1, 2, 2]), 3)
    array(['every response 0: the probability is estimated as 0, its logit as -inf',
           'every response 1: the probability is estimated as 1, its logit as +inf', ''], dtype=object)
    """
    return family.empty_cluster_notes(y, codes, levels, trials)


def _cluster_loglik(family, y, eta, trials, aux, codes, levels):
    ll = family.log_likelihood(y, eta, aux, trials)
    return np.bincount(codes, weights=np.where(np.isfinite(ll), ll, -1e300), minlength=levels)


def cluster_glm(family: Family, y: np.ndarray, Z: np.ndarray, codes: np.ndarray, levels: int, *,
                offset: np.ndarray, trials: np.ndarray | None = None, aux: float | None = None,
                max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cluster's own maximum likelihood coefficients, ``eta_i = offset_i + Z_i theta_{codes_i}``.

    Fisher scoring, all clusters at once, with step halving per cluster so its
    log-likelihood never falls. Identify the effects first
    (:func:`lmm_bayes.results.estimates.identified`): an unidentified one makes Z_jᵀWZ_j
    singular, and its estimate here is a pseudo-inverse's.

    Returns
    -------
    theta : ndarray (levels, q)
        NaN for a cluster that did not converge to a finite maximum (see ``converged``).
    cov : ndarray (levels, q, q)
        The inverse expected information at ``theta`` (Wald covariance).
    converged : ndarray of bool (levels,)
        False where the estimates ran off to infinity (separation) or did not settle.

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> y, codes = np.array([1.0, 3, 0, 0]), np.array([0, 0, 1, 1])
    >>> theta, cov, ok = cluster_glm(get_family("poisson"), y, np.ones((4, 1)), codes, 2, offset=np.zeros(4))
    >>> np.round(theta[:, 0], 6).tolist(), ok.tolist()   # log(mean) of (1, 3); all zeros: no finite estimate
    ([0.693147, nan], [True, False])
    """
    q = Z.shape[1]
    theta = np.zeros((levels, q))
    A = np.zeros((levels, q, q))
    ZZ = Z[:, :, None] * Z[:, None, :]
    settled = np.zeros(levels, dtype=bool)
    eta = offset + np.einsum("nk,nk->n", Z, theta[codes])
    ll = _cluster_loglik(family, y, eta, trials, aux, codes, levels)
    for _ in range(max_iter):
        s, w = score_and_weights(family, eta, y, trials=trials, aux=aux)
        A = np.zeros((levels, q, q))
        np.add.at(A, codes, ZZ * w[:, None, None])
        c = np.zeros((levels, q))
        np.add.at(c, codes, Z * s[:, None])
        step = np.einsum("jkl,jl->jk", np.linalg.pinv(A, rcond=1e-12, hermitian=True), c)
        scale = np.ones(levels)
        for _half in range(30):
            new = theta + scale[:, None] * step
            eta_new = offset + np.einsum("nk,nk->n", Z, new[codes])
            ll_new = _cluster_loglik(family, y, eta_new, trials, aux, codes, levels)
            worse = ll_new < ll - 1e-10 * (1 + np.abs(ll))
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        theta, eta, gain = new, eta_new, ll_new - ll
        ll = ll_new
        settled = (np.abs(scale[:, None] * step).max(axis=1) < 1e-8) | (np.abs(gain) < 1e-12 * (1 + np.abs(ll)))
        running = ~settled & (np.abs(theta).max(axis=1) <= 4 * _DIVERGED)  # one running off to infinity stops
        if not running.any():
            break
    converged = settled & (np.abs(theta).max(axis=1) < _DIVERGED)
    cov = np.linalg.pinv(A, rcond=1e-12, hermitian=True)
    theta = np.where(converged[:, None], theta, np.nan)
    return theta, cov, converged


def glm_model_shrinkage(family: Family, y: np.ndarray, eta: np.ndarray, Z: np.ndarray, codes: np.ndarray,
                        levels: int, G: np.ndarray, *, trials: np.ndarray | None = None,
                        aux: np.ndarray | None = None, max_draws: int = 1000) -> np.ndarray:
    """The model's shrinkage factor of every cluster's effects (module docstring), per (level, effect).

    Parameters
    ----------
    family : Family
    y : ndarray (n,)
    eta : ndarray (draws, n)
        Each draw's fitted linear predictor (offset and every b included).
    Z, codes, levels
        The grouping factor's random-effects columns, each row's cluster, the number of clusters.
    G : ndarray (draws, q, q)
        The factor's covariance per draw.
    trials : ndarray (n,), optional
    aux : ndarray (draws,), optional
        The family's extra parameter per draw.
    max_draws : int
        At most this many evenly spaced draws are averaged.

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> # two clusters of 1 and 10 rows at rate 1 (W = 1 per row), tau^2 = 0.25: 4 / (4 + n_j)
    >>> B = glm_model_shrinkage(get_family("poisson"), np.zeros(11), np.zeros((1, 11)), np.ones((11, 1)),
    ...                         np.array([0] + [1] * 10), 2, np.array([[[0.25]]]))
    >>> np.round(B[:, 0], 6).tolist()
    [0.8, 0.285714]
    """
    n_draws = eta.shape[0]
    keep = np.unique(np.linspace(0, n_draws - 1, min(n_draws, max_draws)).round().astype(int))
    q = Z.shape[1]
    ZZ = (Z[:, :, None] * Z[:, None, :]).reshape(len(y), q * q)
    total = np.zeros((levels, q))
    for s in keep:
        a = None if aux is None else aux[s]
        w = working_weights(family, eta[s], y, trials=trials, aux=a)
        A = np.zeros((levels, q * q))
        np.add.at(A, codes, ZZ * w[:, None])
        Ginv = np.linalg.inv(G[s])
        C = np.linalg.inv(A.reshape(levels, q, q) + Ginv)
        total += np.diagonal(C @ Ginv, axis1=1, axis2=2)
    return total / len(keep)

"""How well a fit predicts and explains: PSIS-LOO, comparing fits, and R².

:func:`loo` and :func:`compare` are ArviZ's (arviz-stats) on the fit's pointwise
log-likelihood, with the Pareto-k warnings turned into one message that says what to do.
:func:`r2` is the marginal and conditional R² of Nakagawa & Schielzeth (2013), with random
slopes as in Johnson (2014), draw by draw, so it comes with a posterior interval:

* ``var_fixed``: the variance of ``X beta`` over the rows (R's ``var``, n - 1);
* ``var_random``: the mean over the rows of ``sum_k z_ik' G_k z_ik`` (each factor's
  contribution at that row's predictor values; a random intercept gives ``tau^2``);
* marginal R² = ``var_fixed / (var_fixed + var_random + sigma^2)``, conditional R² =
  ``(var_fixed + var_random) / (var_fixed + var_random + sigma^2)``.

These are the formulas of R's ``performance::r2_nakagawa`` for Gaussian models, evaluated
at each posterior draw instead of at the point estimates.

For a generalized model (:class:`~lmm_bayes.GLMM`) every part is on the latent (link)
scale, as in Nakagawa, Johnson & Schielzeth (2017, *J. R. Soc. Interface* 14: 20170213):
``var_fixed`` is the variance of ``X beta`` (offset left out), ``var_random`` as above, and
``sigma^2`` is replaced by the family's distribution-specific variance
(:meth:`~lmm_bayes.Family.latent_variance`): π²/3 for a logit link (Bernoulli and binomial
alike), 1 for probit, and ``log(1 + 1/lambda [+ 1/alpha])`` for counts, with ``lambda`` the
expected count of an average row, ``mean_i exp(x_i beta + offset_i) · exp(var_random / 2)``
(:func:`lmm_bayes.results.glm.residual_variance_draws`). For the logit and probit links
this is exactly ``performance::r2_nakagawa`` draw by draw. For counts, performance 0.10.2
takes ``lambda`` from a refitted null model (``exp(beta_0 + var_random / 2)`` of ``y ~ 1 + (...)``)
instead; the two differ when the counts are skewed (on grouseticks, lambda 6.1 here vs 1.7
there: a distribution variance of 0.15 vs 0.46), so count models' R² is higher here than
there. Ours keeps one lambda for the ICC and R² and needs no second fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import BETA, covariance_values
from lmm_bayes.results.glm import residual_variance_draws
from lmm_bayes.results.residual_structure import refuse_structured
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, summarize_draws

__all__ = ["HIGH_PARETO_K", "compare", "loo", "r2", "r2_draws"]

#: Pareto k above this makes an observation's PSIS-LOO estimate unreliable (arviz-stats' own
#: threshold for thousands of draws is min(1 - 1/log10(S), 0.7))
HIGH_PARETO_K = 0.7


def _check_log_likelihood(name: str, fit: Any) -> None:
    refuse_structured(fit.design, f"LOO ({name}: its pointwise log-likelihood)", ar_only=True)
    if "log_likelihood" not in fit.idata.children:
        raise ValueError(
            f"{name} has no pointwise log-likelihood: refit with log_likelihood=True (and keep_b='all' or "
            "'float32'); 'auto' leaves it out when chains x draws x rows is above 4e7"
        )


def _pareto_advice(counts: Mapping[str, int]) -> str:
    where = ", ".join(f"{n} in {name}" for name, n in counts.items() if n)
    return (
        f"PSIS-LOO: observations with a Pareto k above {HIGH_PARETO_K}: {where}. Their elpd estimates "
        "are unreliable. Such an observation strongly influences its own cluster's b (a small "
        "cluster, an outlier): check them (elpd.pareto_k), and compare models with K-fold cross-validation "
        "by cluster, or more draws, before trusting differences smaller than a few SEs"
    )


def loo(fit: Any) -> Any:
    """PSIS-LOO of one fit (arviz-stats ``loo``, pointwise).

    Returns arviz-stats' ``ELPDData`` (``elpd``, ``se``, ``p``, ``pareto_k``, ``elpd_i``). One
    warning names how many observations have a Pareto k above :data:`HIGH_PARETO_K`.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     seed=1, progressbar=False)
    >>> res = fit.loo()
    >>> bool(-900 < res.elpd < -850), int(res.n_data_points)
    (True, 180)
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    _check_log_likelihood("this fit", fit)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        result = azs.loo(fit.idata, pointwise=True)
    bad = int((np.asarray(result.pareto_k) > HIGH_PARETO_K).sum())
    if bad:
        warnings.warn(_pareto_advice({"this fit": bad}), UserWarning, stacklevel=2)
    return result


def compare(fits: Mapping[str, Any]) -> pd.DataFrame:
    """Rank fits of the same rows by PSIS-LOO (arviz-stats ``compare``, stacking weights).

    Parameters
    ----------
    fits : mapping of str to Fit
        Two or more fits of the same response values (same rows in the same order).

    Returns
    -------
    pandas.DataFrame
        One row per fit, best first: ``rank``, ``elpd``, ``p``, ``elpd_diff``, ``weight``,
        ``se``, ``dse``, ``warning``, as arviz-stats gives them.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> sleep = lb.datasets.load("sleepstudy")
    >>> fits = {f: lb.LMM(f"Reaction ~ Days + {f}", sleep).fit(seed=1, progressbar=False)
    ...         for f in ("(1 | Subject)", "(Days | Subject)")}
    >>> lb.compare(fits).index[0]  # doctest: +SKIP
    '(Days | Subject)'
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise TypeError("compare needs a dict of two or more fits, e.g. lb.compare({'a': fit_a, 'b': fit_b})")
    for name, fit in fits.items():
        if not hasattr(fit, "idata"):
            raise TypeError(f"fits[{name!r}] is a {type(fit).__name__}, not a fit")
        _check_log_likelihood(f"fits[{name!r}]", fit)
    ys = [np.asarray(f.idata["observed_data"]["y"]) for f in fits.values()]
    if any(y.shape != ys[0].shape or not np.array_equal(y, ys[0]) for y in ys[1:]):
        raise ValueError("compare needs fits of the same response values, row for row; these fits saw different data")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Pareto.*")
        loos = {k: azs.loo(f.idata, pointwise=True) for k, f in fits.items()}  # once, for the table and the check
        table = azs.compare(loos, round_to="none")
    bad = {k: int((np.asarray(res.pareto_k) > HIGH_PARETO_K).sum()) for k, res in loos.items()}
    if any(bad.values()):
        warnings.warn(_pareto_advice(bad), UserWarning, stacklevel=2)
    return table


def r2_draws(fit: Any) -> xr.DataArray:
    """Marginal and conditional R² per draw, dims (chain, draw, r2) (module docstring).

    Works on anything with a ``posterior`` and a ``design`` in the package's layout (a
    :class:`~lmm_bayes.Fit`, or point estimates as a one-draw posterior).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> r2_draws(fit).dims
    ('chain', 'draw', 'r2')
    """
    refuse_structured(fit.design, "R²")
    post = fit.posterior
    design = fit.design
    X = design.X
    shape = (post.sizes["chain"], post.sizes["draw"])
    if X.shape[1]:
        beta = post[BETA].transpose("chain", "draw", ...).values
        fitted = np.einsum("np,cdp->cdn", X, beta)
        var_fixed = fitted.var(axis=-1, ddof=1)
    else:
        var_fixed = np.zeros(shape)
    var_random = np.zeros_like(var_fixed)
    for g in design.groups:
        G = covariance_values(post, g)  # (chain, draw, q, q)
        second = g.Z.T @ g.Z / design.n  # mean over rows of z z'
        var_random = var_random + np.einsum("cdij,ij->cd", G, second)
    s2 = residual_variance_draws(fit, {}, random=var_random)
    total = var_fixed + var_random + s2
    values = np.stack([var_fixed / total, (var_fixed + var_random) / total], axis=-1)
    return xr.DataArray(values, dims=("chain", "draw", "r2"),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values,
                                "r2": ["marginal", "conditional"]})


def r2(fit: Any, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """Marginal R² (fixed effects) and conditional R² (fixed and random), with posterior intervals.

    On the latent (link) scale for a generalized model (module docstring);
    ``df.attrs["scale"]`` says which scale.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     seed=1, progressbar=False)
    >>> table = fit.r2()
    >>> list(table.index), bool(table.loc["marginal", "mean"] < table.loc["conditional", "mean"])
    (['marginal', 'conditional'], True)
    """
    table = summarize_draws(r2_draws(fit), ci=ci, prob=prob)
    family = fit.design.family
    table.attrs["scale"] = (
        "response" if family.is_gaussian
        else f"latent ({family.link} link; Nakagawa, Johnson & Schielzeth 2017)"
    )
    return table

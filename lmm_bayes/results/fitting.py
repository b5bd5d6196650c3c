"""``fit_model``: sample a model's posterior and wrap it as a :class:`~lmm_bayes.results.fit.MixedModelFit`.

The one place a fit is made: the design is standardized (:mod:`lmm_bayes.inference.standardize`),
the method resolved for the working design (:func:`~lmm_bayes.inference.methods.registry.resolve_method`),
the posterior sampled and mapped back (:func:`~lmm_bayes.inference.sampling.sample_posterior`),
and the method's fallback acted on (:func:`~lmm_bayes.inference.methods.registry.fallback_after`:
``method="auto"`` samples the full model when the Laplace method's check fails).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

from lmm_bayes.errors import MethodNote
from lmm_bayes.inference.layout import KEEP_B
from lmm_bayes.inference.methods.registry import fallback_after, resolve_method
from lmm_bayes.inference.sampling import SamplerSettings, choose_adaptation, sample_posterior
from lmm_bayes.inference.standardize import WorkingScales, standardize
from lmm_bayes.results.fit import MixedModelFit
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.model import MixedModel

__all__ = ["fit_model"]


def fit_model(
    model: MixedModel,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "nutpie",
    method: str = "auto",
    target_accept: float = 0.9,
    seed: int | None = None,
    progressbar: bool = True,
    centered: bool = False,
    log_likelihood: bool | Literal["auto"] = "auto",
    keep_b: str = "all",
    adaptation: str = "auto",
    scales: WorkingScales | None = None,
) -> MixedModelFit:
    """Sample the posterior of an :class:`~lmm_bayes.LMM`.

    Parameters
    ----------
    model : MixedModel
        An :class:`~lmm_bayes.LMM` or :class:`~lmm_bayes.GLMM`.
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        The NUTS implementation; numpyro and blackjax need JAX.
    method : {"auto", "full", "collapsed", "gibbs", "laplace"}
        ``"full"`` samples every cluster's b; ``"collapsed"`` integrates b out of the
        Gaussian likelihood and draws it exactly afterwards (no funnel, cost per
        gradient independent of the rows), for nested and crossed factors (crossed ones
        with nutpie); ``"gibbs"`` is a collapsed Gibbs sampler (not NUTS; ``sampler`` and
        ``target_accept`` do not apply, ``tune`` sweeps are discarded) for random
        intercepts only, whose sweep is linear in rows and levels
        (:mod:`lmm_bayes.inference.methods.gibbs.sampler`); ``"auto"`` picks collapsed where it applies,
        and gibbs for crossed random intercepts with many levels (see
        :func:`~lmm_bayes.inference.methods.registry.resolve_method`). A GLMM
        (:class:`~lmm_bayes.GLMM`, any family but Gaussian) has ``"laplace"``: b
        integrated out per top-level cluster by Laplace's approximation, NUTS on β and the
        variance parameters, b drawn by importance resampling, and the approximation checked
        by the importance weights' Pareto k (:mod:`lmm_bayes.inference.methods.laplace.system`); for nested
        designs with a log or logit link ``"auto"`` takes it and keeps the result only when
        the check passes, else it samples the full model and says why (``"laplace"`` itself
        warns instead). Other GLMMs get the full method; ``"collapsed"`` and ``"gibbs"`` raise
        ``ValueError`` saying why.
    target_accept : float
        NUTS target acceptance rate.
    adaptation : {"auto", "diag", "low_rank"}
        nutpie's mass matrix: diagonal (Stan's) or diagonal plus the directions in which the
        posterior is correlated; ``"auto"`` takes the low-rank one for the full method (β
        trades off with the mean of the sampled b) and when two predictors correlate beyond
        0.7 after centring (:func:`~lmm_bayes.inference.sampling.choose_adaptation`).
    seed : int, optional
        Same seed, same draws.
    progressbar : bool
    centered : bool
        Centered parameterization of the full model (for teaching the funnel). For a GLMM,
        hierarchical centering (:mod:`lmm_bayes.inference.methods.full.centered`): every cluster's
        effects sampled around β (a nested cluster's around its parent's), which mixes far
        better when clusters hold much data (``benchmarks/RESULTS_glmm.md``).
    log_likelihood : bool or "auto"
        Store the pointwise log-likelihood (needed by LOO); "auto" stores it when
        chains × draws × rows is at most 4e7.
    keep_b : {"all", "float32", "none"}
        The draws of every cluster's b: all in float64 (default), all in float32 (half the
        memory, for 10^5 clusters), or none. Without them ``ranef``, ``coef``, ``coef_draws``,
        ``shrinkage``, predictions for fitted clusters, posterior predictive checks and the
        pointwise log-likelihood (LOO) are unavailable and say so; the fixed effects,
        variance components, ICC and predictions for new clusters work as usual.

    scales : WorkingScales, optional
        The working scale of another fit of the same formula (``other_standardization.scales``,
        :mod:`lmm_bayes.inference.standardize`) instead of this data's: refits on new
        responses (simulation-based calibration) then share one compiled graph. The
        posterior is the same either way (any fixed shift and scale is exact).

    Returns
    -------
    MixedModelFit
        The user's :class:`lmm_bayes.Fit` when called as ``model.fit(...)``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> fit = model.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> bool(9 < fit.fixef().loc["Days", "mean"] < 12)
    True
    """
    settings = SamplerSettings(
        sampler=sampler, draws=draws, tune=tune, chains=chains, target_accept=target_accept,
        seed=seed, progressbar=progressbar, adaptation=adaptation,
    )
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(f"log_likelihood must be True, False or 'auto', got {log_likelihood!r}")
    validate.check_choice(keep_b, KEEP_B, "keep_b")
    if keep_b == "none" and log_likelihood is True and model.design.groups:
        raise ValueError(
            "log_likelihood=True needs the draws of b, which keep_b='none' drops; "
            "use keep_b='all' (or 'float32'), or log_likelihood=False"
        )
    if log_likelihood is True and model.design.residual is not None and model.design.residual.ar:
        raise ValueError("log_likelihood=True: a model with ar= has no pointwise log-likelihood yet (the rows of "
                         "one cluster are not independent given b); use log_likelihood='auto' or False")
    # every method samples the standardized model and maps its draws back (inference/standardize.py)
    working = standardize(model.design, centered=model.priors.centered, scales=scales)
    strategy, note = resolve_method(working.design, method, centered=centered, sampler=settings.sampler)
    # the warnings point at the user's line: fit_model, LMM.fit, its keyword check (api.signatures), the caller
    if note:
        warnings.warn(note, MethodNote, stacklevel=4)

    def sample(strategy, note: str) -> MixedModelFit:
        idata = sample_posterior(
            model.design, model.priors, strategy,
            choose_adaptation(settings, working.max_predictor_correlation(), sampled_b=strategy.samples_b),
            log_likelihood=log_likelihood, keep_b=keep_b,
            attrs={"formula": model.formula, "method_note": note, **getattr(model, "glm_attrs", {}),
                   **getattr(model, "residual_attrs", {})},
            standardization=working,
        )
        return MixedModelFit(idata=idata, model=model)

    fit = sample(strategy, note)
    fallback = fallback_after(strategy, method)  # the Laplace method's failed check: decided in inference.methods
    if fallback is not None:
        warnings.warn(fallback.note, fallback.warning, stacklevel=4)
        if fallback.method is not None:
            fit = sample(fallback.method, fallback.note)
    fit.warn_if_unreliable(stacklevel=5)
    return fit

"""Shrinkage: how far each cluster's partial-pooling estimate moved from its own estimate.

The no-pooling value is the cluster's own least-squares estimate (its own GLM's maximum
likelihood estimate for a generalized model, :mod:`lmm_bayes.results.glm_pooling`), the
population value the fixed effect; the shrinkage factor is 0 (not moved) to 1 (moved all
the way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import lazy_loader as lazy
import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import BETA, SIGMA, b_draws, covariance_values, line_draws, linear_predictor
from lmm_bayes.results.estimates import (
    ESTIMATE_COLUMNS,
    POOLINGS,
    estimates_table,
    identified,
    mean_interval,
    mean_mcse,
    normal_equations,
    posterior_shrinkage,
)
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.glm_pooling import cluster_glm, glm_model_shrinkage, no_finite_estimate
from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, PosteriorTable, check_interval
from lmm_bayes.spec import validate
from lmm_bayes.spec.lineage import line_group, lineage

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
stats = lazy.load("scipy.stats", suppress_warning=True)

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit
    from lmm_bayes.spec.design import Design

# ShrinkageTable, a DataFrame, stays out of __all__ (its docs page would list every pandas method)
__all__ = ["ESTIMATE_COLUMNS", "POOLINGS", "glm_posterior_shrinkage", "link_scale", "shrinkage"]


# ====================================================================== shrinkage for one fit


def shrinkage(fit: Fit, group: str, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """No-, partial- and complete-pooling estimates of every cluster's effects, and the shrinkage.

    * **no pooling**: the cluster's own least-squares estimate of its effects,
      with everything else in the model (fixed effects that do not vary by
      ``group``, other grouping factors) held at the fit's posterior means.
      Where the cluster's own data cannot identify an effect (one observation
      for a slope; a slope whose variable never changes in the cluster) the
      estimate is NaN and ``note`` says why. Its interval is the normal
      interval with the fit's residual SD.
    * **partial pooling**: the fit's posterior of β + b (mean and HDI).
    * **complete pooling**: ordinary least squares of the fixed part on all rows
      ignoring the clusters (t interval); an effect without a fixed part is 0.

    ``shrinkage`` is the model's own shrinkage factor B_j
    (:func:`~lmm_bayes.results.estimates.model_shrinkage`): σ² / (σ² + n_j τ²) for a
    random intercept, averaged over the posterior; 0 keeps the cluster's own
    estimate, 1 pulls it all the way to the population value. It depends only on the
    cluster's size and the variance ratio, so it is smooth and always in [0, 1].
    ``fraction_moved`` is the empirical ratio ``(no_pooling − partial_pooling) /
    (no_pooling − population)``: how far the estimate actually moved, which is noisy
    and unbounded when a cluster's own estimate lies near the population value (a
    secondary column, for teaching).

    **A nested factor** (``subject:neuron`` in ``(1 + x | subject) + (1 | subject:neuron)``):
    every row is the cluster's whole line (β + its subject's b + its own b, over its own
    effects and its subject's; :func:`~lmm_bayes.spec.lineage.line_group`), and its target,
    in ``population``, is its parent's line (β + its subject's b, posterior mean), the line
    partial pooling pulls it toward; the ``target`` column says which (``"population"`` or
    ``"subject line"``). No pooling is the cluster's own least squares of its whole line;
    an effect the cluster has none of its own (a neuron's slope) has ``shrinkage`` 1, pulled
    all the way to its parent's. ``fraction_moved`` lies in [0, 1]; where the estimate moved
    away from or past its target (correlated effects, other factors), it is NaN and the note
    says so.

    **A generalized model** (:class:`~lmm_bayes.GLMM`): every column is on the link scale
    (log rate, log odds, probit; ``table.attrs["scale"]`` says which). No pooling is the
    cluster's own GLM, fitted by maximum likelihood with the same family and everything
    else held at the posterior means (offset included), with a Wald interval; a cluster
    whose own likelihood has no finite maximum (all counts 0, all choices 0 or all 1,
    separation) gets NaN and a note saying why. Complete pooling is the GLM of the fixed
    part without groups (Wald interval). ``shrinkage`` is the model's own factor with the
    Laplace covariance of b_j given y and the hyperparameters,
    ``B_j = diag((Z_jᵀ W_j Z_j + G⁻¹)⁻¹ G⁻¹)``, W the family's working weights at each
    draw's fitted linear predictor (:func:`~lmm_bayes.results.glm_pooling.glm_model_shrinkage`):
    for a random intercept ``1 / (1 + τ² Σ_i W_ij)``, the Gaussian factor with the
    cluster's information Σ_i W_ij in place of n_j / σ². It is approximate (the conditional
    posterior of b_j is not normal) and on the latent scale: a cluster of rare events
    carries little information and is shrunk hard, whatever its number of rows.

    Parameters
    ----------
    fit : Fit
    group : str
        The grouping factor, e.g. ``"Subject"``.
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``level``, ``effect``); columns :data:`ESTIMATE_COLUMNS`:
        ``n_obs``, ``no_pooling``, ``no_pooling_low``, ``no_pooling_high``, the
        same for ``partial_pooling`` and ``complete_pooling``, ``population``, ``target``,
        ``shrinkage``, ``fraction_moved``, ``note``.

    Raises
    ------
    TypeError
        ``fit`` is not a Fit, or ``group`` is not a string.
    ValueError
        ``group`` is not a grouping factor of the model.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> table = fit.shrinkage("Subject")
    >>> int(table.loc[("308", "Intercept"), "n_obs"])
    10
    >>> bool(0 < table["shrinkage"].median() < 1)
    True
    """
    check_fit(fit)
    ci, prob = check_interval(ci, prob)
    design = fit.design
    g = validate.check_group(design, group)
    if design.reduction is not None:
        raise ValueError(
            f"shrinkage needs every cluster's own least-squares estimate from all its rows; this model was "
            f"built from {design.reduction.source} and keeps a sample of {design.n:,} rows. Use fit.ranef({group!r}) "
            "for the partial-pooling estimates, or fit the data in memory"
        )
    if not design.family.is_gaussian:
        return ShrinkageTable.shown(_glm_shrinkage(fit, g, ci=ci, prob=prob), prob)
    post = fit.posterior
    line, target, target_label = _line_and_target(fit, g)

    # the cluster's own least squares of its whole line, everything else held at the posterior means
    r = design.y - _held_fixed(fit, line)
    A = normal_equations(line)
    c = np.zeros((line.n_levels, line.n_effects))
    np.add.at(c, line.codes, line.Z * r[:, None])
    Ainv, ok, notes = identified(line, A)
    est = np.einsum("jkl,jl->jk", Ainv, c)
    sigma = float(post[SIGMA].mean())
    z = stats.norm.ppf(0.5 + prob / 2)
    se = sigma * np.sqrt(np.clip(np.diagonal(Ainv, axis1=1, axis2=2), 0, None))
    est = np.where(ok, est, np.nan)
    no = (est, np.where(ok, est - z * se, np.nan), np.where(ok, est + z * se, np.nan))

    lines = line_draws(post, design, g, needed_by="shrinkage")
    partial = mean_interval(lines, ci=ci, prob=prob)
    complete = _ols_coefficients(design, line.effects, prob)
    return ShrinkageTable.shown(estimates_table(
        line,
        no=no,
        partial=partial,
        complete=complete,
        population=target,
        factor=_on_line(line, g, posterior_shrinkage(post, g, normal_equations(g))),
        notes=notes,
        intervals=(
            f"{100 * prob:.4g}%: no pooling normal interval with the fitted residual SD; partial pooling {ci.upper()}; "
            "complete pooling OLS t interval"
        ),
        target=target_label,
        mcse=mean_mcse(lines),
    ), prob)


class ShrinkageTable(PosteriorTable):
    """:func:`shrinkage`'s table, shown rounded by each row's partial-pooling posterior SD.

    The table holds no SD column (it would be a fifteenth), so the SD is its partial-pooling
    interval's width over 2 z (the normal quantile of the interval's probability).
    """

    _metadata: ClassVar[list[str]] = ["interval_z"]  # carried to tables derived from it
    interval_z: float = 2.0

    @classmethod
    def shown(cls, table: pd.DataFrame, prob: float) -> ShrinkageTable:
        out = cls.of(table)
        out.interval_z = float(stats.norm.ppf(0.5 + prob / 2))
        return out

    def display_sd(self) -> np.ndarray | None:
        if not {"partial_pooling_low", "partial_pooling_high"} <= set(self.columns):
            return None  # a selection without the interval: each column by its own scale
        width = self["partial_pooling_high"] - self["partial_pooling_low"]
        return (width / (2 * self.interval_z)).to_numpy(dtype=float)

    def display_estimates(self) -> tuple[str, ...]:
        return (*(f"{p}{end}" for p in POOLINGS for end in ("", "_low", "_high")), "population")


def _line_and_target(fit: Fit, g) -> tuple:
    """``g`` over its whole line's effects, the line each cluster is pulled toward (posterior mean), and its name.

    A factor nested in nothing is pulled toward the population (β); a nested one toward its
    parent's line (β + the b of the clusters it lies in): ``"subject line"``.
    """
    design = fit.design
    line = line_group(design, g)
    parents = lineage(design, g)
    target = line_draws(fit.posterior, design, g, own=False, needed_by="shrinkage").mean(("chain", "draw")).values
    return line, target, f"{parents[0][0].name} line" if parents else "population"


def _on_line(line, g, factor: np.ndarray) -> np.ndarray:
    """The model's shrinkage factor of ``g``'s own effects, on its whole line: 1 for an effect it has none of.

    A neuron without a slope of its own takes its subject's: pulled all the way to its parent's line.
    """
    out = np.ones((line.n_levels, line.n_effects))
    for k, e in enumerate(g.effects):
        out[:, line.effects.index(e)] = factor[:, k]
    return out


def _ols_coefficients(design: Design, effects: Sequence[str], prob: float):
    """OLS of y on X ignoring the clusters: estimate and t interval per effect (0 if no fixed part)."""
    X, y = design.X, design.y
    q = len(effects)
    m, lo, hi = np.zeros(q), np.zeros(q), np.zeros(q)
    if X.shape[1] == 0:
        return m, lo, hi
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = X.shape[0] - X.shape[1]
    if dof > 0:
        s2 = float(np.sum((y - X @ coef) ** 2) / dof)
        se = np.sqrt(s2 * np.diag(np.linalg.pinv(X.T @ X)))
        t = stats.t.ppf(0.5 + prob / 2, dof)
    else:
        se, t = np.full(X.shape[1], np.nan), np.nan
    for k, e in enumerate(effects):
        if e in design.X_columns:
            j = design.X_columns.index(e)
            m[k], lo[k], hi[k] = coef[j], coef[j] - t * se[j], coef[j] + t * se[j]
    return m, lo, hi


def _held_fixed(fit: Fit, line) -> np.ndarray:
    """Per row, the linear predictor without the cluster's whole ``line``, at the posterior means (offset included).

    Left out: the fixed effects of the line's effects, the cluster's own b and the b of the
    clusters it lies in; kept: the other fixed effects and every other factor's b.
    """
    design, post = fit.design, fit.posterior
    beta = post[BETA].mean(("chain", "draw")).values
    shared = [k for k, c in enumerate(design.X_columns) if c not in line.effects]
    inside = {line.name, *(a.name for a, _ in lineage(design, design.group(line.name)))}
    others = [(h.Z, h.codes, b_draws(post, h, "shrinkage").mean(("chain", "draw")).values)
              for h in design.groups if h.name not in inside]
    offset = design.offset
    held = linear_predictor(design.X[:, shared], beta[shared], others)
    return held if offset is None else held + offset


def _glm_shrinkage(fit: Fit, g, *, ci: str, prob: float) -> pd.DataFrame:
    """:func:`shrinkage` of a generalized model (its docstring), on the link scale."""
    design, post = fit.design, fit.posterior
    family = design.family
    trials = design.trials
    aux_draws = post[family.aux].transpose("chain", "draw").values.reshape(-1) if family.aux else None
    aux = None if aux_draws is None else float(aux_draws.mean())
    z = stats.norm.ppf(0.5 + prob / 2)
    line, target, target_label = _line_and_target(fit, g)

    A = normal_equations(line)
    _, ok, notes = identified(line, A)
    theta, cov, converged = cluster_glm(family, design.y, line.Z, line.codes, line.n_levels,
                                        offset=_held_fixed(fit, line), trials=trials, aux=aux)
    empty = no_finite_estimate(family, design.y, line.codes, line.n_levels, trials)
    for j in np.flatnonzero(~converged):
        why = empty[j] or "the cluster's own likelihood has no finite maximum (separation): no estimate"
        notes[j] = [n or why for n in notes[j]]
    good = ok & converged[:, None]
    se = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    no = (np.where(good, theta, np.nan), np.where(good, theta - z * se, np.nan), np.where(good, theta + z * se, np.nan))

    offset = design.offset
    X = design.X
    complete = [np.zeros(line.n_effects) for _ in range(3)]
    if X.shape[1]:
        pooled, pcov, pok = cluster_glm(family, design.y, X, np.zeros(design.n, dtype=np.int64), 1,
                                        offset=np.zeros(design.n) if offset is None else offset, trials=trials, aux=aux)
    for k, e in enumerate(line.effects):
        if e in design.X_columns and pok[0]:
            i = design.X_columns.index(e)
            half = z * np.sqrt(pcov[0, i, i])
            complete[0][k], complete[1][k], complete[2][k] = pooled[0, i], pooled[0, i] - half, pooled[0, i] + half

    factor = _on_line(line, g, glm_posterior_shrinkage(fit, g))
    table = estimates_table(
        line,
        no=no,
        partial=mean_interval(lines := line_draws(post, design, g, needed_by="shrinkage"), ci=ci, prob=prob),
        complete=tuple(complete),
        population=target,
        factor=factor,
        target=target_label,
        mcse=mean_mcse(lines),
        notes=notes,
        intervals=(
            f"{100 * prob:.4g}%: no pooling Wald interval of each cluster's own GLM; partial pooling {ci.upper()}; "
            "complete pooling Wald interval of the GLM without groups"
        ),
    )
    table.attrs["scale"] = link_scale(family)
    return table


def glm_posterior_shrinkage(fit: Fit, g) -> np.ndarray:
    """A generalized model's shrinkage factor of factor ``g``'s clusters (levels, effects), from its posterior.

    :func:`~lmm_bayes.results.glm_pooling.glm_model_shrinkage` at every draw's fitted
    linear predictor (``fit.predict(kind="link")``), G and extra parameter.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": np.repeat(np.arange(10), 8)})
    >>> df["y"] = rng.poisson(np.exp(1 + rng.normal(0, 0.5, 10)[df["g"]]))
    >>> fit = lb.GLMM("y ~ 1 + (1 | g)", df, family="poisson").fit(
    ...     draws=200, tune=200, chains=2, seed=1, progressbar=False)
    >>> B = glm_posterior_shrinkage(fit, fit.design.group("g"))
    >>> B.shape, bool(((0 < B) & (B < 1)).all())
    ((10, 1), True)
    """
    design, post = fit.design, fit.posterior
    family = design.family
    aux = post[family.aux].transpose("chain", "draw").values.reshape(-1) if family.aux else None
    eta = predict(fit, kind="link").transpose("chain", "draw", "obs").values.reshape(-1, design.n)
    G = covariance_values(post, g).reshape(-1, g.n_effects, g.n_effects)
    return glm_model_shrinkage(family, design.y, eta, g.Z, g.codes, g.n_levels, G,
                               trials=design.trials, aux=aux)


def link_scale(family) -> str:
    """What a generalized model's coefficients are, for labels: ``"link scale: log rate"``, ...

    Examples
    --------
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> link_scale(get_family("binomial", "probit"))
    'link scale: probit'
    """
    return family.link_scale

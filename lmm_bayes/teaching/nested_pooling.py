"""Pooling on a hierarchy: neurons in subjects compared with no, within, partial and complete pooling.

For a nested factor (``subject:neuron`` in ``y ~ x + (1 + x | subject) + (1 | subject:neuron)``)
:func:`lmm_bayes.compare_pooling` fits four models on the same rows:

* **no pooling**: every neuron its own regression of its whole line (its own effects and
  its subject's: here intercept and slope), wide independent priors;
* **within pooling**: every subject its own line (wide priors, subjects not pooled), the
  neurons pooled around their subject's line with the model's G;
* **partial pooling**: the hierarchy itself, every level pooled;
* **complete pooling**: the fixed part only.

A neuron's estimate under each is its whole line (:func:`~lmm_bayes.spec.lineage.line_group`);
partial pooling pulls it toward its subject's line (the ``target`` column), and that line
toward the population's (β, ``population``). The model's shrinkage factor B_j
(:func:`~lmm_bayes.results.estimates.model_shrinkage`) is given for the neurons and, in
``shrinkage_by_level``, summarised for every level. All four are compared by PSIS-LOO on the
same observations (sub-sampled for large data, :data:`LOO_SUBSAMPLE_ROWS`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import (
    BETA,
    fitted_linear_predictor,
    line_draws,
    pointwise_log_likelihood,
    population_effects,
)
from lmm_bayes.inference.sampling import SamplerSettings, log_likelihood_draws
from lmm_bayes.results.estimates import (
    bounded_fraction,
    identified,
    mean_interval,
    mean_mcse,
    normal_equations,
    posterior_shrinkage,
    shrinkage_factor,
)
from lmm_bayes.results.fitting import fit_model
from lmm_bayes.results.pooling_fit import check_separable
from lmm_bayes.results.shrinkage import glm_posterior_shrinkage
from lmm_bayes.results.summary import interval_columns, summarize_draws
from lmm_bayes.spec.lineage import line_group, lineage
from lmm_bayes.teaching.nested_pooling_plots import plot_nested_arrows
from lmm_bayes.teaching.pooling_models import fit_complete_pooling, fit_no_pooling, fit_within_pooling

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel

__all__ = [
    "LOO_SUBSAMPLE_ROWS",
    "NESTED_POOLINGS",
    "NestedPoolingComparison",
    "check_nested",
    "loo_table",
    "nested_pooling_comparison",
    "partial_pooling_fit",
    "progress",
]

#: The four poolings of a nested factor, in the order of the estimates' columns.
NESTED_POOLINGS = ("no_pooling", "within_pooling", "partial_pooling", "complete_pooling")
#: above this many observations PSIS-LOO is computed on a random sub-sample of
#: :data:`LOO_SUBSAMPLE_SIZE` of them (ArviZ's ``loo_subsample``, its sub-sampling SE reported):
#: ArviZ smooths each observation's importance weights in turn, about 0.5 ms each
LOO_SUBSAMPLE_ROWS = 10_000
LOO_SUBSAMPLE_SIZE = 2_000


def progress(settings: SamplerSettings, step: int, total: int, what: str) -> None:
    """One line on stderr naming the fit that starts (when ``settings.progressbar``)."""
    if settings.progressbar:
        print(f"compare_pooling: fit {step} of {total}, {what} ...", file=sys.stderr, flush=True)


def partial_pooling_fit(model: MixedModel, fit_kwargs: Mapping[str, Any]) -> Any:
    """The mixed model's fit, with a pointwise log-likelihood for LOO.

    Unless ``log_likelihood=True`` is asked for (every draw), a fit too large to keep one for
    every draw (more than :data:`~lmm_bayes.inference.sampling.MAX_LOGLIK_VALUES` values) gets it
    on every k-th draw of each chain (:func:`~lmm_bayes.inference.sampling.log_likelihood_draws`).
    """
    import xarray as xr

    fit = fit_model(model, **{"log_likelihood": "auto", **fit_kwargs})
    if "log_likelihood" not in fit.idata.children:
        design = fit.design
        post = log_likelihood_draws(fit.posterior, design.n)
        ll = pointwise_log_likelihood(design.y, post, lambda one: fitted_linear_predictor(design, one), design)
        fit.idata["log_likelihood"] = xr.DataTree(ll.to_dataset())
    return fit


def check_nested(design: Design, g: GroupDesign) -> None:
    """Refuse a formula whose other grouping factors are not all factors ``g`` is nested in.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.calibration.simulate import simulate_hierarchy
    >>> df = simulate_hierarchy(3, 2, 4, beta=[1.0, 0.5], G=[[0.25, 0], [0, 0.09]], sigma_neuron=0.4,
    ...                         sigma=1.0, seed=1).data
    >>> d = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df).design
    >>> check_nested(d, d.group("subject"))
    Traceback (most recent call last):
    ...
    ValueError: compare_pooling compares a factor with the factors it lies in; 'subject:neuron' lies in 'subject', not the other way round: give group='subject:neuron'
    """
    above = {a.name for a, _ in lineage(design, g)}
    others = [h for h in design.groups if h.name != g.name and h.name not in above]
    if not others:
        return
    inside = [h.name for h in others if g.name in {a.name for a, _ in lineage(design, h)}]
    if inside:
        raise ValueError(
            f"compare_pooling compares a factor with the factors it lies in; {inside[0]!r} lies in {g.name!r}, "
            f"not the other way round: give group={inside[0]!r}"
        )
    raise ValueError(
        f"compare_pooling compares a factor with the factors it is nested in; {[h.name for h in others]} "
        f"{'is' if len(others) == 1 else 'are'} not nested around {g.name!r} (crossed factors). Compare the "
        "poolings of one factor at a time, with a formula holding only that factor and those it lies in"
    )


@dataclass(frozen=True, eq=False)
class NestedPoolingComparison:
    """No, within, partial and complete pooling of a nested factor, side by side (:func:`lmm_bayes.compare_pooling`).

    Attributes
    ----------
    loo : pandas.DataFrame
        ArviZ's comparison table (PSIS-LOO, sub-sampled above :data:`LOO_SUBSAMPLE_ROWS`
        observations: then with a ``subsampling_dse`` column), best first.
    estimates : pandas.DataFrame
        Indexed by (``level``, ``effect``) over the clusters of ``group`` and the effects of
        their whole line; columns ``n_obs``, ``parent``, each pooling's mean, ``_low`` and
        ``_high`` (:data:`NESTED_POOLINGS`), ``target`` (the partial-pooling parent line the
        cluster is pulled toward), ``population`` (β), ``shrinkage`` (the model's B_j; 1 for
        an effect the cluster has none of its own), ``fraction_moved`` (from no pooling to
        partial pooling, as a fraction of the way to the target; NaN with a note outside
        [0, 1]) and ``note``.
    shrinkage_by_level : pandas.DataFrame
        The model's B_j summarised over the clusters of every level (``factor``, ``effect``):
        ``clusters``, ``mean``, ``min``, ``median``, ``max``.
    fits : mapping
        One fit per pooling (:data:`NESTED_POOLINGS`).
    fixed_effect_se : pandas.DataFrame
        Posterior SD of every fixed effect under complete and partial pooling, and their ratio.
    group, parent, formula : str
    """

    loo: pd.DataFrame
    estimates: pd.DataFrame
    shrinkage_by_level: pd.DataFrame
    fits: Mapping[str, Any]
    fixed_effect_se: pd.DataFrame
    group: str
    parent: str
    formula: str

    def plot(self, effect: str | None = None, **kwargs: Any) -> Figure:
        """Arrows from no-pooling to partial-pooling estimates, level by level, coloured by parent.

        Left: every cluster (neuron), from its own regression to its partial-pooling
        estimate, beside its parent's line (the target). Right: every parent (subject), from
        its own line (within pooling: parents not pooled) to its partial-pooling line,
        beside the population's. A generalized model's are on the link scale.

        Parameters
        ----------
        effect : str, optional
            The effect to draw (default: the first of the clusters' whole line).
        **kwargs
            ``figsize``.
        """
        return plot_nested_arrows(self.estimates, self._parents(), effect=effect, **kwargs)

    def _parents(self) -> pd.DataFrame:
        """Each parent's own line (within pooling) and its partial-pooling line, per effect."""
        within, partial = self.fits["within_pooling"], self.fits["partial_pooling"]
        design = partial.design
        parent = design.group(self.parent)
        line = line_group(design, parent)
        own = within.posterior[f"{self.parent}_coef"].mean(("chain", "draw")).values
        pooled = line_draws(partial.posterior, design, parent).mean(("chain", "draw")).values
        pop = population_effects(partial.posterior, line).mean(("chain", "draw")).values
        index = pd.MultiIndex.from_product([list(parent.levels), list(line.effects)], names=["level", "effect"])
        table = pd.DataFrame({"no_pooling": own.ravel(), "partial_pooling": pooled.ravel(),
                              "population": np.tile(pop, parent.n_levels)}, index=index)
        table.attrs.update(self.estimates.attrs)
        return table

    def __repr__(self) -> str:
        cols = [c for c in ("rank", "elpd", "se", "elpd_diff", "dse", "subsampling_dse", "weight") if c in self.loo]
        n = self.estimates.index.get_level_values("level").nunique()
        return "\n".join([
            f"NestedPoolingComparison: {self.formula} ({n} clusters of {self.group!r} in {self.parent!r})",
            "", "PSIS-LOO (best first):", self.loo[cols].to_string(float_format=lambda v: f"{v:.4g}"),
            "", "The model's shrinkage factor B_j by level:",
            self.shrinkage_by_level.to_string(float_format=lambda v: f"{v:.3g}"),
            "", "Posterior SD of the fixed effects:",
            self.fixed_effect_se.to_string(float_format=lambda v: f"{v:.4g}"),
            "", "Per-cluster estimates: .estimates; picture: .plot()",
        ])


def nested_pooling_comparison(
    model: MixedModel, g: GroupDesign, *, ci: str, prob: float, no_pooling_scale: float,
    settings: SamplerSettings, fit_kwargs: Mapping[str, Any],
) -> NestedPoolingComparison:
    """The four fits of a nested factor, their LOO comparison and the per-cluster table (see the module)."""
    design = model.design
    check_nested(design, g)
    line = line_group(design, g)
    check_separable(design, line)
    parent = lineage(design, g)[0][0]
    steps = [
        ("partial_pooling", "partial pooling (every level)",
         lambda: partial_pooling_fit(model, fit_kwargs)),
        ("within_pooling", f"{g.name} pooled within each {parent.name}, {parent.name}s not pooled",
         lambda: fit_within_pooling(model, g.name, scale=no_pooling_scale, settings=settings)),
        ("no_pooling", f"no pooling (each {g.name} its own regression)",
         lambda: fit_no_pooling(model, g.name, scale=no_pooling_scale, settings=settings, whole_line=True)),
        ("complete_pooling", "complete pooling (the fixed part only)",
         lambda: fit_complete_pooling(model, g.name, settings=settings)),
    ]
    fits = {}
    for step, (name, what, run) in enumerate(steps, 1):
        progress(settings, step, len(steps), what)
        fits[name] = run()
    fits = {name: fits[name] for name in NESTED_POOLINGS}
    partial = fits["partial_pooling"]
    estimates = _estimates(design, g, line, fits, ci=ci, prob=prob)
    sd_cp = fits["complete_pooling"].posterior[BETA].std(("chain", "draw"), ddof=1).values
    sd_pp = partial.posterior[BETA].std(("chain", "draw"), ddof=1).values
    fixed_se = pd.DataFrame({"complete_pooling": sd_cp, "partial_pooling": sd_pp, "ratio": sd_pp / sd_cp},
                            index=pd.Index(list(design.X_columns), name="coef"))
    return NestedPoolingComparison(
        loo=loo_table(fits, n_obs=design.n, seed=settings.seed), estimates=estimates,
        shrinkage_by_level=_by_level(partial, [g, *(a for a, _ in lineage(design, g))]),
        fits=MappingProxyType(fits), fixed_effect_se=fixed_se, group=g.name, parent=parent.name,
        formula=model.formula,
    )


def _model_factor(fit: Any, h: GroupDesign) -> np.ndarray:
    """The model's shrinkage factor B_j of factor ``h``'s clusters (levels, effects)."""
    if fit.design.family.is_gaussian:
        return posterior_shrinkage(fit.posterior, h, normal_equations(h))
    return glm_posterior_shrinkage(fit, h)


def _estimates(design: Design, g: GroupDesign, line: GroupDesign, fits: Mapping[str, Any], *,
               ci: str, prob: float) -> pd.DataFrame:
    """The per-cluster table of :class:`NestedPoolingComparison` (its ``estimates``)."""
    partial = fits["partial_pooling"]
    J, q = line.n_levels, line.n_effects
    _, ok, notes = identified(line, normal_equations(line))
    parent, codes = lineage(design, g)[0]
    cols: dict[str, Any] = {"n_obs": np.repeat(g.counts(), q),
                            "parent": np.repeat(np.asarray(parent.levels, dtype=object)[codes], q)}
    draws = {
        "no_pooling": fits["no_pooling"].coef_draws(g.name),
        "within_pooling": fits["within_pooling"].coef_draws(g.name),
        "partial_pooling": partial.coef_draws(g.name, include_parents=True),
    }
    # partial pooling: summarized as fit.coef(..., include_parents=True) summarizes these same draws,
    # so the two agree to the last digit (without drawing the lines a second time)
    coef = summarize_draws(draws["partial_pooling"], ci=ci, prob=prob)
    for name in NESTED_POOLINGS:
        if name == "complete_pooling":
            m, lo, hi = mean_interval(population_effects(fits[name].posterior, line), ci=ci, prob=prob)
        elif name == "partial_pooling":
            m, lo, hi = (coef[c].to_numpy().reshape(J, q) for c in ("mean", *interval_columns(ci)))
        else:
            m, lo, hi = mean_interval(draws[name], ci=ci, prob=prob)
        keep = ok if name == "no_pooling" else True
        for suffix, v in (("", m), ("_low", lo), ("_high", hi)):
            cols[f"{name}{suffix}"] = np.where(keep, np.broadcast_to(v, (J, q)), np.nan).ravel()
    target = line_draws(partial.posterior, design, g, own=False).mean(("chain", "draw")).values
    cols["target"] = target.ravel()
    cols["population"] = np.tile(population_effects(partial.posterior, line).mean(("chain", "draw")).values, J)
    factor = np.ones((J, q))
    own = _model_factor(partial, g)
    for k, e in enumerate(g.effects):
        factor[:, line.effects.index(e)] = own[:, k]
    cols["shrinkage"] = factor.ravel()
    moved = shrinkage_factor(cols["no_pooling"], cols["partial_pooling"], cols["target"])
    mcse = np.hypot(mean_mcse(draws["no_pooling"]), mean_mcse(draws["partial_pooling"])).ravel()
    cols["fraction_moved"], cols["note"] = bounded_fraction(
        moved, notes.ravel().astype(object), f"{parent.name} line",
        slack=3 * mcse / np.abs(cols["no_pooling"] - cols["target"]))
    index = pd.MultiIndex.from_product([list(g.levels), list(line.effects)], names=["level", "effect"])
    table = pd.DataFrame(cols, index=index)
    table.attrs.update({"group": g.name, "parent": parent.name, "target": f"{parent.name} line",
                        "intervals": f"{ci.upper()} {100 * prob:.4g}% of each pooling's posterior"})
    if not design.family.is_gaussian:
        table.attrs["scale"] = design.family.link_scale
    return table


def _by_level(fit: Any, factors: list[GroupDesign]) -> pd.DataFrame:
    """The model's B_j of every level's clusters, summarised per (factor, effect)."""
    rows = []
    for h in factors:
        B = _model_factor(fit, h)
        for k, e in enumerate(h.effects):
            b = B[:, k]
            rows.append({"factor": h.name, "effect": e, "clusters": h.n_levels, "mean": b.mean(),
                         "min": b.min(), "median": float(np.median(b)), "max": b.max()})
    return pd.DataFrame(rows).set_index(["factor", "effect"])


def loo_table(fits: Mapping[str, Any], *, n_obs: int = 0, seed: Any = None) -> pd.DataFrame:
    """ArviZ's compare table; Pareto-k warnings gathered into one that names the poolings.

    Above :data:`LOO_SUBSAMPLE_ROWS` observations each fit's PSIS-LOO is estimated from
    :data:`LOO_SUBSAMPLE_SIZE` observations drawn at random (the same ones for every fit,
    ArviZ's ``loo_subsample`` with its ``lpd`` approximation), and the table has a
    ``subsampling_dse`` column (and no stacking weights: NaN). ``n_obs`` is the number of
    observations; ``seed`` draws the sub-sample.
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    n = n_obs
    sub = n > LOO_SUBSAMPLE_ROWS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if sub:
            at = int(np.random.default_rng(seed if isinstance(seed, int) else 0).integers(2**31))
            elpds = {k: azs.loo_subsample(f.idata, observations=LOO_SUBSAMPLE_SIZE, seed=at) for k, f in fits.items()}
        else:
            elpds = {k: f.idata for k, f in fits.items()}
        table = azs.compare(elpds, round_to="none")
    pareto = [str(w.message) for w in caught if "Pareto" in str(w.message)]
    for w in caught:
        if "Pareto" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if pareto:
        flagged = [
            k for k in table.index if isinstance(table.loc[k, "diag_elpd"], str) and table.loc[k, "diag_elpd"]
        ]
        warnings.warn(
            f"PSIS-LOO: some observations have a high Pareto k ({', '.join(flagged) or 'see .loo'}), so "
            "their elpd estimates are less reliable. Such observations strongly influence their own "
            "cluster's estimate, typical of small clusters without pooling; see the diag_elpd column of .loo",
            UserWarning,
            stacklevel=4,
        )
    if sub:
        table.attrs["loo"] = f"PSIS-LOO on {LOO_SUBSAMPLE_SIZE:,} of {n:,} observations (loo_subsample)"
        table["weight"] = np.nan  # ArviZ gives every model the same weight from sub-sampled elpds: not a weight
    return table

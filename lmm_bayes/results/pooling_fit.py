"""``PoolingModelFit``: a no- or complete-pooling fit, read like a :class:`~lmm_bayes.Fit`.

:func:`lmm_bayes.compare_pooling` makes them (the graphs and the sampling are in
:mod:`lmm_bayes.teaching.pooling_models`); they live here, with the other kinds of
fitted model, so that :func:`lmm_bayes.load` can rebuild a saved one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from lmm_bayes.inference.layout import BETA, SIGMA, coef_name, population_effects
from lmm_bayes.results.base import FittedModel
from lmm_bayes.results.estimates import normal_equations
from lmm_bayes.spec.lineage import line_group, lineage

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel as LMM

__all__ = ["POOLING_KINDS", "PoolingModelFit", "aliased_with_clusters", "check_separable", "shared_columns"]

#: The poolings a :class:`PoolingModelFit` can be.
POOLING_KINDS = ("no_pooling", "within_pooling", "complete_pooling")


def shared_columns(design: Design, g: GroupDesign) -> list[int]:
    """Positions of the fixed columns a no-pooling fit keeps shared (those that are not ``g``'s effects).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("log_radon ~ floor + (1 | county)", lb.datasets.load("radon")).design
    >>> [d.X_columns[k] for k in shared_columns(d, d.group("county"))]
    ['floor']
    """
    return [k for k, c in enumerate(design.X_columns) if c not in g.effects]


# ====================================================================== what no pooling can estimate


def aliased_with_clusters(design: Design, g: GroupDesign) -> list[str]:
    """Shared fixed columns a no-pooling model cannot tell apart from the clusters' own effects.

    A column is aliased when, after projecting out every cluster's own effects
    within the cluster, nothing of it (or of it beyond the columns before it) is left.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("log_radon ~ floor + log_uranium + (1 | county)", lb.datasets.load("radon")).design
    >>> aliased_with_clusters(d, d.group("county"))
    ['log_uranium']
    """
    shared = shared_columns(design, g)
    if not shared:
        return []
    Xs = design.X[:, shared]
    Ainv = np.linalg.pinv(normal_equations(g), rcond=1e-10, hermitian=True)
    C = np.zeros((g.n_levels, g.n_effects, len(shared)))
    np.add.at(C, g.codes, g.Z[:, :, None] * Xs[:, None, :])
    fitted = np.einsum("nk,nkl,nlp->np", g.Z, Ainv[g.codes], C[g.codes])
    R = Xs - fitted
    scale = np.maximum(np.linalg.norm(Xs, axis=0), 1.0)
    aliased, kept = [], []
    for k in range(len(shared)):
        trial = R[:, kept + [k]] / scale[kept + [k]]
        if np.linalg.matrix_rank(trial, tol=1e-8 * np.sqrt(design.n)) == len(kept):
            aliased.append(design.X_columns[shared[k]])
        else:
            kept.append(k)
    return aliased


def check_separable(design: Design, g: GroupDesign) -> None:
    """Raise ``ValueError`` when a fixed effect is a cluster-level predictor (:func:`aliased_with_clusters`)."""
    aliased = aliased_with_clusters(design, g)
    if aliased:
        raise ValueError(
            f"fixed effect(s) {aliased} do not vary within the clusters of {g.name!r} (apart from the "
            "clusters' own effects): a no-pooling model cannot tell such cluster-level predictors apart "
            f"from each {g.name}'s own intercept. Remove them from the formula to compare poolings"
        )


class PoolingModelFit(FittedModel):
    """A no- or complete-pooling fit of a mixed model's rows, made by :func:`lmm_bayes.compare_pooling`.

    Same reading API as :class:`~lmm_bayes.Fit` (from :class:`~lmm_bayes.results.base.FittedModel`):
    ``idata`` (posterior, sample_stats, observed_data, log_likelihood), ``posterior``,
    ``model`` and ``design`` (the mixed model's), :meth:`fixef`, :meth:`coef`,
    :meth:`coef_draws`, :meth:`diagnostics`, ``save`` and ``plot_caterpillar``
    (``values="coef"``: a pooling fit has no deviations b).

    Posterior variables: ``beta`` (dim ``coef``: the coefficients shared by all
    clusters), ``sigma``, and for no pooling ``{g}_coef`` (dims ``{g}``,
    ``{g}_effect``: every cluster's own coefficients).

    Parameters
    ----------
    idata : xarray.DataTree
        Its attributes name the ``pooling`` (``"no_pooling"`` or ``"complete_pooling"``)
        and the ``group`` the poolings are compared over.
    model : LMM
        The mixed model whose rows were fitted.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> cmp = lb.compare_pooling("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"),
    ...                          group="Subject", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit = cmp.fits["no_pooling"]
    >>> type(fit).__name__, fit.pooling, fit.coef("Subject").shape
    ('PoolingFit', 'no_pooling', (18, 7))
    """

    kind = "pooling"

    def __init__(self, idata: xr.DataTree, model: LMM):
        super().__init__(idata, model)
        pooling = idata.attrs.get("pooling")
        if pooling not in POOLING_KINDS:
            raise ValueError(
                f"a PoolingFit's idata.attrs['pooling'] must be one of {list(POOLING_KINDS)}, got {pooling!r}"
            )
        self.design.group(str(idata.attrs.get("group")))  # ValueError naming the model's factors

    @property
    def pooling(self) -> str:
        """``"no_pooling"``, ``"within_pooling"`` (a nested factor pooled within its parent) or ``"complete_pooling"``."""
        return str(self._idata.attrs["pooling"])

    @property
    def group(self) -> str:
        """The grouping factor whose clusters are pooled (or not)."""
        return str(self._idata.attrs["group"])

    @property
    def beta_columns(self) -> list[str]:
        """The fixed columns of ``beta``: all for complete pooling, the shared ones for no pooling."""
        d = self.design
        if self.pooling == "complete_pooling":
            return list(d.X_columns)
        g = d.group(self.group)
        if self.pooling == "within_pooling":  # each parent's own line covers the effects above g
            g = line_group(d, lineage(d, g)[0][0])
        elif self._idata.attrs.get("whole_line"):  # a nested cluster's own regression of its whole line
            g = line_group(d, g)
        return [d.X_columns[k] for k in shared_columns(d, g)]

    def __repr__(self) -> str:
        a = self._idata.attrs
        return (
            f"<lmm_bayes.PoolingFit {self.pooling} for {a['formula']!r}: sampler={a['sampler']}, "
            f"{a['chains']} chains x {a['draws']} draws>"
        )

    def coef_draws(self, group: str, *, include_parents: bool = False) -> xr.DataArray:
        """Draws of every cluster's effects, dims (chain, draw, level, effect), like :meth:`Fit.coef_draws`.

        Complete pooling gives every cluster the same (fixed) values, 0 for an
        effect without a fixed part. ``include_parents`` is the mixed model's (a pooling
        fit's clusters lie in nothing) and is refused here.

        Parameters
        ----------
        group : str
            The grouping factor the poolings were compared over.
        include_parents : bool
            Refused (see above).
        """
        if include_parents:
            raise ValueError("include_parents=True is for a mixed model's fit: a pooling fit's clusters lie in nothing")
        g = self._group(group)
        if g.name != self.group:
            raise ValueError(f"this fit compares poolings over {self.group!r}, not {g.name!r}")
        post = self.posterior
        name = coef_name(g)
        if self.pooling in ("no_pooling", "within_pooling"):
            return post[name].rename(name)
        levels = xr.DataArray(np.zeros(g.n_levels), dims=g.name, coords={g.name: list(g.levels)})
        return (population_effects(post, g) + levels).transpose("chain", "draw", g.name, g.effect_dim).rename(name)

    def health_parameters(self) -> list[xr.DataArray]:
        """The shared parameters ``beta`` and ``sigma`` (a negative binomial's ``dispersion``).

        As :meth:`Fit.diagnostics` leaves out the clusters' b, the clusters' own
        coefficients of a no-pooling fit are left out; read them with
        ``arviz.rhat(fit.posterior)``.
        """
        post = self.posterior
        return [post[v] for v in (BETA, SIGMA, "dispersion") if v in post and post[v].size]

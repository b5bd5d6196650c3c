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

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel as LMM

__all__ = ["POOLING_KINDS", "PoolingModelFit", "shared_columns"]

#: The poolings a :class:`PoolingModelFit` can be.
POOLING_KINDS = ("no_pooling", "complete_pooling")


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
        """``"no_pooling"`` or ``"complete_pooling"``."""
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
        return [d.X_columns[k] for k in shared_columns(d, d.group(self.group))]

    def __repr__(self) -> str:
        a = self._idata.attrs
        return (
            f"<lmm_bayes.PoolingFit {self.pooling} for {a['formula']!r}: sampler={a['sampler']}, "
            f"{a['chains']} chains x {a['draws']} draws>"
        )

    def coef_draws(self, group: str) -> xr.DataArray:
        """Draws of every cluster's effects, dims (chain, draw, level, effect), like :meth:`Fit.coef_draws`.

        Complete pooling gives every cluster the same (fixed) values, 0 for an
        effect without a fixed part.

        Parameters
        ----------
        group : str
            The grouping factor the poolings were compared over.
        """
        g = self._group(group)
        if g.name != self.group:
            raise ValueError(f"this fit compares poolings over {self.group!r}, not {g.name!r}")
        post = self.posterior
        name = coef_name(g)
        if self.pooling == "no_pooling":
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

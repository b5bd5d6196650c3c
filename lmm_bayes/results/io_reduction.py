"""The fit file's groups for a model built from Dask or Parquet (:mod:`lmm_bayes.spec.dask_data`).

Such a model has no training rows to store, only its sums (:class:`~lmm_bayes.spec.reduction.Reduction`):
``lmm_bayes_reduction`` holds the per-cluster cross products, the column sums, minima and
maxima (attributes: rows, finest factor, source, sample seed, rows dropped), the reference
point the products are taken about, the per-cluster sums and the row counts (files written
before those three existed lack them, and load with raw products about zero), and
``lmm_bayes_skeleton`` the first row of every cluster and category. The training-data group
of :mod:`lmm_bayes.results.io` holds the random sample of rows, as the design does. Both
groups are covered by the file's checksums; :func:`lmm_bayes.load` rebuilds the model with
:meth:`lmm_bayes.LMM.from_reduction`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.spec.design import Design
from lmm_bayes.spec.glmm import GeneralizedMixedModel
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.spec.reduction import Reduction

__all__ = ["REDUCTION_GROUP", "SKELETON_GROUP", "rebuild_model", "reduction_from_tree", "reduction_groups"]

REDUCTION_GROUP = "lmm_bayes_reduction"
SKELETON_GROUP = "lmm_bayes_skeleton"
#: the reduction's arrays that files written before they existed lack, with their dimensions
_OPTIONAL = {"reference": ("column",), "cluster_sums": ("leaf", "column"), "counts": ("leaf",)}


def reduction_groups(design: Design, to_dataset: Callable[[pd.DataFrame], xr.Dataset]) -> dict[str, xr.Dataset]:
    """The two groups of a reduced design (none for a design in memory); ``to_dataset`` stores a frame."""
    red = design.reduction
    if red is None:
        return {}
    cols = ("column", "column_bis")
    arrays = {"products": (("leaf", *cols), red.products), "sums": ("column", red.sums),
              "mins": ("column", red.mins), "maxs": ("column", red.maxs)}
    for name, dims in _OPTIONAL.items():  # variables, so that the file's checksums cover them
        if getattr(red, name) is not None:
            arrays[name] = (dims, np.asarray(getattr(red, name)))
    sums = xr.Dataset(
        arrays,
        attrs={"n": int(red.n), "leaf": red.leaf or "", "source": red.source,
               "sample_seed": int(red.sample_seed), "dropped": int(red.dropped)},
    )
    return {f"/{REDUCTION_GROUP}": sums, f"/{SKELETON_GROUP}": to_dataset(red.skeleton)}


def reduction_from_tree(tree: xr.DataTree, to_frame: Callable[[xr.Dataset], pd.DataFrame]) -> Reduction | None:
    """The stored :class:`Reduction` (None when the fit's model held its rows); ``to_frame`` reads a frame."""
    if REDUCTION_GROUP not in tree.children:
        return None
    ds = tree[REDUCTION_GROUP].to_dataset()
    a: dict[str, Any] = ds.attrs
    optional = {name: ds[name].values if name in ds else None for name in _OPTIONAL}
    return Reduction(
        n=int(a["n"]), leaf=str(a["leaf"]) or None, products=np.asarray(ds["products"].values, dtype=float),
        sums=ds["sums"].values, mins=ds["mins"].values, maxs=ds["maxs"].values, source=str(a["source"]),
        sample_seed=int(a["sample_seed"]), dropped=int(a["dropped"]),
        skeleton=to_frame(tree[SKELETON_GROUP].to_dataset()), **optional,
    )


def rebuild_model(
    tree: xr.DataTree, data: pd.DataFrame, priors: Any, to_frame: Callable[[xr.Dataset], pd.DataFrame], *,
    model: type[MixedModel] = MixedModel, glmm: type[GeneralizedMixedModel] = GeneralizedMixedModel,
) -> MixedModel:
    """The fit's model: ``model(formula, data, priors=priors)``, a ``glmm`` with its stored family, link and
    trials, or from the stored reduction (``data`` its sample)."""
    if "family" in tree.attrs:  # a GLMM: family, link and trials as fitted
        return glmm.from_attrs(tree.attrs, data, priors=priors)

    reduction = reduction_from_tree(tree, to_frame)
    if reduction is None:  # sigma= and ar= (spec/residual.py) as fitted; the ordering column is in the data
        residual = json.loads(tree.attrs["residual"]) if "residual" in tree.attrs else {}
        return model(tree.attrs["formula"], data, priors=priors, **residual)
    return model.from_reduction(tree.attrs["formula"], reduction, data, priors=priors)

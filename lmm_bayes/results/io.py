"""Saving a fitted model (a :class:`~lmm_bayes.Fit` or a pooling fit) to one netCDF file and loading it back.

The file is the fit's ArviZ DataTree (posterior, sample_stats, observed_data,
constant_data, log_likelihood, posterior_predictive when present) written with
the ``h5netcdf`` engine, plus a group ``lmm_bayes_data`` holding the training
rows (the used columns of the used rows, with their row labels and dtypes). The
root attributes carry the formula, the mixed model's priors (JSON), the provenance,
the kind of fit (``FittedModel.kind``; a pooling fit's ``pooling`` and ``group`` too),
a format marker and a format version. :func:`load` rebuilds ``LMM(formula, data,
priors=...)`` from them and the fit of the stored kind, so ``predict``, summaries and
plots work as before saving. No pickle: loading a file runs no code from it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.errors import FitFileError
from lmm_bayes.results.base import FittedModel, check_fitted

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.model import LMM

__all__ = ["ENGINE", "FORMAT", "FORMAT_VERSION", "FitFileError", "load", "save"]

#: value of the root attribute ``lmm_bayes_format`` that marks our files
FORMAT = "lmm-bayes-fit"
#: bumped when the layout changes so that older readers cannot read the file
FORMAT_VERSION = 1
ENGINE = "h5netcdf"
DATA_GROUP = "lmm_bayes_data"
#: root attribute naming the kind of fit (``FittedModel.kind``); files without it hold a mixed model
KIND_ATTR = "lmm_bayes_kind"
_FILE_ATTRS = ("lmm_bayes_format", "lmm_bayes_format_version", "lmm_bayes_saved_by", KIND_ATTR)
_ROW = "row"


def _check_path(path: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    return Path(path)


# ---------------------------------------------------------------------------- training data


def _data_to_dataset(data: pd.DataFrame) -> xr.Dataset:
    """The training rows as variables ``col_0, col_1, ...`` on dim ``row`` (names and dtypes in attrs)."""
    variables: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    for k, (name, col) in enumerate(data.items()):
        var = f"col_{k}"
        attrs: dict[str, Any] = {"name": str(name)}
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            cat_kind = "numeric" if pd.api.types.is_numeric_dtype(cats.dtype) else "string"
            attrs.update(kind="categorical", ordered=int(col.cat.ordered), categories_kind=cat_kind)
            values = col.cat.codes.to_numpy(dtype=np.int64)
            cat_values = cats.to_numpy() if cat_kind == "numeric" else cats.astype(str).to_numpy(dtype=str)
            variables[f"{var}_categories"] = xr.Variable(f"{var}_category", cat_values)
        elif pd.api.types.is_bool_dtype(col):
            attrs["kind"] = "bool"
            values = col.to_numpy(dtype=np.int8)
        elif pd.api.types.is_numeric_dtype(col):
            attrs["kind"] = "numeric"
            values = col.to_numpy()
        else:
            attrs["kind"] = "string"
            values = col.astype(str).to_numpy(dtype=str)
        variables[var] = xr.Variable(_ROW, values, attrs=attrs)
    index = data.index
    if isinstance(index, pd.MultiIndex):
        for j in range(index.nlevels):
            coords[f"index_level_{j}"] = (_ROW, _plain(index.get_level_values(j)))
        index_attrs = {"index_levels": index.nlevels, "index_names": json.dumps(list(index.names))}
        coords[_ROW] = np.arange(len(index))
    else:
        coords[_ROW] = _plain(index)
        index_attrs = {"index_levels": 1, "index_names": json.dumps([index.name])}
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update(index_attrs)
    ds.attrs["columns"] = len(data.columns)
    return ds


def _plain(index: pd.Index) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(index.dtype) and not pd.api.types.is_bool_dtype(index.dtype):
        return index.to_numpy()
    return index.astype(str).to_numpy(dtype=str)


def _dataset_to_data(ds: xr.Dataset) -> pd.DataFrame:
    columns = {}
    for k in range(int(ds.attrs["columns"])):
        var = ds[f"col_{k}"]
        kind = var.attrs["kind"]
        values = var.values
        if kind == "categorical":
            cats = ds[f"col_{k}_categories"].values
            if var.attrs.get("categories_kind") == "string":
                cats = cats.astype(str).astype(object)
            col = pd.Categorical.from_codes(values, categories=cats, ordered=bool(var.attrs["ordered"]))
        elif kind == "bool":
            col = values.astype(bool)
        elif kind == "string":
            col = pd.array(values.astype(str), dtype="str")
        else:
            col = values
        columns[str(var.attrs["name"])] = col
    names = json.loads(ds.attrs["index_names"])
    n_levels = int(ds.attrs["index_levels"])
    if n_levels > 1:
        index = pd.MultiIndex.from_arrays([ds[f"index_level_{j}"].values for j in range(n_levels)], names=names)
    else:
        index = pd.Index(ds[_ROW].values, name=names[0])
    return pd.DataFrame(columns, index=index)


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """netCDF cannot hold Python objects: object arrays (e.g. nutpie's divergence messages) become text."""
    fixes = {}
    for name, var in ds.variables.items():
        if var.dtype == object:
            text = np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                             for v in var.values.ravel()], dtype=str).reshape(var.shape)
            fixes[name] = var.copy(data=text)
    return ds.assign(fixes) if fixes else ds


# ---------------------------------------------------------------------------- save / load


def save(fit: FittedModel, path: str | os.PathLike) -> None:
    """Write a fit (any :class:`~lmm_bayes.results.base.FittedModel`) to one netCDF file (h5netcdf engine).

    The file holds every draw, the formula, the priors, the provenance and the
    training data, so :func:`load` can rebuild everything ``predict`` needs. An
    existing file at ``path`` is replaced (the new one is written next to it
    first, so a failed write leaves the old one intact). The fit is not changed.

    Parameters
    ----------
    fit : Fit or PoolingFit
    path : str or pathlib.Path
        Conventionally ending in ``.nc``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
    >>> fit.save(path)
    >>> lb.load(path).fixef().equals(fit.fixef())
    True
    """
    from lmm_bayes.version import __version__

    check_fitted(fit)
    path = _check_path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name such as 'fit.nc'")
    if not path.parent.exists():
        raise ValueError(f"the directory {str(path.parent)!r} does not exist; create it first")
    groups = {
        f"/{name}": _clean(child.to_dataset()) for name, child in fit.idata.children.items() if name != DATA_GROUP
    }
    groups[f"/{DATA_GROUP}"] = _data_to_dataset(fit.design.data)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update(fit.idata.attrs)
    tree.attrs.update(
        {
            "lmm_bayes_format": FORMAT,
            "lmm_bayes_format_version": FORMAT_VERSION,
            "lmm_bayes_saved_by": __version__,
            KIND_ATTR: fit.kind,
        }
    )
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tree.to_netcdf(tmp, engine=ENGINE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load(path: str | os.PathLike) -> FittedModel:
    """Read a fit written by :func:`save` (or ``fit.save``).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    Fit or PoolingFit
        The kind that was saved (a :class:`~lmm_bayes.results.pooling_fit.PoolingFit`
        for a no- or complete-pooling fit, else a :class:`~lmm_bayes.Fit`), with its
        model rebuilt from the stored formula, priors and training data: ``predict``,
        summaries and plots give the same numbers as before saving.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FitFileError
        (a ``ValueError``) The file is not a netCDF file written by lmm-bayes, was
        written by a newer format version, holds an unknown kind of fit, or its stored
        design no longer matches.

    Examples
    --------
    >>> import pathlib, tempfile, lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
    >>> fit.save(path)
    >>> loaded = lb.load(path)
    >>> loaded.model.formula, loaded.posterior["Subject_b"].shape
    ('Reaction ~ Days + (1 | Subject)', (2, 500, 18, 1))
    """
    from lmm_bayes.results.fit import Fit
    from lmm_bayes.results.pooling_fit import PoolingFit
    from lmm_bayes.spec.model import LMM
    from lmm_bayes.spec.priors import Priors

    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit file at {str(path)!r}")
    try:
        tree = xr.load_datatree(path, engine=ENGINE)
    except (OSError, ValueError, KeyError, TypeError) as err:  # h5py raises OSError for non-HDF5 content
        raise FitFileError(
            f"{str(path)!r} is not an lmm-bayes fit file (it cannot be read as netCDF4: {err}); "
            "write one with fit.save(path)"
        ) from None
    marker = tree.attrs.get("lmm_bayes_format")
    if marker != FORMAT or DATA_GROUP not in tree.children:
        raise FitFileError(
            f"{str(path)!r} is a netCDF file but not an lmm-bayes fit (no {FORMAT!r} marker); "
            "write one with fit.save(path)"
        )
    version = int(tree.attrs.get("lmm_bayes_format_version", -1))
    if version > FORMAT_VERSION:
        raise FitFileError(
            f"{str(path)!r} has fit-file format version {version}, newer than this lmm-bayes reads "
            f"(version {FORMAT_VERSION}; the file was written by lmm-bayes "
            f"{tree.attrs.get('lmm_bayes_saved_by', '?')}); upgrade lmm-bayes to load it"
        )
    if version < 1:
        raise FitFileError(f"{str(path)!r} has an invalid fit-file format version {version}")
    kinds: dict[str, type[FittedModel]] = {cls.kind: cls for cls in (Fit, PoolingFit)}
    kind = str(tree.attrs.get(KIND_ATTR, Fit.kind))
    if kind not in kinds:
        raise FitFileError(
            f"{str(path)!r} holds a fit of kind {kind!r}, which this lmm-bayes does not know "
            f"(it knows {sorted(kinds)}); upgrade lmm-bayes to load it"
        )
    data = _dataset_to_data(tree[DATA_GROUP].to_dataset())
    priors = Priors.from_dict(json.loads(tree.attrs["priors"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # any data warning was given when the model was fitted
        model = LMM(str(tree.attrs["formula"]), data, priors=priors)
    groups = {f"/{name}": child.to_dataset() for name, child in tree.children.items() if name != DATA_GROUP}
    idata = xr.DataTree.from_dict(groups)
    idata.attrs.update({k: v for k, v in tree.attrs.items() if k not in _FILE_ATTRS})
    try:
        fit = kinds[kind](idata=idata, model=model)
    except ValueError as err:  # a pooling fit's pooling or group attribute is damaged
        raise FitFileError(f"{str(path)!r}: {err}; the file may be damaged") from None
    if isinstance(fit, PoolingFit):
        columns, factors = fit.beta_columns, ([fit.group] if fit.pooling == "no_pooling" else [])
    else:
        columns, factors = list(model.design.X_columns), [g.name for g in model.design.groups]
    _check_design(model, tree, path, columns=columns, factors=factors)
    return fit


def _check_design(
    model: LMM, tree: xr.DataTree, path: Path, *, columns: list[str], factors: list[str]
) -> None:
    """The rebuilt design must be the one the draws belong to.

    The posterior's ``coef`` (where present) must be ``columns``; every factor of
    ``factors`` must be a dim of the posterior with the design's levels (a mixed
    model has every factor's b, a no-pooling fit its factor's own coefficients, a
    complete-pooling fit none), and any other factor's dim, where present, too.
    """
    design = model.design
    problems = []
    post = tree["posterior"]
    if "coef" in post.dims and list(post["coef"].values.astype(str)) != list(columns):
        problems.append("fixed-effect columns differ")
    for g in design.groups:
        present = g.name in post.dims
        if (g.name in factors and not present) or (
            present and list(post[g.name].values.astype(str)) != list(g.levels)
        ):
            problems.append(f"levels of {g.name!r} differ")
    if "observed_data" in tree.children:
        y = tree["observed_data"]["y"].values
        if y.shape != design.y.shape or not np.array_equal(y, design.y):
            problems.append("the response differs")
    if "constant_data" in tree.children and "X" in tree["constant_data"]:
        X = tree["constant_data"]["X"].values
        if X.shape != design.X.shape or not np.allclose(X, design.X, rtol=1e-12, atol=0):
            problems.append("the fixed-effects matrix differs")
    if problems:
        raise FitFileError(
            f"{str(path)!r}: the design rebuilt from the stored data does not match the draws "
            f"({'; '.join(problems)}); the file may be damaged or written by an incompatible version"
        )

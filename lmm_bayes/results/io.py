"""Saving a fitted model (a :class:`~lmm_bayes.Fit` or a pooling fit) to one netCDF file and loading it back.

The file is the fit's ArviZ DataTree (posterior, sample_stats, observed_data,
constant_data, log_likelihood, posterior_predictive when present) written with
the ``h5netcdf`` engine, plus a group ``lmm_bayes_data`` holding the training
rows (the used columns of the used rows, with their row labels and dtypes; a model
built from Dask stores its sums and sample instead, :mod:`lmm_bayes.results.io_reduction`). The
root attributes carry the formula, the mixed model's priors (JSON), the provenance,
the kind of fit (``FittedModel.kind``; a pooling fit's ``pooling`` and ``group`` too),
a format marker, a format version and the checksums. :func:`load` rebuilds
the model (``MixedModel(formula, data, priors=...)``) from them and the fit of the stored kind,
of the classes it is given (:class:`FitClasses`; :func:`lmm_bayes.load` gives the user's), so
``predict``, summaries and plots work as before saving. No pickle: loading a file
runs no code from it.

Integrity (:mod:`lmm_bayes.results.io_integrity`): before anything is read, the
file is walked with h5py and refused if any of it lives elsewhere (an external or
soft link, external storage, a virtual dataset). The root attribute
``lmm_bayes_checksums`` maps every item of the file (each variable of every group,
the draws included, each group's and root attribute) to the SHA-256 of its content;
:func:`load` raises :class:`~lmm_bayes.errors.FitFileError` naming each item that
differs, is missing or was added, and when the checksums themselves are missing.
It also rebuilds the design from the training data and compares y, X, the codes, Z
and the level labels with the stored ones. Whatever h5py, netCDF or xarray raise
on a damaged file becomes a ``FitFileError`` (the original as its ``__cause__``).

Format versions: :data:`FORMAT_VERSION` is bumped when older readers could no
longer read a file correctly or would check it less than it asks. Version 2 (full
checksums, required) replaced version 1, whose checksums, when present, left out
the draws, sample stats and log likelihood; version-1 files still load, checked as
then, with a warning saying how to re-save them.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.errors import FitFileError
from lmm_bayes.inference.layout import BETA, b_name, codes_name, coef_name, posterior_vars, z_name
from lmm_bayes.results.base import FittedModel, check_fitted
from lmm_bayes.results.fit import MixedModelFit
from lmm_bayes.results.io_integrity import (
    CHECKSUM_ATTR,
    FULL_CHECKSUMS_VERSION,
    alterations,
    check_self_contained,
    checksums,
)
from lmm_bayes.results.io_reduction import REDUCTION_GROUP, SKELETON_GROUP, rebuild_model, reduction_groups
from lmm_bayes.results.pooling_fit import PoolingModelFit
from lmm_bayes.spec.glmm import GeneralizedMixedModel
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.spec.priors import Priors
from lmm_bayes.version import __version__

__all__ = ["CHECKSUM_ATTR", "ENGINE", "FORMAT", "FORMAT_VERSION", "FitClasses", "FitFileError", "load", "save"]

#: value of the root attribute ``lmm_bayes_format`` that marks our files
FORMAT = "lmm-bayes-fit"
#: bumped when older readers could not read a file correctly, or would check it less than it asks (2: full checksums)
FORMAT_VERSION = 2
ENGINE = "h5netcdf"
DATA_GROUP = "lmm_bayes_data"
#: root attribute naming the kind of fit (``FittedModel.kind``); files without it hold a mixed model
KIND_ATTR = "lmm_bayes_kind"
_FILE_ATTRS = ("lmm_bayes_format", "lmm_bayes_format_version", "lmm_bayes_saved_by", CHECKSUM_ATTR, KIND_ATTR)
_OWN_GROUPS = (DATA_GROUP, REDUCTION_GROUP, SKELETON_GROUP)  # the model's data; the rest is the DataTree
_ROW = "row"
_KINDS = ("categorical", "bool", "numeric", "string")


@dataclass(frozen=True)
class FitClasses:
    """The classes :func:`load` rebuilds a file's model and fit as.

    The defaults are the stages' own; :func:`lmm_bayes.load` passes the user's
    (:class:`lmm_bayes.LMM`, :class:`lmm_bayes.GLMM`, :class:`lmm_bayes.Fit`,
    :class:`lmm_bayes.PoolingFit`), so a loaded fit has every method of a fitted one.
    """

    model: type[MixedModel] = MixedModel
    glmm: type[GeneralizedMixedModel] = GeneralizedMixedModel
    fit: type[MixedModelFit] = MixedModelFit
    pooling_fit: type[PoolingModelFit] = PoolingModelFit


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


def _count(attrs: Any, key: str, minimum: int) -> int:
    """An integer attribute ``>= minimum``; ``ValueError`` saying what is wrong otherwise."""
    value = attrs.get(key)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= minimum:
        return int(value)
    raise ValueError(f"its {key!r} attribute must be an integer >= {minimum}, got {value!r}")


def _variable(ds: xr.Dataset, name: str) -> xr.DataArray:
    if name not in ds.variables:
        raise ValueError(f"it has no variable {name!r}")
    return ds[name]


def _column(ds: xr.Dataset, var: str) -> tuple[str, Any]:
    """The column stored as ``var``: its name and values, each attribute checked."""
    values = _variable(ds, var).values
    attrs = ds[var].attrs
    if "name" not in attrs:
        raise ValueError(f"its variable {var!r} has no 'name' attribute")
    name = str(attrs["name"])
    kind = attrs.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"its variable {var!r} has an unknown kind {kind!r} (expected one of {list(_KINDS)})")
    if kind == "string":
        return name, pd.array(values.astype(str), dtype="str")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"its variable {var!r} of kind {kind!r} holds {values.dtype} values, not numbers")
    if kind == "numeric":
        return name, values
    if kind == "bool":
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"its variable {var!r} of kind 'bool' holds values other than 0 and 1")
        return name, values.astype(bool)
    cats = _variable(ds, f"{var}_categories").values
    cat_kind, ordered = attrs.get("categories_kind"), attrs.get("ordered")
    if not isinstance(cat_kind, str) or cat_kind not in ("numeric", "string"):
        raise ValueError(f"its variable {var!r} has categories_kind {cat_kind!r}, not 'numeric' or 'string'")
    if not isinstance(ordered, (int, np.integer)) or ordered not in (0, 1):
        raise ValueError(f"its variable {var!r} has an 'ordered' attribute {ordered!r}, not 0 or 1")
    if values.dtype.kind not in "iu" or values.min(initial=0) < -1 or values.max(initial=0) >= len(cats):
        raise ValueError(f"its variable {var!r} holds category codes outside 0..{len(cats) - 1}")
    if cat_kind == "string":
        cats = cats.astype(str).astype(object)
    return name, pd.Categorical.from_codes(values, categories=cats, ordered=bool(ordered))


def _dataset_to_data(ds: xr.Dataset) -> pd.DataFrame:
    """The training rows back from :func:`_data_to_dataset`; ``ValueError`` saying what is damaged."""
    columns = dict(_column(ds, f"col_{k}") for k in range(_count(ds.attrs, "columns", 1)))
    n_levels = _count(ds.attrs, "index_levels", 1)
    try:
        names = json.loads(ds.attrs["index_names"])
    except (KeyError, TypeError, ValueError):
        names = None
    if not isinstance(names, list) or len(names) != n_levels:
        raise ValueError(f"its 'index_names' attribute is not a JSON list of {n_levels} name(s)")
    if _ROW not in ds.coords:
        raise ValueError("it has no row labels (coordinate 'row')")
    if n_levels > 1:
        levels = [_variable(ds, f"index_level_{j}").values for j in range(n_levels)]
        index = pd.MultiIndex.from_arrays(levels, names=names)
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

    The file holds every draw, the formula, the priors, the provenance, the
    training data and the checksums of all of it, so :func:`load` can rebuild
    everything ``predict`` needs and tell an altered file. An existing
    file at ``path`` is replaced (the new one is written next to it first, so a
    failed write leaves the old one intact). The fit is not changed.

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
    groups.update(reduction_groups(fit.design, _data_to_dataset))  # a model built from Dask: its sums
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update({k: v for k, v in fit.idata.attrs.items() if k not in _FILE_ATTRS})
    tree.attrs.update({"lmm_bayes_format": FORMAT, "lmm_bayes_format_version": FORMAT_VERSION,
                       "lmm_bayes_saved_by": __version__, KIND_ATTR: fit.kind})
    tree.attrs[CHECKSUM_ATTR] = json.dumps(checksums(tree), sort_keys=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tree.to_netcdf(tmp, engine=ENGINE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load(path: str | os.PathLike, *, classes: FitClasses | None = None) -> FittedModel:
    """Read a fit written by :func:`~lmm_bayes.results.io.save` (or ``fit.save``).

    Parameters
    ----------
    path : str or pathlib.Path
    classes : FitClasses, optional
        The classes of the model and fit it rebuilds (default: the stages' own;
        :func:`lmm_bayes.load` gives the user's ``LMM``, ``GLMM``, ``Fit`` and ``PoolingFit``).

    Returns
    -------
    Fit or PoolingFit
        The kind that was saved (a pooling fit for a no- or complete-pooling fit, else a
        mixed model's fit), with its
        model rebuilt from the stored formula, priors and training data: ``predict``,
        summaries and plots give the same numbers as before saving.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FitFileError
        (a ``ValueError``) The file is not a netCDF file written by lmm-bayes, was
        written by a newer format version, holds an unknown kind of fit, refers to
        another file (an external or soft link, external storage, a virtual dataset:
        refused before anything is read), was altered after saving (its checksums
        differ or are missing), is damaged (h5py, netCDF or xarray cannot read it,
        or an attribute, the training data or the posterior cannot be read), or its
        stored design no longer matches the design rebuilt from its training data.
        The message names the file and the problem.

    Warns
    -----
    UserWarning
        The file has format version 1, whose checksums left out the draws: load and
        save it again (``lb.load(path).save(path)``) to check it fully from then on.

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
    classes = classes or FitClasses()
    path = _check_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit file at {str(path)!r}")
    check_self_contained(path)  # nothing of another file is ever read
    try:
        tree = xr.load_datatree(path, engine=ENGINE)
    except Exception as err:  # h5py, h5netcdf and xarray raise many kinds on damaged files
        raise FitFileError(
            f"{str(path)!r} is damaged or not an lmm-bayes fit file (it cannot be read as netCDF4: "
            f"{type(err).__name__}: {err}); save the fit again from its source, or write one with fit.save(path)"
        ) from err
    marker = tree.attrs.get("lmm_bayes_format")
    if not isinstance(marker, str) or marker != FORMAT or DATA_GROUP not in tree.children:
        raise FitFileError(
            f"{str(path)!r} is a netCDF file but not an lmm-bayes fit (no {FORMAT!r} marker); "
            "write one with fit.save(path)"
        )
    try:
        version = _count(tree.attrs, "lmm_bayes_format_version", 1)
    except ValueError as err:
        raise FitFileError(f"{str(path)!r} has an invalid fit-file format version: {err}") from None
    if version > FORMAT_VERSION:
        raise FitFileError(
            f"{str(path)!r} has fit-file format version {version}, newer than this lmm-bayes reads "
            f"(version {FORMAT_VERSION}; the file was written by lmm-bayes "
            f"{tree.attrs.get('lmm_bayes_saved_by', '?')}); upgrade lmm-bayes to load it"
        )
    kinds: dict[str, type[FittedModel]] = {cls.kind: cls for cls in (classes.fit, classes.pooling_fit)}
    kind = str(tree.attrs.get(KIND_ATTR, classes.fit.kind))
    if kind not in kinds:
        raise FitFileError(
            f"{str(path)!r} holds a fit of kind {kind!r}, which this lmm-bayes does not know "
            f"(it knows {sorted(kinds)}); upgrade lmm-bayes to load it"
        )
    try:
        altered = alterations(tree, path, version)
    except FitFileError:
        raise
    except Exception as err:  # values of a damaged file no checksum can be taken of
        raise FitFileError(f"{str(path)!r} is damaged: its checksums cannot be computed ({err})") from err
    try:
        fit = _read_fit(tree, path, kinds[kind], classes)
    except FitFileError as err:  # the most telling message first, the checksums' verdict after it
        raise FitFileError(f"{err}; besides, the file {altered}" if altered else str(err)) from err.__cause__
    except Exception as err:  # whatever else a damaged file makes go wrong
        why = altered or f"is damaged ({type(err).__name__}: {err})"
        raise FitFileError(f"{str(path)!r} {why}") from err
    if altered:
        raise FitFileError(f"{str(path)!r} {altered}")
    if version < FULL_CHECKSUMS_VERSION:
        warnings.warn(
            f"{str(path)!r} has fit-file format version {version}, which predates full checksums: its draws, "
            "sample stats and log likelihood (or, without checksums, all of it) cannot be checked for "
            "alteration. Save it again to check it fully from now on: lb.load(path).save(path)",
            UserWarning, stacklevel=3,
        )
    return fit


def _read_fit(tree: xr.DataTree, path: Path, cls: type[FittedModel], classes: FitClasses) -> FittedModel:
    """The fit of class ``cls`` in ``tree``, its model rebuilt and its design checked."""
    model = _rebuild_model(tree, path, classes)
    groups = {f"/{name}": child.to_dataset() for name, child in tree.children.items() if name not in _OWN_GROUPS}
    idata = xr.DataTree.from_dict(groups)
    idata.attrs.update({k: v for k, v in tree.attrs.items() if k not in _FILE_ATTRS})
    try:
        fit = cls(idata=idata, model=model)
    except ValueError as err:  # a pooling fit's pooling or group attribute is damaged
        raise FitFileError(f"{str(path)!r}: {err}; the file may be damaged") from None
    if isinstance(fit, PoolingModelFit):
        columns, factors = fit.beta_columns, ([fit.group] if fit.pooling in ("no_pooling", "within_pooling") else [])
        needed = [BETA, *filter(None, [model.design.family.aux]), *(coef_name(fit.group) for _ in factors)]
    else:
        columns, factors = list(model.design.X_columns), [g.name for g in model.design.groups]
        needed = posterior_vars(model.design)
        if tree.attrs.get("keep_b") == "none":  # fitted with keep_b="none": no draws of b, no level dims
            needed = [v for v in needed if v not in {b_name(g) for g in model.design.groups}]
            factors = []
    _check_design(model, tree, path, columns=columns, factors=factors, needed=needed)
    return fit


def _rebuild_model(tree: xr.DataTree, path: Path, classes: FitClasses) -> MixedModel:
    """``MixedModel(formula, data, priors=priors)`` (of ``classes``) from the stored attributes and training data."""
    for key in ("formula", "priors"):
        if not isinstance(tree.attrs.get(key), str):
            problem = f"no {key!r} attribute" if key not in tree.attrs else f"a {key!r} attribute that is not text"
            raise FitFileError(f"{str(path)!r} has {problem}; the file may be damaged")
    try:
        data = _dataset_to_data(tree[DATA_GROUP].to_dataset())
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise FitFileError(f"{str(path)!r}: the stored training data is damaged: {err}") from None
    try:
        priors = Priors.from_dict(json.loads(tree.attrs["priors"]))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        why = f"{type(err).__name__}: {err}"
        raise FitFileError(f"{str(path)!r}: the stored priors cannot be read ({why}); it may be damaged") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # any data warning was given when the model was fitted
            return rebuild_model(tree, data, priors, _dataset_to_data, model=classes.model, glmm=classes.glmm)
    except Exception as err:  # noqa: BLE001 - whatever the formula, data or priors did wrong, the file is damaged
        raise FitFileError(
            f"{str(path)!r}: cannot rebuild the model from the stored formula, priors and training data "
            f"({type(err).__name__}: {err}); the file may be damaged"
        ) from None


def _check_design(
    model: MixedModel, tree: xr.DataTree, path: Path, *, columns: list[str], factors: list[str], needed: list[str]
) -> None:
    """The rebuilt design must be the one the draws belong to.

    The posterior must hold the variables ``needed``, its ``coef`` (where present) be
    ``columns``, every factor of ``factors`` (any other where present) be a dim with the
    design's levels; the stored y, X, codes and Z (where present) must equal the rebuilt.
    """
    if "posterior" not in tree.children:
        raise FitFileError(f"{str(path)!r} has no posterior group; the file may be damaged")
    post = tree["posterior"]
    missing = [v for v in needed if v not in post.data_vars and not (v == BETA and not columns)]
    if missing:
        raise FitFileError(f"{str(path)!r}: the posterior lacks {', '.join(map(repr, missing))}; it may be damaged")
    design = model.design
    problems = []
    if "coef" in post.dims and list(post["coef"].values.astype(str)) != list(columns):
        problems.append("fixed-effect columns differ")
    stored = tree["constant_data"].to_dataset() if "constant_data" in tree.children else xr.Dataset()
    if "observed_data" in tree.children and not _same(tree["observed_data"].to_dataset().get("y"), design.y):
        problems.append("the response differs")
    if not _same(stored.get("X"), design.X, close=True):
        problems.append("the fixed-effects matrix differs")
    for g in design.groups:
        present = g.name in post.dims
        if (g.name in factors and not present) or (
            present and list(post[g.name].values.astype(str)) != list(g.levels)
        ):
            problems.append(f"levels of {g.name!r} differ")
        if not _same(stored.get(codes_name(g)), g.codes):
            problems.append(f"the codes of {g.name!r} differ")
        if not _same(stored.get(z_name(g)), g.Z, close=True):
            problems.append(f"the Z of {g.name!r} differs")
    if problems:
        raise FitFileError(
            f"{str(path)!r}: the design rebuilt from the stored data does not match the draws "
            f"({'; '.join(problems)}); the file may be damaged or written by an incompatible version"
        )


def _same(stored: xr.DataArray | None, rebuilt: np.ndarray, *, close: bool = False) -> bool:
    """``stored`` (absent: nothing to compare) equals ``rebuilt``, or to 1e-12 relative when ``close``."""
    if stored is None:
        return True
    values = stored.values
    if values.shape != rebuilt.shape or values.dtype.kind not in "biuf":
        return False
    return bool(np.allclose(values, rebuilt, rtol=1e-12, atol=0) if close else np.array_equal(values, rebuilt))

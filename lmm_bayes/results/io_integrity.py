"""The integrity of a fit file (:mod:`lmm_bayes.results.io`): nothing read from elsewhere, everything checksummed.

Two checks guard :func:`lmm_bayes.load`:

* :func:`check_self_contained`, before anything is read: the file is opened with
  h5py (a netCDF4 file is an HDF5 file) and every group and dataset is walked
  without following a single link. External links, soft links (lmm-bayes writes
  none, and one can lead through an external link), datasets kept in other files
  (HDF5 external storage), virtual datasets and datasets that need a filter HDF5
  would load a plugin for are refused, as are datasets claiming more values than
  the file holds. Only the file's own structure (link names and kinds, creation
  properties) is looked at: no value of it, and nothing of another file.
* the checksums: the root attribute :data:`CHECKSUM_ATTR` holds the SHA-256 of
  every item of the file (:func:`checksums`): each variable (the draws included) of
  every group, with its dimensions, its attributes and whether it is a coordinate;
  each group's attributes; each root attribute but the checksums themselves.
  :func:`alterations` recomputes them and names every item that differs, is
  missing or was added. Files of format version 1 (:data:`FULL_CHECKSUMS_VERSION`
  - 1) hold checksums of a subset only (:func:`legacy_checksums`: no draws, sample
  stats or log likelihood), or none when written before checksums existed; they
  are checked as they were then.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from h5py import h5d, h5g, h5l, h5o, h5z

from lmm_bayes.errors import FitFileError

__all__ = ["CHECKSUM_ATTR", "FULL_CHECKSUMS_VERSION", "alterations", "check_self_contained", "checksums",
           "legacy_checksums"]

#: root attribute holding the checksums (JSON ``{item: sha256}``)
CHECKSUM_ATTR = "lmm_bayes_checksums"
#: the first format version whose checksums cover every item, and must be present
FULL_CHECKSUMS_VERSION = 2
_VERSION_ATTR = "lmm_bayes_format_version"
#: filters HDF5 applies without a plugin (h5py registers lzf itself)
_BUILT_IN_FILTERS = frozenset({h5z.FILTER_DEFLATE, h5z.FILTER_SHUFFLE, h5z.FILTER_FLETCHER32, h5z.FILTER_SZIP,
                               h5z.FILTER_NBIT, h5z.FILTER_SCALEOFFSET, h5z.FILTER_LZF})
#: what version 1 checksummed (frozen: those files must keep verifying)
_V1_UNCHECKED = ("lmm_bayes_format", _VERSION_ATTR, "lmm_bayes_saved_by", CHECKSUM_ATTR)
_V1_GROUPS = ("observed_data", "constant_data", "lmm_bayes_data", "lmm_bayes_reduction", "lmm_bayes_skeleton")
_SHOWN = 10  # problems named in a message, at most


# ---------------------------------------------------------------------------- nothing from elsewhere


def check_self_contained(path: str | os.PathLike) -> None:
    """Refuse a file whose content would be read from elsewhere, before anything of it is read.

    Parameters
    ----------
    path : str or pathlib.Path
        An existing file.

    Raises
    ------
    FitFileError
        The file is not HDF5 (so not netCDF4), its structure is damaged, or it holds
        an external or soft link, a dataset with external storage, a virtual dataset,
        a dataset needing a filter plugin, or a dataset claiming more bytes than the
        file has. The message names the file and the link or dataset.

    Examples
    --------
    >>> import pathlib, tempfile, h5py
    >>> from lmm_bayes.results.io_integrity import check_self_contained
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "linked.nc"
    >>> with h5py.File(path, "w") as f:
    ...     f["posterior"] = h5py.ExternalLink("/etc/other.h5", "/posterior")
    >>> try:
    ...     check_self_contained(path)
    ... except ValueError as err:
    ...     print(str(err).split(": ", 1)[1].split(";")[0])
    '/posterior' is an external link (to '/posterior' in '/etc/other.h5')
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except Exception as err:  # h5py raises OSError for non-HDF5 content, others when damaged
        raise FitFileError(
            f"{str(path)!r} is not an lmm-bayes fit file (it cannot be read as netCDF4: {err}); "
            "write one with fit.save(path)"
        ) from err
    try:
        with file:
            problem = _outside(file.id, path.stat().st_size)
    except Exception as err:  # RuntimeError, KeyError, ... from damaged HDF5 metadata
        raise FitFileError(
            f"{str(path)!r} is damaged: its HDF5 structure cannot be read ({type(err).__name__}: {err}); "
            "save the fit again from its source"
        ) from err
    if problem:
        raise FitFileError(
            f"{str(path)!r}: {problem}; lmm-bayes keeps every value inside the fit file, so this one was "
            "crafted or altered, and nothing of it is read"
        )


def _outside(root: h5g.GroupID, file_size: int) -> str:
    """The first link or dataset under ``root`` whose content is not the file's own ("" when none)."""
    seen = {h5o.get_info(root).addr}
    pending: list[tuple[h5g.GroupID, str]] = [(root, "")]
    while pending:
        group, prefix = pending.pop()
        for raw in list(group):  # link names only: nothing is opened or followed
            name = f"{prefix}/{raw.decode('utf-8', 'replace')}"
            kind = group.links.get_info(raw).type
            if kind == h5l.TYPE_EXTERNAL:
                target_file, target = (v.decode("utf-8", "replace") for v in group.links.get_val(raw))
                return f"{name!r} is an external link (to {target!r} in {target_file!r})"
            if kind == h5l.TYPE_SOFT:
                target = group.links.get_val(raw).decode("utf-8", "replace")
                return f"{name!r} is a soft link (to {target!r}), which lmm-bayes never writes"
            if kind != h5l.TYPE_HARD:
                return f"{name!r} is a link of an unknown kind ({kind})"
            obj = h5o.open(group, raw)
            address = h5o.get_info(obj).addr
            if address in seen:  # a second hard link to an object already walked
                continue
            seen.add(address)
            if isinstance(obj, h5g.GroupID):
                pending.append((obj, name))
            elif isinstance(obj, h5d.DatasetID) and (problem := _dataset_outside(obj, name, file_size)):
                return problem
    return ""


def _dataset_outside(ds: h5d.DatasetID, name: str, file_size: int) -> str:
    """Why dataset ``name``'s values are not (all) in the file, from its creation properties ("" when they are)."""
    dcpl = ds.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5d.VIRTUAL:
        sources = sorted({dcpl.get_virtual_filename(j) for j in range(dcpl.get_virtual_count())})
        return f"{name!r} is a virtual dataset (its values would be read from {sources})"
    if dcpl.get_external_count() > 0:
        files = [dcpl.get_external(j)[0].decode("utf-8", "replace") for j in range(dcpl.get_external_count())]
        return f"{name!r} has external storage (its values would be read from {files})"
    for j in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(j)[0]
        if code not in _BUILT_IN_FILTERS:
            return f"{name!r} needs HDF5 filter {code}, which lmm-bayes never writes (HDF5 would load a plugin)"
    claimed = ds.get_space().get_simple_extent_npoints() * ds.get_type().get_size()
    if layout in (h5d.CONTIGUOUS, h5d.COMPACT) and claimed > file_size:
        return f"{name!r} claims {claimed} bytes of values, more than the whole file ({file_size} bytes)"
    return ""


# ---------------------------------------------------------------------------- checksums


def _attr(value: Any) -> list[Any]:
    """A JSON-able form of an attribute value that survives the netCDF round trip, tagged by kind."""
    a = np.asarray(value)
    if a.dtype.kind in "biu":
        return ["int", [int(v) for v in a.ravel().tolist()], list(a.shape)]
    if a.dtype.kind == "f":
        return ["float", a.astype(float).ravel().tolist(), list(a.shape)]
    return ["text", _text(a)]


def _text(a: np.ndarray) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v) for v in a.ravel().tolist()]


#: the byte layout each kind of number is hashed in (every value of the kind exactly)
_NUMBER_LAYOUT = {"b": "<i8", "i": "<i8", "u": "<u8", "f": "<f8", "c": "<c16", "m": "<i8", "M": "<i8"}


def _digest(values: Any, *parts: Any) -> str:
    """SHA-256 of an array (numbers as their exact bytes with their kind, else text) and JSON-able ``parts``."""
    a = np.asarray(values)
    layout = _NUMBER_LAYOUT.get(a.dtype.kind)
    kind = (a.dtype.str if a.dtype.kind in "mM" else a.dtype.kind) if layout else "text"
    h = hashlib.sha256(json.dumps([list(a.shape), kind, *parts], sort_keys=True, default=str).encode())
    if layout:
        h.update(np.ascontiguousarray(a.astype(layout, copy=False)).tobytes())
    else:
        h.update(json.dumps(_text(a)).encode())
    return h.hexdigest()


def checksums(tree: xr.DataTree) -> dict[str, str]:
    """The checksum of every item of ``tree`` (format version 2 and later), keyed by the item's name.

    Items: ``"attribute 'k'"`` for each root attribute but :data:`CHECKSUM_ATTR`;
    ``"group attributes"`` for each group's attributes; ``"group/name"`` for each
    variable or coordinate of each group (values, dims, attributes, role).

    Parameters
    ----------
    tree : xarray.DataTree

    Returns
    -------
    dict of str to str

    Examples
    --------
    >>> import xarray as xr
    >>> from lmm_bayes.results.io_integrity import checksums
    >>> tree = xr.DataTree.from_dict({"/posterior": xr.Dataset({"beta": ("draw", [1.0, 2.0])})})
    >>> sorted(checksums(tree))
    ['posterior attributes', 'posterior/beta']
    """
    sums = {f"attribute {k!r}": _digest([], _attr(v)) for k, v in tree.attrs.items() if k != CHECKSUM_ATTR}
    for node in tree.subtree:
        group = node.path.strip("/")
        ds = node.to_dataset(inherit=False)
        if node is not tree:
            sums[f"{group} attributes"] = _digest([], {k: _attr(v) for k, v in node.attrs.items()})
        for name, var in ds.variables.items():
            attrs = {k: _attr(v) for k, v in var.attrs.items()}
            sums[f"{group}/{name}"] = _digest(var.values, list(var.dims), name in ds.coords, attrs)
    return sums


def _canonical_v1(value: Any) -> Any:
    a = np.asarray(value)
    if a.dtype.kind in "biuf":
        return a.astype(float).tolist()
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in a.ravel().tolist()]


def _digest_v1(values: Any, *parts: Any) -> str:
    a = np.asarray(values)
    h = hashlib.sha256(json.dumps([a.shape, *parts], sort_keys=True, default=str).encode())
    if a.dtype.kind in "biuf":
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    else:
        h.update(json.dumps(_canonical_v1(a)).encode())
    return h.hexdigest()


def legacy_checksums(tree: xr.DataTree) -> dict[str, str]:
    """The checksums format version 1 stored: root attributes, observed and constant data, training data, posterior coordinates.

    Parameters
    ----------
    tree : xarray.DataTree

    Returns
    -------
    dict of str to str

    Examples
    --------
    >>> import xarray as xr
    >>> from lmm_bayes.results.io_integrity import legacy_checksums
    >>> tree = xr.DataTree.from_dict({"/posterior": xr.Dataset({"beta": ("draw", [1.0])}, coords={"draw": [0]})})
    >>> sorted(legacy_checksums(tree))  # the draws themselves are not covered
    ['posterior/draw']
    """
    sums = {f"attribute {k!r}": _digest_v1(_canonical_v1(v)) for k, v in tree.attrs.items() if k not in _V1_UNCHECKED}
    for group in _V1_GROUPS:
        if group in tree.children:
            for name, var in tree[group].to_dataset().variables.items():
                attrs = {k: _canonical_v1(v) for k, v in var.attrs.items()}
                sums[f"{group}/{name}"] = _digest_v1(var.values, list(var.dims), attrs)
    if "lmm_bayes_data" in tree.children:
        data_attrs = {k: _canonical_v1(v) for k, v in tree["lmm_bayes_data"].attrs.items()}
        sums["lmm_bayes_data attributes"] = _digest_v1([], data_attrs)
    if "posterior" in tree.children:
        for name, coord in tree["posterior"].to_dataset().coords.items():
            sums[f"posterior/{name}"] = _digest_v1(coord.values, list(coord.dims))
    return sums


def alterations(tree: xr.DataTree, path: Path, version: int) -> str:
    """What differs from when the file was saved, by its checksums ("" when nothing does).

    A file of format version :data:`FULL_CHECKSUMS_VERSION` or later (or one whose
    checksums are of such a version) must hold checksums of exactly its items; an
    older file is checked by what it stored, if anything.

    Parameters
    ----------
    tree : xarray.DataTree
        The file as read.
    path : pathlib.Path
        For messages.
    version : int
        The file's format version.

    Returns
    -------
    str
        ``""``, or the verdict, to follow the file's name in a message.

    Raises
    ------
    FitFileError
        The checksums attribute is not a JSON object of texts.

    Examples
    --------
    >>> import pathlib, xarray as xr
    >>> from lmm_bayes.results.io_integrity import alterations, checksums
    >>> tree = xr.DataTree.from_dict({"/posterior": xr.Dataset({"beta": ("draw", [1.0, 2.0])})})
    >>> tree.attrs["lmm_bayes_checksums"] = __import__("json").dumps(checksums(tree))
    >>> alterations(tree, pathlib.Path("fit.nc"), 2)
    ''
    >>> tree["posterior"]["beta"] = ("draw", [1.0, 2.5])
    >>> alterations(tree, pathlib.Path("fit.nc"), 2).split(":")[0]
    'was altered after it was saved (posterior/beta differs)'
    """
    stored = tree.attrs.get(CHECKSUM_ATTR)
    why = "its numbers cannot be trusted; save the fit again from its source"
    if stored is None:
        if version < FULL_CHECKSUMS_VERSION:
            return ""  # written before checksums existed
        return (f"has no checksums although its format version {version} stores them (the attribute "
                f"{CHECKSUM_ATTR!r} was removed): {why}")
    try:
        stored = json.loads(stored)
    except (TypeError, ValueError):
        stored = None
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise FitFileError(f"{str(path)!r}: its checksums attribute is damaged; the file may be damaged")
    full = version >= FULL_CHECKSUMS_VERSION or f"attribute {_VERSION_ATTR!r}" in stored  # not relabelled old
    now = checksums(tree) if full else legacy_checksums(tree)
    problems = [f"{k} {'differs' if k in now else 'is missing'}" for k, v in stored.items() if now.get(k) != v]
    if full:
        problems += [f"{k} was added (no checksum)" for k in now if k not in stored]
    if not problems:
        return ""
    shown = "; ".join(problems[:_SHOWN]) + (f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else "")
    return f"was altered after it was saved ({shown}): its checksums do not match, so {why}"

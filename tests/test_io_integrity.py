"""Fit files that point outside themselves, altered draws, removed checksums, damaged metadata (issue 37).

``lb.load`` must never read (let alone quote) another file, must refuse a file
whose draws or any other array changed after saving, must not let a removed
checksum attribute switch the checking off, and must answer every damaged file
with a :class:`~lmm_bayes.errors.FitFileError`, never with an h5py or xarray error.
"""

import hashlib
import json
import re
import shutil
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmm_bayes as lb
from lmm_bayes.inference.layout import constant_data
from lmm_bayes.results import io

SECRET = "TOPSECRET-hunter2"  # the text of a file the fit file must never read
CHECKSUMS = "lmm_bayes_checksums"
VERSION = "lmm_bayes_format_version"


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def fit():
    model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    return quiet(model.fit, draws=100, tune=100, chains=2, seed=1, progressbar=False)


@pytest.fixture(scope="module")
def saved(fit, tmp_path_factory):
    """The fit's file, written once for the module (copy it before changing it)."""
    path = tmp_path_factory.mktemp("saved") / "fit.nc"
    fit.save(path)
    return path


@pytest.fixture(scope="module")
def levels_saved(tmp_path_factory):
    """A fit of ``C(f, levels=[...])`` whose column f, were it read from another file, would be quoted.

    Its posterior is a set of prior draws (same layout, no sampling).
    """
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"g": np.repeat([f"g{i}" for i in range(4)], 5), "f": np.tile(["a", "b"], 10),
                         "y": rng.normal(size=20)})
    model = lb.LMM('y ~ C(f, levels=["a", "b"]) + (1 | g)', data)
    pp = model.prior_predictive(draws=10, seed=0)
    idata = xr.DataTree.from_dict({"posterior": pp["prior"].to_dataset(),
                                   "observed_data": pp["observed_data"].to_dataset(),
                                   "constant_data": constant_data(model.design)})
    idata.attrs.update(lmm_bayes_version=lb.__version__, formula=model.formula, priors=model.priors.to_json(),
                       sampler="prior", method="full", chains=1, draws=10, tune=0, seed=0)
    path = tmp_path_factory.mktemp("levels") / "fit.nc"
    lb.Fit(idata=idata, model=model).save(path)
    return path


def copy(path, tmp_path, name="crafted.nc"):
    target = tmp_path / name
    shutil.copy(path, target)
    return target


def refused(path, match):
    """``lb.load(path)`` raises a FitFileError matching ``match`` that names the file; the error."""
    with pytest.raises(lb.errors.FitFileError, match=match) as info:
        quiet(lb.load, path)
    assert str(path) in str(info.value)
    return info.value


# ---------------------------------------------------------------- references to other files


def replace_column(path, var, make):
    """Replace the dataset ``var`` (on dim ``row``) by ``make(group, name, shape)``, attrs and dim kept."""
    with h5py.File(path, "a") as f:
        old = f[var]
        attrs = {k: v for k, v in old.attrs.items() if k not in ("DIMENSION_LIST", "REFERENCE_LIST")}
        group, name, shape = old.parent, old.name.rsplit("/", 1)[1], old.shape
        del group[name]
        make(group, name, shape)
        for key, value in attrs.items():
            group[name].attrs[key] = value
        group[name].dims[0].attach_scale(group["row"])


def external_storage(tmp_path):
    """Column f's values stored as raw bytes of a text file (HDF5 external storage)."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET * 20)
    width = len(SECRET)
    return lambda g, n, shape: g.create_dataset(n, shape=shape, dtype=f"S{width}",
                                                external=[(str(secret), 0, width * shape[0])])


def virtual_dataset(tmp_path):
    """Column f as a virtual dataset mapping a dataset of another HDF5 file."""
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["words"] = np.array([SECRET.encode()] * 20)

    def make(group, name, shape):
        layout = h5py.VirtualLayout(shape=shape, dtype=f"S{len(SECRET)}")
        layout[:] = h5py.VirtualSource(str(secret), "words", shape=shape)
        group.create_virtual_dataset(name, layout)
    return make


@pytest.mark.parametrize("kind, make, match", [
    ("external storage", external_storage, r"lmm_bayes_data/col_\d.*external storage"),
    ("virtual dataset", virtual_dataset, r"lmm_bayes_data/col_\d.*virtual dataset"),
])
def test_column_stored_in_another_file_is_refused_unread(levels_saved, tmp_path, kind, make, match):
    """Today's code reads the other file into column f and quotes it ("holds values not listed: [...]")."""
    path = copy(levels_saved, tmp_path)
    with h5py.File(path, "r") as f:
        var = next(f"lmm_bayes_data/{k}" for k, v in f["lmm_bayes_data"].items() if v.attrs.get("name") == "f")
    replace_column(path, var, make(tmp_path))
    err = refused(path, match)
    assert SECRET not in str(err) and SECRET[:9] not in str(err)


def external_link(path, tmp_path):
    """A group 'extra' that is a link to a group of another HDF5 file holding the secret."""
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_group("extra")["note"] = np.bytes_(SECRET.encode())
    with h5py.File(path, "a") as f:
        f["extra"] = h5py.ExternalLink(str(secret), "/extra")


def external_link_deep(path, tmp_path):
    """The same link inside the posterior group."""
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_group("posterior").create_group("extra")["note"] = np.bytes_(SECRET.encode())
    with h5py.File(path, "a") as f:
        f["posterior/extra"] = h5py.ExternalLink(str(secret), "/posterior/extra")


def soft_link(path, tmp_path):
    """A soft link: lmm-bayes never writes one (it could lead through an external link)."""
    with h5py.File(path, "a") as f:
        f["extra"] = h5py.SoftLink("/posterior")


@pytest.mark.parametrize("make, match", [
    (external_link, r"'/extra' is an external link"),
    (external_link_deep, r"'/posterior/extra' is an external link"),
    (soft_link, r"'/extra' is a soft link"),
])
def test_links_are_refused_before_anything_is_read(saved, tmp_path, make, match):
    """Today's code follows the link and loads the secret into ``fit.idata['extra']``."""
    path = copy(saved, tmp_path)
    make(path, tmp_path)
    err = refused(path, match)
    assert SECRET not in str(err)


# ---------------------------------------------------------------- every array under the checksums


def flip_bit(path, var, *, element=0, byte=5, bit=3):
    """Flip one bit of the stored bytes of dataset ``var`` (in place, as a disk error would)."""
    with h5py.File(path, "r") as f:
        ds = f[var]
        offset = ds.id.get_offset() + element * ds.dtype.itemsize + byte
    with open(path, "r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([value ^ (1 << bit)]))


@pytest.mark.parametrize("var", ["posterior/beta", "posterior/sigma", "posterior/Subject_b",
                                 "sample_stats/energy", "log_likelihood/y"])
def test_one_flipped_bit_in_the_draws_is_refused(fit, saved, tmp_path, var):
    path = copy(saved, tmp_path)
    flip_bit(path, var)
    with xr.open_datatree(path, engine="h5netcdf") as tree:  # the flip did change a number
        group, name = var.split("/")
        assert not np.array_equal(tree[group][name].values, fit.idata[group][name].values)
    refused(path, rf"was altered after it was saved \({re.escape(var)} differs\)")


def test_every_array_and_group_is_checksummed(saved):
    tree = xr.load_datatree(saved, engine="h5netcdf")
    sums = json.loads(tree.attrs[CHECKSUMS])
    expected = set()
    for node in tree.subtree:
        if node is not tree:
            group = node.path.strip("/")
            expected |= {f"{group}/{name}" for name in node.to_dataset(inherit=False).variables}
            expected.add(f"{group} attributes")
    expected |= {f"attribute {key!r}" for key in tree.attrs if key != CHECKSUMS}
    assert expected <= set(sums), sorted(expected - set(sums))


# ---------------------------------------------------------------- removing the checksums


def test_removed_checksums_are_refused(saved, tmp_path):
    """The issue's case: y[0] tampered and the checksums attribute deleted loaded silently."""
    path = copy(saved, tmp_path)
    with h5py.File(path, "a") as f:
        f["observed_data/y"][0] += 100.0
        f["lmm_bayes_data/col_0"][0] += 100.0  # Reaction, so that the rebuilt design agrees
        del f.attrs[CHECKSUMS]
    err = refused(path, rf"has no checksums although its format version {io.FORMAT_VERSION} stores them")
    assert "352" not in str(err)  # the tampered value (Reaction 249.56 + 100) is not read into the message
    with h5py.File(copy(saved, tmp_path, "untampered.nc"), "a") as f:
        del f.attrs[CHECKSUMS]
    err = refused(tmp_path / "untampered.nc", r"has no checksums")
    assert isinstance(err, lb.errors.FitFileError) and err.__cause__ is None  # refused by the check itself


# ---------------------------------------------------------------- files of the previous version


def v1_digest(values, *parts):
    """The version-1 checksum of an item, frozen as released (numbers as float64 bytes, else text)."""
    def canonical(value):
        a = np.asarray(value)
        if a.dtype.kind in "biuf":
            return a.astype(float).tolist()
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in a.ravel().tolist()]
    a = np.asarray(values)
    h = hashlib.sha256(json.dumps([a.shape, *parts], sort_keys=True, default=str).encode())
    if a.dtype.kind in "biuf":
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    else:
        h.update(json.dumps(canonical(a)).encode())
    return h.hexdigest(), canonical


def v1_checksums(tree):
    """What a version-1 writer stored: root attributes, observed/constant data, own groups, posterior coords."""
    canonical = v1_digest([])[1]
    unchecked = ("lmm_bayes_format", VERSION, "lmm_bayes_saved_by", CHECKSUMS)
    sums = {f"attribute {k!r}": v1_digest(canonical(v))[0] for k, v in tree.attrs.items() if k not in unchecked}
    for group in ("observed_data", "constant_data", "lmm_bayes_data", "lmm_bayes_reduction", "lmm_bayes_skeleton"):
        if group in tree.children:
            for name, var in tree[group].to_dataset().variables.items():
                attrs = {k: canonical(v) for k, v in var.attrs.items()}
                sums[f"{group}/{name}"] = v1_digest(var.values, list(var.dims), attrs)[0]
    sums["lmm_bayes_data attributes"] = v1_digest([], {k: canonical(v) for k, v in
                                                       tree["lmm_bayes_data"].attrs.items()})[0]
    for name, coord in tree["posterior"].to_dataset().coords.items():
        sums[f"posterior/{name}"] = v1_digest(coord.values, list(coord.dims))[0]
    return sums


def write_v1(saved, path, *, checksums=True, change=None):
    """The saved fit as a version-1 writer wrote it (with or without its checksums), ``change``d after."""
    tree = xr.load_datatree(saved, engine="h5netcdf")
    tree.attrs[VERSION] = 1
    tree.attrs.pop(CHECKSUMS)
    if checksums:
        tree.attrs[CHECKSUMS] = json.dumps(v1_checksums(tree), sort_keys=True)
    if change is not None:
        change(tree)
    tree.to_netcdf(path, engine="h5netcdf")
    return path


OLD = r"format version 1, which predates full checksums.*lb\.load\(path\)\.save\(path\)"


@pytest.mark.parametrize("checksums", [True, False])
def test_version_1_file_loads_with_a_warning(fit, saved, tmp_path, checksums):
    path = write_v1(saved, tmp_path / "v1.nc", checksums=checksums)
    with pytest.warns(UserWarning, match=OLD):
        loaded = lb.load(path)
    assert loaded.fixef().equals(fit.fixef())
    loaded.save(tmp_path / "resaved.nc")  # the warning's advice: the re-saved file loads without it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lb.load(tmp_path / "resaved.nc").fixef().equals(fit.fixef())
    assert not [w for w in caught if "predates full checksums" in str(w.message)]
    if checksums:  # and what its checksums cover is still checked

        def tamper(tree):
            tree["observed_data"] = xr.DataTree(tree["observed_data"].to_dataset() + 1.0)
        refused(write_v1(saved, tmp_path / "tampered.nc", change=tamper), r"observed_data/y differs")


def test_downgraded_version_does_not_escape_the_full_checksums(saved, tmp_path):
    """A current file relabelled version 1 (to be checked as an old one) with a flipped draw is refused."""
    path = copy(saved, tmp_path)
    flip_bit(path, "posterior/beta")
    with h5py.File(path, "a") as f:
        f.attrs[VERSION] = np.int64(1)
    err = refused(path, r"altered after it was saved")
    assert "posterior/beta" in str(err)  # the flipped item is named, as a full version-2 check does


# ---------------------------------------------------------------- damaged metadata


@pytest.mark.parametrize("name", [b"lmm_bayes_checksums", b"Subject_b"])
def test_damaged_metadata_raises_fit_file_error(saved, fuzz, tmp_path, name):
    """A flipped bit in the file's metadata (an attribute's or a link's name, guarded by HDF5's
    own checksums) made h5py raise a RuntimeError that escaped ``load``."""
    original = saved.read_bytes()
    offsets = [m.start() for m in re.finditer(re.escape(name), original)]
    assert offsets
    causes = []
    for offset in offsets[-3:]:
        damaged = bytearray(original)
        damaged[offset + 2] ^= 0x01
        path = tmp_path / "damaged.nc"
        path.write_bytes(bytes(damaged))
        err = load_or_refuse(path, fuzz[2])
        causes.append(type(err.__cause__) if err is not None else None)
    assert RuntimeError in causes, causes  # h5py's error, kept as the cause


def load_or_refuse(path, reference):
    """``lb.load(path)`` gives a fit equal to ``reference`` or a FitFileError naming the file; never else."""
    try:
        loaded = quiet(lb.load, path)
    except lb.errors.FitFileError as err:
        assert str(path) in str(err)
        return err
    assert same_fit(loaded, reference), "a changed file loaded with other numbers"
    return None


# ---------------------------------------------------------------- any bytes at all


@pytest.fixture(scope="module")
def fuzz(saved):
    """The saved file's bytes, the offsets outside any dataset's values, and the fit as it loads."""
    original = saved.read_bytes()
    inside = np.zeros(len(original), dtype=bool)
    with h5py.File(saved, "r") as f:
        def mark(_, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                start = obj.id.get_offset()
                inside[start:start + obj.id.get_storage_size()] = True
        f.visititems(mark)
    metadata = np.flatnonzero(~inside).tolist()
    return original, metadata, quiet(lb.load, saved)


def same_fit(a, b):
    if a.model.formula != b.model.formula or a.priors != b.priors or not a.design.data.equals(b.design.data):
        return False
    if set(a.idata.children) != set(b.idata.children) or a.idata.attrs.keys() != b.idata.attrs.keys():
        return False
    return all(a.idata[g].to_dataset().identical(b.idata[g].to_dataset()) for g in a.idata.children)


@st.composite
def fit_files(draw, original, metadata):
    """Random bytes, or the saved file with 1-3 bits flipped, spans overwritten or its tail cut."""
    if draw(st.integers(0, 4)) == 0:
        head = draw(st.sampled_from([b"", original[:8], original[:512]]))
        return head + draw(st.binary(max_size=2048))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        n = len(data)
        where = draw(st.one_of(st.integers(0, n - 1), st.sampled_from([m for m in metadata if m < n] or [0])))
        op = draw(st.sampled_from(["flip", "flip", "overwrite", "truncate"]))
        if op == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            span = draw(st.binary(min_size=1, max_size=64))[: n - where]
            data[where:where + len(span)] = span
        else:
            del data[where:]
            if not data:
                break
    return bytes(data)


def test_any_bytes_give_the_fit_or_a_fit_file_error(fuzz, tmp_path_factory):
    original, metadata, reference = fuzz
    path = tmp_path_factory.mktemp("fuzz") / "fit.nc"

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(content=fit_files(original, metadata))
    def check(content):
        path.write_bytes(content)
        load_or_refuse(path, reference)

    check()

"""A reduction's products about a reference point keep their precision under large offsets.

lmm_bayes/spec/reduction.py: a model built from Dask keeps per-cluster products of
``F = [Z, X, y]``; raw products ``Σ f f'`` lose a column's variation once it carries an offset
(``y + 1e9``), so they are taken about a point inside the data's range and shifted exactly
(``products_about``, ``standardized``). Every check compares with the products computed
directly from the standardized rows in memory, entry by entry relative to the Cauchy–Schwarz
bound ``sqrt(M_jj M_kk)`` (so an entry near zero is not held to an impossible tolerance, and
no entry hides behind the largest one); the raw products fail the same checks at 1e9 by
orders of magnitude (measured below).
"""

from __future__ import annotations

import json
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import lmm_bayes as lb
from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics
from lmm_bayes.results import io
from lmm_bayes.results.io_reduction import REDUCTION_GROUP
from lmm_bayes.spec.reduction import Reduction, crossproducts

OFFSETS = [1e6, 1e9, 1e12]
NESTED = "Reaction ~ Days + (Days | Subject) + (1 | Subject:week)"


def error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest ``|got − want| / sqrt(want_jj want_kk)`` over clusters and entries (0/0 counts as 0)."""
    d = np.sqrt(np.einsum("cjj->cj", want))
    bound = d[:, :, None] * d[:, None, :]
    return float(np.max(np.abs(got - want) / np.where(bound > 0, bound, 1.0)))


def raw_reduction(F: np.ndarray, codes: np.ndarray, n_leaves: int) -> Reduction:
    """A reduction as made before references existed (and as old files hold it): raw products only."""
    return Reduction(n=len(F), leaf=None, products=crossproducts(F, codes, n_leaves), sums=F.sum(axis=0),
                     mins=F.min(axis=0), maxs=F.max(axis=0), source="old", sample_seed=0)


def rows(offset: float, n: int = 5_000, n_leaves: int = 7, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``F = [1, x, y]`` in clusters, ``offset`` added to the predictor x and the response y."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_leaves, n)
    x = rng.normal(3.0, 2.0, n)
    y = 2.0 + x + codes + rng.normal(0.0, 1.0, n)
    return np.column_stack([np.ones(n), x + offset, y + offset]), codes


def working(red: Reduction, constant: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale of a standardized design: mean and SD per column, a constant column kept as it is."""
    D = red.products.shape[1]
    shift = np.array([0.0 if constant[k] else red.mean(k) for k in range(D)])
    scale = np.array([1.0 if constant[k] else red.sd(k) for k in range(D)])
    return shift, scale


# ---------------------------------------------------------------------------- in memory


@pytest.mark.parametrize("offset", OFFSETS)
def test_standardized_products_equal_those_of_the_standardized_rows(offset):
    F, codes = rows(offset)
    red = Reduction.from_rows(F, codes, 7)
    shift, scale = working(red, [True, False, False])
    want = crossproducts((F - shift) / scale, codes, 7)
    w = red.standardized(shift, scale)
    assert error(w.products, want) < 1e-9
    assert error(red.products_about(shift, scale), want) < 1e-9
    # the same from raw products (the old reduction): measured 1.1e-3 at 1e6, 6.6e2 at 1e9, 6.3e8 at 1e12
    old = raw_reduction(F, codes, 7).products_about(shift, scale)
    assert error(old, want) > (1e-4 if offset == 1e6 else 10.0)
    # the rest of the standardized reduction describes F_w = (F − shift) / scale
    Fw = (F - shift) / scale
    in_memory = np.stack([np.bincount(codes, Fw[:, k], 7) for k in range(3)], axis=1)
    np.testing.assert_allclose(w.cluster_sums, in_memory, rtol=1e-9, atol=1e-9 * np.sqrt(len(F)))
    np.testing.assert_array_equal(w.counts, np.bincount(codes, minlength=7))
    np.testing.assert_array_equal(w.reference, np.zeros(3))
    np.testing.assert_allclose(w.mins, Fw.min(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(w.maxs, Fw.max(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(w.sums, Fw.sum(axis=0), atol=1e-9 * len(F))
    assert [w.n, w.leaf, w.source, w.sample_seed] == [red.n, red.leaf, red.source, red.sample_seed]
    for k in range(3):  # the means are those of F_w, near 0 (the shift is the mean rounded to F's precision)
        assert abs(w.mean(k) - Fw[:, k].mean()) < 1e-12 and abs(w.sd(k) - Fw[:, k].std()) < 1e-12
    assert w.mean(0) == 1.0 and abs(w.sd(1) - 1) < 1e-12


@pytest.mark.parametrize("offset", [0.0, *OFFSETS])
def test_sd_and_mean_are_precise_at_large_offsets(offset):
    F, codes = rows(offset)
    red = Reduction.from_rows(F, codes, 7)
    old = raw_reduction(F, codes, 7)
    for k in (1, 2):
        shifted = F[:, k] - F[0, k]  # exact (Sterbenz): the column's variation without its offset
        assert abs(red.sd(k) / np.std(shifted) - 1) < 1e-13
        assert abs(red.mean(k) - (F[0, k] + shifted.mean())) <= 4 * np.spacing(F[0, k]) + 1e-12
        if offset >= 1e9:  # E[x²] − mean² of the raw products: measured 1.0 (the SD comes out 0)
            assert abs(old.sd(k) / np.std(shifted) - 1) > 0.1
    assert red.sd(0) == 0.0 and red.constant(0)


@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_products_about_zero_are_the_raw_products(offset):
    F, codes = rows(offset)
    red = Reduction.from_rows(F, codes, 7)
    want = crossproducts(F, codes, 7)
    assert error(red.products_about(np.zeros(3), np.ones(3)), want) < 1e-12
    np.testing.assert_allclose(red.total(), want.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(red.products_about(red.reference, np.ones(3)), red.products, rtol=0, atol=0)


def test_a_reduction_without_the_new_fields_still_works():
    """As loaded from an old file: raw products, no reference, cluster sums or counts."""
    F, codes = rows(0.0)
    old = raw_reduction(F, codes, 7)
    assert old.reference is None and old.cluster_sums is None and old.counts is None
    np.testing.assert_array_equal(old.products_about(np.zeros(3), np.ones(3)), old.products)
    np.testing.assert_array_equal(old.products_about(np.zeros(3), np.full(3, 2.0)), old.products / 4)
    # a nonzero shift: the cluster sums and counts come from the column of ones
    shift, scale = np.array([0.0, 3.0, 5.0]), np.array([1.0, 2.0, 3.0])
    want = crossproducts((F - shift) / scale, codes, 7)
    assert error(old.products_about(shift, scale), want) < 1e-12
    w = old.standardized(shift, scale)
    np.testing.assert_array_equal(w.counts, np.bincount(codes, minlength=7))
    assert error(w.products, want) < 1e-12
    np.testing.assert_allclose(w.sums, ((F - shift) / scale).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(old.sd(2), np.std(F[:, 2]), rtol=1e-12)
    # without a column of ones they are unknown: only the reference point (zero) is allowed
    no_ones = raw_reduction(F[:, 1:], codes, 7)
    np.testing.assert_array_equal(no_ones.products_about(np.zeros(2), np.ones(2)), no_ones.products)
    with pytest.raises(ValueError, match="no per-cluster sums and counts .* no column of ones"):
        no_ones.products_about(np.array([1.0, 0.0]), np.ones(2))
    w = no_ones.standardized(np.zeros(2), np.array([2.0, 4.0]))
    assert w.cluster_sums is None and w.counts is None
    np.testing.assert_array_equal(w.products, no_ones.products / np.outer([2.0, 4.0], [2.0, 4.0]))


def test_bad_shifts_and_scales_are_refused():
    red = Reduction.from_rows(*rows(0.0), 7)
    with pytest.raises(ValueError, match=r"every scale must be positive"):
        red.standardized(np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"every scale must be positive"):
        red.standardized(np.zeros(3), np.array([1.0, -2.0, 1.0]))
    with pytest.raises(ValueError, match=r"shift must have shape \(3,\)"):
        red.products_about(np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match=r"the reduction's counts has shape \(6,\)"):
        Reduction(n=1, leaf=None, products=red.products, sums=red.sums, mins=red.mins, maxs=red.maxs,
                  source="", sample_seed=0, reference=red.reference, cluster_sums=red.cluster_sums,
                  counts=np.ones(6))


@settings(max_examples=200, deadline=None)
@given(
    shift=st.lists(st.floats(-1e9, 1e9), min_size=3, max_size=3),
    log_scale=st.lists(st.floats(-8.0, 8.0), min_size=3, max_size=3),
    offset=st.sampled_from([0.0, 1e3, 1e9]),
    seed=st.integers(0, 2**16),
)
def test_products_about_any_shift_and_scale_equal_the_in_memory_ones(shift, log_scale, offset, seed):
    """Shifts in [-1e9, 1e9], scales in [1e-8, 1e8]: products_about equals the in-memory products."""
    F, codes = rows(offset, n=60, n_leaves=4, seed=seed)
    red = Reduction.from_rows(F, codes, 4)
    shift, scale = np.array(shift), 10.0 ** np.array(log_scale)
    want = crossproducts((F - shift) / scale, codes, 4)
    assert error(red.products_about(shift, scale), want) < 1e-8


# ---------------------------------------------------------------------------- built from Dask


def sleep(offset: float) -> pd.DataFrame:
    """sleepstudy with a nested factor (week within subject) and ``offset`` added to Reaction and Days."""
    df = lb.datasets.load("sleepstudy")
    return df.assign(week=(df["Days"] // 5).astype(str), Reaction=df["Reaction"] + offset,
                     Days=df["Days"] + offset)


def sleep_rows(df: pd.DataFrame, design: lb.Design) -> tuple[np.ndarray, np.ndarray]:
    """NESTED's F = [Z_Subject, Z_Subject:week, X, y] and leaf codes, straight from the columns."""
    one, days = np.ones(len(df)), df["Days"].to_numpy(float)
    F = np.column_stack([one, days, one, one, days, df["Reaction"].to_numpy(float)])
    levels = {label: i for i, label in enumerate(design.group("Subject:week").levels)}
    codes = np.array([levels[f"{s}:{w}"] for s, w in zip(df["Subject"], df["week"])])
    return F, codes


@pytest.mark.parametrize("offset", [0.0, *OFFSETS])
def test_a_nested_model_from_dask_standardizes_exactly(offset):
    df = sleep(offset)
    model = lb.LMM(NESTED, dd.from_pandas(df, npartitions=3), progress=False)
    red = model.design.reduction
    assert [g.name for g in model.design.groups] == ["Subject", "Subject:week"] and red.leaf == "Subject:week"
    F, codes = sleep_rows(df, model.design)
    L = model.design.group("Subject:week").n_levels
    assert red.reference.shape == (6,) and red.cluster_sums.shape == (L, 6)
    np.testing.assert_array_equal(red.counts, np.bincount(codes, minlength=L))
    assert np.all((red.reference >= F.min(axis=0)) & (red.reference <= F.max(axis=0)))  # inside the data
    shift, scale = working(red, [True, False, True, True, False, False])
    want = crossproducts((F - shift) / scale, codes, L)
    assert error(red.standardized(shift, scale).products, want) < 1e-9
    for k in (1, 5):
        assert abs(red.sd(k) / np.std(F[:, k] - F[0, k]) - 1) < 1e-12
    if offset >= 1e9:
        assert error(raw_reduction(F, codes, L).products_about(shift, scale), want) > 1.0
    # the raw products the collapsed method reads, to the precision raw products allow
    assert error(red.products_about(np.zeros(6), np.ones(6)), crossproducts(F, codes, L)) < 1e-13


def test_the_rank_check_sees_through_an_offset():
    """Days + 1e9 is no copy of the intercept; raw X'X (the old check) could not tell them apart."""
    frame = dd.from_pandas(sleep(1e9), npartitions=3)
    model = lb.LMM("Reaction ~ Days + (1 | Subject)", frame, progress=False)
    XtX = model.design.reduction.total()[1:3, 1:3]
    d = np.sqrt(np.diag(XtX))
    assert np.linalg.eigvalsh(XtX / np.outer(d, d))[0] < 1e-10  # what the old check saw: rank 1
    with pytest.raises(ValueError, match=r"rank deficient: 'I\(2 \* Days\)'"):
        lb.LMM("Reaction ~ Days + I(2 * Days) + (1 | Subject)", frame, progress=False)


# ---------------------------------------------------------------------------- saved and loaded


@pytest.fixture(scope="module")
def dask_fit():
    model = lb.LMM(NESTED, dd.from_pandas(sleep(1e6), npartitions=3), sample_rows=60, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(draws=30, tune=30, chains=1, seed=3, method="collapsed", progressbar=False)


def test_a_saved_fit_keeps_the_reference_cluster_sums_and_counts(dask_fit, tmp_path):
    path = tmp_path / "fit.nc"
    dask_fit.save(path)
    before, after = dask_fit.design.reduction, lb.load(path).design.reduction
    for name in ("products", "sums", "mins", "maxs", "reference", "cluster_sums", "counts"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), err_msg=name)
    # the file's checksums cover the new arrays: an altered one is detected
    raw = xr.load_datatree(path, engine="h5netcdf")
    assert {f"{REDUCTION_GROUP}/{n}" for n in ("reference", "cluster_sums", "counts")} <= set(
        json.loads(raw.attrs[io.CHECKSUM_ATTR]))
    ds = raw[REDUCTION_GROUP].to_dataset()
    raw[REDUCTION_GROUP] = xr.DataTree(ds.assign(cluster_sums=ds["cluster_sums"] * (1 + 1e-12)))
    raw.to_netcdf(tmp_path / "altered.nc", engine="h5netcdf")
    with pytest.raises(lb.errors.FitFileError, match=rf"{REDUCTION_GROUP}/cluster_sums differs"):
        lb.load(tmp_path / "altered.nc")


def test_a_file_from_before_the_reference_still_loads(dask_fit, tmp_path):
    """Raw products and no reference, cluster sums or counts (nor checksums): loaded and fitted as before."""
    path = tmp_path / "fit.nc"
    dask_fit.save(path)
    raw = xr.load_datatree(path, engine="h5netcdf")
    red = dask_fit.design.reduction
    ds = raw[REDUCTION_GROUP].to_dataset().drop_vars(["reference", "cluster_sums", "counts"])
    raw_products = red.products_about(np.zeros(6), np.ones(6))
    raw[REDUCTION_GROUP] = xr.DataTree(ds.assign(products=(ds["products"].dims, raw_products)))
    raw.attrs.pop(io.CHECKSUM_ATTR)
    raw.attrs["lmm_bayes_format_version"] = 1  # a file from before checksums (version 2 requires them)
    raw.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    with pytest.warns(UserWarning, match="predates"):
        old = lb.load(tmp_path / "old.nc")
    loaded = old.design.reduction
    assert loaded.reference is None and loaded.cluster_sums is None and loaded.counts is None
    a, b = sufficient_statistics(dask_fit.design), sufficient_statistics(old.design)
    np.testing.assert_array_equal(b.XtX, a.XtX)
    assert b.yty == a.yty
    for k in range(6):  # the default priors' scales: at a 1e6 offset the raw SD keeps about 6 digits
        np.testing.assert_allclose(loaded.sd(k), red.sd(k), rtol=1e-5, atol=1e-12)
    # shifts still work, through the column of ones, as precise as raw products at a 1e6 offset are
    # (measured 8.5e-6; the same shift of the new reduction is exact to 1e-15, as tested above)
    shift = np.array([0.0, red.mean(1), 1.0, 1.0, red.mean(4), red.mean(5)])
    assert error(loaded.products_about(shift, np.ones(6)), red.products_about(shift, np.ones(6))) < 1e-4

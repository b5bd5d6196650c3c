"""Models built from Dask DataFrames and Parquet files (issue 17, lmm_bayes/spec/dask_data.py).

10^5 rows of nested data, sorted by subject and cut into uneven partitions (one empty, one
of 13 rows holding a single subject): the sufficient statistics and default priors equal
the in-memory ones to rounding; a fit through a ``LocalCluster`` matches the in-memory fit
with the same seed; the fit keeps a seeded sample of rows, and predicts, saves and loads;
every bad input names its column and its partition or file.
"""

from __future__ import annotations

import warnings

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import lmm_bayes as lb
from lmm_bayes.errors import RowsDroppedWarning
from lmm_bayes.inference.layout import hyperparameter_draws, hyperparameters
from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics

FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
#: the same model with the factors listed finest first: the reduction's columns are in the
#: formula's order and must be put in the chain's order (a mutation there shows only here)
REVERSED = "y ~ x + (1 | subject:neuron) + (1 + x | subject)"
N = 100_000
BOUNDS = [0, 0, 13, 30_013, 31_000, 75_000, N]


def simulate(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subjects, neurons = 12, 8
    s, nn = rng.integers(0, subjects, n), rng.integers(0, neurons, n)
    x = rng.standard_normal(n)
    bs = rng.multivariate_normal([0.0, 0.0], [[1.0, -0.2], [-0.2, 0.25]], size=subjects)
    bn = rng.normal(0.0, 0.7, (subjects, neurons))
    y = 5.0 + 1.5 * x + bs[s, 0] + bs[s, 1] * x + bn[s, nn] + rng.normal(0.0, 2.0, n)
    df = pd.DataFrame({"y": y, "x": x, "subject": np.array([f"s{k}" for k in range(subjects)])[s],
                       "neuron": np.array([f"n{k}" for k in range(neurons)])[nn]})
    return df.sort_values("subject", kind="stable").reset_index(drop=True)


def pieces(df: pd.DataFrame) -> list[pd.DataFrame]:
    return [df.iloc[a:b] for a, b in zip(BOUNDS[:-1], BOUNDS[1:])]


def partitioned(parts: list[pd.DataFrame]) -> dd.DataFrame:
    return dd.from_delayed([dask.delayed(p) for p in parts], meta=parts[0].iloc[:0], verify_meta=False)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def ddf(df) -> dd.DataFrame:
    frame = partitioned(pieces(df))
    sizes = [len(p) for p in pieces(df)]
    assert frame.npartitions == 6 and 0 in sizes
    assert pieces(df)[1]["subject"].nunique() == 1  # a partition that lacks most levels
    return frame


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a))) if np.size(a) else 0.0


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("formula", [FORMULA, REVERSED])
def test_statistics_and_priors_equal_the_in_memory_ones(df, ddf, formula):
    memory = lb.LMM(formula, df)
    reduced = lb.LMM(formula, ddf, progress=False)
    a, b = sufficient_statistics(memory.design), sufficient_statistics(reduced.design)
    assert b.n == a.n == N and reduced.design.n_rows == N
    for name in ("XtX", "Xty"):
        assert _relative(getattr(a, name), getattr(b, name)) < 1e-12, name
    assert abs(a.yty - b.yty) / a.yty < 1e-12
    assert [lev.name for lev in a.levels] == [lev.name for lev in b.levels]
    for la, lb_ in zip(a.levels, b.levels):
        for name in ("ZtZ", "ZtA", "ZtX", "Zty"):
            assert _relative(getattr(la, name), getattr(lb_, name)) < 1e-12, (la.name, name)
        np.testing.assert_array_equal(la.parent, lb_.parent)
    for g, h in zip(memory.design.groups, reduced.design.groups):
        assert g.levels == h.levels and g.parent == h.parent
    # the default priors are scaled from sums over every row, not from the sample
    pm_, pr = memory.priors, reduced.priors
    np.testing.assert_allclose(pr.sigma.kwargs["lam"], pm_.sigma.kwargs["lam"], rtol=1e-10)
    for name in ("Intercept", "x"):
        for key, value in pm_.fixed_by_name[name].kwargs.items():
            np.testing.assert_allclose(pr.fixed_by_name[name].kwargs[key], value, rtol=1e-10, atol=1e-12)
    for g in memory.design.groups:
        for (_, p1), (_, p2) in zip(pm_.group_by_name[g.name].sd, pr.group_by_name[g.name].sd):
            np.testing.assert_allclose(p2.kwargs["sigma"], p1.kwargs["sigma"], rtol=1e-10)


@pytest.mark.parametrize("formula", ["y ~ x + cond + (1 | subject)", "y ~ x + C(k) + (1 + x | subject)"])
def test_categories_seen_in_one_partition_only_are_coded_as_in_memory(df, formula):
    # "c" (rows 99,995+) and k = 9 (rows 99,990+) occur only in the last partition, never in a cluster's first
    # row: the skeleton must still give formulae every category
    n = len(df)
    data = df.assign(cond=np.where(np.arange(n) >= 99_995, "c", np.where(np.arange(n) % 2, "a", "b")),
                     k=np.where(np.arange(n) >= 99_990, 9, np.arange(n) % 3))
    memory = lb.LMM(formula, data)
    reduced = lb.LMM(formula, partitioned(pieces(data)), progress=False)
    assert reduced.design.X_columns == memory.design.X_columns
    a, b = sufficient_statistics(memory.design), sufficient_statistics(reduced.design)
    assert _relative(a.XtX, b.XtX) < 1e-12 and _relative(a.levels[0].ZtX, b.levels[0].ZtX) < 1e-12
    new = data.iloc[[0, 99_999]]
    np.testing.assert_array_equal(reduced.design.evaluate(new).X, memory.design.evaluate(new).X)


def test_parquet_files_give_the_same_statistics(df, ddf, tmp_path):
    for k, part in enumerate(pieces(df)):
        part.to_parquet(tmp_path / f"part-{k}.parquet")
    from_files = lb.LMM.from_parquet(tmp_path / "part-*.parquet", FORMULA, progress=False)
    from_frame = lb.LMM(FORMULA, ddf, progress=False)
    assert from_files.design.reduction.source == "6 Parquet files"
    np.testing.assert_array_equal(from_files.design.reduction.products, from_frame.design.reduction.products)
    # a folder reads the same files
    again = lb.LMM.from_parquet(tmp_path, FORMULA, progress=False)
    np.testing.assert_array_equal(again.design.reduction.sums, from_files.design.reduction.sums)


def test_the_sample_is_seeded_uniform_rows_of_the_data(df, ddf):
    one = lb.LMM(FORMULA, ddf, sample_rows=700, sample_seed=3, progress=False).design
    same = lb.LMM(FORMULA, ddf, sample_rows=700, sample_seed=3, progress=False).design
    other = lb.LMM(FORMULA, ddf, sample_rows=700, sample_seed=4, progress=False).design
    assert one.n == 700 and one.index.is_unique
    np.testing.assert_array_equal(one.index, same.index)
    assert not np.array_equal(one.index, other.index)
    # the rows are the data's own (index = position in the concatenated partitions)
    rows = df.loc[one.index]
    np.testing.assert_array_equal(one.y, rows["y"].to_numpy())
    np.testing.assert_array_equal(one.X[:, 1], rows["x"].to_numpy())
    g = one.group("subject:neuron")
    labels = np.asarray(g.levels, dtype=object)[g.codes]
    np.testing.assert_array_equal(labels, (rows["subject"] + ":" + rows["neuron"]).to_numpy())
    # uniform over the rows: the share drawn from the partition of rows 31,000-75,000 is binomial
    share = float(np.mean((one.index >= 31_000) & (one.index < 75_000)))
    p = 44_000 / N
    assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / 700)


# ---------------------------------------------------------------------------- the fit


@pytest.fixture(scope="module")
def fits(df, ddf):
    settings = dict(draws=300, tune=300, chains=2, seed=5, progressbar=False)
    memory = lb.LMM(FORMULA, df)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        reduced = lb.LMM(FORMULA, ddf, sample_rows=2_000, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.errors.SamplingWarning)  # 300 draws: R-hat may pass 1.01
        return memory.fit(**settings), reduced.fit(**settings)


def test_fit_from_a_local_cluster_matches_the_in_memory_fit(fits):
    memory, reduced = fits
    params = hyperparameters(memory.design)
    a = hyperparameter_draws(memory.posterior, params)
    b = hyperparameter_draws(reduced.posterior, params)
    import arviz as az

    se = np.sqrt(az.mcse(a).values ** 2 + az.mcse(b).values ** 2)
    diff = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values)
    assert np.all(diff < 4 * se), diff / se  # measured: 0 (the same draws: equal statistics, same seed)
    assert reduced.idata.attrs["method"] == "collapsed"


def test_the_fit_keeps_no_rows_but_its_sample(fits):
    _, reduced = fits
    assert reduced.idata["observed_data"]["y"].shape == (2_000,)
    assert reduced.idata["constant_data"]["X"].shape == (2_000, 2)
    assert reduced.idata["log_likelihood"]["y"].shape == (2, 300, 2_000)
    assert reduced.loo().n_data_points == 2_000
    ppc = reduced.posterior_predictive(seed=1)
    assert ppc.idata["posterior_predictive"]["y"].shape == (2, 300, 2_000)
    assert "Rows: 100000" in str(reduced.summary()) and "a random sample of 2,000 rows" in str(reduced.summary())
    assert "100,000 (from a Dask DataFrame of 6 partitions; 2,000 kept" in repr(reduced.model)


def test_predict_new_rows_and_save_load(fits, tmp_path):
    memory, reduced = fits
    new = pd.DataFrame({"x": [0.5, -1.0, 2.0], "subject": ["s1", "s2", "zz"], "neuron": ["n1", "n7", "n1"]})
    pred = reduced.predict(new, levels="new", seed=2)
    assert pred.shape == (2, 300, 3)
    # "existing" clusters: x beta + z b of the fit's own draws
    seen = new.iloc[:2]
    got = reduced.predict(seen, levels="existing").values
    post = reduced.posterior
    beta = post["beta"].values
    b_s = post["subject_b"].sel(subject=["s1", "s2"]).values  # (chain, draw, level, effect)
    b_n = post["subject:neuron_b"].sel({"subject:neuron": ["s1:n1", "s2:n7"]}).values[..., 0]
    x = seen["x"].to_numpy()
    want = beta[..., :1] + beta[..., 1:] * x + b_s[..., 0] + b_s[..., 1] * x + b_n
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="unseen level"):
        reduced.predict(new, levels="existing")
    path = tmp_path / "fit.nc"
    reduced.save(path)
    loaded = lb.load(path)
    assert loaded.design.n_rows == N and loaded.design.n == 2_000
    pd.testing.assert_frame_equal(loaded.fixef(), reduced.fixef())
    np.testing.assert_array_equal(loaded.design.reduction.products, reduced.design.reduction.products)
    np.testing.assert_allclose(loaded.predict(seen, levels="existing").values, got)
    assert loaded.priors == reduced.priors


def test_shrinkage_and_the_full_method_need_every_row(fits):
    _, reduced = fits
    with pytest.raises(ValueError, match="keeps a sample of 2,000 rows"):
        reduced.shrinkage("subject")
    with pytest.raises(ValueError, match="method='full' and centered=True need every row"):
        reduced.model.fit(method="full", draws=10, tune=10, chains=1)


def test_worker_processes_rebuild_the_design_from_the_skeleton(ddf):
    """With worker processes the plan is pickled (a Design is not picklable) and every worker rebuilds it."""
    threads = lb.LMM(FORMULA, ddf, progress=False).design.reduction
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        processes = lb.LMM(FORMULA, ddf, progress=False).design.reduction
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(processes.products, threads.products, rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(processes.sums, threads.sums, rtol=1e-13)


def test_progress_is_shown_with_a_distributed_client(ddf, capsys):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        lb.LMM("y ~ x + (1 | subject)", ddf, sample_rows=100, progress=True)
    out = capsys.readouterr().out
    assert "reading the levels (6 partitions)" in out and "reducing 100,000 rows" in out
    assert "a random sample of 100 rows (seed 0)" in out


# ---------------------------------------------------------------------------- bad input


def test_nan_in_one_partition_names_it(df):
    parts = pieces(df)
    bad = parts[3].copy()
    bad.iloc[5, bad.columns.get_loc("x")] = np.nan
    bad.iloc[7, bad.columns.get_loc("x")] = np.inf
    frame = partitioned([*parts[:3], bad, *parts[4:]])
    with pytest.raises(ValueError, match=r"'x': 2 in partition 3; clean them, or pass na_action='drop'"):
        lb.LMM(FORMULA, frame, progress=False)
    with pytest.warns(RowsDroppedWarning, match=r"dropped 2 of 100000 rows .*'x': 2 in partition 3"):
        model = lb.LMM(FORMULA, frame, progress=False, na_action="drop")
    assert model.design.n_rows == N - 2 and model.design.reduction.dropped == 2


def test_bad_files_are_named(df, tmp_path):
    parts = pieces(df)
    for k, part in enumerate(parts):
        if k == 2:
            part = part.drop(columns="x")
        part.to_parquet(tmp_path / f"part-{k}.parquet")
    with pytest.raises(ValueError, match=r"file '.*part-2\.parquet' has no column 'x'"):
        lb.LMM.from_parquet(tmp_path / "part-*.parquet", FORMULA, progress=False)
    parts[2].assign(y=np.where(np.arange(len(parts[2])) == 1, np.nan, parts[2]["y"])).to_parquet(
        tmp_path / "part-2.parquet")
    with pytest.raises(ValueError, match=r"'y': 1 in partition 2 \(file '.*part-2\.parquet'\)"):
        lb.LMM.from_parquet(tmp_path / "part-*.parquet", FORMULA, progress=False)
    with pytest.raises(ValueError, match="no Parquet file matches"):
        lb.LMM.from_parquet(tmp_path / "nothing-*.parquet", FORMULA, progress=False)
    with pytest.raises(TypeError, match="path must be a Parquet file, folder or glob"):
        lb.LMM.from_parquet(3, FORMULA)



def _small_files(folder, n_files: int = 2) -> list:
    """Tiny Parquet files of one model (issue 37 item 9): 20 rows each."""
    rng = np.random.default_rng(1)
    paths = []
    for k in range(n_files):
        part = pd.DataFrame({"y": rng.normal(size=20), "x": rng.normal(size=20),
                             "subject": np.repeat([f"s{2 * k}", f"s{2 * k + 1}"], 10)})
        paths.append(folder / f"part-{k}.parquet")
        part.to_parquet(paths[-1])
    return paths


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda good: b"", r"part-1\.parquet' is empty \(0 bytes\)"),
        (lambda good: good[: len(good) // 2], r"part-1\.parquet' is truncated, corrupt or not a Parquet file"),
        (lambda good: np.random.default_rng(0).bytes(len(good)), r"part-1\.parquet' is truncated, corrupt"),
        (lambda good: good[120:], r"part-1\.parquet' is truncated, corrupt"),  # footer intact, pages not
    ],
    ids=["empty", "truncated", "random-bytes", "damaged-pages"],
)
def test_unreadable_parquet_files_are_named(tmp_path, damage, match):
    paths = _small_files(tmp_path)
    paths[1].write_bytes(damage(paths[1].read_bytes()))
    with pytest.raises(ValueError, match=match + r".*remove the file .* or rewrite it") as caught:
        lb.LMM.from_parquet(tmp_path, "y ~ x + (1 | subject)", progress=False)
    assert type(caught.value) is ValueError  # not pyarrow's ArrowInvalid (a ValueError too)
    frame = dd.read_parquet(str(tmp_path))  # the user's own Dask frame over the same files
    with pytest.raises(ValueError, match=match) as caught:
        lb.LMM("y ~ x + (1 | subject)", frame, progress=False)
    assert type(caught.value) is ValueError


@pytest.mark.parametrize("column", ["x", "y"])
def test_a_column_of_text_in_one_file_only_is_named(tmp_path, column):
    paths = _small_files(tmp_path, n_files=3)
    part = pd.read_parquet(paths[1])
    part.assign(**{column: part[column].astype(str)}).to_parquet(paths[1])
    match = (rf"column '{column}' holds text \(.*\) in file '.*part-1\.parquet' but numbers \(double\) "
             r"in 2 other file\(s\).*cast the column in that file")
    with pytest.raises(ValueError, match=match):
        lb.LMM.from_parquet(tmp_path, "y ~ x + (1 | subject)", progress=False)
    frame = dd.read_parquet(str(tmp_path))  # meta from the first file: numbers; partition 1 holds text
    with pytest.raises(ValueError, match=rf"partition 1: column '{column}' holds text .* but numbers"):
        lb.LMM("y ~ x + (1 | subject)", frame, progress=False)

@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ x + (1 | subject) + (1 | neuron)", "are crossed; a model built from Dask or Parquet supports"),
        ("log(y) ~ x + (1 | subject)", "the response 'log\\(y\\)' is a transformation"),
        ("y ~ center(x) + (1 | subject)", "center\\(\\) learn from every row"),
        ("y ~ x + w + (1 | subject)", "the formula uses 'w', which the Dask DataFrame does not have"),
        ("y ~ x + I(2 * x) + (1 | subject)", "rank deficient: 'I\\(2 \\* x\\)'"),
    ],
)
def test_unsupported_models_and_bad_columns_are_refused(ddf, formula, match):
    with pytest.raises(ValueError, match=match):
        lb.LMM(formula, ddf, progress=False)


def test_non_numeric_response_and_bad_sample_size(df):
    frame = dd.from_pandas(df.assign(y=df["y"].astype(str)), npartitions=2)
    with pytest.raises(ValueError, match="response"):
        lb.LMM("y ~ x + (1 | subject)", frame, progress=False)
    frame = dd.from_pandas(df, npartitions=2)
    with pytest.raises(ValueError, match="sample_rows must be at least 1, got 0"):
        lb.LMM("y ~ x + (1 | subject)", frame, sample_rows=0, progress=False)
    with pytest.raises(TypeError, match="sample_rows must be an integer, got float"):
        lb.LMM("y ~ x + (1 | subject)", frame, sample_rows=1e4, progress=False)
    with pytest.raises(TypeError, match="progress must be True or False"):
        lb.LMM("y ~ x + (1 | subject)", frame, progress="yes")
    with pytest.raises(ValueError, match="sample_seed"):
        lb.LMM("y ~ x + (1 | subject)", frame, sample_seed=-1, progress=False)

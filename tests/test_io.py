"""Save and load: one netCDF file, identical numbers after the round trip, clear errors."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmm_bayes as lb
from lmm_bayes.inference.layout import constant_data
from lmm_bayes.results import io
from lmm_bayes.api.fit import PoolingFit

SLOPES = "Reaction ~ Days + (Days | Subject)"
FAST = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False, "method": "full"}


@pytest.fixture(scope="module")
def fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(SLOPES, sleepstudy).fit(seed=11, **FAST)


def prior_fit(model: lb.LMM, *, draws: int = 40, seed: int = 0) -> lb.Fit:
    """A Fit whose 'posterior' is a set of prior draws: same layout, no sampling."""
    pp = model.prior_predictive(draws=draws, seed=seed)
    idata = xr.DataTree.from_dict(
        {
            "posterior": pp["prior"].to_dataset(),
            "observed_data": pp["observed_data"].to_dataset(),
            "constant_data": constant_data(model.design),
        }
    )
    idata.attrs.update(
        lmm_bayes_version=lb.__version__, formula=model.formula, priors=model.priors.to_json(), sampler="prior",
        method="full", chains=1, draws=draws, tune=0, seed=seed,
    )
    return lb.Fit(idata=idata, model=model)


@pytest.fixture(scope="module")
def nested_fit():
    """Nested factors (':' in dim names), a categorical fixed effect in a non-alphabetical order, text row labels."""
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(4)], 15)
    neurons = np.tile(np.repeat(["n1", "n2", "n3"], 5), 4)
    data = pd.DataFrame(
        {
            "subject": subjects,
            "neuron": neurons,
            "x": rng.normal(size=60),
            "cond": pd.Categorical(np.tile(["treat", "control"], 30), categories=["treat", "control"]),
            "y": rng.normal(size=60),
            "unused": "ignored",
        },
        index=[f"r{i}" for i in range(60)],
    )
    model = lb.LMM("y ~ x + cond + (1 + x | subject) + (1 | subject:neuron)", data)
    return prior_fit(model)


def test_round_trip_gives_identical_numbers(fit, tmp_path):
    path = tmp_path / "fit.nc"
    fit.save(path)
    loaded = lb.load(path)
    assert isinstance(loaded, lb.Fit)
    new = pd.DataFrame({"Days": [0, 5, 9, 2], "Subject": ["308", "309", "new", "other"]})
    for levels in ("existing", "population"):
        np.testing.assert_array_equal(loaded.predict(levels=levels).values, fit.predict(levels=levels).values)
    for kind in ("mean", "response"):
        a = loaded.predict(new, levels="new", kind=kind, seed=3)
        b = fit.predict(new, levels="new", kind=kind, seed=3)
        xr.testing.assert_identical(a, b)
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef())
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr())
    pd.testing.assert_frame_equal(loaded.ranef("Subject"), fit.ranef("Subject"))
    pd.testing.assert_frame_equal(loaded.icc(at={"Days": 3}), fit.icc(at={"Days": 3}))
    assert loaded.diagnostics() == fit.diagnostics()
    assert str(loaded.summary()) == str(fit.summary())
    assert loaded.model.formula == SLOPES
    assert loaded.priors == fit.priors
    assert loaded.model.priors == fit.model.priors
    for key in ("formula", "sampler", "method", "seed", "draws", "chains", "lmm_bayes_version"):
        assert loaded.idata.attrs[key] == fit.idata.attrs[key]
    assert set(loaded.idata.children) == set(fit.idata.children)


def test_file_holds_the_draws_the_data_and_a_format_marker(fit, tmp_path):
    path = tmp_path / "fit.nc"
    io.save(fit, str(path))
    raw = xr.load_datatree(path, engine="h5netcdf")
    assert raw.attrs["lmm_bayes_format"] == io.FORMAT
    assert raw.attrs["lmm_bayes_format_version"] == io.FORMAT_VERSION
    assert {"posterior", "sample_stats", "observed_data", "constant_data", io.DATA_GROUP} <= set(raw.children)
    data = raw[io.DATA_GROUP]
    assert [data[f"col_{k}"].attrs["name"] for k in range(3)] == ["Reaction", "Days", "Subject"]
    xr.testing.assert_equal(raw["posterior"]["beta"], fit.posterior["beta"])
    # saving changes neither the fit nor leaves temporary files behind
    assert "lmm_bayes_format" not in fit.idata.attrs and io.DATA_GROUP not in fit.idata.children
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_posterior_predictive_group_survives(fit, tmp_path):
    pp_fit = fit.posterior_predictive(seed=1)
    pp_fit.save(tmp_path / "pp.nc")
    loaded = lb.load(tmp_path / "pp.nc")
    xr.testing.assert_identical(
        loaded.idata["posterior_predictive"]["y"], pp_fit.idata["posterior_predictive"]["y"]
    )


def test_nested_names_categoricals_and_text_index_round_trip(nested_fit, tmp_path):
    path = tmp_path / "nested.nc"
    nested_fit.save(path)
    loaded = lb.load(path)
    assert "subject:neuron_b" in loaded.posterior and "subject:neuron" in loaded.posterior.dims
    assert loaded.design.X_columns == nested_fit.design.X_columns
    np.testing.assert_array_equal(loaded.design.X, nested_fit.design.X)
    assert [g.levels for g in loaded.design.groups] == [g.levels for g in nested_fit.design.groups]
    original = nested_fit.design.data
    back = loaded.design.data
    assert list(back.columns) == list(original.columns) and "unused" not in back.columns
    assert list(back.index) == list(original.index)
    assert isinstance(back["cond"].dtype, pd.CategoricalDtype)
    assert list(back["cond"].cat.categories) == ["treat", "control"]
    np.testing.assert_array_equal(back["x"].to_numpy(), original["x"].to_numpy())
    new = pd.DataFrame({"subject": ["s0", "s0", "s9"], "neuron": ["n1", "n7", "n1"], "x": [0.1, 0.2, 0.3],
                        "cond": ["control", "treat", "treat"]}, index=["a", "b", "c"])
    xr.testing.assert_identical(
        loaded.predict(new, levels="new", kind="response", seed=1),
        nested_fit.predict(new, levels="new", kind="response", seed=1),
    )
    np.testing.assert_array_equal(loaded.predict().values, nested_fit.predict().values)
    assert list(loaded.predict()["obs"].values) == [f"r{i}" for i in range(60)]


def test_save_overwrites(fit, nested_fit, tmp_path):
    path = tmp_path / "fit.nc"
    nested_fit.save(path)
    fit.save(path)
    assert lb.load(path).model.formula == SLOPES


def prior_complete_pooling_fit(model: lb.LMM, group: str, *, draws: int = 40) -> PoolingFit:
    """A complete-pooling PoolingFit whose 'posterior' is the prior's beta and sigma (no cluster dim)."""
    fit = prior_fit(model, draws=draws)
    post = fit.posterior[["beta", "sigma"]]
    idata = xr.DataTree.from_dict({"posterior": post, "observed_data": fit.idata["observed_data"].to_dataset()})
    idata.attrs.update(fit.idata.attrs, pooling="complete_pooling", group=group)
    return PoolingFit(idata, model)


def test_complete_pooling_fit_round_trip(nested_fit, tmp_path):
    fit = prior_complete_pooling_fit(nested_fit.model, "subject")
    path = tmp_path / "complete.nc"
    fit.save(path)
    assert xr.load_datatree(path, engine="h5netcdf").attrs[io.KIND_ATTR] == "pooling"
    loaded = lb.load(path)
    assert isinstance(loaded, PoolingFit) and loaded.pooling == "complete_pooling" and loaded.group == "subject"
    assert io.KIND_ATTR not in loaded.idata.attrs
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef())
    pd.testing.assert_frame_equal(loaded.coef("subject"), fit.coef("subject"))
    # a mixed model's file still loads as a Fit
    nested_fit.save(path)
    assert type(lb.load(path)) is lb.Fit


# ---------------------------------------------------------------- errors


def test_unknown_kind_or_damaged_pooling_raises(nested_fit, tmp_path):
    path = tmp_path / "fit.nc"
    nested_fit.save(path)
    tree = xr.load_datatree(path, engine="h5netcdf")
    tree.attrs[io.KIND_ATTR] = "hierarchical"
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(io.FitFileError, match=r"a fit of kind 'hierarchical', which this lmm-bayes does not know"):
        lb.load(path)
    prior_complete_pooling_fit(nested_fit.model, "subject").save(path)
    tree = xr.load_datatree(path, engine="h5netcdf")
    tree.attrs["pooling"] = "some_pooling"
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(io.FitFileError, match=r"attrs\['pooling'\] must be one of .*the file may be damaged"):
        lb.load(path)


def test_not_our_file_raises(tmp_path):
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(io.FitFileError, match=r"is not an lmm-bayes fit file \(it cannot be read as netCDF4"):
        lb.load(text)
    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"is a netCDF file but not an lmm-bayes fit \(no 'lmm-bayes-fit' marker\)"):
        lb.load(other)


def test_newer_format_version_raises(fit, tmp_path, monkeypatch):
    path = tmp_path / "future.nc"
    monkeypatch.setattr(io, "FORMAT_VERSION", io.FORMAT_VERSION + 1)
    fit.save(path)
    monkeypatch.undo()
    newer = io.FORMAT_VERSION + 1
    with pytest.raises(io.FitFileError, match=rf"format version {newer}, newer than this lmm-bayes reads.*upgrade"):
        lb.load(path)


def test_damaged_design_is_detected(nested_fit, tmp_path):
    path = tmp_path / "fit.nc"
    nested_fit.save(path)
    tree = xr.load_datatree(path, engine="h5netcdf")
    tree["observed_data"] = xr.DataTree(tree["observed_data"].to_dataset() + 1.0)
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(io.FitFileError, match=r"does not match the draws \(the response differs\)"):
        lb.load(path)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda f, p: io.save("fit", p / "x.nc"), TypeError, r"fit must be an lmm_bayes.Fit, got str"),
        (lambda f, p: f.save(3), TypeError, r"path must be a file path \(str or pathlib.Path\), got int"),
        (lambda f, p: f.save(p), ValueError, r"is a directory"),
        (lambda f, p: f.save(p / "no" / "such" / "x.nc"), ValueError, r"does not exist; create it first"),
        (lambda f, p: lb.load(p / "missing.nc"), FileNotFoundError, r"no fit file at"),
        (lambda f, p: lb.load(None), TypeError, r"path must be a file path"),
    ],
)
def test_bad_arguments_raise(nested_fit, tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(nested_fit, tmp_path)


# ---------------------------------------------------------------- damaged and altered files

CHECKSUMS = "lmm_bayes_checksums"  # the root attribute holding the per-item checksums


def damage(tree, change, path, *, keep_checksums=True):
    """Write a copy of the raw ``tree`` changed by ``change`` (a function of the tree) to ``path``."""
    tree = tree.copy(deep=True)
    if not keep_checksums:
        tree.attrs.pop(CHECKSUMS, None)
    change(tree)
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def edit(group, var, fn):
    """A change that replaces the values of ``tree[group][var]`` by ``fn(values)``."""
    def change(tree):
        ds = tree[group].to_dataset()
        ds[var] = ds[var].copy(data=fn(ds[var].values.copy()))
        tree[group] = xr.DataTree(ds)
    return change


def edit_attrs(group, var, **attrs):
    """A change that sets (``None``: deletes) attributes of a group (``var=None``) or of one variable."""
    def change(tree):
        ds = tree[group].to_dataset()
        target = ds.attrs if var is None else ds[var].attrs
        for key, value in attrs.items():
            target.pop(key, None) if value is None else target.__setitem__(key, value)
        tree[group] = xr.DataTree(ds)
    return change


def set_root(**attrs):
    def change(tree):
        for key, value in attrs.items():
            tree.attrs.pop(key, None) if value is None else tree.attrs.__setitem__(key, value)
    return change


def drop(group, var=None):
    def change(tree):
        if var is None:
            del tree[group]
        else:
            tree[group] = xr.DataTree(tree[group].to_dataset().drop_vars(var))
    return change


def swap_rows(values):
    values[[0, -1]] = values[[-1, 0]]
    return values


@pytest.fixture(scope="module")
def raw(nested_fit, tmp_path_factory):
    """The nested fit's file as written, read back as a plain DataTree (read once for the module)."""
    path = tmp_path_factory.mktemp("raw") / "fit.nc"
    nested_fit.save(path)
    return xr.load_datatree(path, engine="h5netcdf")


# the nested fit's training data: col_0 y, col_1 x, col_2 cond (categorical), col_3 subject, col_4 neuron
DAMAGED = {
    "no priors attribute": (set_root(priors=None), r"no 'priors' attribute"),
    "no formula attribute": (set_root(formula=None), r"no 'formula' attribute"),
    "priors not JSON": (set_root(priors="{'fixed': "), r"the stored priors cannot be read"),
    "priors not a priors dict": (set_root(priors="[1, 2]"), r"the stored priors cannot be read"),
    "priors missing a key": (set_root(priors='{"sigma": {"dist": "HalfNormal", "sigma": 1.0}}'),
                             r"the stored priors cannot be read"),
    "priors unknown distribution": (
        lambda t: t.attrs.__setitem__("priors", t.attrs["priors"].replace('"Exponential"', '"Nope"')),
        r"prior for sigma: distribution 'Nope' is not one of"),
    "formula unreadable": (set_root(formula="y ~~ x"), r"cannot rebuild the model"),
    "formula of other columns": (set_root(formula="y ~ zz + (1 | subject)"), r"cannot rebuild the model"),
    "format version not a number": (set_root(lmm_bayes_format_version="one"), r"invalid fit-file format version"),
    "data group missing a column": (drop(io.DATA_GROUP, "col_1"), r"training data.*no variable 'col_1'"),
    "data group missing categories": (drop(io.DATA_GROUP, "col_2_categories"),
                                      r"training data.*no variable 'col_2_categories'"),
    "data group missing row labels": (drop(io.DATA_GROUP, "row"), r"training data.*no row labels"),
    "column without name": (edit_attrs(io.DATA_GROUP, "col_1", name=None), r"col_1.*no 'name' attribute"),
    "column of unknown kind": (edit_attrs(io.DATA_GROUP, "col_1", kind="weird"), r"col_1.*unknown kind 'weird'"),
    "text column said numeric": (edit_attrs(io.DATA_GROUP, "col_3", kind="numeric"), r"col_3.*not numbers"),
    "numeric column said categorical": (edit_attrs(io.DATA_GROUP, "col_1", kind="categorical"),
                                        r"no variable 'col_1_categories'"),
    "bad categories kind": (edit_attrs(io.DATA_GROUP, "col_2", categories_kind="weird"),
                            r"col_2.*categories_kind"),
    "bad ordered flag": (edit_attrs(io.DATA_GROUP, "col_2", ordered="maybe"), r"col_2.*'ordered'"),
    "category codes out of range": (edit(io.DATA_GROUP, "col_2", lambda v: v + 5), r"col_2.*codes"),
    "bad column count": (edit_attrs(io.DATA_GROUP, None, columns="six"), r"'columns' attribute"),
    "too many columns": (edit_attrs(io.DATA_GROUP, None, columns=9), r"no variable 'col_5'"),
    "bad index names": (edit_attrs(io.DATA_GROUP, None, index_names="[1, 2, 3]"), r"'index_names'"),
    "bad index levels": (edit_attrs(io.DATA_GROUP, None, index_levels=-1), r"'index_levels'"),
    "no posterior": (drop("posterior"), r"no posterior group"),
    "posterior without beta": (drop("posterior", "beta"), r"the posterior lacks 'beta'"),
    "altered subject codes": (edit("constant_data", "subject_codes", swap_rows), r"codes of 'subject' differ"),
    "altered nested codes": (edit("constant_data", "subject:neuron_codes", lambda v: (v + 1) % 12),
                             r"codes of 'subject:neuron' differ"),
    "altered Z": (edit("constant_data", "subject_Z", lambda v: 2 * v), r"Z of 'subject' differs"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_file_raises_fit_file_error(raw, tmp_path, case):
    """A file from before checksums (or one stripped of them), damaged: FitFileError naming file and problem."""
    change, match = DAMAGED[case]
    saved = damage(raw, change, tmp_path / "fit.nc", keep_checksums=False)
    with pytest.raises(lb.errors.FitFileError, match=match) as info:
        lb.load(saved)
    assert str(saved) in str(info.value)


ALTERED = {
    "constant_data/subject_codes": edit("constant_data", "subject_codes", swap_rows),
    "constant_data/subject:neuron_codes": edit("constant_data", "subject:neuron_codes", swap_rows),
    "constant_data/subject_Z": edit("constant_data", "subject_Z", lambda v: v * 1.0001),
    "constant_data/X": edit("constant_data", "X", swap_rows),
    "observed_data/y": edit("observed_data", "y", lambda v: v + 1e-9),
    "posterior/subject": lambda t: t.__setitem__(
        "posterior", xr.DataTree(t["posterior"].to_dataset().assign_coords(subject=["s1", "s0", "s2", "s3"]))),
    f"{io.DATA_GROUP}/row": lambda t: t.__setitem__(
        io.DATA_GROUP, xr.DataTree(t[io.DATA_GROUP].to_dataset().assign_coords(row=[f"q{i}" for i in range(60)]))),
    f"{io.DATA_GROUP}/col_1": edit(io.DATA_GROUP, "col_1", lambda v: v * 2),
    f"{io.DATA_GROUP}/col_3": edit(io.DATA_GROUP, "col_3", swap_rows),
    "attribute 'formula'": set_root(formula="y ~ x + cond + (1 + x | subject) + (1 | neuron:subject)"),
    "attribute 'priors'": lambda t: t.attrs.__setitem__("priors", t.attrs["priors"].replace("2.5", "3.5")),
    "attribute 'method'": set_root(method="collapsed"),
    "attribute 'seed'": set_root(seed=None),
    "constant_data": drop("constant_data"),
}


@pytest.mark.parametrize("item", list(ALTERED))
def test_altered_file_is_detected_by_its_checksums(raw, tmp_path, item):
    saved = damage(raw, ALTERED[item], tmp_path / "fit.nc")
    with pytest.raises(lb.errors.FitFileError, match=r"was altered after it was saved") as info:
        lb.load(saved)
    assert str(saved) in str(info.value) and item in str(info.value)


def test_checksums_are_stored_and_a_file_without_them_still_loads(nested_fit, raw, tmp_path):
    sums = json.loads(raw.attrs[CHECKSUMS])
    assert {"constant_data/X", "constant_data/subject_codes", "constant_data/subject:neuron_Z",
            "observed_data/y", "posterior/subject", "attribute 'formula'", f"{io.DATA_GROUP}/col_3"} <= set(sums)
    path = damage(raw, lambda t: None, tmp_path / "fit.nc")
    assert CHECKSUMS not in lb.load(path).idata.attrs
    damage(raw, set_root(lmm_bayes_format_version=1), path, keep_checksums=False)  # before checksums existed
    with pytest.warns(UserWarning, match=r"predates full checksums"):
        np.testing.assert_array_equal(lb.load(path).predict().values, nested_fit.predict().values)
    damage(raw, lambda t: None, path, keep_checksums=False)  # a current file stripped of them
    with pytest.raises(lb.errors.FitFileError, match=r"has no checksums although its format version"):
        lb.load(path)
    damage(raw, set_root(lmm_bayes_checksums="not json"), path)
    with pytest.raises(lb.errors.FitFileError, match=r"its checksums attribute is damaged"):
        lb.load(path)


def unchanged(value, current):
    return not isinstance(value, np.ndarray) and not isinstance(current, np.ndarray) and value == current


def fuzz_changes(tree):
    """Single changes of attributes, as (name, covered by the checksums, change); none leaves a value as it was."""
    values = ["", "garbage", "[1, 2]", 7, -1, np.array([1, 2])]
    for key, current in tree.attrs.items():
        if key != CHECKSUMS:
            covered = key not in ("lmm_bayes_format", "lmm_bayes_format_version", "lmm_bayes_saved_by")
            for v in [None, *values]:
                if not unchanged(v, current):
                    yield f"root {key}={v!r}", covered, set_root(**{key: v})
    data = tree[io.DATA_GROUP]
    for var in [None, *data.data_vars]:
        attrs = data.attrs if var is None else data[var].attrs
        for key, current in attrs.items():
            for v in [None, *values, "numeric", "string", "bool", "categorical"]:
                if not unchanged(v, current):
                    yield f"{var or 'data'}.{key}={v!r}", True, edit_attrs(io.DATA_GROUP, var, **{key: v})


@pytest.mark.parametrize("keep_checksums", [True, False])
def test_fuzzed_attributes_never_escape_as_other_errors(raw, tmp_path, monkeypatch, keep_checksums):
    """Whatever attribute is damaged, load gives a fit or a FitFileError, never a raw KeyError or JSON error.

    With checksums, every change of a covered attribute is caught. The changed
    trees are handed to load in memory (writing hundreds of files is slow; the
    tests above write theirs).
    """
    path = damage(raw, lambda t: None, tmp_path / "fit.nc")
    escaped, silent = [], []
    for name, covered, change in fuzz_changes(raw):
        tree = raw.copy(deep=True)
        if not keep_checksums:
            tree.attrs.pop(CHECKSUMS, None)
        change(tree)
        monkeypatch.setattr(xr, "load_datatree", lambda *args, tree=tree, **kwargs: tree)
        try:
            lb.load(path)
        except lb.errors.FitFileError as err:
            assert str(path) in str(err), (name, err)
        except Exception as err:  # noqa: BLE001 - collected and reported below
            escaped.append(f"{name}: {type(err).__name__}: {err}")
        else:
            if keep_checksums and covered:
                silent.append(name)
    assert not escaped, "\n".join(escaped)
    assert not silent, silent

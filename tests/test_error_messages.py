"""Every error a user can reach says what is wrong: the raises no other test file matches.

Each test takes the path a user takes and matches a phrase that names the problem (and,
where the message gives one, the fix). Most need no fit; those that read a fitted model
share one cheap collapsed fit (``fit``). The check that a correlated block's SD priors
share a family, and the model's description of which effects are correlated, live here too.
"""

from __future__ import annotations

import re
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmm_bayes as lb
from lmm_bayes.app import cli
from lmm_bayes.results import io
from lmm_bayes.spec.priors import GroupPriors
from lmm_bayes.teaching import pooling_plots

SLOPES = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def fit(sleepstudy):
    """The cheapest real fit: collapsed, one short chain (only its layout and design are read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few draws: the sampler's health warnings are expected
        return lb.LMM(SLOPES, sleepstudy).fit(method="collapsed", draws=50, tune=50, chains=1, seed=1,
                                              progressbar=False)


@pytest.fixture
def nested():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"subject": np.repeat(["s1", "s2", "s3"], 8), "neuron": np.tile(list("ab"), 12),
                         "x": rng.normal(size=24), "y": rng.normal(size=24)})


# ---------------------------------------------------------------- formula text


FORMULA_ERRORS = [
    ("", r"the formula is empty; write e\.g\. 'y ~ x \+ \(1 \| g\)'"),
    ("y ~ x $ 1", r"unexpected character '\$'"),
    ("y ~ x + True", r"'True' is not allowed in a formula"),
    ("y ~ C(f, lvls=['a', 'b'])",
     r"keyword argument lvls= is not allowed here; only C\(x, levels=\[\.\.\.\]\) takes one"),
    ("y ~ C(f, g)", r"the second argument of C\(\) is a coding, one of Treatment, Sum"),
    ("y ~ C(f, g, h)", r"C\(\) takes one column name and optionally a coding"),
    ("y ~ x + (1 | 1)", r"a grouping factor must be a column name, or names joined by ':' or '/'"),
    ("y ~ x + (1 | g:)", r"a grouping factor cannot end with an operator"),
    ("y ~ x + (C(f, levels=['a', 'b']) | g)", r"C\(x, levels=\.\.\.\) is only supported in the fixed part"),
    ("C(y, levels=['a', 'b']) ~ x", r"the response cannot be categorical"),
    ("y ~ 3 + x", r"the number 3 cannot be a term: write 1 to keep the intercept or 0 to drop it"),
]


@pytest.mark.parametrize(("formula", "message"), FORMULA_ERRORS)
def test_formula_text_errors(formula, message):
    with pytest.raises(lb.FormulaError, match=message):
        lb.parse_formula(formula)


# ---------------------------------------------------------------- formula evaluated on data


@pytest.mark.parametrize(("formula", "message"), [
    ("Reaction ~ Days + 2 * Days + (1 | Subject)",
     r"cannot evaluate '2 \* Days' .*arithmetic on columns goes inside I\(\.\.\.\)"),
    ("Reaction + Days ~ Days + (1 | Subject)",
     r"cannot evaluate 'Reaction \+ Days' .*the response must be one column or a transformation of one"),
    ("Reaction ~ Days ** 2 + (1 | Subject)",
     r"'Days \*\* 2': in a formula, a power of one term is that term itself .*write I\(x \*\* 2\)"),
    ("Reaction ~ Days + (0 | Subject)", r"the random term \(0 \| Subject\) has no effects"),
    ("Reaction ~ Days + (Days | Subject) + (0 + Days | Subject)",
     r"effect 'Days' appears twice for grouping factor 'Subject'; list each effect in one term only"),
])
def test_formula_evaluation_errors(sleepstudy, formula, message):
    with pytest.raises(ValueError, match=message):
        lb.LMM(formula, sleepstudy)


def test_dropping_every_row_is_refused(sleepstudy):
    with pytest.raises(ValueError, match=r"every row has a missing or infinite value in 'Days' \(180 rows\); "
                                         r"nothing is left to fit"):
        lb.LMM(SLOPES, sleepstudy.assign(Days=np.nan), na_action="drop")



@pytest.mark.parametrize("build", [
    lambda d: lb.LMM(SLOPES, d),
    lambda d: lb.GLMM("Reaction ~ Days + (1 | Subject)", d, family="poisson"),
    lambda d: lb.LMM("Reaction ~ 1 + (1 | Subject)", d),  # refused even where the copy is unused
], ids=["LMM", "GLMM", "unused"])
def test_duplicate_column_names_are_refused_before_the_data_is_read(sleepstudy, build):
    """pandas gives a frame, not a column, for a duplicated name: refused with the name and the fix."""
    doubled = pd.concat([sleepstudy, sleepstudy[["Days"]]], axis=1)
    with pytest.raises(ValueError, match=r"data has duplicate column names: 'Days' \(2 columns\); "
                                         r"a column name must be unique: rename or drop the copies"):
        build(doubled)


# ---------------------------------------------------------------- LMM.from_hierarchy


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"levels": "subject"}, TypeError,
     r"levels must be a non-empty list of grouping columns, outermost first"),
    ({"levels": ["subject"], "fixed": "x"}, TypeError, r"fixed must be a list of columns, e\.g\. \['x'\]"),
    ({"levels": ["subject"], "random_slopes": {"neuron": ["x"]}}, ValueError,
     r"random_slopes names \['neuron'\], which are not in levels \['subject'\]"),
    ({"levels": ["subject"], "fixed": ["x value"]}, ValueError,
     r"column name 'x value' cannot be used in a formula; rename it to letters, digits and _"),
])
def test_from_hierarchy_errors(nested, kwargs, error, message):
    with pytest.raises(error, match=message):
        lb.LMM.from_hierarchy(nested, response="y", **kwargs)


# ---------------------------------------------------------------- priors


@pytest.mark.parametrize(("priors", "error", "message"), [
    ({"Days": {"mu": 0, "sigma": 1}}, ValueError,
     r"prior for Days needs a 'dist' key, e\.g\. \{'dist': 'Normal'"),
    ({"Days": {"dist": "Normal", "mu": np.inf, "sigma": 1}}, ValueError,
     r"prior for Days: parameter mu must be a finite number, got inf"),
    ({"Subject": 2.0}, TypeError,
     r"priors\['Subject'\] must be a dict with 'sd', 'sd\(<effect>\)' or 'eta', got float"),
])
def test_prior_value_errors(sleepstudy, priors, error, message):
    with pytest.raises(error, match=message):
        lb.LMM(SLOPES, sleepstudy, priors=priors)


def test_priors_of_another_model_are_refused(sleepstudy):
    other = lb.LMM("Reaction ~ 1 + (1 | Subject)", sleepstudy).priors
    message = (r"priors \(an lb\.Priors\) do not match the model's parameters: missing "
               r"\['beta\[Days\]', 'sd\(Days \| Subject\)', 'corr\(\* \| Subject\)'\]")
    with pytest.raises(ValueError, match=message):
        lb.LMM(SLOPES, sleepstudy, priors=other)


def test_sd_priors_of_one_correlated_block_must_share_a_family(sleepstudy):
    """Refused at LMM(...), naming factor, effects and families; it used to fail only in the PyMC graph."""
    mixed = {"Subject": {"sd(Days)": lb.Prior("Exponential", lam=0.1)}}
    message = (r"priors\['Subject'\]: the correlated effects \['Intercept', 'Days'\] of grouping factor "
               r"'Subject' need SD priors of one distribution family.*got sd\(Intercept\) HalfNormal, "
               r"sd\(Days\) Exponential; give them one family.*or make the effects independent with '\|\|'")
    with pytest.raises(ValueError, match=message):
        lb.LMM(SLOPES, sleepstudy, priors=mixed)
    # a whole Priors object (model.priors, edited) goes through the same check
    base = lb.LMM(SLOPES, sleepstudy).priors
    sd = base.group_by_name["Subject"].sd_by_effect
    edited = GroupPriors(sd=(("Intercept", sd["Intercept"]), ("Days", lb.Prior("Exponential", lam=0.1))))
    with pytest.raises(ValueError, match=r"need SD priors of one distribution family"):
        lb.LMM(SLOPES, sleepstudy, priors=lb.Priors(fixed=base.fixed, sigma=base.sigma,
                                                    groups=(("Subject", edited),)))


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days || Subject)",
                                     "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"])
def test_independent_sds_may_mix_families(sleepstudy, formula):
    model = lb.LMM(formula, sleepstudy, priors={"Subject": {"sd(Days)": lb.Prior("Exponential", lam=0.1)}})
    sd = model.priors.group_by_name["Subject"].sd_by_effect
    assert (sd["Intercept"].dist, sd["Days"].dist) == ("HalfNormal", "Exponential")
    # and the graph builds (nothing is compiled): beta, z Normal; sigma and sd(Days) Exponential
    ops = sorted(v.owner.op.name for v in model.pymc_model().free_RVs)
    assert ops == ["exponential", "exponential", "halfnormal", "normal", "normal"]


# ---------------------------------------------------------------- the model's description


def test_description_says_which_effects_are_correlated():
    """(1 + x | g) + (0 + z | g): x is correlated with the intercept, z with neither."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(list("abcdefgh"), 6), **{c: rng.normal(size=48) for c in "xzwy"}})

    def line(formula):
        return next(s.strip() for s in repr(lb.LMM(formula, df)).splitlines() if s.strip().startswith("g:"))

    assert line("y ~ x + (1 + x | g) + (0 + z | g)") == \
        "g: 8 levels; effects Intercept, x, z (Intercept and x correlated; z independent)"
    assert line("y ~ (1 + x | g) + (0 + z + w | g)") == \
        "g: 8 levels; effects Intercept, x, z, w (Intercept and x correlated; z and w correlated)"
    assert line("y ~ (1 + x + z | g)") == "g: 8 levels; effects Intercept, x, z (correlated)"
    assert line("y ~ (1 + x || g)") == "g: 8 levels; effects Intercept, x (independent)"
    assert line("y ~ (1 | g) + (0 + x | g)") == "g: 8 levels; effects Intercept, x (independent)"
    assert line("y ~ x + (1 | g)") == "g: 8 levels; effects Intercept"


# ---------------------------------------------------------------- data sets and the command line


def test_dataset_name_must_be_text():
    with pytest.raises(TypeError, match=r"name must be a string, one of \['sleepstudy', 'radon'\]; got int"):
        lb.datasets.load(3)


def test_demo_without_its_model_file_says_to_run_from_a_clone(monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEMO_FILE", "no_such_model.toml")
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmm-bayes: error: the demo model file ")
    assert "no_such_model.toml is missing; run from a clone of the repository" in err


# ---------------------------------------------------------------- compare_pooling's arguments


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prob": "0.9"}, r"prob must be a number between 0 and 1, got str"),
    ({"no_pooling_scale": "10"}, r"no_pooling_scale must be a positive number, got str"),
])
def test_compare_pooling_argument_types(radon, kwargs, message):
    with pytest.raises(TypeError, match=message):
        lb.compare_pooling("log_radon ~ floor + (1 | county)", radon, group="county", **kwargs)


# ---------------------------------------------------------------- pooling plots on hand-made estimates


def estimates(effects=("Intercept", "x"), no_pooling=1.0):
    """A table shaped like compare_pooling(...).estimates: two clusters, every needed column."""
    index = pd.MultiIndex.from_product([["a", "b"], list(effects)], names=["level", "effect"])
    pooled = {f"{p}{s}": 0.5 for p in ("partial_pooling", "complete_pooling") for s in ("", "_low", "_high")}
    own = {f"no_pooling{s}": no_pooling for s in ("", "_low", "_high")}
    return pd.DataFrame({"n_obs": 5.0, "population": 0.0, **pooled, **own}, index=index)


G = pd.DataFrame(np.eye(2), index=["Intercept", "x"], columns=["Intercept", "x"])


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: pooling_plots.plot_shrinkage(estimates().reset_index()), ValueError,
     r"estimates must be indexed by \(level, effect\), got \[None\]; pass compare_pooling"),
    (lambda: pooling_plots.plot_forest(estimates().iloc[:0]), ValueError, r"estimates has no rows"),
    (lambda: pooling_plots.plot_forest(estimates(), levels="a"), TypeError,
     r"levels must be a list of cluster labels, e\.g\. \['a'\]"),
    (lambda: pooling_plots.plot_arrows(estimates(), G, effects=["x", "x"]), ValueError,
     r"effects must name two different effects, got \['x', 'x'\]"),
    (lambda: pooling_plots.plot_arrows(estimates(no_pooling=np.nan), G), ValueError,
     r"no cluster identifies both Intercept and x on its own; there are no arrows to draw"),
])
def test_pooling_plot_input_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_pooling_fit_answers_only_for_its_own_factor(nested):
    model = lb.LMM("y ~ x + (1 | subject) + (1 | subject:neuron)", nested)
    idata = xr.DataTree()
    idata.attrs.update(pooling="complete_pooling", group="subject")
    pooled = lb.PoolingFit(idata, model)  # the check reads the design only: no draws needed
    with pytest.raises(ValueError, match=r"this fit compares poolings over 'subject', not 'subject:neuron'"):
        pooled.coef_draws("subject:neuron")


def test_stat_check_needs_a_grouping_factor(sleepstudy):
    """A model without random effects; the check reads the design, so a fit holding no draws reaches it."""
    model = lb.LMM("Reaction ~ Days", sleepstudy)
    fit = lb.Fit(xr.DataTree.from_dict({"posterior_predictive": xr.Dataset()}), model)
    with pytest.raises(ValueError, match=r"kind='stat' needs a grouping factor, and this model has none; "
                                         r"use kind='density'"):
        fit.plot_ppc(kind="stat")


# ---------------------------------------------------------------- a fitted model's methods


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda f: f.ranef(1), TypeError, r"group must be a grouping factor's name \(a string\), got int"),
    (lambda f: f.plot_caterpillar("Subject", sort="yes"), TypeError, r"sort must be True or False, got str"),
    (lambda f: f.implied_covariance(list(range(10_001))), ValueError,
     r"rows has 10001 labels; at most 10000 make a dense matrix"),
    (lambda f: f.implied_covariance(pd.DataFrame({"Days": np.zeros(10_001), "Subject": "308"})), ValueError,
     r"rows has 10001 rows; at most 10000 make a dense matrix, pass fewer"),
])
def test_fit_method_errors(fit, call, error, message):
    with pytest.raises(error, match=message):
        call(fit)


def test_implied_covariance_by_label_needs_unique_row_labels(fit, sleepstudy):
    # the same rows and draws, the rows labelled 0, 0, 1, 1, ...
    twin = lb.Fit(fit.idata, lb.LMM(SLOPES, sleepstudy.set_axis(np.arange(180) // 2)))
    with pytest.raises(ValueError, match=r"the fitted data's row labels are not unique; "
                                         r"pass a DataFrame of rows instead"):
        twin.implied_covariance([0, 1])


def saved_tree(fit, path):
    fit.save(path)
    return xr.load_datatree(path, engine="h5netcdf")


def test_damaged_bool_column_in_a_fit_file(fit, tmp_path):
    path = tmp_path / "fit.nc"
    tree = saved_tree(fit, path)
    tree.attrs.pop(io.CHECKSUM_ATTR)  # as a file written before checksums: only the damage speaks
    data = tree[io.DATA_GROUP].to_dataset()
    var = next(v for v in data.data_vars if data[v].attrs.get("name") == "Days")
    data[var].attrs["kind"] = "bool"  # Days holds 0..9
    tree[io.DATA_GROUP] = xr.DataTree(data)
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(lb.FitFileError, match=rf"the stored training data is damaged: its variable '{var}' "
                                              r"of kind 'bool' holds values other than 0 and 1"):
        lb.load(path)


def test_damaged_and_altered_file_says_both(fit, tmp_path):
    path = tmp_path / "fit.nc"
    tree = saved_tree(fit, path)
    del tree["posterior"]  # the checksums, kept, see the change too
    tree.to_netcdf(path, engine="h5netcdf")
    with pytest.raises(lb.FitFileError, match=r"has no posterior group; the file may be damaged; besides, "
                                              r"the file was altered after it was saved \(.*"
                                              r"posterior/Subject is missing"):
        lb.load(path)


@pytest.mark.parametrize(
    ("formula", "message", "caret"),
    [
        ("y ~ 'abc", "cannot read the formula: unterminated string literal", 4),
        ("y ~ 0b2", "cannot read the formula: invalid digit '2' in binary literal", 6),
        ("y ~ (x + 1", "this parenthesis is never closed", 4),
    ],
)
def test_a_malformed_literal_is_not_called_an_unclosed_parenthesis(formula, message, caret):
    """Only a text that ends inside a parenthesis is told its parenthesis is never closed."""
    with pytest.raises(lb.FormulaError, match=re.escape(message)) as info:
        lb.parse_formula(formula)
    assert info.value.position == caret  # the caret under the culprit


def test_a_response_of_two_columns_gets_the_response_hint_without_fixed_terms():
    with pytest.raises(lb.FormulaError, match="the response must be one column or a transformation of one"):
        lb.LMM("Reaction + Days ~ 1 + (1 | Subject)", lb.datasets.load("sleepstudy"))


# ---------------------------------------------------------------------------- the model kind (issue 37 item 12)


def _binary_rows() -> pd.DataFrame:
    return pd.DataFrame({"y": [0, 1, 1, 0] * 5, "x": np.arange(20.0), "g": list("abcd") * 5})


def test_a_dask_frame_given_to_glmm_says_glmms_take_pandas_only():
    import dask.dataframe as dd

    frame = dd.from_pandas(_binary_rows(), npartitions=2)
    with pytest.raises(TypeError, match=r"lb.GLMM takes a pandas DataFrame only, got a Dask DataFrame.*"
                                        r"exact only for a Gaussian response.*\.compute\(\)"):
        lb.GLMM("y ~ x + (1 | g)", frame, family="bernoulli")


@pytest.mark.parametrize(
    ("family", "column", "needs"),
    [
        ("bernoulli", lambda y: y.astype(str), r"a GLMM with family='bernoulli' needs 0/1"),
        ("poisson", lambda y: y.astype("category"), r"a GLMM with family='poisson' needs counts"),
    ],
)
def test_a_glmm_response_of_text_speaks_of_the_glmm(family, column, needs):
    rows = _binary_rows()
    with pytest.raises(ValueError, match=rf"the response 'y' must be numeric, got dtype \w+; {needs}") as caught:
        lb.GLMM("y ~ x + (1 | g)", rows.assign(y=column(rows["y"])), family=family)
    assert "linear mixed model" not in str(caught.value)


def test_a_dask_built_model_of_a_text_response_says_so():
    import dask.dataframe as dd

    rows = _binary_rows()
    frame = dd.from_pandas(rows.assign(y=rows["y"].astype(str)), npartitions=2)
    with pytest.raises(ValueError, match=r"a linear mixed model built from a Dask DataFrame or Parquet files "
                                         r"needs a continuous response"):
        lb.LMM("y ~ x + (1 | g)", frame, progress=False)
    with pytest.raises(ValueError, match=r"^the response 'y' must be numeric, got dtype \w+; a linear mixed model "
                                         r"needs a continuous response"):  # in memory: the LMM's words, as before
        lb.LMM("y ~ x + (1 | g)", rows.assign(y=rows["y"].astype(str)))


# ---------------------------------------------------------------------------- separation (issue 37 item 14)


@pytest.mark.parametrize(
    ("formula", "family", "y", "match"),
    [
        ("y ~ x + (1 | g)", "bernoulli", lambda r: 0 * r["y"], r"the response 'y' is 0 in every row"),
        ("y ~ x + (1 | g)", "bernoulli", lambda r: 0 * r["y"] + 1, r"the response 'y' is 1 in every row"),
        ("cbind(y, n - y) ~ x + (1 | g)", "binomial", lambda r: r["n"], r"the response 'y' is a success in every trial"),
        ("cbind(y, n - y) ~ x + (1 | g)", "binomial", lambda r: 0 * r["y"], r"the response 'y' is 0 in every row"),
    ],
    ids=["bernoulli-0", "bernoulli-1", "binomial-all-successes", "binomial-0"],
)
def test_a_response_of_one_outcome_warns_that_the_prior_drives_the_intercept(formula, family, y, match):
    rows = _binary_rows().assign(n=4)
    with pytest.warns(lb.SeparationWarning, match=match + r".*no finite maximum.*intercept .* driven by its prior"):
        lb.GLMM(formula, rows.assign(y=y(rows)), family=family)


def test_a_binary_predictor_that_separates_the_response_is_named():
    rows = _binary_rows().assign(treated=lambda r: r["y"] * 1.0)  # treated = 1 exactly where y = 1
    with pytest.warns(lb.SeparationWarning, match=r"the predictor 'treated' separates the response 'y' "
                                                  r"perfectly \(y is 1 exactly where treated = 1\)"):
        lb.GLMM("y ~ treated + (1 | g)", rows, family="bernoulli")


def test_ordinary_binary_data_gives_no_separation_warning():
    rows = _binary_rows().assign(treated=[0, 1] * 10, n=4, k=[0, 1, 2, 3, 4] * 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        models = [
            lb.GLMM("y ~ x + treated + (1 | g)", rows, family="bernoulli"),
            lb.GLMM("cbind(k, n - k) ~ x + (1 | g)", rows, family="binomial"),
            lb.GLMM("k ~ x + (1 | g)", rows.assign(k=0), family="poisson"),  # all-zero counts: not separation
        ]
    assert [m.family.name for m in models] == ["bernoulli", "binomial", "poisson"]
    assert [str(w.message) for w in caught if issubclass(w.category, lb.SeparationWarning)] == []

"""Design matrices: X, the per-factor Z blocks and the textbook Z."""

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.errors import ImplicitNestingWarning, RowsDroppedWarning


@pytest.fixture(scope="module")
def nested():
    rng = np.random.default_rng(0)
    rows = [(f"s{s}", f"n{n}", rng.normal()) for s in range(4) for n in range(3) for _ in range(5)]
    df = pd.DataFrame(rows, columns=["subject", "neuron", "x"])
    df["y"] = rng.normal(size=len(df)) + df["x"]
    df["cond"] = np.where(np.arange(len(df)) % 2 == 0, "a", "b")
    return df


def test_sleepstudy_random_slopes_Z(sleepstudy):
    d = lb.LMM("Reaction ~ Days + (Days|Subject)", sleepstudy).design
    assert d.X_columns == ("Intercept", "Days")
    np.testing.assert_array_equal(d.X[:, 1], sleepstudy["Days"])
    Z = d.Z.toarray()
    assert Z.shape == (180, 36)
    g = d.groups[0]
    assert g.effects == ("Intercept", "Days")
    assert g.levels[0] == "308" and len(g.levels) == 18
    intercept_cols = Z[:, 0::2]
    slope_cols = Z[:, 1::2]
    assert np.all((intercept_cols == 1).sum(axis=1) == 1)
    assert set(np.unique(intercept_cols)) <= {0.0, 1.0}
    for i, (subject, days) in enumerate(zip(sleepstudy["Subject"], sleepstudy["Days"])):
        k = g.levels.index(subject)
        assert intercept_cols[i, k] == 1
        assert slope_cols[i, k] == days
        assert np.count_nonzero(np.delete(slope_cols[i], k)) == 0
    assert d.Z_columns[:3] == ("Intercept|Subject[308]", "Days|Subject[308]", "Intercept|Subject[309]")


def test_uncorrelated_gives_independent_blocks(sleepstudy):
    g = lb.LMM("Reaction ~ Days + (Days||Subject)", sleepstudy).design.groups[0]
    assert g.effects == ("Intercept", "Days")
    assert g.blocks == ((0,), (1,))
    assert not g.correlated
    g2 = lb.LMM("Reaction ~ Days + (Days|Subject)", sleepstudy).design.groups[0]
    assert g2.blocks == ((0, 1),) and g2.correlated


def test_two_terms_on_one_factor(sleepstudy):
    g = lb.LMM("Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", sleepstudy).design.groups[0]
    assert g.effects == ("Intercept", "Days") and g.blocks == ((0,), (1,))


def test_nesting_expands_and_only_observed_combinations(nested):
    df = nested[~((nested.subject == "s0") & (nested.neuron == "n2"))]
    d = lb.LMM("y ~ x + (1|subject/neuron)", df).design
    assert [g.name for g in d.groups] == ["subject", "subject:neuron"]
    inner = d.group("subject:neuron")
    assert inner.n_levels == 11
    assert "s0:n2" not in inner.levels and "s1:n2" in inner.levels
    assert inner.parent == "subject"
    outer = d.group("subject")
    # every neuron's parent is the subject in its label
    for lev, p in zip(inner.levels, inner.parent_codes):
        assert lev.split(":")[0] == outer.levels[p]
    assert d.Z.shape == (len(df), 4 + 11)


def test_crossed_blocks_side_by_side(nested):
    df = nested.assign(item=np.tile(["i1", "i2", "i3"], len(nested) // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplicitNestingWarning)
        d = lb.LMM("y ~ x + (1|subject) + (1|item)", df).design
    Z = d.Z.toarray()
    assert Z.shape == (len(df), 4 + 3)
    assert np.all(Z[:, :4].sum(axis=1) == 1) and np.all(Z[:, 4:].sum(axis=1) == 1)
    assert d.groups[1].parent is None


def test_categorical_treatment_coding_and_levels(nested):
    d = lb.LMM("y ~ cond + (1|subject)", nested).design
    assert d.X_columns == ("Intercept", "cond[b]")
    d2 = lb.LMM("y ~ C(cond, levels=['b', 'a']) + (1|subject)", nested).design
    assert d2.X_columns == ("Intercept", "cond[a]")
    np.testing.assert_array_equal(d2.X[:, 1], (nested["cond"] == "a").to_numpy(float))


def test_transformations(nested):
    z = np.random.default_rng(1).normal(size=len(nested))
    df = nested.assign(pos=np.exp(nested["x"]), z=z)
    d = lb.LMM("y ~ log(pos) + center(z) + I(x**2) + sqrt(pos) + (1|subject)", df).design
    np.testing.assert_allclose(d.X[:, 1], nested["x"], atol=1e-12)
    np.testing.assert_allclose(d.X[:, 2], z - z.mean())
    np.testing.assert_allclose(d.X[:, 3], nested["x"] ** 2)
    np.testing.assert_allclose(d.X[:, 4], np.exp(nested["x"] / 2))


def test_interaction_and_no_intercept(nested):
    d = lb.LMM("y ~ 0 + x + x:cond + (1|subject)", nested).design
    assert d.X_columns == ("x", "x:cond[b]")


def test_new_rows_keep_fitted_coding(nested):
    model = lb.LMM("y ~ center(x) + cond + (1 + x|subject)", nested)
    new = pd.DataFrame({"x": [0.0, 1.0], "cond": ["b", "b"], "subject": ["s1", "zz"]}, index=[10, 11])
    rows = model.design.evaluate(new)
    np.testing.assert_allclose(rows.X[:, 1], [0.0 - nested["x"].mean(), 1.0 - nested["x"].mean()])
    np.testing.assert_array_equal(rows.X[:, 2], [1.0, 1.0])
    assert list(rows.codes["subject"]) == [1, -1]
    np.testing.assert_array_equal(rows.Z["subject"], [[1.0, 0.0], [1.0, 1.0]])
    assert list(rows.index) == [10, 11]


# ---------------------------------------------------------------- new rows: fitted coding, cost of the new rows only

EVALUATED = [
    "y ~ x + cond + (1|subject)",
    "y ~ C(cond, levels=['b', 'c', 'a']) + (1 + x|subject)",
    "y ~ center(x) + scale(z) + (1 + center(x)|subject)",
    "y ~ x*cond + C(k) + (1|subject/neuron)",
    "y ~ 0 + cond + cond:x + (cond||subject)",
    "y ~ C(k, levels=[5, 1, 2]) + C(cond, levels=['c', 'a', 'b']) + (1|subject)",
    "y ~ 0 + (1 + x|subject)",
]


@pytest.fixture(scope="module")
def rich(nested):
    """Three categories of cond, a numeric k with three values, a z to scale."""
    i = np.arange(len(nested))
    return nested.assign(
        cond=np.array(["a", "b", "c"])[(i // 2) % 3],
        k=np.array([1, 2, 5])[(i // 3) % 3],
        z=np.random.default_rng(3).normal(3.0, 2.0, len(nested)),
    )


def _design(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImplicitNestingWarning)
        return lb.LMM(formula, data).design


def _assert_rows_equal(d, rows, idx):
    np.testing.assert_array_equal(rows.X, d.X[idx])
    for g in d.groups:
        np.testing.assert_array_equal(rows.Z[g.name], g.Z[idx])
        np.testing.assert_array_equal(rows.codes[g.name], g.codes[idx])
        np.testing.assert_array_equal(rows.labels[g.name], np.asarray(g.levels, dtype=object)[g.codes[idx]])


@pytest.mark.parametrize("formula", EVALUATED)
def test_evaluating_the_fitted_rows_reproduces_the_design(rich, formula):
    d = _design(formula, rich)
    _assert_rows_equal(d, d.evaluate(rich), slice(None))


@pytest.mark.parametrize("formula", EVALUATED)
def test_new_rows_with_a_subset_of_the_categories_keep_the_fitted_coding(rich, formula):
    d = _design(formula, rich)
    one_category = np.flatnonzero((rich["cond"] == "c").to_numpy() & (rich["k"] == 5).to_numpy())
    assert len(one_category) >= 2 and rich["subject"].iloc[one_category].nunique() < 4
    for idx in [one_category, np.array([7]), np.arange(len(rich))[::-5]]:
        _assert_rows_equal(d, d.evaluate(rich.iloc[idx]), idx)
    # a categorical column holding only some of its categories, in another order, codes the same
    part = rich.iloc[one_category].assign(cond=pd.Categorical(["c"] * len(one_category), categories=["c", "b"]))
    _assert_rows_equal(d, d.evaluate(part), one_category)


def test_stateful_transforms_keep_the_fitted_values_on_one_new_row(rich):
    d = _design("y ~ center(x) + scale(z) + (1 + center(x)|subject)", rich)
    rows = d.evaluate(pd.DataFrame({"x": [10.0], "z": [0.0], "subject": ["zz"]}))
    x, z = rich["x"].to_numpy(), rich["z"].to_numpy()
    np.testing.assert_allclose(rows.X, [[1.0, 10.0 - x.mean(), (0.0 - z.mean()) / z.std()]], rtol=1e-12)
    np.testing.assert_allclose(rows.Z["subject"], [[1.0, 10.0 - x.mean()]], rtol=1e-12)
    assert rows.codes["subject"].tolist() == [-1] and rows.labels["subject"].tolist() == ["zz"]


def test_evaluate_reads_levels_not_the_fitted_rows(rich):
    """The cost of evaluate grows with the new rows and the levels: the fitted rows are not read."""
    formula = "y ~ center(x) + C(cond, levels=['b', 'c', 'a']) + C(k, levels=[5, 1, 2]) + (1 + x|subject/neuron)"
    d = _design(formula, rich)
    assert len(d._reference) <= 3 + 3  # one fitted row per category of cond and of k, at most
    assert len(_design("y ~ center(x) + (1|subject/neuron)", rich)._reference) == 0  # nothing categorical
    without_data = replace(d, data=None)  # evaluate must not need the fitted rows
    new = pd.DataFrame({"x": [0.5, 1.0], "cond": ["a", "a"], "k": [2, 2], "subject": ["s1", "new"],
                        "neuron": ["n0", "n0"]})
    a, b = d.evaluate(new), without_data.evaluate(new)
    np.testing.assert_array_equal(a.X, b.X)
    for name in ("subject", "subject:neuron"):
        np.testing.assert_array_equal(a.Z[name], b.Z[name])
        np.testing.assert_array_equal(a.codes[name], b.codes[name])
    assert a.codes["subject:neuron"].tolist() == [d.group("subject:neuron").levels.index("s1:n0"), -1]
    _assert_rows_equal(d, without_data.evaluate(rich.iloc[[4, 40]]), [4, 40])


def test_grouping_labels_are_text(sleepstudy):
    df = sleepstudy.assign(Subject=sleepstudy["Subject"].astype(int))
    g = lb.LMM("Reaction ~ Days + (1|Subject)", df).design.groups[0]
    assert g.levels[:2] == ("308", "309")


def test_repr(sleepstudy):
    text = repr(lb.LMM("Reaction ~ Days + (Days|Subject)", sleepstudy))
    assert "Subject: 18 levels; effects Intercept, Days (correlated)" in text
    assert "rows used:     180" in text


def test_from_hierarchy_matches_formula(nested):
    m = lb.LMM.from_hierarchy(nested, response="y", levels=["subject", "neuron"], fixed=["x"],
                              random_slopes={"subject": ["x"]})
    assert m.formula == "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
    ref = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", nested)
    assert (m.design.Z != ref.design.Z).nnz == 0
    # neuron labels reused across subjects are not merged
    assert m.design.group("subject:neuron").n_levels == 12


# ---------------------------------------------------------------- errors


def test_missing_column_lists_close_matches(sleepstudy):
    with pytest.raises(ValueError, match=r"'Dayz' \(did you mean 'Days'\?\)"):
        lb.LMM("Reaction ~ Dayz + (1|Subject)", sleepstudy)


def test_nan_raises_with_count_and_drop_warns(sleepstudy):
    df = sleepstudy.copy()
    df.loc[[0, 5], "Days"] = np.nan
    df["unused"] = np.nan
    with pytest.raises(ValueError, match=r"'Days' \(2 rows\).*na_action='drop'"):
        lb.LMM("Reaction ~ Days + (1|Subject)", df)
    with pytest.warns(RowsDroppedWarning, match="dropped 2 of 180 rows"):
        m = lb.LMM("Reaction ~ Days + (1|Subject)", df, na_action="drop")
    assert m.design.n == 178
    assert 0 not in m.design.index


def test_inf_raises(sleepstudy):
    df = sleepstudy.assign(Reaction=sleepstudy["Reaction"].replace(249.56, np.inf))
    with pytest.raises(ValueError, match="missing or infinite values in 'Reaction'"):
        lb.LMM("Reaction ~ Days + (1|Subject)", df)


def test_non_numeric_response(sleepstudy):
    with pytest.raises(ValueError, match="response 'Subject' must be numeric"):
        lb.LMM("Subject ~ Days + (1|Days)", sleepstudy)


def test_single_level_factor(sleepstudy):
    with pytest.raises(ValueError, match="has 1 level; a random effect needs at least 2"):
        lb.LMM("Reaction ~ Days + (1|one)", sleepstudy.assign(one="a"))


def test_too_many_levels(sleepstudy):
    with pytest.raises(ValueError, match="180 levels for 180 rows"):
        lb.LMM("Reaction ~ Days + (1|row)", sleepstudy.assign(row=np.arange(180)))


def test_rank_deficient_names_aliased(sleepstudy):
    with pytest.raises(ValueError, match=r"rank deficient.*'Days2'"):
        lb.LMM("Reaction ~ Days + Days2 + (1|Subject)", sleepstudy.assign(Days2=sleepstudy["Days"] * 2))


def test_formula_error_through_facade(sleepstudy):
    with pytest.raises(lb.FormulaError, match=r"os\.system|attribute access"):
        lb.LMM("Reaction ~ os.system('ls')", sleepstudy)


def test_data_must_be_dataframe():
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        lb.LMM("y ~ x", {"y": [1, 2]})


def test_bad_na_action(sleepstudy):
    with pytest.raises(ValueError, match="na_action must be one of"):
        lb.LMM("Reaction ~ Days", sleepstudy, na_action="omit")


def test_implicit_nesting_warns(nested):
    # subjects s0 and s1 recorded neurons n0-n1, s2 and s3 n0-n2: labels restart in each subject
    restarted = nested[~(nested.subject.isin(["s0", "s1"]) & (nested.neuron == "n2"))]
    with pytest.warns(ImplicitNestingWarning, match=r"\(1 \| subject:neuron\)"):
        lb.LMM("y ~ x + (1|subject) + (1|neuron)", restarted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplicitNestingWarning)
        lb.LMM("y ~ x + (1|subject) + (1|subject:neuron)", restarted)
        # every subject with the same three labels is a fully crossed design as far as the data
        # can tell (every item seen by every subject): no warning (issue 13)
        lb.LMM("y ~ x + (1|subject) + (1|neuron)", nested)


def test_new_rows_errors(nested):
    model = lb.LMM("y ~ x + cond + (1|subject)", nested)
    with pytest.raises(ValueError, match="prediction uses column"):
        model.design.evaluate(pd.DataFrame({"x": [1.0], "subject": ["s1"]}))
    with pytest.raises(ValueError, match="values not seen in fitting"):
        model.design.evaluate(pd.DataFrame({"x": [1.0], "cond": ["c"], "subject": ["s1"]}))
    numeric = lb.LMM("y ~ C(k, levels=[2, 1]) + (1|subject)", nested.assign(k=np.arange(len(nested)) % 2 + 1))
    with pytest.raises(ValueError, match=r"column 'k' has values not seen in fitting: \[7\]"):
        numeric.design.evaluate(pd.DataFrame({"k": [1, 7], "subject": ["s1", "s1"]}))
    np.testing.assert_array_equal(numeric.design.evaluate(pd.DataFrame({"k": [1.0], "subject": ["s1"]})).X, [[1, 1]])


def test_datasets(sleepstudy, radon):
    assert sleepstudy.shape == (180, 3)
    assert sleepstudy["Subject"].map(type).eq(str).all()
    assert radon.shape[0] == 919 and radon["county"].nunique() == 85
    assert radon["floor"].value_counts().to_dict() == {0: 766, 1: 153}
    with pytest.raises(ValueError, match="bundled: sleepstudy, radon"):
        lb.datasets.load("sleep")


# ---------------------------------------------------------------- transformed columns: float, checked after


def test_log_of_non_positive_values_names_the_term(nested):
    """log(x) with x <= 0 gave NaN/-inf rows (and an SVD error deep in the rank check)."""
    x = np.exp(nested["x"]).to_numpy().copy()
    x[[0, 3, 7]] = [0.0, -1.0, -2.0]
    df = nested.assign(pos=x)
    with pytest.raises(ValueError, match=r"^log\(pos\): 3 values are not finite after the transformation \(pos <= 0\?\)"):
        lb.LMM("y ~ log(pos) + (1|subject)", df)
    with pytest.raises(ValueError, match=r"sqrt\(pos\): 2 values are not finite.*\(pos < 0\?\)"):
        lb.LMM("y ~ x + (1 + sqrt(pos)|subject)", df)
    with pytest.raises(ValueError, match=r"^log\(pos\): 3 values are not finite"):
        lb.LMM("log(pos) ~ x + (1|subject)", df)
    with pytest.raises(ValueError, match=r"scale\(one\): 60 values are not finite.*one constant\?"):
        lb.LMM("y ~ scale(one) + (1|subject)", nested.assign(one=1.0))
    model = lb.LMM("y ~ log(pos) + (1|subject)", nested.assign(pos=np.exp(nested["x"])))
    with pytest.raises(ValueError, match=r"log\(pos\): 1 value is not finite.*in the new rows"):
        model.design.evaluate(pd.DataFrame({"pos": [1.0, -1.0], "subject": ["s1", "s2"]}))


def test_integer_columns_are_read_as_floats_and_never_wrap_around(nested):
    """I(big**2) on int64 wrapped around (numpy integer overflow)."""
    big = (2**40 + np.arange(len(nested)) * 2**33).astype(np.int64)
    d = lb.LMM("y ~ I(big**2) + (1|subject)", nested.assign(big=big)).design
    np.testing.assert_allclose(d.X[:, 1], big.astype(float) ** 2, rtol=1e-12)
    rows = d.evaluate(pd.DataFrame({"big": [2**40], "subject": ["s1"]}))
    np.testing.assert_allclose(rows.X[0, 1], float(2**40) ** 2, rtol=1e-12)
    # a column read inside C() stays a category, labelled as written
    k = np.arange(len(nested)) % 3 + 1
    assert lb.LMM("y ~ C(k) + (1|subject)", nested.assign(k=k)).design.X_columns == ("Intercept", "C(k)[2]", "C(k)[3]")


# ---------------------------------------------------------------- names the package uses itself


def test_a_column_named_intercept_is_refused(nested):
    """It silently replaced the column of ones."""
    df = nested.assign(Intercept=np.random.default_rng(2).normal(size=len(nested)))
    for formula in ["y ~ Intercept + (1|subject)", "y ~ x + (Intercept|subject)", "y ~ I(Intercept * 2) + (1|subject)"]:
        with pytest.raises(ValueError, match="column named 'Intercept'.*rename the column"):
            lb.LMM(formula, df)
    lb.LMM("y ~ x + (1|subject)", df)  # a column the formula does not read never matters
    lb.LMM("y ~ C(cond, levels=['b', 'a']) + (1|subject)", df.assign(cond=np.where(df["x"] > 0, "a", "b")))


@pytest.mark.parametrize("name", ["chain", "draw", "obs", "coef", "beta", "sigma", "y", "X", "y_obs"])
def test_grouping_columns_named_like_the_posteriors_dims_are_refused(nested, name):
    df = nested.rename(columns={"y": "resp"}).assign(**{name: nested["subject"]})
    with pytest.raises(ValueError, match=rf"grouping column '{name}' has the name of one of the posterior's"):
        lb.LMM(f"resp ~ x + (1|{name})", df)
    # as a fixed-effect column, or a factor of an interaction, the name is only a label
    lb.LMM(f"resp ~ x + (1|{name}:neuron)", df)
    lb.LMM(f"resp ~ x + {name} + (1|subject)", df.assign(**{name: df["x"] ** 2}))


def test_grouping_factor_named_like_a_part_of_another_is_refused(nested):
    df = nested.assign(subject_sd=nested["neuron"], subject_effect=nested["neuron"])
    for other in ("subject_sd", "subject_effect"):
        with pytest.raises(ValueError, match=rf"'{other}' is named like a part of grouping factor 'subject'"):
            lb.LMM(f"y ~ x + (1|subject) + (1|{other})", df)


def test_reserved_suffixes_cover_the_layout(nested):
    """Every name the layout derives from a factor's name is in validate's list (or the factor's own)."""
    from lmm_bayes.inference import layout
    from lmm_bayes.spec.validate import GROUP_SUFFIXES, RESERVED_GROUP_NAMES

    g = lb.LMM("y ~ x + (x|subject)", nested).design.group("subject")
    derived = [layout.sd_name(g), layout.corr_name(g), layout.b_name(g), layout.cov_name(g), layout.coef_name(g),
               layout.codes_name(g), layout.z_name(g), g.effect_dim, layout.bis(g.effect_dim)]
    assert {d[len("subject"):] for d in derived} <= set(GROUP_SUFFIXES)
    assert {layout.BETA, layout.SIGMA} <= set(RESERVED_GROUP_NAMES)
    assert set(layout.model_coords(lb.LMM("y ~ x + (1|subject)", nested).design)) - {"subject", "subject_effect",
                                                                                    "subject_effect_bis"} <= set(RESERVED_GROUP_NAMES)


# ---------------------------------------------------------------- formulae's own errors are ours


@pytest.mark.parametrize("formula", [
    "y ~ 2 * x", "y ~ x * 1.5", "y ~ x / 0", "y ~ (x)(z)", "y ~ C(x)(z)", "y ~ x ** z", "y ~ x ** 0.5",
    "y ~ log()", "y ~ center(1)", "y ~ I(1)", "y ~ x:(z + 1)", "y + z ~ x", "2 ~ x", "y ~ 1 + (2 | subject)",
    "y ~ 1 + (x ** z | subject)", "y ~ x ** 2", "y ~ 1 + (x ** 2 | subject)", "y ~ I(x) ** 2",
])
def test_formulas_formulae_cannot_read_are_formula_errors(nested, formula):
    """formulae raised KeyError/TypeError/AttributeError (or, for x ** 2, silently used x)."""
    with pytest.raises(lb.FormulaError) as info:
        lb.LMM(formula, nested.assign(z=nested["x"] ** 2))
    assert formula in str(info.value).splitlines()[1]


def test_c_levels_that_differ_from_the_data_name_the_column(nested):
    with pytest.raises(ValueError, match=r"listed levels not in column 'cond': \['c'\].*levels=\['a', 'b'\]"):
        lb.LMM("y ~ C(cond, levels=['a', 'b', 'c']) + (1|subject)", nested)
    with pytest.raises(ValueError, match=r"column 'cond' holds values not listed: \['b'\]"):
        lb.LMM("y ~ C(cond, levels=['a', 'z']) + (1|subject)", nested)


def test_new_rows_of_the_wrong_type_are_a_value_error(nested):
    model = lb.LMM("y ~ I(x ** 2) + (1|subject)", nested)
    with pytest.raises(ValueError, match="new rows cannot be evaluated"):
        model.design.evaluate(pd.DataFrame({"x": ["a"], "subject": ["s1"]}))


def _treatment(values, levels):
    """Treatment coding built by hand: a column per level after the first (the reference)."""
    values = np.asarray(values, dtype=object)
    return np.column_stack([(values == lev).astype(float) for lev in levels[1:]])


def test_a_categoricals_first_category_is_the_reference():
    # categories in an order that is not alphabetical: "mid" is the reference, as in R and formulae
    values = ["low", "mid", "high", "low", "high", "mid", "low", "mid", "high", "low", "mid", "high"]
    order = ["mid", "high", "low", "unused"]  # an unused category has no column (R drops unused levels)
    df = pd.DataFrame({
        "y": np.linspace(0.0, 1.0, 12), "x": np.arange(12.0),
        "dose": pd.Categorical(values, categories=order), "g": list("aabbccaabbcc"),
    })
    d = lb.LMM("y ~ dose + (1 + dose | g)", df).design
    assert d.X_columns == ("Intercept", "dose[high]", "dose[low]")
    np.testing.assert_array_equal(d.X, np.column_stack([np.ones(12), _treatment(values, order[:3])]))
    assert d.group("g").effects == ("Intercept", "dose[high]", "dose[low]")
    np.testing.assert_array_equal(d.group("g").Z[:, 1:], _treatment(values, order[:3]))
    # new rows as text are coded with the fitted order
    rows = d.evaluate(pd.DataFrame({"dose": ["high", "mid"], "g": ["a", "z"]}))
    np.testing.assert_array_equal(rows.X, [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # C(x, Sum) omits the last category in the Categorical's order ("low"), not the last alphabetically
    s = lb.LMM("y ~ C(dose, Sum) + (1 | g)", df).design
    assert s.X_columns == ("Intercept", "C(dose, Sum)[mid]", "C(dose, Sum)[high]")


def test_backticked_and_keyword_columns_build_the_design():
    days = np.array([0.0, 1.0, 2.0, 5.0, 3.0, 4.0, 1.5, 2.5])
    yld = np.array([2.0, 1.0, 3.0, 3.5, 0.5, 1.0, 2.0, 4.0])
    df = pd.DataFrame({"my y": np.linspace(0.0, 1.0, 8), "my days": days, "yield": yld,
                       "my group": list("aabbccdd"), "my f": list("xyxyxyxy")})
    d = lb.LMM("`my y` ~ `my days` + I(`yield` ** 2) + C(`my f`, levels=['y', 'x']) + (1 + `my days` | `my group`)",
               df).design
    assert d.X_columns == ("Intercept", "my days", "I(yield ** 2)", "my f[x]")
    np.testing.assert_array_equal(d.y, df["my y"])
    np.testing.assert_array_equal(d.X[:, 1], days)
    np.testing.assert_array_equal(d.X[:, 2], yld**2)
    np.testing.assert_array_equal(d.X[:, 3], (df["my f"] == "x").astype(float))
    g = d.group("my group")
    assert g.effects == ("Intercept", "my days") and g.levels == ("a", "b", "c", "d")
    np.testing.assert_array_equal(g.Z, np.column_stack([np.ones(8), days]))
    assert d.Z.toarray()[:, 1::2].sum(axis=1).tolist() == days.tolist()
    rows = d.evaluate(pd.DataFrame({"my days": [7.0], "yield": [3.0], "my f": ["y"], "my group": ["a"]}))
    np.testing.assert_array_equal(rows.X, [[1.0, 7.0, 9.0, 0.0]])
    k = lb.LMM("`my y` ~ `yield` + (1 | `my group`)", df).design
    assert k.X_columns == ("Intercept", "yield")
    np.testing.assert_array_equal(k.X[:, 1], yld)
    # a power of one backticked term outside I() is refused like any other
    with pytest.raises(lb.FormulaError, match="write I"):
        lb.LMM("`my y` ~ `my days` ** 2 + (1 | `my group`)", df)

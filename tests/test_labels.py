"""Cluster identity: one labelling rule for fitting and prediction, never a silent merge."""

import builtins
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lmm_bayes as lb
from lmm_bayes.spec.labels import column_labels, value_label

RNG = np.random.default_rng(7)


def _frame(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({**cols, "y": RNG.normal(size=n), "x": RNG.normal(size=n)})


def _design(formula, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.LMM(formula, df).design


# ---------------------------------------------------------------- interactions: tuples, not joined text


def test_interaction_values_holding_colons_are_refused_not_merged():
    """("1", "1:2") and ("1:1", "2") both joined to "1:1:2": two clusters under one label."""
    df = _frame(a=["1", "1:1"] * 10, b=["1:2", "2"] * 10)
    with pytest.raises(ValueError, match=r"'a:b'.*a='1', b='1:2' and a='1:1', b='2'.*'1:1:2'"):
        lb.LMM("y ~ 1 + (1 | a:b)", df)


def test_interaction_new_rows_are_matched_by_tuple_not_by_joined_label():
    df = _frame(a=["x:1", "y"] * 10, b=["p", "q"] * 10)
    d = lb.LMM("y ~ 1 + (1 | a:b)", df).design
    g = d.group("a:b")
    assert g.levels == ("x:1:p", "y:q")
    rows = d.evaluate(pd.DataFrame({"a": ["x:1", "y", "z"], "b": ["p", "q", "q"]}))
    assert rows.codes["a:b"].tolist() == [0, 1, -1]
    assert rows.labels["a:b"].tolist() == ["x:1:p", "y:q", "z:q"]
    # ("x", "1:p") prints as the fitted "x:1:p" but is another cluster: refused, not matched
    with pytest.raises(ValueError, match=r"a='x:1', b='p' and a='x', b='1:p'.*'x:1:p'"):
        d.evaluate(pd.DataFrame({"a": ["x"], "b": ["1:p"]}))
    # two new clusters that print alike would share one new draw: refused
    with pytest.raises(ValueError, match=r"'u:v:w'"):
        d.evaluate(pd.DataFrame({"a": ["u", "u:v"], "b": ["v:w", "w"]}))
    assert g.keys == (("x:1", "p"), ("y", "q"))


# ---------------------------------------------------------------- one column: a label per value


def test_float_ids_beyond_int64_stay_distinct():
    """Floats >= 2**63 overflowed to one label (-9223372036854775808) and merged clusters."""
    ids = [1.0, 2.0**63, 2.0**63 + 4096, 2.0**64]
    d = lb.LMM("y ~ 1 + (1 | g)", _frame(g=np.repeat(ids, 5))).design
    g = d.group("g")
    assert g.n_levels == 4
    assert set(g.levels) == {"1", "9223372036854775808", "9223372036854779904", "18446744073709551616"}
    for v in ids:
        code = d.evaluate(pd.DataFrame({"g": [v]})).codes["g"][0]
        assert g.levels[code] == value_label(v)


def test_int_and_text_one_in_one_column_is_refused():
    """1 and "1" both read "1": they were merged into one cluster."""
    df = _frame(g=pd.Series([1, "1", 2, "2"] * 5, dtype=object))
    with pytest.raises(ValueError, match=r"grouping column 'g'.*'1'.*1 \(int\), '1' \(str\).*one type"):
        lb.LMM("y ~ 1 + (1 | g)", df)
    # in the new rows too
    d = lb.LMM("y ~ 1 + (1 | g)", _frame(g=[1, 2] * 5)).design
    with pytest.raises(ValueError, match=r"grouping column 'g'.*one type"):
        d.evaluate(pd.DataFrame({"g": pd.Series([1, "1"], dtype=object)}))


def test_label_of_a_value_does_not_depend_on_the_rest_of_the_column():
    """Fitted on 1.0, 1.5, ... the level was "1.0"; a new row holding only 1.0 printed "1" (unseen)."""
    d = lb.LMM("y ~ 1 + (1 | g)", _frame(g=np.repeat([1.0, 1.5, 2.0, 2.5], 5))).design
    assert d.group("g").levels == ("1", "1.5", "2", "2.5")
    for new, code in [([1.0], 0), ([2.0, 2.0], 2), ([1], 0), ([2.5], 3), (["1.5"], 1)]:
        assert d.evaluate(pd.DataFrame({"g": new})).codes["g"].tolist() == [code] * len(new)
    assert d.evaluate(pd.DataFrame({"g": [3.0]})).codes["g"].tolist() == [-1]


def test_labels_kept_where_unambiguous(sleepstudy):
    assert _design("Reaction ~ Days + (1 | Subject)", sleepstudy).group("Subject").levels[:2] == ("308", "309")
    ints = sleepstudy.assign(Subject=sleepstudy["Subject"].astype(int))
    assert _design("Reaction ~ Days + (1 | Subject)", ints).group("Subject").levels[:2] == ("308", "309")
    cats = column_labels(pd.Series(pd.Categorical(["b", "a", "b"], categories=["b", "a", "c"])), "c")
    assert cats.tolist() == ["b", "a", "b"]


# ---------------------------------------------------------------- properties

_IDS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**64), 2**64).map(float),  # integer-valued, also beyond int64
    st.sampled_from(["1", "1.0", "1.5", "-0", "a", "a:b", ":", "b:", "308", "1e3", "True"]),
    st.text(alphabet="01:ab.", max_size=4),
)


def _same(u, v):
    """Python's equality, but text never equals a number."""
    return isinstance(u, str) == isinstance(v, str) and u == v


def _collides(values):
    """Two values that are not equal but print the same label."""
    return any(value_label(u) == value_label(v) and not _same(u, v) for u in values for v in values)


@settings(max_examples=40, deadline=None)
@given(st.lists(_IDS, min_size=2, max_size=6))
def test_grouping_values_round_trip_to_their_cluster(values):
    assume(len({value_label(v) for v in values}) >= 2)
    col = pd.Series(values * 2, dtype=object)
    df = _frame(g=col)
    if _collides(values):
        with pytest.raises(ValueError, match="read as the same level"):
            lb.LMM("y ~ 1 + (1 | g)", df)
        return
    d = lb.LMM("y ~ 1 + (1 | g)", df).design
    codes = d.group("g").codes
    # equal values share a cluster, distinct values never do
    for i, u in enumerate(col):
        for j, v in enumerate(col):
            assert (codes[i] == codes[j]) == _same(u, v)
    # each value alone finds its cluster
    for i in range(min(len(values), 3)):
        assert d.evaluate(df.iloc[[i]]).codes["g"].tolist() == [codes[i]]
    assert d.evaluate(df).codes["g"].tolist() == codes.tolist()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_IDS, _IDS), min_size=2, max_size=5))
def test_interaction_tuples_round_trip_or_are_refused(pairs):
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    assume(not _collides(a) and not _collides(b))
    keys = [(value_label(u), value_label(v)) for u, v in pairs]
    assume(len(set(keys)) >= 2)
    df = _frame(a=pd.Series(a * 2, dtype=object), b=pd.Series(b * 2, dtype=object))
    names = {":".join(k) for k in keys}
    if len(names) < len(set(keys)):
        with pytest.raises(ValueError, match="would both be named"):
            lb.LMM("y ~ 1 + (1 | a:b)", df)
        return
    d = lb.LMM("y ~ 1 + (1 | a:b)", df).design
    codes = d.group("a:b").codes
    row_keys = keys * 2
    for i in range(len(row_keys)):
        for j in range(len(row_keys)):
            assert (codes[i] == codes[j]) == (row_keys[i] == row_keys[j])
    assert d.evaluate(df).codes["a:b"].tolist() == codes.tolist()
    assert d.group("a:b").levels[codes[0]] == ":".join(keys[0])


_PIECES = st.sampled_from([
    "y", "x", "z", "g", "h", "~", "+", "-", "*", ":", "/", "|", "||", "(", ")", "1", "0", "2", "1.5", "**", "log(",
    "I(", "C(", "center(", "scale(", "sqrt(", "exp(", "boom()", "boom", "levels=", "[", "]", "'a'", ",", "{", "}",
    ".", "__import__('os')", "os.system", "@", "%", "=", " ", "\n", "lambda", "Intercept", "chain",
])


_ATOMS = st.sampled_from([
    "x", "z", "h", "g", "1", "0", "2", "1.5", "log(x)", "log(z)", "I(x**2)", "C(h)", "center(x)", "scale(z)",
    "sqrt(x)", "exp(z)", "I(x/0)", "{x}", "boom()", "{boom()}", "I(boom())", "Intercept", "chain",
])
_OPS = st.sampled_from([" + ", " * ", ":", " / ", " ** ", " - ", " | "])
_EXPR = st.recursive(
    _ATOMS,
    lambda e: st.one_of(st.tuples(e, _OPS, e).map("".join), e.map(lambda t: f"({t})"), e.map(lambda t: f"I({t})")),
    max_leaves=5,
)
_GRAMMAR = st.tuples(
    _EXPR, st.lists(st.tuples(_EXPR, st.sampled_from(["|", "||"]), st.sampled_from(["g", "h", "g:h", "g/h", "x"])),
                    max_size=2),
).map(lambda t: "y ~ " + t[0] + "".join(f" + ({e} {bar} {grp})" for e, bar, grp in t[1]))


def _boom(*args, **kwargs):
    raise AssertionError("the formula executed code")


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    _GRAMMAR,
    st.lists(_PIECES, max_size=12).map("".join),
    st.lists(_PIECES, max_size=10).map(lambda p: "y ~ " + " ".join(p)),
    st.text(max_size=25),
))
def test_random_formula_text_raises_only_our_errors_and_runs_nothing(text):
    df = pd.DataFrame({
        "y": RNG.normal(size=12), "x": RNG.normal(size=12), "z": RNG.uniform(1, 2, 12),
        "g": list("abcd") * 3, "h": list("pq") * 6, "Intercept": RNG.normal(size=12), "chain": list("ab") * 6,
    })
    builtins.boom = _boom  # any evaluation of boom() anywhere would call it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lb.LMM(text, df)
    except (ValueError, TypeError) as err:  # FormulaError is a ValueError
        assert type(err).__module__ in {"builtins", "lmm_bayes.errors"}, type(err)
    finally:
        del builtins.boom


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2), st.integers(0, 6)), min_size=1, max_size=40))
def test_unique_rows_equals_numpy_unique_on_rows(rows):
    """The fast mixed-radix version orders and codes rows exactly as np.unique(axis=0)."""
    from lmm_bayes.spec.labels import _unique_rows

    arr = np.array(rows, dtype=np.int64)
    ranks = [arr[:, j] for j in range(arr.shape[1])]
    want_uniq, want_codes = np.unique(arr, axis=0, return_inverse=True)
    uniq, codes = _unique_rows(ranks, [5, 3, 7])
    np.testing.assert_array_equal(uniq, want_uniq)
    np.testing.assert_array_equal(codes, want_codes.ravel())

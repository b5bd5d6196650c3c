"""The lme4 formula parser: a table of formulas and a table of errors."""

import pytest

from lmm_bayes.spec.formula import FormulaError, parse_formula

# formula, response, fixed terms, intercept, [(group, [(expr, correlated), ...]), ...]
VALID = [
    ("y ~ x", "y", ("x",), True, []),
    ("y ~ 1", "y", (), True, []),
    ("y ~ 0 + x", "y", ("x",), False, []),
    ("y ~ x - 1", "y", ("x",), False, []),
    ("y ~ x + (1|g)", "y", ("x",), True, [("g", [("1", True)])]),
    ("y ~ x + (x|g)", "y", ("x",), True, [("g", [("x", True)])]),
    ("y ~ x + (1 + x|g)", "y", ("x",), True, [("g", [("1 + x", True)])]),
    ("y ~ x + (0 + x|g)", "y", ("x",), True, [("g", [("0 + x", True)])]),
    ("y ~ x + (x||g)", "y", ("x",), True, [("g", [("x", False)])]),
    ("y ~ x + (x || g)", "y", ("x",), True, [("g", [("x", False)])]),
    ("y ~ (1|a/b)", "y", (), True, [("a", [("1", True)]), ("a:b", [("1", True)])]),
    ("y ~ (1|a/b/c)", "y", (), True, [("a", [("1", True)]), ("a:b", [("1", True)]), ("a:b:c", [("1", True)])]),
    ("y ~ (1|a:b)", "y", (), True, [("a:b", [("1", True)])]),
    ("y ~ x + (1|s) + (1|item)", "y", ("x",), True, [("s", [("1", True)]), ("item", [("1", True)])]),
    ("y ~ x + (1|g) + (0 + x|g)", "y", ("x",), True, [("g", [("1", True), ("0 + x", True)])]),
    ("y ~ a:b", "y", ("a:b",), True, []),
    ("y ~ a*b", "y", ("a*b",), True, []),
    ("y ~ log(x) + exp(z) + sqrt(w)", "y", ("log(x)", "exp(z)", "sqrt(w)"), True, []),
    ("y ~ center(x) + scale(z)", "y", ("center(x)", "scale(z)"), True, []),
    ("y ~ I(x**2)", "y", ("I(x**2)",), True, []),
    ("y ~ C(f)", "y", ("C(f)",), True, []),
    ("y ~ C(f, levels=['b', 'a'])", "y", ("C(f, levels=['b', 'a'])",), True, []),
    ("log(y) ~ x", "log(y)", ("x",), True, []),
    ("y ~ x +\n  (1 | g)", "y", ("x",), True, [("g", [("1", True)])]),
    ("rate ~ speed + (1 + speed | subject) + (1 | subject:neuron)", "rate", ("speed",), True,
     [("subject", [("1 + speed", True)]), ("subject:neuron", [("1", True)])]),
    ("y ~ x + x", "y", ("x",), True, []),
]


@pytest.mark.parametrize("formula, response, fixed, intercept, random", VALID)
def test_valid_formulas(formula, response, fixed, intercept, random):
    spec = parse_formula(formula)
    assert spec.response == response
    assert spec.fixed_terms == fixed
    assert spec.intercept is intercept
    got = [(t.group, [(b.expr, b.correlated) for b in t.blocks]) for t in spec.random]
    assert got == random


def test_variables_and_levels():
    spec = parse_formula("log(y) ~ C(f, levels=['b', 'a']) + x + (1 + x | s/n)")
    assert spec.variables == ("y", "f", "x", "s", "n")
    assert spec.response_variables == ("y",)
    assert spec.predictor_variables == ("f", "x", "s", "n")
    assert spec.levels_calls[0].column == "f"
    assert spec.levels_calls[0].levels == ("b", "a")
    assert spec.fixed_formula == "log(y) ~ 1 + C(f, levels=['b', 'a']) + x"


def test_spec_is_frozen():
    spec = parse_formula("y ~ x")
    with pytest.raises(AttributeError):
        spec.response = "z"


ERRORS = [
    ("y x", "needs '~'", 0),
    ("~ x", "response is missing", 0),
    ("y ~", "nothing after '~'", None),
    ("y ~ x ~ z", "exactly one '~'", 6),
    ("y ~ x + (x|g", "never closed", 8),
    ("y ~ x)", "unmatched", 5),
    ("y ~ x +", "term is missing", 6),
    ("y ~ np.log(x)", "attribute access", 6),
    ("y ~ foo(x)", r"foo\(...\) is not an allowed transformation", 4),
    ("y ~ __import__('os')", "not an allowed transformation", 4),
    ("y ~ lambda: 1", "syntax error", None),
    ("y ~ x == 1", "operator '==' is not allowed", 6),
    ("y ~ x + x|g", "must stand in its own parentheses", 9),
    ("y ~ (x|)", "needs a grouping factor", None),
    ("y ~ (|g)", "write the effects before", 5),
    ("y ~ (1|g:h/k)", "mixing ':' and '/'", None),
    ("y ~ (1|g+h)", "unexpected '\\+'", None),
    ("y ~ x - z", r"only '- 1'", 8),
    ("y ~ x + 'text'", "only allowed inside C", 8),
    ("y ~ C(f, levels=x)", "literal list", 4),
    ("y ~ C(f, levels=['a'])", "at least two levels", 4),
    ("y ~ log(x, base=2)", "only allowed inside C", 9),
    ("y ~ (1 | g) + (1 | g | h)", "one '\\|'", None),
]


@pytest.mark.parametrize("formula, message, caret", ERRORS)
def test_formula_errors(formula, message, caret):
    with pytest.raises(FormulaError, match=message) as info:
        parse_formula(formula)
    assert isinstance(info.value, ValueError)
    if caret is not None:
        assert info.value.position == caret
        assert str(info.value).splitlines()[-1].index("^") == caret + 2


def test_formula_must_be_text():
    with pytest.raises(TypeError, match="formula must be a string"):
        parse_formula(42)


def test_backticked_names_are_columns():
    spec = parse_formula("`my y` ~ `my days` + log(`yield`) + (1 + `my days` | `my group`)")
    assert spec.fixed_terms == ("`my days`", "log(`yield`)")  # formulae reads the backticks
    assert spec.random[0].factors == ("my group",) and spec.random[0].blocks[0].expr == "1 + `my days`"
    assert spec.variables == ("my y", "my days", "yield", "my group")
    assert spec.response_variables == ("my y",)
    levels = parse_formula("y ~ C(`my f`, levels=['b', 'a'])").levels_calls[0]
    assert (levels.column, levels.levels) == ("my f", ("b", "a"))


@pytest.mark.parametrize("formula, message, caret", [
    ("y ~ yield + x", "Python keyword; for a column of that name write it in backticks, `yield`", 4),
    ("y ~ I(x^2)", r"'\^' is not a power here \(in Python it is XOR\): write \*\* instead", 7),
    ("y ~ (a + b)^2", r"write \*\* instead", 11),
    ("y ~ `x + z", "backtick is never closed", 4),
    ("y ~ `` + z", "empty backticks", 4),
])
def test_keywords_powers_and_backticks_say_what_to_write(formula, message, caret):
    with pytest.raises(FormulaError, match=message) as info:
        parse_formula(formula)
    assert info.value.position == caret

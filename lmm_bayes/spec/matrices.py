"""Formula text + data → numeric matrices through formulae, with the package's errors.

Everything :mod:`lmm_bayes.spec.design` asks of `formulae
<https://bambinos.github.io/formulae/>`_ goes through here, so that

* integer columns are read as float64 (``I(big ** 2)`` never wraps around), except
  those a ``C(...)`` reads, which stay categories with their own labels;
* a term formulae cannot read or evaluate (``2 * x``, ``(x)(z)``, ``y + z ~ x``) is a
  :class:`~lmm_bayes.errors.FormulaError` with a caret at the term, never formulae's
  own exception; ``x ** 2`` (which formulae reads as ``x`` itself) is refused;
* a transformed column holding NaN or inf (``log(x)`` with ``x <= 0``) is a
  ``ValueError`` naming the term.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Sequence
from typing import Any

import lazy_loader as lazy
import numpy as np
import pandas as pd

from lmm_bayes.errors import FormulaError
from lmm_bayes.spec.terms import ModelSpec

# formulae (and the scipy modules it imports) loads at the first formula, not at `import lmm_bayes`
formulae = lazy.load("formulae")

__all__ = [
    "NAMESPACE", "categorical_columns", "check_finite", "check_powers", "fixed_formula", "for_formulae", "rename",
    "response_slices",
    "run_formulae",
]

# transformations formulae does not define itself (center, scale, C and I it does)
NAMESPACE = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}

_C_COLUMN = re.compile(r"\bC\(\s*(?:`([^`]+)`|([A-Za-z_]\w*))")
_BACKTICKED = re.compile(r"`[^`]*`")
_HINTS = {
    "log": "{arg} <= 0?",
    "sqrt": "{arg} < 0?",
    "exp": "{arg} too large?",
    "scale": "{arg} constant?",
    "I": "a division by zero or an overflow?",
}


def fixed_formula(spec: ModelSpec) -> tuple[str, dict, dict, list[tuple[str, str]]]:
    """The fixed formula for formulae, with ``C(x, levels=[...])`` lists moved to a namespace.

    Returns the formula text, the namespace, the renames that turn formulae's column
    names back into what the user wrote (``C(cond, levels=levels0_)`` → ``cond``) and,
    per part (the response, then each term), the user's text and a formula formulae
    reads for that part alone (to point at the part that fails).
    """
    text = spec.fixed_formula
    namespace = dict(NAMESPACE)
    renames = {}
    for k, call in enumerate(spec.levels_calls):
        name = f"levels{k}_"
        replaced = f"C({_quoted(call.column)}, levels={name})"
        text = text.replace(call.text, replaced)
        namespace[name] = list(call.levels)
        renames[f"C({call.column}, levels={name})"] = call.column  # formulae names columns without backticks
    parts = [(spec.response, f"{spec.response} ~ 1")]
    for term in spec.fixed_terms:
        alone = term
        for k, call in enumerate(spec.levels_calls):
            alone = alone.replace(call.text, f"C({_quoted(call.column)}, levels=levels{k}_)")
        parts.append((term, f"{spec.response} ~ {alone}"))
    return text, namespace, renames, parts


def _quoted(column: str) -> str:
    """A column's name as formulae reads it: in backticks unless it is an identifier."""
    return column if column.isidentifier() else f"`{column}`"


def rename(column: str, renames: dict) -> str:
    for old, new in renames.items():
        column = column.replace(old, new)
    return column


def for_formulae(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """``frame`` with its integer columns as float64, but those a ``C(...)`` reads, and its Categoricals ordered.

    numpy integer arithmetic wraps around silently (``I(x ** 2)`` of a large int64);
    on float64 it cannot. Columns inside ``C(...)`` keep their type: they are categories,
    labelled as written (``C(k)[2]``, not ``C(k)[2.0]``).

    A pandas Categorical keeps its categories' order, so that its first category is the
    reference level, as in R: formulae sorts the values of an unordered Categorical, and
    follows the order of an ordered one. Categories no row holds are dropped (R's
    ``drop.unused.levels``): they would be columns of zeros.

    Examples
    --------
    >>> from lmm_bayes.spec.formula import parse_formula
    >>> frame = pd.DataFrame({"f": pd.Categorical(["a", "b"], categories=["b", "z", "a"])})
    >>> list(for_formulae(frame, parse_formula("y ~ f"))["f"].cat.categories)
    ['b', 'a']
    """
    categorical = set(categorical_columns(spec, frame))
    cast = [
        c for c in frame.columns
        if c not in categorical
        and pd.api.types.is_integer_dtype(frame[c].dtype)
        and not pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    ordered = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if not cast and not ordered:
        return frame
    frame = frame.astype({c: "float64" for c in cast})
    for c in ordered:
        frame[c] = frame[c].cat.remove_unused_categories().cat.as_ordered()
    return frame


def categorical_columns(spec: ModelSpec, frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that formulae codes as categories: text, Categorical, bool, or inside ``C(...)``.

    Examples
    --------
    >>> from lmm_bayes.spec.formula import parse_formula
    >>> frame = pd.DataFrame({"x": [1.0, 2.0], "k": [1, 2], "f": ["a", "b"]})
    >>> categorical_columns(parse_formula("y ~ x + C(k) + f"), frame)
    ['k', 'f']
    """
    texts = [*spec.fixed_terms, *(b.expr for t in spec.random for b in t.blocks)]
    inside_c = {m.group(1) or m.group(2) for text in texts for m in _C_COLUMN.finditer(text)}
    return [
        c for c in frame.columns
        if c in inside_c or not pd.api.types.is_numeric_dtype(frame[c].dtype) or pd.api.types.is_bool_dtype(frame[c].dtype)
    ]


@contextlib.contextmanager
def _quiet():
    """formulae prints to stdout before it raises, numpy warns on log(0): keep both out of the user's output."""
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        yield


def run_formulae(
    text: str, data: pd.DataFrame, namespace: dict, *, formula: str, parts: Sequence[tuple[str, str]]
) -> Any:
    """``formulae.design_matrices(text, data)``; any failure is a FormulaError at the failing part.

    ``parts`` are (user's text, formula for that part alone) pairs, tried one by one
    when the whole fails, to put the caret at the culprit.
    """
    try:
        with _quiet():
            return formulae.design_matrices(text, data, na_action="error", extra_namespace=namespace)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 (formulae raises KeyError, TypeError, AttributeError, its own)
        raise _failure(formula, data, namespace, parts, err) from None


def _failure(formula: str, data: pd.DataFrame, namespace: dict, parts: Sequence[tuple[str, str]],
             err: Exception) -> FormulaError:
    culprit, cause = None, err
    if len(parts) > 1:
        for user, alone in parts:
            try:
                with _quiet():
                    formulae.design_matrices(alone, data, na_action="error", extra_namespace=namespace)
            except MemoryError:
                raise
            except Exception as part_err:  # noqa: BLE001 (as above)
                culprit, cause = user, part_err
                break
    elif parts:
        culprit = parts[0][0]
    reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:200]
    if culprit is None:
        return FormulaError(formula, formula.find("~") + 2, f"the formula cannot be evaluated ({reason})")
    pos = max(formula.find(culprit), 0)
    if parts and culprit == parts[0][0]:  # the response (alone, or the part that failed)
        hint = "the response must be one column or a transformation of one, e.g. y or log(y)"
    elif re.search(r"\b(Sum|Treatment)\(", culprit):
        hint = "the level named in Treatment('...') or Sum('...') must be one of the column's values"
    else:
        hint = "arithmetic on columns goes inside I(...), e.g. I(2 * x) or I(x ** 2), and a term cannot be a number"
    return FormulaError(formula, pos, f"cannot evaluate {culprit!r} ({reason}); {hint}")


def _single_term(node: ast.AST) -> bool:
    """Whether a formula expression (``':'`` written as ``'@'``) is one term, not a sum of terms."""
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.MatMult):
            return _single_term(node.left) and _single_term(node.right)
        if isinstance(node.op, ast.Pow):
            return _single_term(node.left)
        return False  # + - * / make several terms
    return True  # a column, a call, a number


def _silent_power(node: ast.AST) -> bool:
    """A ``term ** k`` outside any call: formulae returns the term itself (``x ** 2`` is ``x``)."""
    if isinstance(node, (ast.Call, ast.Set, ast.Dict)):
        return False  # I(x ** 2), {x ** 2}: real arithmetic
    if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _single_term(node.left)
            and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int)):
        return True
    return any(_silent_power(child) for child in ast.iter_child_nodes(node))


def check_powers(spec: ModelSpec) -> None:
    """Refuse ``x ** 2`` (and ``I(x) ** 2``, ``(x:z) ** 2``) outside ``I(...)``.

    In a formula a power of a sum is its interactions (``(a + b) ** 2`` is ``a + b + a:b``),
    and formulae gives a power of one term back unchanged, with only a log message: the
    user asked for a square and would silently fit ``x``.
    """
    for text in [*spec.fixed_terms, *(b.expr for t in spec.random for b in t.blocks)]:
        try:
            tree = ast.parse(_BACKTICKED.sub("_q", text).replace(":", "@"), mode="eval")
        except SyntaxError:  # formula.py has checked the syntax; formulae reports anything else
            continue
        if _silent_power(tree):
            raise FormulaError(
                spec.formula, max(spec.formula.find(text), 0),
                f"{text!r}: in a formula, a power of one term is that term itself "
                "((a + b) ** 2 means a + b + a:b); write I(x ** 2) for the square",
            )


def _hint(term: str) -> str:
    hints = []
    for m in re.finditer(r"\b(log|sqrt|exp|scale|I)\(", term):
        depth, end = 0, m.end() - 1
        for end in range(m.end() - 1, len(term)):
            depth += {"(": 1, ")": -1}.get(term[end], 0)
            if depth == 0:
                break
        hints.append(_HINTS[m.group(1)].format(arg=term[m.end() : end].strip()))
    return f" ({'; '.join(dict.fromkeys(hints))})" if hints else ""


def check_finite(values: np.ndarray, slices: dict[str, slice], renames: dict, where: str = "") -> None:
    """Raise ``ValueError`` naming the first term whose columns hold NaN or inf.

    ``values`` are the evaluated columns, ``slices`` formulae's term → columns map
    (``{"log(x)": slice(1, 2)}``). The data were checked for NaN/inf before, so any
    here was made by the transformation.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if np.isfinite(values).all():
        return
    for term, cols in slices.items():
        bad = ~np.isfinite(values[:, cols])
        if bad.any():
            name = rename(str(term), renames)
            n = int(bad.any(axis=1).sum())
            raise ValueError(
                f"{name}: {n} value{'s are' if n > 1 else ' is'} not finite after the transformation"
                f"{_hint(name)}{where}; fix or drop those rows, or transform the column in the data first"
            )
    raise ValueError(f"the design holds values that are not finite after the transformation{where}")


def response_slices(name: str) -> dict[str, slice]:
    """The response as one term for :func:`check_finite`."""
    return {name: slice(0, 1)}


"""lme4 formula text → a frozen :class:`ModelSpec`.

This module only reads text; it never touches data. The fixed part of a
formula is handed to `formulae <https://bambinos.github.io/formulae/>`_ later
(by :mod:`lmm_bayes.spec.design`), so interactions, ``*``, ``/`` and categorical
coding follow formulae. What formulae does not know, this module adds:

* random terms ``(expr | g)`` and ``(expr || g)`` (independent SDs), grouping
  factors ``a:b`` and ``a/b`` (= ``a`` and ``a:b``), several terms on one factor;
* ``C(x, levels=[...])`` to choose the reference level;
* ``C(x, Sum)`` (sum-to-zero, "deviation" coding: each coefficient is a level's
  difference from the mean of the level means; ``Sum("c")`` omits level ``c``
  instead of the last) and ``C(x, Treatment("b"))`` (reference ``b``), passed to
  formulae as written (:data:`CODINGS`);
* a closed list of transformations: nothing in the formula is evaluated except
  the names in :data:`ALLOWED_CALLS` and data columns;
* R's backtick-quoted names, ```my days``` or ```yield``` (a Python keyword), wherever a
  column can stand; the terms keep the backticks, which formulae reads, and the column
  names drop them.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from dataclasses import dataclass

from lmm_bayes.errors import FormulaError
from lmm_bayes.spec.terms import LevelsCall, ModelSpec, RandomBlock, RandomTerm

__all__ = ["ALLOWED_CALLS", "CODINGS", "FormulaError", "ModelSpec", "parse_formula"]

#: The only calls a formula may contain.
ALLOWED_CALLS = ("log", "exp", "sqrt", "center", "scale", "C", "I")

#: Codings of a categorical predictor, the second argument of ``C(x, ...)``: treatment
#: (dummy; the default, first level as reference) or sum-to-zero.
CODINGS = ("Treatment", "Sum")


# --------------------------------------------------------------------------
# tokens


@dataclass(frozen=True)
class _Tok:
    kind: int
    text: str
    start: int  # character offset in the formula
    end: int
    quoted: str | None = None  # the column a backtick-quoted name stands for (text is its stand-in)

    @property
    def name(self) -> str:
        """The column a NAME token reads: ``my days`` for ```my days```."""
        return self.text if self.quoted is None else self.quoted


_BACKTICKED = re.compile(r"`([^`]*)`")


def _stand_ins(formula: str) -> tuple[str, dict[str, str]]:
    """The formula with every ```name``` replaced by an identifier as long, and those identifiers' names.

    Python's tokenizer knows no backticks; an identifier of the same length keeps every
    offset (and so every caret) where it is in the user's text.
    """
    if formula.count("`") % 2:
        raise FormulaError(formula, formula.rindex("`"), "this backtick is never closed; write `my column`")
    names: dict[str, str] = {}
    by_name: dict[str, str] = {}

    def stand_in(m: re.Match) -> str:
        name = m.group(1)
        if not name.strip():
            raise FormulaError(formula, m.start(), "empty backticks; write a column's name between them, `my column`")
        if name not in by_name:
            k = 0
            while (cand := f"_{k:0{len(m.group(0)) - 1}d}") in formula or cand in names:
                k += 1
            by_name[name], names[cand] = cand, name
        return by_name[name]

    return _BACKTICKED.sub(stand_in, formula), names


def _tokens(formula: str) -> list[_Tok]:
    toks: list[_Tok] = []
    depth: list[_Tok] = []
    code, quoted = _stand_ins(formula)
    try:
        for t in tokenize.generate_tokens(io.StringIO(code).readline):
            if t.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT,
                          tokenize.DEDENT, tokenize.COMMENT):
                continue
            if t.type == tokenize.ERRORTOKEN and not t.string.strip():
                continue
            tok = _Tok(t.type, t.string, t.start[1], t.end[1],
                       quoted.get(t.string) if t.type == tokenize.NAME else None)
            if tok.kind == tokenize.ERRORTOKEN or tok.text in {"$", "?", "!", ";"}:
                raise FormulaError(formula, tok.start, f"unexpected character {tok.text!r}")
            if tok.text in "([{" and tok.kind == tokenize.OP:
                depth.append(tok)
            elif tok.text in ")]}" and tok.kind == tokenize.OP:
                if not depth or {"(": ")", "[": "]", "{": "}"}[depth[-1].text] != tok.text:
                    raise FormulaError(formula, tok.start, f"unmatched {tok.text!r}")
                depth.pop()
            toks.append(tok)
    except tokenize.TokenError as err:
        if depth and "EOF" in str(err.args[0]):  # the text ended inside a parenthesis
            raise FormulaError(formula, depth[-1].start, "this parenthesis is never closed") from None
        # a malformed literal or a stray line continuation: Python's tokenizer says which
        col = err.args[1][1] if len(err.args) > 1 and isinstance(err.args[1], tuple) else len(formula) + 1
        raise FormulaError(formula, min(max(col - 1, 0), len(formula)), f"cannot read the formula: {err.args[0]}") from None
    except SyntaxError as err:  # e.g. an unterminated string
        raise FormulaError(formula, (err.offset or 1) - 1, f"cannot read the formula: {err.msg}") from None
    if depth:
        raise FormulaError(formula, depth[-1].start, "this parenthesis is never closed")
    return toks


def _split_top(toks: list[_Tok], seps: set[str]) -> list[tuple[str | None, list[_Tok]]]:
    """Split tokens at depth-0 separators; returns (separator before, tokens) pairs."""
    parts: list[tuple[str | None, list[_Tok]]] = []
    current: list[_Tok] = []
    sep: str | None = None
    depth = 0
    for tok in toks:
        if tok.kind == tokenize.OP and tok.text in "([{":
            depth += 1
        elif tok.kind == tokenize.OP and tok.text in ")]}":
            depth -= 1
        if depth == 0 and tok.kind == tokenize.OP and tok.text in seps:
            parts.append((sep, current))
            sep, current = tok.text, []
            continue
        current.append(tok)
    parts.append((sep, current))
    return parts


def _text(formula: str, toks: list[_Tok]) -> str:
    return formula[toks[0].start : toks[-1].end]


# --------------------------------------------------------------------------
# checks of one expression (a fixed term, or the effects of a random term)


def _check_expression(formula: str, toks: list[_Tok], where: str) -> tuple[set[str], list[LevelsCall]]:
    """Return the data columns an expression reads; raise on anything not allowed."""
    if not toks:
        raise FormulaError(formula, len(formula), f"empty {where}")
    text = _text(formula, toks)
    # syntax: formula operators are Python operators except ':' (same validity as '*')
    probe = "".join("*" if (t.kind == tokenize.OP and t.text == ":") else t.text for t in toks)
    for tok in toks:
        if tok.kind == tokenize.NAME and keyword.iskeyword(tok.text) and tok.text not in {"True", "False", "None"}:
            raise FormulaError(formula, tok.start, f"syntax error: {tok.text!r} is a Python keyword; "
                                                   f"for a column of that name write it in backticks, `{tok.text}`")
    try:
        ast.parse(_spaced(formula, toks, probe), mode="eval")
    except SyntaxError as err:
        offset = toks[0].start + max((err.offset or 1) - 1, 0)
        raise FormulaError(formula, min(offset, len(formula) - 1), f"syntax error in {where} {text!r}") from None

    variables: set[str] = set()
    levels_calls: list[LevelsCall] = []
    calls_open: list[str] = []  # stack of call names for the parentheses we are in
    paren_stack: list[str | None] = []
    for i, tok in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        prev = toks[i - 1] if i > 0 else None
        in_c = "C" in calls_open
        if tok.kind == tokenize.NAME:
            if prev is not None and prev.text == ".":
                continue  # reported at the dot
            is_call = nxt is not None and nxt.text == "("
            if in_c and tok.text in CODINGS and calls_open[-1] == "C":
                continue  # C(x, Sum) or C(x, Treatment("b")): checked in _levels_call
            if is_call:
                if tok.text not in ALLOWED_CALLS:
                    raise FormulaError(
                        formula, tok.start,
                        f"{tok.text}(...) is not an allowed transformation; "
                        f"use one of {', '.join(ALLOWED_CALLS)}, or compute the column in the data first",
                    )
                if tok.text == "C":
                    levels_calls.extend(_levels_call(formula, toks, i))
                continue
            if nxt is not None and nxt.text == "=":
                if not (in_c and tok.text == "levels"):
                    raise FormulaError(formula, tok.start,
                                       f"keyword argument {tok.text}= is not allowed here; only C(x, levels=[...]) takes one")
                continue
            if keyword.iskeyword(tok.text) or tok.text in {"True", "False", "None"}:
                raise FormulaError(formula, tok.start, f"{tok.text!r} is not allowed in a formula")
            if in_c and paren_stack and _inside_levels(toks, i):
                continue
            variables.add(tok.name)
        elif tok.kind == tokenize.OP:
            if tok.text == ".":
                raise FormulaError(
                    formula, tok.start,
                    "attribute access ('.') is not allowed: write log(x), not np.log(x); "
                    f"allowed transformations: {', '.join(ALLOWED_CALLS)}",
                )
            if tok.text == "(":
                paren_stack.append(prev.text if prev is not None and prev.kind == tokenize.NAME else None)
                if paren_stack[-1]:
                    calls_open.append(paren_stack[-1])
            elif tok.text == ")":
                name = paren_stack.pop()
                if name:
                    calls_open.pop()
            elif tok.text in "[]," and not in_c:
                raise FormulaError(formula, tok.start, f"{tok.text!r} is only allowed inside C(x, levels=[...])")
            elif tok.text == "=" and in_c and prev is not None and prev.text == "levels":
                pass
            elif tok.text == "^":  # R's power; Python's XOR on integers: never evaluate it
                raise FormulaError(formula, tok.start,
                                   "'^' is not a power here (in Python it is XOR): write ** instead, "
                                   "I(x ** 2) for a square, (a + b) ** 2 for the interactions of a and b")
            elif tok.text in {"=", "==", "<", ">", "<=", ">=", "!=", "&", "@", "%", "//", "<<", ">>", "|"}:
                raise FormulaError(formula, tok.start, f"operator {tok.text!r} is not allowed in {where}")
        elif tok.kind == tokenize.STRING and not in_c:
            raise FormulaError(formula, tok.start, "text in quotes is only allowed inside C(x, levels=[...])")
    return variables, levels_calls


def _spaced(formula: str, toks: list[_Tok], _probe: str) -> str:
    # Rebuild the expression keeping original spacing so SyntaxError offsets map back.
    out = []
    pos = toks[0].start
    for t in toks:
        out.append(" " * (t.start - pos))
        out.append("*" if (t.kind == tokenize.OP and t.text == ":") else t.text)
        pos = t.end
    return "".join(out)


def _inside_levels(toks: list[_Tok], i: int) -> bool:
    # True when token i sits after 'levels =' within the current C( ... ) call
    depth = 0
    for j in range(i - 1, -1, -1):
        t = toks[j]
        if t.text in ")]":
            depth += 1
        elif t.text in "([":
            if depth == 0 and t.text == "(":
                return False
            depth -= 1 if depth else 0
        elif depth == 0 and t.text == "=" and j > 0 and toks[j - 1].text == "levels":
            return True
    return False


def _levels_call(formula: str, toks: list[_Tok], i: int) -> list[LevelsCall]:
    """Read ``C(col, levels=[...])`` starting at token i (the C)."""
    depth, j = 0, i + 1
    while j < len(toks):
        if toks[j].text in "([":
            depth += 1
        elif toks[j].text in ")]":
            depth -= 1
            if depth == 0:
                break
        j += 1
    text = _text(formula, toks[i : j + 1])
    node = ast.parse(_spaced(formula, toks[i : j + 1], "").replace(":", "*"), mode="eval").body
    assert isinstance(node, ast.Call)  # guaranteed by the tokens; not user-facing
    if not node.args or not isinstance(node.args[0], ast.Name) or len(node.args) > 2:
        raise FormulaError(formula, toks[i].start,
                           "C() takes one column name and optionally a coding, e.g. C(x), C(x, Sum) or "
                           "C(x, levels=['b', 'a'])")
    if len(node.args) == 2:
        _check_coding(formula, toks[i].start, node.args[1])
        if node.keywords:
            raise FormulaError(formula, toks[i].start,
                               "C(x, coding, levels=[...]) is not supported: choose the reference with "
                               "Treatment('b') or the omitted level with Sum('c')")
    if not node.keywords:
        return []
    try:
        levels = ast.literal_eval(node.keywords[0].value)
    except ValueError:
        raise FormulaError(formula, toks[i].start, "levels= must be a literal list, e.g. levels=['b', 'a']") from None
    if not isinstance(levels, (list, tuple)) or len(levels) < 2:
        raise FormulaError(formula, toks[i].start, "levels= must list at least two levels, e.g. levels=['b', 'a']")
    column = next(t.name for t in toks[i : j + 1] if t.text == node.args[0].id)
    return [LevelsCall(text=text, column=column, levels=tuple(levels))]


def _check_coding(formula: str, at: int, node: ast.expr) -> None:
    """The coding argument of ``C(x, coding)``: ``Sum``, ``Treatment``, or either called with one level."""
    call = node if isinstance(node, ast.Call) else None
    name = call.func if call is not None else node
    if not isinstance(name, ast.Name) or name.id not in CODINGS:
        raise FormulaError(formula, at,
                           f"the second argument of C() is a coding, one of {', '.join(CODINGS)} "
                           "(e.g. C(x, Sum) or C(x, Treatment('b')))")
    if call is not None and (call.keywords or len(call.args) != 1 or not isinstance(call.args[0], ast.Constant)):
        raise FormulaError(formula, at,
                           f"{name.id}() takes one level in quotes, e.g. {name.id}('b'), or write {name.id} alone")


# --------------------------------------------------------------------------
# random terms


def _parse_group(formula: str, toks: list[_Tok]) -> list[tuple[str, ...]]:
    """``a`` → [(a,)]; ``a:b`` → [(a, b)]; ``a/b`` → [(a,), (a, b)]."""
    if not toks:
        raise FormulaError(formula, len(formula) - 1, "a random term needs a grouping factor after '|'")
    names: list[str] = []
    seps: list[str] = []
    for k, tok in enumerate(toks):
        if k % 2 == 0:
            if tok.kind != tokenize.NAME or keyword.iskeyword(tok.text):
                raise FormulaError(formula, tok.start,
                                   "a grouping factor must be a column name, or names joined by ':' or '/' "
                                   "(a name that is not an identifier in backticks, `my group`)")
            names.append(tok.name)
        else:
            if tok.text not in {":", "/"}:
                raise FormulaError(formula, tok.start,
                                   f"unexpected {tok.text!r} in a grouping factor; use ':' for an interaction or '/' for nesting")
            seps.append(tok.text)
    if len(toks) % 2 == 0:
        raise FormulaError(formula, toks[-1].start, "a grouping factor cannot end with an operator")
    if "/" in seps and ":" in seps:
        raise FormulaError(formula, toks[0].start, "mixing ':' and '/' in one grouping factor is not supported; write the terms out")
    if "/" in seps:
        return [tuple(names[: k + 1]) for k in range(len(names))]
    return [tuple(names)]


def _parse_random(formula: str, toks: list[_Tok]) -> tuple[list[tuple[tuple[str, ...], RandomBlock]], set[str]]:
    inner = toks[1:-1]
    bars = [k for k, t in enumerate(inner) if t.text == "|" and _depth_at(inner, k) == 0]
    if not bars:
        raise FormulaError(formula, toks[0].start, "internal: not a random term")
    correlated = True
    if len(bars) == 2 and bars[1] == bars[0] + 1 and inner[bars[1]].start == inner[bars[0]].end:
        correlated = False
    elif len(bars) > 1:
        raise FormulaError(formula, inner[bars[1]].start, "a random term has one '|' (or '||')")
    expr_toks = inner[: bars[0]]
    group_toks = inner[bars[-1] + 1 :]
    if not expr_toks:
        raise FormulaError(formula, inner[bars[0]].start, "write the effects before '|', e.g. (1 | g) or (1 + x | g)")
    variables, levels_calls = _check_expression(formula, expr_toks, "random effects")
    if levels_calls:
        raise FormulaError(formula, expr_toks[0].start, "C(x, levels=...) is only supported in the fixed part")
    expr = _text(formula, expr_toks)
    groups = _parse_group(formula, group_toks)
    for g in groups:
        variables.update(g)
    return [(g, RandomBlock(expr=expr, correlated=correlated)) for g in groups], variables


def _depth_at(toks: list[_Tok], k: int) -> int:
    depth = 0
    for t in toks[:k]:
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
    return depth


def _is_random(toks: list[_Tok]) -> bool:
    if len(toks) < 2 or toks[0].text != "(" or toks[-1].text != ")":
        return False
    # the opening parenthesis must close at the very end
    if any(_depth_at(toks, k) == 0 for k in range(1, len(toks))):
        return False
    inner = toks[1:-1]
    return any(t.text == "|" and _depth_at(inner, k) == 0 for k, t in enumerate(inner))


# --------------------------------------------------------------------------


def parse_formula(formula: str) -> ModelSpec:
    """Parse an lme4-style formula.

    Parameters
    ----------
    formula : str
        ``"response ~ fixed terms + (effects | group) + ..."``.

    Returns
    -------
    ModelSpec

    Raises
    ------
    TypeError
        If ``formula`` is not a string.
    FormulaError
        A ``ValueError`` whose message shows the formula with a caret at the problem.

    Examples
    --------
    >>> spec = parse_formula("y ~ x + (x || subject) + (1 | subject:neuron)")
    >>> [(t.group, [b.correlated for b in t.blocks]) for t in spec.random]
    [('subject', [False]), ('subject:neuron', [True])]
    >>> parse_formula("y ~ 0 + x").intercept
    False
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    formula = " ".join(formula.replace("\t", " ").replace("\n", " ").split())
    if not formula:
        raise FormulaError(formula, 0, "the formula is empty; write e.g. 'y ~ x + (1 | g)'")
    toks = _tokens(formula)
    tildes = [k for k, t in enumerate(toks) if t.text == "~"]
    if not tildes:
        raise FormulaError(formula, 0, "a formula needs '~' between the response and the predictors, e.g. 'y ~ x + (1 | g)'")
    if len(tildes) > 1:
        raise FormulaError(formula, toks[tildes[1]].start, "a formula has exactly one '~'")
    lhs, rhs = toks[: tildes[0]], toks[tildes[0] + 1 :]
    if not lhs:
        raise FormulaError(formula, 0, "the response is missing before '~'")
    if not rhs:
        raise FormulaError(formula, len(formula) - 1, "nothing after '~'; write '1' for an intercept-only model")
    response_variables, lhs_levels = _check_expression(formula, lhs, "response")
    variables: set[str] = set()
    if lhs_levels:
        raise FormulaError(formula, 0, "the response cannot be categorical")
    response = _text(formula, lhs)

    intercept = True
    fixed: list[str] = []
    levels_calls: list[LevelsCall] = []
    random_blocks: dict[tuple[str, ...], list[RandomBlock]] = {}
    for sep, part in _split_top(rhs, {"+", "-"}):
        if not part:
            pos = rhs[0].start if sep is None else len(formula) - 1
            for t in rhs:
                if t.text in "+-":
                    pos = t.start
                    break
            raise FormulaError(formula, pos, "a term is missing around this operator")
        text = _text(formula, part)
        if sep == "-":
            if text in {"1", "0"}:
                intercept = False
                continue
            raise FormulaError(formula, part[0].start, "only '- 1' (drop the intercept) may be subtracted")
        if text == "1":
            continue
        if text == "0":
            intercept = False
            continue
        if _is_random(part):
            blocks, names = _parse_random(formula, part)
            variables |= names
            for factors, block in blocks:
                random_blocks.setdefault(factors, []).append(block)
            continue
        if any(t.text == "|" for t in part):
            bar = next(t for t in part if t.text == "|")
            raise FormulaError(formula, bar.start, "a random term must stand in its own parentheses, e.g. + (1 + x | g)")
        if len(part) == 1 and part[0].kind == tokenize.NUMBER:
            raise FormulaError(
                formula, part[0].start,
                f"the number {text} cannot be a term: write 1 to keep the intercept or 0 to drop it, "
                "and I(...) for arithmetic on a column",
            )
        names, calls = _check_expression(formula, part, "fixed term")
        variables |= names
        levels_calls += calls
        if text not in fixed:
            fixed.append(text)

    random = tuple(RandomTerm(factors=f, blocks=tuple(b)) for f, b in random_blocks.items())
    ordered = [v for v in dict.fromkeys(_ordered_names(lhs + rhs)) if v in variables | response_variables]
    return ModelSpec(
        formula=formula,
        response=response,
        fixed_terms=tuple(fixed),
        intercept=intercept,
        random=random,
        variables=tuple(ordered),
        levels_calls=tuple(levels_calls),
        response_variables=tuple(v for v in ordered if v in response_variables and v not in variables),
    )


def _ordered_names(toks: list[_Tok]) -> list[str]:
    return [t.name for t in toks if t.kind == tokenize.NAME]

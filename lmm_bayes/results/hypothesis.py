"""Hypotheses about the fixed effects, brms style: ``fit.hypothesis("Days > 5")``.

A hypothesis is ``left <op> right`` with ``op`` one of ``<``, ``>`` or ``=``; each side is
arithmetic (``+ - * /``, numbers, parentheses) on fixed-effect names. It is evaluated draw by
draw on ``left - right``, so its estimate comes with a posterior SD and interval, and a
one-sided hypothesis with its posterior probability and evidence ratio
(``P / (1 - P)``, as brms reports it). A name that is not a Python identifier
(``cond[b]``) is written between backticks: ``"`cond[b]` > 0"``.

The expression is parsed with :mod:`ast` and only the operations above are evaluated:
nothing in it is run as code. A hypothesis is at most ``MAX_HYPOTHESIS_LENGTH`` characters
and nests at most ``MAX_HYPOTHESIS_DEPTH`` operations or parentheses, checked before it is
parsed (length, parentheses) and before it is evaluated (operations). A side, or left - right,
that is not finite in every draw (a division by zero, an overflow, a number beyond float's
range) raises ``ValueError`` naming it: an infinite draw would otherwise hold "with probability 1".
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import BETA
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, interval_columns, summarize_draws
from lmm_bayes.spec import validate

__all__ = ["MAX_HYPOTHESIS_DEPTH", "MAX_HYPOTHESIS_LENGTH", "hypothesis", "hypothesis_draws"]

_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}

# Python's parser and the evaluation below recurse once per nested operation: 20,000 of them
# end in RecursionError or MemoryError. Both limits are far above any hypothesis a reader
# can check (a sum of 150 coefficients nests 151 deep), and well inside the recursion limit.
MAX_HYPOTHESIS_LENGTH = 2_000
MAX_HYPOTHESIS_DEPTH = 200


def _shown(text: str) -> str:
    """The text quoted in a message about its size: its start only."""
    return repr(text if len(text) <= 40 else text[:40] + " ...")


def _check_size(text: str, source: str) -> None:
    """Refuse a text too long, or nesting parentheses too deep, to parse safely."""
    if len(text) > MAX_HYPOTHESIS_LENGTH:
        raise ValueError(
            f"hypothesis {_shown(text)} ({len(text):,} characters) is longer than {MAX_HYPOTHESIS_LENGTH:,} "
            "characters, the most a hypothesis may be; write a repeated term once with a factor "
            "(e.g. 3 * Days), or split it into several hypotheses"
        )
    depth = deepest = 0
    for char in source:  # backtick-quoted names are placeholders here: their parentheses do not count
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_HYPOTHESIS_DEPTH:
        raise ValueError(
            f"hypothesis {_shown(text)} nests {deepest} parentheses deep; at most {MAX_HYPOTHESIS_DEPTH} levels "
            "of parentheses and operations are evaluated: remove the redundant parentheses"
        )


def _check_depth(text: str, tree: ast.expr) -> None:
    """Refuse an expression nesting more operations than the evaluation may recurse through."""
    deepest, stack = 0, [(tree, 0)]
    while stack:  # iterative: the point is not to recurse
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    if deepest > MAX_HYPOTHESIS_DEPTH:  # the operations on the deepest path: "Days > 0" is 1 (left - right)
        raise ValueError(
            f"hypothesis {_shown(text)} nests {deepest} levels deep; at most {MAX_HYPOTHESIS_DEPTH} levels of "
            "operations and parentheses are evaluated: write a repeated term once with a factor "
            "(e.g. 3 * Days, not Days + Days + Days), and drop repeated signs"
        )


def _parse(text: str) -> tuple[ast.expr, str, dict[str, str], tuple[str, str]]:
    """(expression of left - right, operator, placeholder -> coefficient name, the two sides as written).

    The expression is ``BinOp(left, Sub, right)``: its operands are the two sides.
    """
    if not isinstance(text, str) or not text.strip():
        raise TypeError(f"a hypothesis must be a string like 'Days > 5', got {text!r}")
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"_q{len(quoted)}"
        quoted[key] = match.group(1)
        return key

    source = re.sub(r"`([^`]+)`", placeholder, text).replace("==", "=")
    _check_size(text, source)
    parts = re.split(r"(<=|>=|<|>|=)", source)
    if len(parts) != 3:
        raise ValueError(
            f"hypothesis {text!r} needs exactly one of <, > or = between two sides, e.g. 'Days > 5' "
            "or 'Intercept + 10 * Days = 350'"
        )
    left, op, right = (p.strip() for p in parts)
    if not left or not right:
        raise ValueError(f"hypothesis {text!r} is not arithmetic on coefficient names and numbers on both sides")
    try:
        tree = ast.parse(f"({left}) - ({right})", mode="eval").body
    except SyntaxError:
        raise ValueError(f"hypothesis {text!r} is not arithmetic on coefficient names and numbers") from None
    _check_depth(text, tree)

    def written(side: str) -> str:
        return re.sub(r"\b_q\d+\b", lambda m: f"`{quoted[m[0]]}`" if m[0] in quoted else m[0], side)

    return tree, {"<=": "<", ">=": ">"}.get(op, op), quoted, (written(left), written(right))


def _reason(err: FloatingPointError) -> str:
    """What numpy's floating-point error says, in words: a division by zero or an overflow."""
    message = str(err)
    if "divide" in message:  # "divide by zero ..." and 0 / 0's "invalid value encountered in divide"
        return "division by zero"
    return "overflow" if "overflow" in message else f"an undefined result: {message}"


def _not_finite(text: str, what: str, reason: str) -> ValueError:
    return ValueError(
        f"hypothesis {text!r}: {what} is not finite in every draw ({reason}); rewrite it so that no draw "
        "divides by zero or exceeds about 1e308 (e.g. divide both sides by the same number)"
    )


def hypothesis_draws(post: Any, text: str) -> tuple[xr.DataArray, str]:
    """Draws of ``left - right`` of hypothesis ``text`` (dims chain, draw) and its operator."""
    names = [str(c) for c in post[BETA]["coef"].values] if BETA in post else []
    beta = post[BETA].transpose("chain", "draw", "coef") if BETA in post else None
    tree, op, quoted, (left_text, right_text) = _parse(text)

    def value(node: ast.expr) -> Any:
        number = isinstance(node, ast.Constant) and type(node.value) in (int, float)
        if number:
            try:
                return float(node.value)
            except OverflowError:  # a whole number of 309 digits or more: reported as beyond float's range
                return np.inf
        if isinstance(node, ast.Name):
            name = quoted.get(node.id, node.id)
            if name not in names:
                hint = validate.did_you_mean(name, names)
                raise ValueError(
                    f"hypothesis {text!r}: {name!r} is not a fixed effect{hint}; the fixed effects are {names} "
                    "(write names like cond[b] between backticks: `cond[b]`)"
                )
            return beta.sel(coef=name).values  # numpy, not xarray: xarray's arithmetic silences errstate
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        raise ValueError(
            f"hypothesis {text!r}: only + - * /, numbers, parentheses and fixed-effect names are allowed, "
            f"not {ast.unparse(node)!r}"
        )

    def evaluated(node: ast.expr, what: str) -> Any:
        # raised, not warned: a division by zero or an overflow would otherwise hold "with probability 1"
        try:
            with np.errstate(divide="raise", over="raise", invalid="raise"):
                result = value(node)
        except FloatingPointError as err:
            raise _not_finite(text, what, _reason(err)) from None
        if not np.isfinite(result).all():  # a literal beyond float's range: 1e999 reads as inf
            raise _not_finite(text, what, "a number beyond float's range")
        return result

    left = evaluated(tree.left, f"the left side {left_text!r}")
    right = evaluated(tree.right, f"the right side {right_text!r}")
    if not isinstance(left, np.ndarray) and not isinstance(right, np.ndarray):
        raise ValueError(f"hypothesis {text!r} names no fixed effect: it is a statement about numbers only")
    try:
        with np.errstate(over="raise", invalid="raise"):
            draws = np.subtract(left, right)  # (chain, draw): at least one side names a fixed effect
    except FloatingPointError as err:
        raise _not_finite(text, "left - right", _reason(err)) from None
    return xr.DataArray(draws, dims=("chain", "draw"),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values}), op


def hypothesis(fit: Any, hypotheses: str | Sequence[str], *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """Test hypotheses about the fixed effects on their posterior draws.

    Parameters
    ----------
    hypotheses : str or list of str
        E.g. ``"Days > 5"``, ``"Intercept + 10 * Days > 350"``, ``"`cond[b]` = 0"``.
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        One row per hypothesis: ``estimate`` (posterior mean of left - right), ``sd``,
        ``{ci}_low``, ``{ci}_high``, and for ``<`` / ``>`` the posterior probability that it
        holds (``post_prob``) and ``evidence_ratio`` = post_prob / (1 - post_prob) (NaN for
        ``=``, which needs a prior-based Bayes factor; read its interval instead).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     seed=1, progressbar=False)
    >>> h = fit.hypothesis(["Days > 5", "Intercept + 10 * Days = 355"])
    >>> float(h.loc["Days > 5", "post_prob"]) > 0.99, bool(abs(h.loc["Intercept + 10 * Days = 355", "estimate"]) < 10)
    (True, True)
    """
    if isinstance(hypotheses, str):
        texts = [hypotheses]
    elif isinstance(hypotheses, Sequence):
        texts = list(hypotheses)
    else:
        raise TypeError(f"a hypothesis must be a string like 'Days > 5' (or a list of them), got {hypotheses!r}")
    if not texts:
        raise ValueError("hypothesis needs at least one hypothesis, e.g. fit.hypothesis('Days > 5')")
    low, high = interval_columns(ci)
    rows = []
    for text in texts:
        draws, op = hypothesis_draws(fit.posterior, text)
        summary = summarize_draws(draws.rename(text), ci=ci, prob=prob, diagnostics=False)
        row = summary.iloc[0]
        post = float((draws > 0).mean()) if op == ">" else float((draws < 0).mean()) if op == "<" else np.nan
        ratio = post / (1.0 - post) if op != "=" and post < 1.0 else (np.inf if op != "=" else np.nan)
        rows.append({"estimate": row["mean"], "sd": row["sd"], low: row[low], high: row[high],
                     "post_prob": post, "evidence_ratio": ratio})
    table = pd.DataFrame(rows, index=pd.Index(texts, name="hypothesis"))
    table.attrs["interval"] = summary.attrs["interval"]
    return table

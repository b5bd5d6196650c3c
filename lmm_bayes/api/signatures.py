"""What the user's methods show and say: their parameters' docs, and an unknown keyword's error.

Each method of :class:`~lmm_bayes.Fit` and :class:`~lmm_bayes.LMM` that hands the work to a
stage function states that function's keywords in its own signature (so Jupyter's Shift-Tab
shows them); :func:`forwards` copies the stage's numpydoc ``Parameters`` entries into the
method's docstring, so the two cannot say different things. :func:`check_keywords` wraps every
public method of a user's class, its own and inherited, so that a misspelt keyword names the
method the user called (``Fit.predict()``, not an internal function), its keywords, and the
closest one (``difflib``, and the names brms, lme4 and PyMC users bring along).
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ALIASES", "check_keywords", "checked_function", "forwards", "parameter_entries", "unknown_keyword"]

#: keywords other packages use for one of ours (brms, rstanarm, lme4, PyMC, ArviZ)
ALIASES = {
    "iter": "draws", "n_iter": "draws", "samples": "draws", "ndraws": "draws",
    "warmup": "tune", "n_tune": "tune", "burnin": "tune",
    "n_chains": "chains", "random_seed": "seed", "adapt_delta": "target_accept",
    "level": "prob", "conf_level": "prob", "hdi_prob": "prob", "ci_prob": "prob",
    "newdata": "data", "new_data": "data", "re_formula": "levels",
}

_SECTION = re.compile(r"^(\S.*)\n-{3,}\s*$", re.MULTILINE)
_BARE_ROLE = re.compile(r":(func|meth|class|data|attr|mod):`([A-Za-z_]\w*)`")


def unknown_keyword(where: str, given: str, valid: Sequence[str]) -> TypeError:
    """The error for a keyword ``where`` does not take: its keywords, and the closest one.

    Examples
    --------
    >>> print(unknown_keyword("LMM.fit", "iter", ["draws", "tune", "chains"]))
    LMM.fit() got an unexpected keyword argument 'iter'; did you mean 'draws'? Its keywords: draws, tune, chains
    >>> print(unknown_keyword("Fit.fixef", "prb", ["ci", "prob"]))
    Fit.fixef() got an unexpected keyword argument 'prb'; did you mean 'prob'? Its keywords: ci, prob
    """
    alias = ALIASES.get(given.lower())
    close = [alias] if alias in valid else difflib.get_close_matches(given, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    listed = ", ".join(valid) if valid else "none"
    return TypeError(f"{where}() got an unexpected keyword argument {given!r}{hint} Its keywords: {listed}")


def _keyword_checked(func: Callable, where: str) -> Callable:
    """``func`` raising :func:`unknown_keyword` for ``where``; itself when it takes any keyword."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return func
    valid = tuple(p.name for p in params
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls"))
    accepted = frozenset(valid) | {"self", "cls"}

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for key in kwargs:
            if key not in accepted:
                raise unknown_keyword(where, key, valid)
        return func(*args, **kwargs)

    checked.__qualname__ = where
    return checked


def check_keywords(cls: type) -> type:
    """Class decorator: every public method of ``cls`` names ``cls`` in an unknown keyword's error.

    Inherited methods get a checked copy in ``cls`` itself; properties are left alone.

    Examples
    --------
    >>> @check_keywords
    ... class Table:
    ...     def show(self, *, digits: int = 3) -> int:
    ...         return digits
    >>> Table().show(digit=2)
    Traceback (most recent call last):
    ...
    TypeError: Table.show() got an unexpected keyword argument 'digit'; did you mean 'digits'? Its keywords: digits
    """
    for name in dir(cls):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(cls, name)
        where = f"{cls.__name__}.{name}"
        if isinstance(static, classmethod):
            setattr(cls, name, classmethod(_keyword_checked(static.__func__, where)))
        elif inspect.isfunction(static):
            setattr(cls, name, _keyword_checked(getattr(static, "__wrapped__", static), where))
    return cls


def checked_function(func: Callable) -> Callable:
    """Decorator: a public function whose unknown keyword's error names it, its keywords and the closest one.

    Examples
    --------
    >>> @checked_function
    ... def compare(*, draws: int = 1000) -> int:
    ...     return draws
    >>> compare(iter=10)
    Traceback (most recent call last):
    ...
    TypeError: compare() got an unexpected keyword argument 'iter'; did you mean 'draws'? Its keywords: draws
    """
    return _keyword_checked(func, func.__name__)


def parameter_entries(func: Callable) -> list[tuple[list[str], str]]:
    """The entries of ``func``'s numpydoc ``Parameters`` section: (names, the entry's text).

    Examples
    --------
    >>> def f(a, b=1):
    ...     '''Do.
    ...
    ...     Parameters
    ...     ----------
    ...     a, b : int
    ...         Two numbers.
    ...     '''
    >>> parameter_entries(f)
    [(['a', 'b'], 'a, b : int\\n    Two numbers.')]
    """
    doc = inspect.cleandoc(func.__doc__ or "")
    sections = list(_SECTION.finditer(doc))
    for i, match in enumerate(sections):
        if match.group(1).strip() == "Parameters":
            end = sections[i + 1].start() if i + 1 < len(sections) else len(doc)
            body = doc[match.end():end].strip("\n")
            break
    else:
        return []
    entries: list[tuple[list[str], str]] = []
    for line in body.splitlines():
        if line and not line[0].isspace():
            names = [n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")]
            entries.append((names, line))
        elif entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + "\n" + line)
    return [(names, text.rstrip()) for names, text in entries]


def forwards(*stages: Callable) -> Callable[[Callable], Callable]:
    """Decorator: the method's docstring gets the ``stages``' Parameters entries for its own keywords.

    An entry naming several parameters (``fit, data, levels``) keeps those the method takes;
    the first stage that documents a parameter wins. The section goes before the method's
    ``Returns``, ``Raises`` or ``Examples``, whichever comes first.
    """

    def decorate(method: Callable) -> Callable:
        own = [p for p in inspect.signature(method).parameters if p != "self"]
        done: set[str] = set()
        lines: list[str] = []
        for stage in stages:
            for names, text in parameter_entries(stage):
                kept = [n for n in names if n in own and n not in done]
                if not kept:
                    continue
                # a bare cross-reference (:func:`predict`) resolves in the stage's module, not here
                text = _BARE_ROLE.sub(rf":\1:`~{stage.__module__}.\2`", text)
                head, _, rest = text.partition("\n")
                kind = head.partition(" : ")[2]
                lines.append(", ".join(kept) + (f" : {kind}" if kind else "") + ("\n" + rest if rest else ""))
                done.update(kept)
        doc = inspect.cleandoc(method.__doc__ or "")
        section = "Parameters\n----------\n" + "\n".join(lines) + "\n\n"
        at = next((m.start() for m in _SECTION.finditer(doc)), len(doc))
        method.__doc__ = doc[:at].rstrip("\n") + "\n\n" + section + doc[at:]
        return method

    return decorate

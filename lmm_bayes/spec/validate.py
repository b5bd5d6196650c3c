"""Every check of user input, with messages that say what is wrong and how to fix it.

``TypeError`` for a wrong type, ``ValueError`` for a bad value; never ``assert``.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.errors import ImplicitNestingWarning, RowsDroppedWarning
from lmm_bayes.names import GROUP_SUFFIX_STEMS, GROUP_SUFFIXES, RESERVED_GROUP_NAMES

__all__ = [
    "GROUP_SUFFIXES",
    "RESERVED_GROUP_NAMES",
    "ImplicitNestingWarning",
    "RowsDroppedWarning",
    "bad_mask",
    "check_choice",
    "check_coef_name",
    "check_columns",
    "check_dataframe",
    "check_full_rank",
    "check_group",
    "check_grouping",
    "check_implicit_nesting",
    "labels_without_shared_effect",
    "check_levels_calls",
    "check_missing",
    "check_names",
    "check_numeric_response",
    "check_positive_int",
    "check_positive_number",
    "check_probability",
    "check_seed",
    "did_you_mean",
    "restarted_labels",
]

# RESERVED_GROUP_NAMES (the posterior's own dims and the variables every model holds) and
# GROUP_SUFFIXES (what the layout and the graphs append to a factor's name) are those of
# lmm_bayes.names, derived from the names themselves, so a suffix added there is checked here.


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """``" (did you mean 'x'?)"`` naming the closest of ``choices`` to ``value``, or ``""``.

    Examples
    --------
    >>> did_you_mean("Subjct", ["Subject", "Days"]), did_you_mean("zzz", ["Subject"])
    (" (did you mean 'Subject'?)", '')
    """
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_dataframe(data: Any, name: str = "data") -> pd.DataFrame:
    """Require a pandas DataFrame with at least one row and no column name twice.

    A duplicated name is refused whether or not the formula uses it: pandas answers
    ``data[name]`` with a frame rather than a column, so any later read of it would fail
    or pick one copy silently.

    Examples
    --------
    >>> import pandas as pd
    >>> check_dataframe(pd.DataFrame([[1, 2]], columns=["x", "x"]))
    Traceback (most recent call last):
    ...
    ValueError: data has duplicate column names: 'x' (2 columns); a column name must be unique: \
rename or drop the copies, e.g. data.loc[:, ~data.columns.duplicated()] keeps the first of each
    """
    if not isinstance(data, pd.DataFrame):
        library = type(data).__module__.split(".")[0]  # a Dask (or polars) DataFrame is no "DataFrame" to pandas
        kind = type(data).__name__ if library in ("builtins", "numpy") else f"{library} {type(data).__name__}"
        raise TypeError(
            f"{name} must be a pandas DataFrame, got {kind}; "
            "convert it with pandas.DataFrame(...) first"
        )
    if not data.columns.is_unique:
        counts = data.columns.value_counts(sort=False)
        listing = ", ".join(f"{c!r} ({n} columns)" for c, n in counts[counts > 1].items())
        raise ValueError(
            f"{name} has duplicate column names: {listing}; a column name must be unique: rename or "
            f"drop the copies, e.g. {name}.loc[:, ~{name}.columns.duplicated()] keeps the first of each"
        )
    if len(data) == 0:
        raise ValueError(f"{name} has no rows")
    return data


def check_columns(data: pd.DataFrame, columns: Iterable[str], *, name: str = "data", context: str = "the formula") -> None:
    """Raise ``ValueError`` naming each missing column and its close matches."""
    present = [str(c) for c in data.columns]
    missing = [c for c in dict.fromkeys(columns) if c not in data.columns]
    if not missing:
        return
    parts = []
    for col in missing:
        close = difflib.get_close_matches(col, present, n=3, cutoff=0.6)
        close += [c for c in present if c.lower() == col.lower() and c not in close]
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{col!r}{hint}")
    raise ValueError(
        f"{context} uses column(s) not in {name}: {'; '.join(parts)}. "
        f"Columns present: {', '.join(present[:30])}{' ...' if len(present) > 30 else ''}"
    )


def bad_mask(col: pd.Series) -> np.ndarray:
    """Rows of ``col`` that are missing, or infinite in a numeric column."""
    mask = col.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=float, na_value=np.nan)
        mask = mask | ~np.isfinite(values)
    return mask


def check_missing(data: pd.DataFrame, columns: Sequence[str], na_action: str) -> pd.DataFrame:
    """Raise on NaN/inf in the used columns, or drop those rows with a warning.

    Unused columns never matter. Returns the data restricted to complete rows.
    """
    check_choice(na_action, ("raise", "drop"), "na_action")
    bad = np.zeros(len(data), dtype=bool)
    counts = {}
    for col in dict.fromkeys(columns):
        mask = bad_mask(data[col])
        if mask.any():
            counts[col] = int(mask.sum())
            bad |= mask
    if not counts:
        return data
    listing = ", ".join(f"{c!r} ({n} row{'s' if n > 1 else ''})" for c, n in counts.items())
    if na_action == "raise":
        raise ValueError(
            f"missing or infinite values in {listing}; clean them, or pass "
            f"na_action='drop' to drop the {int(bad.sum())} incomplete row(s)"
        )
    if bad.all():
        raise ValueError(f"every row has a missing or infinite value in {listing}; nothing is left to fit")
    warnings.warn(
        f"dropped {int(bad.sum())} of {len(data)} rows with missing or infinite values in {listing}",
        RowsDroppedWarning,
        stacklevel=4,
    )
    return data.loc[~bad]


def check_numeric_response(values: pd.Series | np.ndarray, name: str,
                           needs: str = "a linear mixed model needs a continuous response") -> None:
    """The response must be numeric (not text, not categorical, not boolean).

    ``needs`` says what the model (an LMM, one built from Dask, a GLMM of a family) needs.

    Examples
    --------
    >>> import pandas as pd
    >>> check_numeric_response(pd.Series(["1", "0"]), "y", needs="a GLMM with family='bernoulli' needs 0/1")
    Traceback (most recent call last):
    ...
    ValueError: the response 'y' must be numeric, got dtype ...; a GLMM with family='bernoulli' needs 0/1 \
(convert it with pandas.to_numeric)
    """
    if isinstance(values, pd.Series):
        ok = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        kind = str(values.dtype)
    else:
        ok = np.issubdtype(np.asarray(values).dtype, np.number)
        kind = str(np.asarray(values).dtype)
    if not ok:
        raise ValueError(
            f"the response {name!r} must be numeric, got dtype {kind}; "
            f"{needs} (convert it with pandas.to_numeric)"
        )


def check_grouping(name: str, n_levels: int, n_rows: int, *, one_per_row: bool = False) -> None:
    """At least two levels, and fewer levels than rows (lme4's check).

    ``one_per_row=True`` (a GLMM's count or k-of-n response) also accepts one level per row:
    an observation-level random effect, the usual model of overdispersion, which a Gaussian
    model cannot tell apart from its residual.
    """
    if n_levels < 2:
        raise ValueError(
            f"grouping factor {name!r} has {n_levels} level; a random effect needs at least 2 "
            "(drop the term, or check that the column is the one you meant)"
        )
    if n_levels >= n_rows and not (one_per_row and n_levels == n_rows):
        raise ValueError(
            f"grouping factor {name!r} has {n_levels} levels for {n_rows} rows; the number of levels "
            "must be smaller than the number of rows, or the random effect cannot be told apart "
            "from the residual"
        )


def check_full_rank(X: np.ndarray, columns: Sequence[str]) -> None:
    """Raise naming the aliased columns when the fixed-effects matrix is rank deficient."""
    if X.shape[1] == 0:
        return
    # each column to unit length: a column of large values (I(x ** 2)) must not make the others look like zero
    norms = np.linalg.norm(X, axis=0)
    raw, X = X, X / np.where(norms > 0, norms, 1.0)
    tol = max(X.shape) * np.finfo(float).eps * max(np.abs(X).max(), 1.0)
    rank = np.linalg.matrix_rank(X, tol=tol * np.sqrt(X.shape[0]))
    if rank == X.shape[1]:
        return
    # walk left to right: a column is aliased when it adds nothing to those before it
    aliased, kept = [], []
    for j in range(X.shape[1]):
        trial = X[:, kept + [j]]
        if np.linalg.matrix_rank(trial, tol=tol * np.sqrt(X.shape[0])) == len(kept):
            aliased.append(columns[j])
        else:
            kept.append(j)
    raise ValueError(
        f"the fixed-effects design is rank deficient (rank {rank} of {X.shape[1]} columns): "
        f"{', '.join(repr(a) for a in aliased)} is a linear combination of the columns before it. "
        "Remove it from the formula, or check for duplicated or constant predictors"
        + "".join(_offset_hint(raw[:, list(columns).index(a)], a) for a in aliased)
    )


def _offset_hint(x: np.ndarray, name: str) -> str:
    """A column that varies, but by less than rounding against its size, looks constant: say so."""
    spread, top = float(np.std(x)), float(np.max(np.abs(x)))
    if spread == 0.0 or spread > 1e-9 * top:
        return ""
    mean = float(np.mean(x))
    return (f"; {name!r} varies by only {spread:.3g} around {mean:.6g}, too little against its size for "
            f"float64 to tell it from a constant: subtract a constant from it (e.g. {name} - {mean:.6g})")


def _natural_key(label: str) -> tuple:
    """Sort key that puts "n2" before "n10" (digits compared as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label) if part)


def restarted_labels(inner: tuple[np.ndarray, Sequence[str]], outer: np.ndarray) -> bool:
    """Whether the inner factor's labels restart inside each level of the outer factor.

    The pitfall's signature: every outer level uses the first k of one sequence of labels
    (neurons "1".."k" in each subject), k varying between outer levels, so equal labels
    in different outer levels are different clusters. A crossed design (every subject sees
    all items, or its own subset of them) does not have it.

    Examples
    --------
    >>> import numpy as np
    >>> subject = np.array([0, 0, 0, 1, 1])  # subject 0 has neurons 1-3, subject 1 neurons 1-2
    >>> restarted_labels((np.array([0, 1, 2, 0, 1]), ["1", "2", "3"]), subject)
    True
    >>> restarted_labels((np.array([0, 1, 0, 1]), ["a", "b"]), np.array([0, 0, 1, 1]))  # fully crossed
    False
    """
    codes, labels = inner
    pairs = pd.DataFrame({"i": codes, "o": outer}).drop_duplicates()
    if not pairs["i"].duplicated().any():
        return False  # no label shared across outer levels: nested, nothing merged
    order = sorted(range(len(labels)), key=lambda k: _natural_key(str(labels[k])))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    per_outer = pairs.assign(r=rank[pairs["i"].to_numpy()]).groupby("o")["r"].agg(["max", "size"])
    prefixes = bool((per_outer["max"] == per_outer["size"] - 1).all())
    return prefixes and per_outer["size"].nunique() > 1


def labels_without_shared_effect(inner: np.ndarray, outer: np.ndarray, y: np.ndarray) -> bool:
    """Whether an inner factor's labels, though repeated in every outer level, carry no shared effect.

    The signature of a balanced design mislabelled as crossed: neurons ``n1..n5`` in every
    subject, each subject's ``n1`` its own neuron. On the (outer, inner) cell means, with the
    outer means removed, a two-way analysis of variance then finds the inner labels differing
    strongly *within* each outer level (interaction mean square above 4 times what the rows'
    own noise gives a cell mean) but no more *across* them than that interaction explains
    (inner mean square below 3 times it: F(I - 1, df) stays below 3 unless labels mean the same
    thing everywhere). Genuinely crossed factors, items whose effect is shared by the subjects
    who see them, have an inner mean square far above the interaction's; factors without any
    effect have no interaction. Needs rows repeated within cells (to know the noise) and
    labels seen in at least two outer levels; else False.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s, n = np.repeat(np.arange(6), 50), np.tile(np.repeat(np.arange(5), 10), 6)
    >>> own = rng.normal(0, 2, (6, 5))  # every subject's neuron k is its own neuron
    >>> labels_without_shared_effect(n, s, own[s, n] + rng.normal(size=300))
    True
    >>> shared = rng.normal(0, 2, 5)  # item k is the same item for everyone: crossed
    >>> labels_without_shared_effect(n, s, shared[n] + rng.normal(size=300))
    False
    """
    frame = pd.DataFrame({"i": inner, "o": outer, "y": np.asarray(y, dtype=float)})
    cells = frame.groupby(["o", "i"])["y"].agg(["mean", "var", "size"]).reset_index()
    cells = cells[cells["i"].map(cells["i"].value_counts()) >= 2]  # labels seen in two outer levels or more
    replicated = cells["size"] >= 2
    n_outer, n_inner = cells["o"].nunique(), cells["i"].nunique()
    if n_outer < 2 or n_inner < 2 or replicated.sum() < 2:
        return False
    within = float((cells.loc[replicated, "var"] * (cells.loc[replicated, "size"] - 1)).sum()
                   / (cells.loc[replicated, "size"] - 1).sum())
    resid = cells["mean"] - cells.groupby("o")["mean"].transform("mean")
    shared = resid.groupby(cells["i"]).transform("mean")
    df_int = len(cells) - n_outer - n_inner + 1
    if df_int < 1 or not within > 0:
        return False
    ms_int = float(((resid - shared) ** 2).sum()) / df_int
    per_label = resid.groupby(cells["i"]).agg(["mean", "size"])
    ms_inner = float((per_label["size"] * per_label["mean"] ** 2).sum()) / (n_inner - 1)
    noise = within * float(np.mean(1.0 / cells["size"]))  # the variance of a cell mean from the rows' noise
    return ms_int > 4 * noise and ms_inner < 3 * ms_int


def check_implicit_nesting(
    factors: dict[str, tuple[np.ndarray, Sequence[str]]], explicit: set[str], y: np.ndarray | None = None
) -> None:
    """Warn when a factor's labels restart inside each level of another factor.

    ``(1 | neuron)`` with neurons numbered from 1 in every subject merges neuron 1 of every
    subject into one cluster; ``(1 | subject:neuron)`` is almost always meant. Two signatures:
    the labels restart with different counts per outer level (:func:`restarted_labels`), or,
    in a balanced design where the labels alone cannot tell, they carry no effect shared
    across the outer levels while differing within each (:func:`labels_without_shared_effect`,
    from ``y``). Crossed factors (items seen by many subjects, with effects of their own) are
    left alone.
    """
    names = list(factors)  # in formula order: the outer factor is written first
    for k, outer in enumerate(names):
        for inner in names[k + 1 :]:
            if f"{outer}:{inner}" in explicit:
                continue
            if restarted_labels(factors[inner], factors[outer][0]):
                why = f"each {outer} has the first few of the same {inner} labels"
            elif y is not None and labels_without_shared_effect(factors[inner][0], factors[outer][0], y):
                why = (f"every {outer} has the same {inner} labels, but a label's data agree no more across "
                       f"{outer} levels than different labels do within one: each {outer}'s {inner}s look "
                       "like its own")
            else:
                continue
            warnings.warn(
                f"labels of {inner!r} restart inside each level of {outer!r} ({why}): (1 | {inner}) treats "
                f"equal labels in different {outer} levels as one cluster. If each {outer} has its own "
                f"{inner}s, write (1 | {outer}:{inner}) (or (1 | {outer}/{inner})); if the factors are "
                "crossed on purpose, ignore this warning",
                ImplicitNestingWarning,
                stacklevel=4,
            )
            return


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    """``value`` must be one of ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(choices)}; got {type(value).__name__}")
    if value not in choices:
        hint = did_you_mean(value, list(choices))
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}{hint}")
    return value


def check_positive_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An int (not bool) of at least ``minimum`` (and at most ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def check_probability(value: Any, name: str) -> float:
    """A float strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {type(value).__name__}")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    return float(value)


def check_seed(seed: Any, name: str = "seed") -> np.random.Generator:
    """``None``, a non-negative int or a ``numpy.random.Generator`` → a Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"{name} must be None, a non-negative integer or a numpy.random.Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return np.random.default_rng(int(seed))


def check_group(design: Any, group: Any) -> Any:
    """The :class:`~lmm_bayes.spec.design.GroupDesign` named ``group``; TypeError/ValueError otherwise."""
    if not isinstance(group, str):
        raise TypeError(f"group must be a grouping factor's name (a string), got {type(group).__name__}")
    return design.group(group)


def check_positive_number(value: Any, name: str) -> float:
    """A finite number greater than 0 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def check_coef_name(name: Any, columns: Sequence[str], arg: str) -> str:
    """``name`` must be one of the fixed effects ``columns``; ``arg`` is the argument's name in messages."""
    if not isinstance(name, str):
        raise TypeError(f"{arg} must be a fixed effect's name (a string), got {type(name).__name__}")
    if name not in columns:
        hint = did_you_mean(name, list(columns))
        raise ValueError(
            f"{arg}={name!r} is not a fixed effect of the model{hint}; fixed effects: {list(columns)}"
        )
    return name


def _reads(text: str, name: str) -> bool:
    """Whether a term's text reads the column ``name`` (quoted levels of C(...) do not count)."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", bare) is not None


def check_names(spec: Any) -> None:
    """Columns the formula reads must not take the names the package gives its own things.

    * ``Intercept`` read as a predictor (a fixed term or a random effect) would take the
      place of the column of ones, which formulae names ``Intercept`` too;
    * a grouping factor becomes a dim of the posterior: it cannot be named like one of
      ``lmm_bayes.names.RESERVED_GROUP_NAMES``, nor like another factor's name plus one of
      ``lmm_bayes.names.GROUP_SUFFIXES`` (factors ``a`` and ``a_sd``).

    A column the formula does not read never matters.
    """
    exprs = [*spec.fixed_terms, *(b.expr for t in spec.random for b in t.blocks)]
    if any(_reads(e, "Intercept") for e in exprs):
        raise ValueError(
            "the formula reads a column named 'Intercept', the name of the model's column of ones; "
            "rename the column, e.g. data = data.rename(columns={'Intercept': 'intercept_col'})"
        )
    names = [t.group for t in spec.random]
    for name in names:
        if name in RESERVED_GROUP_NAMES:
            raise ValueError(
                f"grouping column {name!r} has the name of one of the posterior's own dims or variables "
                f"({', '.join(RESERVED_GROUP_NAMES)}); rename the column, e.g. "
                f"data = data.rename(columns={{{name!r}: {name + '_id'!r}}})"
            )
    for name in names:
        for other in names:
            suffix = name[len(other):] if name != other and name.startswith(other) else None
            if suffix is not None and (suffix in GROUP_SUFFIXES or suffix.startswith(GROUP_SUFFIX_STEMS)):
                raise ValueError(
                    f"grouping factor {name!r} is named like a part of grouping factor {other!r} "
                    f"({other + suffix!r} names {other!r}'s {suffix[1:]}); rename the column {name!r}"
                )


def check_levels_calls(spec: Any, data: pd.DataFrame) -> None:
    """``C(x, levels=[...])`` must list exactly the values of ``x``: each once, none missing, none extra."""
    for call in spec.levels_calls:
        listed = list(call.levels)
        present = pd.unique(data[call.column]).tolist()
        repeated = sorted({str(v) for v in listed if listed.count(v) > 1})
        missing = [v for v in present if v not in listed]
        extra = [v for v in listed if v not in present]
        if repeated or missing or extra:
            problems = []
            if missing:
                problems.append(f"column {call.column!r} holds values not listed: {sorted(missing, key=str)[:10]}")
            if extra:
                problems.append(f"listed levels not in column {call.column!r}: {extra[:10]}")
            if repeated:
                problems.append(f"levels listed twice: {repeated[:10]}")
            raise ValueError(
                f"{call.text}: {'; '.join(problems)}. List every value of {call.column!r} once "
                f"(the first is the reference level), e.g. levels={sorted(present, key=str)[:5]!r}"
            )

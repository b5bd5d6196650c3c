"""Data beyond one machine's memory: a Dask DataFrame, or Parquet files, → a reduced :class:`Design`.

A nested model's collapsed fit needs the rows only through sums over them
(:mod:`lmm_bayes.spec.reduction`), so a Dask DataFrame is read twice, partition by
partition, on whatever Dask scheduler is active (a ``distributed.Client`` to a
``LocalCluster`` or a real cluster, or Dask's local threads), and no partition is
collected on the client:

1. **scan**: per partition, the rows, the missing or infinite values per used column,
   and the first row of every cluster (combination of the grouping columns) and of every
   category of a categorical predictor. Those first rows, the *skeleton*, hold every level
   and every category, so the design built on them (:func:`~lmm_bayes.build_design`)
   has the same levels, level order, nesting and codings as the whole data in memory.
2. **reduce**: every partition is evaluated with the skeleton's design
   (:meth:`~lmm_bayes.Design.evaluate`, the same code as predictions on new
   rows) and reduced to per-cluster cross products of ``[Z, X, y]`` about the skeleton's column
   means (a point inside the data's range, so a column's offset cancels), summed pairwise in a
   tree on the workers. The same pass takes a seeded random sample of rows (``sample_rows``,
   5,000 by default; exact size, uniform over the used rows), the only rows the client sees.

The returned design holds the sample as its rows (``y``, ``X``, ``Z``, ``data``), so the
posterior predictive check, LOO, R² and ``predict()`` without new data use the sample; the
sums (:attr:`Design.reduction`) give the fit, the default priors and the row count. The
sample depends only on the seed and the used rows (not on the formula), so two models of the
same data with the same ``sample_seed`` and no rows dropped are checked, and compared by LOO,
on the same rows; an elpd summed over the sample is about ``sample_rows / n`` of the whole data's.

Not supported from Dask, each refused with a message: crossed grouping factors (their
cross products between factors are not per-cluster sums of one factor), a transformed
response (``log(y)``: add the column with Dask first), and ``center()`` / ``scale()``
(they learn means from the data: compute the column with Dask first).
"""

from __future__ import annotations

import re
import sys
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.errors import RowsDroppedWarning
from lmm_bayes.spec import labels as lab
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design, build_design
from lmm_bayes.spec.formula import ModelSpec
from lmm_bayes.spec.parquet_files import column_kind, read_failure
from lmm_bayes.spec.reduction import Reduction, add_partial_sums, partial_sums

__all__ = ["DEFAULT_SAMPLE_ROWS", "build_reduced_design", "is_dask_frame", "reduced_design", "with_rows"]

#: rows kept in memory for posterior predictive checks, LOO and ``predict()``: their pointwise
#: log-likelihood (4 chains x 1000 draws) takes 160 MB
DEFAULT_SAMPLE_ROWS = 5_000
_STATEFUL = re.compile(r"\b(center|scale)\s*\(")
_C_COLUMN = re.compile(r"\bC\(\s*([A-Za-z_]\w*)")


def is_dask_frame(obj: Any) -> bool:
    """Whether ``obj`` is a Dask DataFrame (without importing Dask when it is not).

    Examples
    --------
    >>> import pandas as pd
    >>> is_dask_frame(pd.DataFrame({"a": [1]}))
    False
    """
    return "dask" in sys.modules and type(obj).__module__.split(".")[0] in ("dask", "dask_expr") \
        and hasattr(obj, "to_delayed") and hasattr(obj, "npartitions")


# ---------------------------------------------------------------------------- the plan sent to workers


@dataclass(frozen=True)
class _Plan:
    """What every partition task needs, picklable (a Design is not: formulae keeps frames)."""

    spec: ModelSpec
    skeleton: pd.DataFrame
    n_rows: int
    columns: tuple[str, ...]
    na_action: str
    token: str


_DESIGNS: dict[str, Design] = {}
_KEEP_DESIGNS = 4
_LOCK = threading.Lock()


def _skeleton_design(plan: _Plan) -> Design:
    """The skeleton's design, built once per worker process (the same on every machine)."""
    with _LOCK:
        if plan.token not in _DESIGNS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the client has shown them
                _DESIGNS[plan.token] = build_design(plan.spec, plan.skeleton, n_rows=plan.n_rows)
            while len(_DESIGNS) > _KEEP_DESIGNS:  # a long-lived worker keeps the latest few
                del _DESIGNS[next(iter(_DESIGNS))]
        return _DESIGNS[plan.token]


def _clean(part: pd.DataFrame, columns: tuple[str, ...], na_action: str) -> tuple[pd.DataFrame, dict[str, int], int]:
    part = part[list(columns)]
    bad = np.zeros(len(part), dtype=bool)
    counts = {}
    for col in columns:
        mask = validate.bad_mask(part[col])
        if mask.any():
            counts[col] = int(mask.sum())
            bad |= mask
    if na_action == "drop" and bad.any():
        part = part.loc[~bad]
    return part, counts, int(bad.sum())


def _scan(part: pd.DataFrame, i: int, columns: tuple, group_cols: tuple, category_cols: tuple, na_action: str,
          kinds: dict) -> dict:
    for col, kind in kinds.items():  # a partition unlike the meta (text in one file) is named before any sum
        if column_kind(part[col].dtype) not in (kind, None) and part[col].notna().any():
            raise ValueError(
                f"partition {i}: column {col!r} holds {column_kind(part[col].dtype)} ({part[col].dtype}) but "
                f"{kind} in the Dask DataFrame's meta; cast the column in every partition (or in the file it "
                "comes from) to one type"
            )
    part, bad, n_bad = _clean(part, columns, na_action)
    first = _first_rows(part, group_cols, category_cols)
    return {"rows": [len(part)], "bad": [(i, bad)] if bad else [], "dropped": n_bad, "first": first}


def _first_rows(part: pd.DataFrame, group_cols: tuple, category_cols: tuple) -> pd.DataFrame:
    """The first row of every grouping combination and of every category."""
    keep = np.zeros(len(part), dtype=bool)
    if group_cols:
        keep |= ~part.duplicated(subset=list(group_cols)).to_numpy()
    for c in category_cols:
        keep |= ~part[c].duplicated().to_numpy()
    if not group_cols and not category_cols:
        keep[:1] = True
    return part.loc[keep]


def _merge_scans(a: dict, b: dict, group_cols: tuple, category_cols: tuple) -> dict:
    both = pd.concat([a["first"], b["first"]])
    return {"rows": a["rows"] + b["rows"], "bad": a["bad"] + b["bad"], "dropped": a["dropped"] + b["dropped"],
            "first": _first_rows(both, group_cols, category_cols)}


def _reduce(part: pd.DataFrame, i: int, plan: _Plan, positions: np.ndarray, offset: int,
            reference: np.ndarray) -> dict:
    design = _skeleton_design(plan)
    part, _, _ = _clean(part, plan.columns, plan.na_action)
    sample = part.iloc[positions]
    sample.index = pd.RangeIndex(0, 0) if not len(positions) else pd.Index(offset + positions, name="row")
    leaf = _finest(design)
    n_leaves = design.group(leaf).n_levels if leaf else 1
    if not len(part):
        return {**partial_sums(np.empty((0, len(reference))), np.empty(0, np.int64), n_leaves, reference),
                "sample": [sample]}
    try:
        rows = design.evaluate(part[list(plan.spec.predictor_variables)])
    except ValueError as err:
        raise ValueError(f"partition {i}: {err}") from None
    F = np.hstack([rows.Z[g.name] for g in design.groups] + [rows.X, part[plan.spec.response].to_numpy(float)[:, None]])
    if leaf is None:
        codes = np.zeros(len(part), dtype=np.int64)
    else:
        codes = rows.codes[leaf]
        if (codes < 0).any():
            unseen = sorted(set(rows.labels[leaf][codes < 0]))[:5]
            raise ValueError(
                f"partition {i}: clusters {unseen} of {leaf!r} were not there when the levels were read; "
                "the data changed between the two passes over it"
            )
    return {**partial_sums(F, codes, n_leaves, reference), "sample": [sample]}


def _add(a: dict, b: dict) -> dict:
    return {**add_partial_sums(a, b), "sample": a["sample"] + b["sample"]}


def _tree(items: list, combine, *args: Any):
    """Pairwise combination of delayed values, so that only the result reaches the client."""
    import dask

    while len(items) > 1:
        items = [dask.delayed(combine)(items[k], items[k + 1], *args) if k + 1 < len(items) else items[k]
                 for k in range(0, len(items), 2)]
    return items[0]


def _compute(value: Any, progress: bool, what: str, frame: Any) -> Any:
    """Compute on the active scheduler: a ``distributed`` client if there is one, else Dask's own."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        client = None
    try:
        return _compute_on(value, progress, what, client)
    except Exception as err:  # a file that cannot be read: say so, naming it where Dask says which
        clear = read_failure(err, frame)
        if clear is None:
            raise
        raise clear from None


def _compute_on(value: Any, progress: bool, what: str, client: Any) -> Any:
    import dask

    if client is not None:
        from distributed import progress as distributed_progress

        future = client.compute(value)
        if progress:
            print(f"lmm-bayes: {what}", flush=True)
            distributed_progress(future, notebook=False)
            print(flush=True)
        return future.result()
    if progress:
        from dask.diagnostics import ProgressBar

        print(f"lmm-bayes: {what}", flush=True)
        with ProgressBar():
            return dask.compute(value)[0]
    return dask.compute(value)[0]


# ---------------------------------------------------------------------------- checks


def _check_supported(spec: ModelSpec, frame: Any) -> None:
    if spec.response not in frame.columns:
        raise ValueError(
            f"the response {spec.response!r} is a transformation; from Dask it must be a column: "
            f"add it first (e.g. ddf['log_y'] = np.log(ddf['y'])) and name that column in the formula"
        )
    texts = [*spec.fixed_terms, *(b.expr for t in spec.random for b in t.blocks)]
    stateful = sorted({m.group(1) for t in texts for m in _STATEFUL.finditer(t)})
    if stateful:
        raise ValueError(
            f"{' and '.join(f'{s}()' for s in stateful)} learn from every row, which a model built from Dask "
            "never holds; compute the column with Dask first (ddf['x_c'] = ddf['x'] - ddf['x'].mean())"
        )


def _finest(design: Design) -> str | None:
    """The finest factor of a nesting chain; ``ValueError`` for crossed factors."""
    groups = design.groups
    if not groups:
        return None
    parents = {g.parent for g in groups}
    leaves = [g for g in groups if g.name not in parents]
    chain, g = [], leaves[0]
    by_name = {h.name: h for h in groups}
    while g is not None:
        chain.append(g.name)
        g = by_name.get(g.parent)
    if len(leaves) > 1 or len(chain) != len(groups):
        crossed = [h.name for h in groups if h.name not in chain]
        raise ValueError(
            f"grouping factors {chain[-1]!r} and {crossed[0] if crossed else leaves[1].name!r} are crossed; "
            "a model built from Dask or Parquet supports one grouping factor or a chain of nested ones "
            "(crossed factors need cross products between factors): load the data in memory with pandas"
        )
    return leaves[0].name


def _describe_bad(bad: list, files: list[str] | None) -> str:
    per_col: dict[str, list[str]] = {}
    for i, counts in bad:
        where = f"partition {i}" + (f" (file {files[i]!r})" if files else "")
        for col, n in counts.items():
            per_col.setdefault(col, []).append(f"{n} in {where}")
    return "; ".join(f"{col!r}: {', '.join(parts[:5])}{' ...' if len(parts) > 5 else ''}"
                     for col, parts in per_col.items())


def _check_rank(red: Reduction, design: Design) -> None:
    """The fixed effects' rank from ``X'X`` over every row (left to right, as in memory).

    Each column after the first constant one is taken about its mean: it differs by a multiple of
    that kept column, so its aliasing is as in X, and an offset (x + 1e9) does not hide its variation.
    """
    columns, start = design.X_columns, sum(g.n_effects for g in design.groups)
    if not columns:
        return
    D, j = red.products.shape[1], np.arange(start, start + len(columns))
    constant = j[np.isclose(red.maxs[j], red.mins[j]) & (red.maxs[j] != 0)]
    shift, later = np.zeros(D), (j[j > constant[0]] if len(constant) else j[:0])
    shift[later] = [red.mean(k) for k in later]
    XtX = red.products_about(shift, np.ones(D)).sum(axis=0)[np.ix_(j, j)]
    d = np.sqrt(np.where(np.diag(XtX) > 0, np.diag(XtX), 1.0))
    C = XtX / np.outer(d, d)
    kept, aliased = [], []
    for j in range(len(columns)):
        idx = kept + [j]
        if np.linalg.eigvalsh(C[np.ix_(idx, idx)])[0] <= 1e-10 * len(idx):
            aliased.append(columns[j])
        else:
            kept.append(j)
    if aliased:
        raise ValueError(
            f"the fixed-effects design is rank deficient: {', '.join(repr(a) for a in aliased)} is a linear "
            "combination of the columns before it. Remove it from the formula, or check for duplicated "
            "or constant predictors"
        )


# ---------------------------------------------------------------------------- the design


def build_reduced_design(
    spec: ModelSpec,
    frame: Any,
    *,
    na_action: str = "raise",
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
    progress: bool = True,
    files: list[str] | None = None,
) -> Design:
    """Evaluate a spec on a Dask DataFrame in two passes, keeping sums and a sample (module docstring).

    Parameters
    ----------
    spec : ModelSpec
    frame : dask.dataframe.DataFrame
    na_action : {"raise", "drop"}
        Rows with NaN/inf in a used column raise, naming the partitions (and files), or are
        dropped with a warning that says how many.
    sample_rows : int
        Rows kept in memory, drawn uniformly without replacement with ``seed``.
    seed : int
    progress : bool
        Show Dask's progress bar (or ``distributed``'s with a client) for both passes.
    files : list of str, optional
        The file of each partition (:func:`~lmm_bayes.spec.parquet_files.parquet_frame`), for error messages.

    Returns
    -------
    Design
        With :attr:`~lmm_bayes.Design.reduction` set and the sample as its rows.

    Examples
    --------
    >>> import dask.dataframe as dd, lmm_bayes as lb
    >>> from lmm_bayes.spec.formula import parse_formula
    >>> ddf = dd.from_pandas(lb.datasets.load("sleepstudy"), npartitions=3)
    >>> d = build_reduced_design(parse_formula("Reaction ~ Days + (1 | Subject)"), ddf, sample_rows=50,
    ...                          progress=False)
    >>> d.n_rows, d.n, d.groups[0].n_levels
    (180, 50, 18)
    """
    import dask

    if not is_dask_frame(frame):
        raise TypeError(f"frame must be a Dask DataFrame, got {type(frame).__name__}")
    validate.check_choice(na_action, ("raise", "drop"), "na_action")
    sample_rows = validate.check_positive_int(sample_rows, "sample_rows")
    seed = validate.check_positive_int(seed, "sample_seed", minimum=0)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {type(progress).__name__}")
    validate.check_names(spec)
    columns = tuple(spec.variables)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the formula uses {', '.join(repr(c) for c in missing)}, which the Dask DataFrame does not have; "
            f"its columns are {list(frame.columns)[:20]}"
        )
    _check_supported(spec, frame)
    meta = frame._meta[list(columns)]
    validate.check_numeric_response(meta[spec.response], spec.response, needs="a linear mixed model built "
                                    "from a Dask DataFrame or Parquet files needs a continuous response")
    group_cols = tuple(dict.fromkeys(f for t in spec.random for f in t.factors))
    texts = [*spec.fixed_terms, *(b.expr for t in spec.random for b in t.blocks)]
    in_c = {m.group(1) for t in texts for m in _C_COLUMN.finditer(t)}
    category_cols = tuple(
        c for c in spec.predictor_variables
        if c not in group_cols and (c in in_c or pd.api.types.is_bool_dtype(meta[c])
                                    or not pd.api.types.is_numeric_dtype(meta[c]))
    )

    parts = frame.to_delayed()
    kinds = {c: column_kind(meta[c].dtype) for c in columns}
    scans = [dask.delayed(_scan)(p, i, columns, group_cols, category_cols, na_action, kinds)
             for i, p in enumerate(parts)]
    scan = _compute(_tree(scans, _merge_scans, group_cols, category_cols), progress,
                    f"reading the levels ({len(parts)} partitions)", frame)
    lengths = np.asarray(scan["rows"], dtype=np.int64)
    if scan["bad"]:
        total = sum(sum(c.values()) for _, c in scan["bad"])
        where = _describe_bad(scan["bad"], files)
        if na_action == "raise":
            raise ValueError(
                f"missing or infinite values ({total} in all) in {where}; clean them, or pass "
                "na_action='drop' to drop the incomplete rows"
            )
    n_rows = int(lengths.sum())
    dropped = int(scan["dropped"])
    if n_rows == 0:
        raise ValueError("the Dask DataFrame has no complete row to fit" + (f" (missing values in {where})" if scan["bad"] else ""))
    skeleton = scan["first"]
    skeleton.index = pd.RangeIndex(len(skeleton))
    plan = _Plan(spec=spec, skeleton=skeleton, n_rows=n_rows, columns=columns, na_action=na_action,
                 token=dask.base.tokenize(spec, skeleton, n_rows, na_action))
    skel = build_design(spec, skeleton, n_rows=n_rows)
    leaf = _finest(skel)
    if scan["bad"] and na_action == "drop":
        warnings.warn(
            f"dropped {dropped} of {n_rows + dropped} rows with missing or infinite values ({where})",
            RowsDroppedWarning, stacklevel=3,
        )

    k = min(int(sample_rows), n_rows)
    chosen = np.sort(np.random.default_rng(seed).choice(n_rows, size=k, replace=False))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    positions = [chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i] for i in range(len(parts))]
    # products about the skeleton's column means: inside the data's range, offsets (y + 1e9) cancel
    reference = np.hstack([g.Z for g in skel.groups] + [skel.X, skel.y[:, None]]).mean(axis=0)
    reduced = [dask.delayed(_reduce)(p, i, plan, positions[i], int(offsets[i]), reference)
               for i, p in enumerate(parts)]
    out = _compute(_tree(reduced, _add), progress, f"reducing {n_rows:,} rows to sufficient statistics", frame)
    source = (f"{len(files)} Parquet files" if files else f"a Dask DataFrame of {len(parts)} partitions")
    sample = pd.concat(out.pop("sample"))
    reduction = Reduction(n=n_rows, leaf=leaf, source=source, sample_seed=seed, dropped=dropped,
                          skeleton=skeleton, reference=reference, **out)
    _check_rank(reduction, skel)
    if progress:
        print(f"lmm-bayes: {n_rows:,} rows reduced; a random sample of {len(sample):,} rows (seed {seed}) is "
              "kept for posterior predictive checks, LOO and R²", flush=True)
    return with_rows(skel, sample, reduction)


def reduced_design(spec: ModelSpec, reduction: Reduction, sample: pd.DataFrame) -> Design:
    """The design of a saved reduction (its skeleton, sums and sample): how :func:`lmm_bayes.load`
    rebuilds a model built from Dask, without the data.

    Raises
    ------
    ValueError
        The reduction has no skeleton, or its sums do not fit the formula's design.
    """
    if reduction.skeleton is None:
        raise ValueError("the reduction has no skeleton (the first row of every cluster); it cannot give a design")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shown when the model was first built
        skel = build_design(spec, reduction.skeleton, n_rows=reduction.n)
    D = sum(g.n_effects for g in skel.groups) + len(skel.X_columns) + 1
    if reduction.products.shape[1:] != (D, D) or reduction.leaf != _finest(skel):
        raise ValueError(
            f"the reduction's sums have shape {reduction.products.shape} for factor {reduction.leaf!r}; "
            f"the formula's design needs {D} columns for factor {_finest(skel)!r}"
        )
    return with_rows(skel, sample, reduction)


def with_rows(skeleton: Design, sample: pd.DataFrame, reduction: Reduction) -> Design:
    """The skeleton's design with ``sample`` as its rows and ``reduction`` as its sums."""
    rows = skeleton.evaluate(sample[list(skeleton.spec.predictor_variables)])
    used = sample[list(skeleton.spec.variables)].copy()
    for g in skeleton.groups:
        for f in g.factors:
            used[f] = pd.Series(lab.column_labels(used[f], f), index=used.index).astype(str)
    groups = tuple(replace(g, codes=rows.codes[g.name].astype(np.int64), Z=rows.Z[g.name]) for g in skeleton.groups)
    return replace(
        skeleton, y=sample[skeleton.spec.response].to_numpy(dtype=float), X=rows.X, groups=groups,
        index=sample.index, data=used, reduction=reduction,
    )

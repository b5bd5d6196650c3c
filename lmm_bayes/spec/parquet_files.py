"""Parquet files checked before their rows are summed: one Dask partition per file.

:func:`parquet_frame` reads every file's footer (its schema, not its rows) first, so an
empty, truncated or corrupt file, a file that lacks a column the formula uses, or a column
that is text in one file and numbers in the others is refused with the file named, before
:mod:`lmm_bayes.spec.dask_data` forms any sum. A file whose footer reads but whose rows do
not (a damaged page) is named when its partition is read. :func:`column_kind` and
:func:`read_failure` serve a Dask DataFrame the user built over such files.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["column_kind", "parquet_frame", "read_failure"]

_FIX = "remove the file from the folder (or the glob), or rewrite it (e.g. with pandas.DataFrame.to_parquet)"


def _unreadable(path: str, err: BaseException) -> ValueError:
    """The error for a file that cannot be read: what is wrong with it and how to fix it."""
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False
    what = "is empty (0 bytes)" if empty else "is truncated, corrupt or not a Parquet file"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"Parquet file {path!r} {what} ({type(err).__name__}: {reason}); {_FIX}")


def _read_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, OSError)


def _read_file(path: str, columns: list[str]) -> pd.DataFrame:
    """One partition: a file's columns; a file that cannot be read is named."""
    try:
        return pd.read_parquet(path, columns=columns)
    except _read_errors() as err:
        raise _unreadable(path, err) from None


def column_kind(dtype: Any) -> str | None:
    """What a column holds, in words, from a pandas dtype or a pyarrow type (None: only nulls).

    Two files or partitions that disagree on this cannot be stacked into one column.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa
    >>> column_kind(np.dtype("int64")), column_kind(pa.float32()), column_kind(pa.string()), column_kind(pa.null())
    ('numbers', 'numbers', 'text', None)
    """
    import pyarrow as pa

    if isinstance(dtype, pa.DataType):
        if pa.types.is_dictionary(dtype):
            dtype = dtype.value_type
        if pa.types.is_null(dtype):
            return None
        if pa.types.is_boolean(dtype):
            return "true/false values"
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
            return "numbers"
        if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
            return "text"
        return str(dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return "true/false values"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numbers"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype) or dtype == object:
        return "text"
    return str(dtype)


def _check_kinds(schemas: dict[str, Any], columns: list[str]) -> None:
    """Every used column holds one kind in every file; the odd files are named."""
    for col in columns:
        kinds = {f: (column_kind(s.field(col).type), s.field(col).type) for f, s in schemas.items()}
        counts = Counter(k for k, _ in kinds.values() if k is not None)
        if len(counts) < 2:
            continue
        usual = counts.most_common(1)[0][0]
        odd = [f for f, (k, _) in kinds.items() if k not in (usual, None)]
        other = next(f for f, (k, _) in kinds.items() if k == usual)
        f = odd[0]
        more = f" (and {len(odd) - 1} more file(s))" if len(odd) > 1 else ""
        cast = "pandas.to_numeric(df[col])" if usual == "numbers" else f"df[col].astype(...) to {usual}"
        raise ValueError(
            f"column {col!r} holds {kinds[f][0]} ({kinds[f][1]}) in file {f!r}{more} but {usual} "
            f"({kinds[other][1]}) in {counts[usual]} other file(s), e.g. {other!r}; a column must have one "
            f"type in every file: cast the column in that file ({cast}) and rewrite it, or remove the file"
        )


def parquet_frame(path: str | Path, columns: list[str]) -> tuple[Any, list[str]]:
    """One Dask partition per Parquet file of ``path`` (a file, a folder or a glob), and the files.

    Every file's footer is read first, so a file that cannot be read, lacks one of ``columns``
    or holds one of them with another kind of value than the other files is named.

    Raises
    ------
    TypeError
        ``path`` is not a path.
    ValueError
        No file matches; a file is empty, truncated or corrupt; a file lacks a column the
        formula uses; a column is text in one file and numbers in another.

    Examples
    --------
    >>> import pathlib, tempfile, pandas as pd
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"y": [1.0, 2.0]}).to_parquet(folder / "a.parquet")
    >>> _ = (folder / "b.parquet").write_bytes(b"")
    >>> try:
    ...     parquet_frame(folder, ["y"])
    ... except ValueError as err:
    ...     print(str(err).split("b.parquet' ")[1].split(" (")[0])
    is empty
    """
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    if isinstance(path, bool) or not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a Parquet file, folder or glob (str or pathlib.Path), got {type(path).__name__}")
    text = str(path)
    if Path(text).is_dir():
        files = sorted(glob.glob(str(Path(text) / "**" / "*.parquet"), recursive=True))
    else:
        files = sorted(glob.glob(text, recursive=True))
    if not files:
        raise ValueError(f"no Parquet file matches {text!r}; give a file, a folder of .parquet files or a glob")
    schemas = {}
    for f in files:
        try:
            schemas[f] = pq.read_schema(f)
        except _read_errors() as err:
            raise _unreadable(f, err) from None
        missing = [c for c in columns if c not in schemas[f].names]
        if missing:
            raise ValueError(
                f"file {f!r} has no column {', '.join(repr(c) for c in missing)} (the formula uses "
                f"{list(columns)}); every file of {text!r} must hold them"
            )
    _check_kinds(schemas, list(columns))
    meta = _read_file(files[0], list(columns)).iloc[:0]
    frame = dd.from_map(_read_file, files, columns=list(columns), meta=meta, enforce_metadata=False)
    return frame, files


def _frame_files(frame: Any) -> list[str]:
    """The local files a ``dask.dataframe.read_parquet`` frame reads, where Dask says (else none)."""
    try:
        from dask.dataframe.dask_expr.io.parquet import ReadParquet

        found = []
        for op in frame.expr.find_operations(ReadParquet):
            found += [str(f) for f in op._dataset_info["ds"].files]  # no public route to the file list
        return [f for f in dict.fromkeys(found) if os.path.isfile(f)]
    except Exception:  # noqa: BLE001 - any other Dask: the message goes without the file
        return []


def read_failure(err: BaseException, frame: Any) -> ValueError | None:
    """The error for a Dask DataFrame whose partition could not be read (None: not a read failure).

    The files behind a ``dask.dataframe.read_parquet`` frame are checked one by one, so the
    message names the file that cannot be read where Dask says which files it reads.
    """
    if not isinstance(err, _read_errors()):
        return None
    import pyarrow.parquet as pq

    for f in _frame_files(frame):
        try:
            parquet = pq.ParquetFile(f)
            parquet.read(columns=[c for c in frame.columns if c in parquet.schema_arrow.names])
        except _read_errors() as file_err:
            return _unreadable(f, file_err)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return ValueError(
        f"a partition of the Dask DataFrame could not be read ({type(err).__name__}: {reason}): a file behind it "
        f"is empty, truncated or corrupt. lmm_bayes.LMM.from_parquet(path, formula) names the file; {_FIX}"
    )

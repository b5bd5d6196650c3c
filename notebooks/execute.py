"""Execute the teaching notebooks in place, with full draws, so they are readable without running.

Run it after changing the package (each notebook records the version its outputs came from,
and the test suite fails when that is not the installed version)::

    python notebooks/execute.py                 # every notebook
    python notebooks/execute.py 02 04           # those whose names start with 02 or 04

The notebooks run with the interpreter that runs this script (its ``python3`` kernel), in
``notebooks/``, without ``LMM_BAYES_FAST`` (full draws) and with matplotlib's inline backend,
which stores figures as PNG at the resolution the notebooks set (80 dpi). A notebook that
raises is not written, and the script exits with status 1.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import lmm_bayes

HERE = Path(__file__).resolve().parent
#: notebook metadata key under which the package version of the outputs is recorded
VERSION_KEY = "lmm_bayes"


def execute(path: Path) -> bool:
    """Run one notebook top to bottom with full draws and write it with its outputs; False on error."""
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=1800, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as error:
        print(f"{path.name}: failed, not written\n{error}", file=sys.stderr)
        return False
    book.metadata[VERSION_KEY] = {"version": lmm_bayes.__version__}
    book.metadata.pop("widgets", None)
    nbformat.write(book, path)
    print(f"{path.name}: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1024:.0f} kB")
    return True


def main(prefixes: list[str]) -> int:
    os.environ.pop("LMM_BAYES_FAST", None)   # full draws
    os.environ.pop("MPLBACKEND", None)       # the kernel's inline backend, so figures are stored
    paths = [p for p in sorted(HERE.glob("*.ipynb")) if not prefixes or p.name.startswith(tuple(prefixes))]
    if not paths:
        print(f"no notebook in {HERE} starts with {prefixes}", file=sys.stderr)
        return 1
    return 0 if all([execute(p) for p in paths]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

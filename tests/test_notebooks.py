"""The teaching notebooks: they run, and the stored copies are executed, current and readable.

Two tiers:

* every notebook is re-executed top to bottom with few draws (``LMM_BAYES_FAST=1``) on a copy
  in memory (the stored file is never written); every ``assert`` in it must hold, and every
  cell that prints, shows a table or draws a figure must have that kind of output stored too;
* the stored notebooks (executed with full draws by ``notebooks/execute.py``) are checked
  without running them: every code cell executed once, in order, no errors, figures as PNG,
  the package version they came from is the installed one, small enough to review, public
  API only, and the concept table in ``notebooks/README.md`` points at headings that exist.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import lmm_bayes

ROOT = Path(__file__).parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
#: a stored notebook above this is too big to review on GitHub (figures at 80 dpi stay far below)
MAX_BYTES = 1_000_000
#: output kinds that show the reader something (stderr carries warnings, which differ between
#: few draws and full draws, so it is not compared)
SHOWN = ("execute_result", "display_data")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(book: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in book.cells if c.cell_type == "code"]


def shown_kinds(cell: nbformat.NotebookNode) -> set[str]:
    """What a cell's outputs show: 'stdout', 'figure' (any image), 'value' (a table or a repr)."""
    kinds = set()
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and out.name == "stdout":
            kinds.add("stdout")
        elif out.output_type in SHOWN:
            kinds.add("figure" if any(k.startswith("image/") for k in out.data) else "value")
    return kinds


def headings(book: nbformat.NotebookNode) -> set[str]:
    return {line.lstrip("#").strip() for c in book.cells if c.cell_type == "markdown"
            for line in c.source.splitlines() if line.startswith("#")}


# ====================================================================== few draws, on a copy


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_stored_outputs_are_complete(path, monkeypatch):
    monkeypatch.setenv("LMM_BAYES_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, so figures are captured
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stored = read(path)
    fresh = copy.deepcopy(stored)
    for cell in code_cells(fresh):
        cell.outputs, cell.execution_count = [], None
    client = NotebookClient(fresh, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError as error:  # an assert of the notebook failed, or a cell raised
        pytest.fail(f"{path.name} failed with LMM_BAYES_FAST=1:\n{error}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "the stored notebook must never be written"
    missing = [
        (k, sorted(shown_kinds(new) - shown_kinds(old)), new.source.splitlines()[0])
        for k, (old, new) in enumerate(zip(code_cells(stored), code_cells(fresh)))
        if shown_kinds(new) - shown_kinds(old)
    ]
    assert not missing, (
        f"{path.name}: code cells whose stored outputs lack what a run shows (cell, kinds, first line): "
        f"{missing}; run python notebooks/execute.py {path.name[:2]}"
    )


# ====================================================================== the stored notebooks


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stored_notebook_is_executed_current_and_readable(path):
    book = read(path)
    cells = code_cells(book)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), (
        f"{path.name}: not executed top to bottom in one run (python notebooks/execute.py {path.name[:2]})"
    )
    errors = [c.source.splitlines()[0] for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: cells with errors: {errors}"
    assert not [o for c in cells for o in c.outputs if o.output_type == "stream" and "Traceback" in o.text]

    recorded = book.metadata.get("lmm_bayes", {}).get("version")
    assert recorded == lmm_bayes.__version__, (
        f"{path.name}: outputs come from lmm_bayes {recorded}, installed is {lmm_bayes.__version__}: "
        f"run python notebooks/execute.py {path.name[:2]}"
    )
    first = "".join(o.text for o in cells[0].outputs if o.output_type == "stream" and o.name == "stdout")
    assert first.strip() == f"lmm_bayes {lmm_bayes.__version__}; full draws", f"{path.name}: first cell says {first!r}"

    images = [o.data for c in cells for o in c.outputs if o.output_type in SHOWN and any(k.startswith("image/") for k in o.data)]
    assert images, f"{path.name} stores no figure"
    assert all("image/png" in d and not {"image/svg+xml", "application/pdf"} & set(d) for d in images), (
        f"{path.name}: figures must be stored as PNG only"
    )
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebooks_use_the_public_api_only(path):
    source = "\n".join(c.source for c in code_cells(read(path)))
    assert not re.search(r"\bimport\s+_|\.\_[a-z]\w*|lmm_bayes(\.\w+)*\._", source), f"{path.name} uses a private name"
    assert not re.search(r"""['"/]\.\.[/'"]|Path\(['"]\.\.""", source), f"{path.name} reaches outside the package with a '..' path"
    assert "tests/data" not in source


def test_there_are_eight_notebooks():
    assert [p.stem[:2] for p in PATHS] == ["01", "02", "03", "04", "05", "06", "07", "08"]


# ====================================================================== the concept tables


def concept_rows() -> list[tuple[str, str, str]]:
    """(concept, notebook file, heading) from the table in notebooks/README.md."""
    text = (NOTEBOOKS / "README.md").read_text()
    return re.findall(r"^\| (.+?) \| `(\d\d_\w+\.ipynb)` \| (.+?) \|$", text, flags=re.M)


def test_concept_table_points_at_existing_headings():
    rows = concept_rows()
    assert len(rows) >= 20
    for concept, name, heading in rows:
        assert (NOTEBOOKS / name).exists(), f"notebooks/README.md: {concept!r} names {name}, which does not exist"
        assert heading in headings(read(NOTEBOOKS / name)), (
            f"notebooks/README.md: {concept!r} points at heading {heading!r}, which {name} does not have"
        )
    assert {name for _, name, _ in rows} == {p.name for p in PATHS}, "every notebook teaches something in the table"


def test_root_readme_notebook_table_matches_the_concept_table():
    text = (ROOT / "README.md").read_text()
    listed = dict(re.findall(r"^\| `notebooks/(\d\d_\w+\.ipynb)` \| (.+?) \|$", text, flags=re.M))
    assert sorted(listed) == [p.name for p in PATHS]
    for name, teaches in listed.items():
        expected = [concept for concept, nb, _ in concept_rows() if nb == name]
        assert teaches.split("; ") == expected, f"README.md's row for {name} must list {expected}"

"""The house rules, checked: imports run down the pipeline, no import cycle, no private names cross modules, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lmm_bayes"
MAX_LINES = 500
#: modules allowed to be longer, and why
LONGER = {
    # numba checks its on-disk cache against each function's own source file only: were the
    # kernel split, an edited helper file could run under stale cached callers
    "inference/methods/collapsed/kernel.py": 820,
}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_stages_import_only_down_the_pipeline(monkeypatch):
    """The import-linter contract in pyproject.toml (``layers``) is kept."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0, "run .venv/bin/lint-imports to see why"


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of the package ``path`` imports when it runs: at the top or inside a function,
    and each package a submodule sits in (Python runs its ``__init__`` first), but not the root
    package (the public face, which imports everything) nor under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:k]) for k in range(2, len(parts) + 1) if ".".join(parts[:k]) in known)
    found.discard(here)
    return found


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """The import cycles among ``paths`` (Tarjan's strongly connected components of two or more)."""
    names = {_module_name(p): p for p in paths}
    graph = {name: sorted(_imported_modules(path, set(names))) for name, path in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is at most the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def test_no_import_cycle_at_run_time():
    """No chain of imports, deferred ones included, leads from a module back to itself."""
    cycles = import_cycles([p for p in _modules() if p != PACKAGE / "__init__.py"])
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_import_cycle_check_can_fail():
    """The check above catches a deliberate cycle closed by an import inside a function."""
    first, second = PACKAGE / "spec" / "probe_cycle_a.py", PACKAGE / "spec" / "probe_cycle_b.py"
    first.write_text("from lmm_bayes.spec import probe_cycle_b\n")
    second.write_text("def f():\n    from lmm_bayes.spec.probe_cycle_a import g\n")
    try:
        assert import_cycles([first, second, *(PACKAGE / "spec").glob("design.py")]) == [
            ["lmm_bayes.spec.probe_cycle_a", "lmm_bayes.spec.probe_cycle_b"]
        ]
    finally:
        first.unlink()
        second.unlink()


ARCHITECTURE = ROOT / "docs" / "architecture.md"
STAGES = ("api", "app", "planning", "calibration", "teaching", "results", "inference", "spec")


def _journey() -> str:
    """The section of docs/architecture.md that names every module once."""
    text = ARCHITECTURE.read_text()
    start = text.index("## A row's journey")
    return text[start : text.index("\n## ", start + 1)]


def _named_modules(text: str) -> set[str]:
    """The dotted module names in backticks (``spec.formula``) and the bottom modules (``errors``)."""
    import re

    names = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", text))
    return {n for n in names if n.split(".")[0] in STAGES or n in _bottom_modules()}


def _bottom_modules() -> set[str]:
    return {_module_name(p).removeprefix("lmm_bayes.") for p in _modules()
            if p.parent == PACKAGE and p.name != "__init__.py"} | {"data"}


def test_the_module_map_names_every_module_and_nothing_else():
    """docs/architecture.md's journey of a row is the one module map: every module is in it,
    and every module name in it exists (a package's ``__init__`` is named by the package)."""
    modules = {_module_name(p).removeprefix("lmm_bayes.") for p in _modules() if p != PACKAGE / "__init__.py"}
    named = _named_modules(_journey())
    assert not modules - named, f"modules missing from docs/architecture.md's journey: {sorted(modules - named)}"
    assert not named - modules, f"names in docs/architecture.md's journey that are no module: {sorted(named - modules)}"


def test_module_map_check_can_fail():
    """The map check sees a missing module and a name that is no module."""
    assert "spec.formula" in _named_modules("`spec.formula` reads")
    assert _named_modules("`spec.formulas` and `Design` and `errors`") == {"spec.formulas", "errors"}


def test_import_lmm_bayes_loads_no_heavy_library():
    """``import lmm_bayes`` leaves PyMC, PyTensor, ArviZ's plots, matplotlib, numba, nutpie, Dask and
    formulae unloaded (each loads at its first use). arviz_stats (and the scipy.stats it imports) is
    imported first on purpose: lmm_bayes/__init__.py says why."""
    import subprocess
    import sys

    code = (
        "import sys, lmm_bayes\n"
        "heavy = ['pymc', 'pytensor', 'arviz', 'arviz_plots', 'matplotlib', 'numba', 'nutpie', 'dask', 'formulae']\n"
        "print([m for m in heavy if m in sys.modules and type(sys.modules[m]).__name__ != '_LazyModule'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level:  # relative: resolve against this package
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, module] if module else base)
        if not module.startswith("lmm_bayes") or module == here:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{here}:{node.lineno} imports {alias.name} from {module}")
        if module.rpartition(".")[2].startswith("_"):
            found.append(f"{here}:{node.lineno} imports from private module {module}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = [line for path in _modules() for line in _private_imports(path)]
    assert not found, "\n".join(found)


def test_private_import_check_can_fail(tmp_path):
    """The check above catches a deliberate private import."""
    bad = PACKAGE / "spec" / "_probe_private_import.py"
    bad.write_text("from lmm_bayes.inference.methods.collapsed.likelihood import _cholesky\n")
    try:
        assert _private_imports(bad) == [
            "lmm_bayes.spec._probe_private_import:1 imports _cholesky from lmm_bayes.inference.methods.collapsed.likelihood"
        ]
    finally:
        bad.unlink()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path):
    n = len(path.read_text().splitlines())
    limit = LONGER.get(str(path.relative_to(PACKAGE)), MAX_LINES)
    assert n <= limit, f"{path.relative_to(ROOT)} has {n} lines; split it by concept below {limit}"

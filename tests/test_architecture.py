"""The house rules, checked: imports run down the pipeline, no private names cross modules, small modules."""

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

"""The README's Python examples run as written, top to bottom in one namespace, as a reader would.

A block whose first line says it needs the reader's own files (``# needs your own ...``) is
skipped; every other block runs.
"""

import re
from pathlib import Path

import matplotlib

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_examples_run(tmp_path, monkeypatch):
    assert len(BLOCKS) >= 2 and sum(not b.startswith("# needs your own") for b in BLOCKS) >= 2
    monkeypatch.chdir(tmp_path)  # the examples save files
    namespace: dict = {}
    with matplotlib.rc_context({"backend": "agg"}):
        for k, block in enumerate(BLOCKS):
            if block.startswith("# needs your own"):
                continue
            exec(compile(block, f"README.md python block {k + 1}", "exec"), namespace)
    assert "fit" in namespace

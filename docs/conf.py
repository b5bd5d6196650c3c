"""Sphinx configuration of the lmm-bayes documentation site.

Build it with ``bash run.sh docs`` (output in ``docs/_build/html``). The build is
offline: no intersphinx, no downloads; the notebooks are rendered with the outputs
they store (``nb_execution_mode = "off"``).

Two things are generated at build time, never committed:

- ``docs/api/index.rst``: one autosummary entry per name in ``lmm_bayes.__all__``,
  grouped by pipeline stage, so a name added to ``__all__`` gets its page without
  editing the docs; the class template lists every public method and attribute.
- ``docs/examples/``: copies of ``notebooks/*.ipynb``, so the site shows them.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import lmm_bayes as lb  # noqa: E402
from lmm_bayes.app.cli import build_parser  # noqa: E402

project = "lmm-bayes"
author = "the lmm-bayes developers"
copyright = "2026, the lmm-bayes developers"
release = lb.__version__
version = lb.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
    "sphinx_copybutton",
    "sphinx_design",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "make_figures.py"]
templates_path = ["_templates"]
html_static_path = ["_static"]

# -- the API reference --------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = False   # a module page lists its __all__
autodoc_typehints = "none"          # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members (with a page each)
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# every docstring that numpydoc renders must parse, and a Parameters section must not
# name a parameter the signature lacks (GL08: no docstring at all)
numpydoc_validation_checks = {"GL08", "PR10"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.__call__$", r"^builtins\.", r"\.with_traceback$",
                               r"\.add_note$",
                               # the stage modules' own pages: checked for parsing, not for completeness
                               r"^lmm_bayes\.(api|spec|inference|results|teaching|calibration|planning|app)\."}

# every cross-reference must resolve, except to the libraries this site does not host
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(pd|pandas|np|numpy|xr|xarray|pm|pymc|az|arviz|arviz_stats|arviz_plots|matplotlib|scipy|dask|pytensor|numba|nutpie|ast|argparse)(\..*)?"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|None|optional|callable|Path|Any|Mapping|Sequence)"),
]

# Names in __all__ by pipeline stage, in the order a user meets them.
STAGES = [
    ("api", "Models and fits", "The user's objects: ``LMM`` and ``GLMM``, their fits, the pooling comparison and ``load``."),
    ("spec", "Model specification", "Formula text to a frozen model: the parsed formula, the design and the priors."),
    ("results", "Results", "Fitted models' tables, prediction and comparison."),
    ("teaching", "Teaching", "Pooling comparisons and the pictures that go with them."),
    ("calibration", "Calibration", "Data simulated with known truth and simulation-based calibration."),
    ("planning", "Planning a study", "Design analysis: power, precision and type S/M errors per design point."),
    ("errors", "Errors and warnings", "Every error and warning class the package raises."),
    ("datasets", "Data sets", "The data sets shipped with the package."),
]


def _stage(name: str) -> str:
    obj = getattr(lb, name)
    module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "lmm_bayes")
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lmm_bayes"


STAGE_PACKAGES = ["api", "spec", "inference", "results", "teaching", "calibration", "planning", "app"]


def reexported() -> dict[str, list[str]]:
    """module -> the names of its ``__all__`` that are top-level names (documented there, once)."""
    import importlib
    import pkgutil

    top = {id(getattr(lb, name)) for name in lb.__all__ if not inspect.ismodule(getattr(lb, name))}
    out: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(lb.__path__, prefix="lmm_bayes."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            if id(getattr(module, name, None)) in top:
                out.setdefault(info.name, []).append(name)
    return out


autosummary_context = {"reexported": reexported()}


def write_api_index() -> None:
    """Write ``api/index.rst`` from ``lmm_bayes.__all__`` (every name, grouped by stage)."""
    names = [n for n in lb.__all__ if n != "__version__"]
    by_stage: dict[str, list[str]] = {}
    for name in names:
        by_stage.setdefault(_stage(name), []).append(name)
    known = [s for s, _, _ in STAGES]
    unknown = sorted(set(by_stage) - set(known))
    lines = [
        ".. This file is written by docs/conf.py at every build; edit conf.py, not this file.",
        "",
        "API reference",
        "=============",
        "",
        ".. currentmodule:: lmm_bayes",
        "",
        "Every public name of the package, as ``import lmm_bayes as lb; lb.<name>``. "
        "The pages are generated from the docstrings; every example on them runs in the test suite.",
        "",
    ]
    for stage, title, blurb in STAGES + [(s, s.capitalize(), "") for s in unknown]:
        if stage not in by_stage:
            continue
        lines += [title, "-" * len(title), "", blurb, "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in by_stage[stage]]
        lines.append("")
    lines += [
        "Pipeline stages",
        "---------------",
        "",
        "Each stage of the pipeline is usable on its own (formula text → spec → design → priors → "
        "inference → results); these pages document every module's public functions and classes. "
        "Names that are also at the top level link to their entry above.",
        "",
        ".. autosummary::",
        "   :toctree: generated",
        "   :recursive:",
        "",
        *[f"   {p}" for p in STAGE_PACKAGES],
        "",
        "Version",
        "-------",
        "",
        ".. data:: __version__",
        "",
        "   The package version, a string; every fit records it in its attributes.",
        "",
        "   >>> import lmm_bayes as lb",
        "   >>> isinstance(lb.__version__, str)",
        "   True",
        "",
    ]
    target = HERE / "api" / "index.rst"
    target.parent.mkdir(exist_ok=True)
    text = "\n".join(lines)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)


def copy_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` into ``docs/examples/`` (rendered as stored, never executed)."""
    target = HERE / "examples"
    target.mkdir(exist_ok=True)
    wanted = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    for old in target.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        dst = target / src.name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)


def write_cli_help() -> None:
    """Write the ``lmm-bayes`` command's help texts, included by the command-line page."""
    parser = build_parser()
    texts = {"lmm-bayes --help": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")  # argparse has no public way
    for name, subparser in sub.choices.items():
        texts[f"lmm-bayes {name} --help"] = subparser.format_help()
    out = ["<!-- written by docs/conf.py at every build -->", ""]
    for command, text in texts.items():
        out += [f"```text", f"$ {command}", text.rstrip(), "```", ""]
    target = HERE / "user_guide" / "_cli_help.md"
    text = "\n".join(out)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)


write_api_index()
copy_notebooks()
write_cli_help()

# -- notebooks and Markdown -----------------------------------------------------------------
nb_execution_mode = "off"   # show the outputs the notebooks store; another step executes them
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- the page -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"lmm-bayes {release}"
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "navbar_persistent": ["search-button"],
    "navbar_end": ["theme-switcher"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "secondary_sidebar_items": ["page-toc"],
    "use_edit_page_button": False,
}
html_sidebars = {"index": [], "install": [], "quickstart": []}
html_show_sourcelink = False
html_context = {"default_mode": "light"}

# matplotlib in autodoc'd modules draws off screen
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")


# -- short cross-references in docstrings ---------------------------------------------------
# Docstrings write `save`, `Fit.icc` or `ESTIMATE_COLUMNS` as their module sees them. Resolve
# such a name to the one documented object whose full name ends with it (top-level names
# first), and a module constant to the page of the module that defines it. A name that
# matches nothing, or several things, stays a broken reference and fails the build.
def _resolve_short_reference(app, env, node, contnode):
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    domain = env.get_domain("py")
    objects = domain.objects
    for candidate in (f"lmm_bayes.{target}",):
        if candidate in objects:
            entry = objects[candidate]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, candidate)
    matches = sorted(name for name in objects if name.endswith("." + target) and name.startswith("lmm_bayes."))
    top = [m for m in matches if m.count(".") == target.count(".") + 1]
    chosen = top if top else matches
    if len(chosen) == 1:
        entry = objects[chosen[0]]
        return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, chosen[0])
    name = target.split(".")[-1]
    if node.get("reftype") in ("data", "obj", "const", "attr") and name.isupper():
        owner = _defining_module(name, ".".join(target.split(".")[:-1]) or node.get("py:module"))
        if owner is not None and owner in objects:
            entry = objects[owner]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, owner)
    return None


def _defining_module(name: str, hint: str | None) -> str | None:
    """The lmm_bayes module whose source assigns the constant ``name`` (``hint`` first)."""
    import re

    pattern = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=", re.MULTILINE)
    names = sorted(m for m in sys.modules if m.startswith("lmm_bayes."))
    if hint in names:
        names.insert(0, hint)
    for mod in names:
        try:
            source = inspect.getsource(sys.modules[mod])
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return mod
    return None


def _numpydoc_warnings_as_sphinx_warnings() -> None:
    """numpydoc reports a docstring it cannot parse (an unknown section, a bad underline) with
    Python's ``warnings``, which Sphinx's ``-W`` does not see; pass them to Sphinx's logger,
    so such a docstring fails the build like a broken reference."""
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger("lmm_bayes.docs")
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if "numpydoc" in str(filename):
            logger.warning("numpydoc could not parse a docstring: %s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.filterwarnings("always", category=UserWarning, module=r"numpydoc\.")
    warnings.showwarning = show


def setup(app):
    _numpydoc_warnings_as_sphinx_warnings()
    app.connect("missing-reference", _resolve_short_reference)

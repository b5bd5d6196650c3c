"""The documentation site (``bash run.sh docs``): every public name has an API entry, and the
built pages render in a headless browser (title, navigation, no broken images).

The site is built by ``bash run.sh docs`` (``.ci/run`` does it before the suite and sets
``LMM_BAYES_REQUIRE_DOCS=1``, so there a missing site fails instead of skipping). A plain
``bash run.sh test`` without a built site skips these tests.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import threading
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import lmm_bayes as lb

SITE = Path(__file__).resolve().parent.parent / "docs" / "_build" / "html"


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file() or not (SITE / "objects.inv").is_file():
        if os.environ.get("LMM_BAYES_REQUIRE_DOCS") == "1":  # set by .ci/run, after building the site
            pytest.fail(f"no built site at {SITE}, but .ci/run promised one (LMM_BAYES_REQUIRE_DOCS=1)")
        pytest.skip("the documentation site is not built here (bash run.sh docs builds it)")
    return SITE


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """Sphinx's ``objects.inv`` (version 2): full name -> (domain:role, page)."""
    raw = path.read_bytes()
    header_end = 0
    for _ in range(4):  # '# Sphinx inventory version 2', project, version, compression note
        header_end = raw.index(b"\n", header_end) + 1
    assert raw.startswith(b"# Sphinx inventory version 2")
    entries = {}
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        name, role, _priority, uri, *_ = line.split(" ", 4)
        page = uri.split("#")[0].replace("$", name)
        entries[name] = (role, page)
    return entries


def public_members(cls: type) -> list[str]:
    """Public methods and attributes a user reaches on ``cls`` (not those of object or Exception)."""
    base = BaseException if issubclass(cls, BaseException) else object
    return sorted(m for m in dir(cls) if not m.startswith("_") and not hasattr(base, m))


def expected_entries() -> list[str]:
    names = []
    for name in lb.__all__:
        obj = getattr(lb, name)
        names.append(f"lmm_bayes.{name}")
        if inspect.isclass(obj):
            names += [f"lmm_bayes.{name}.{m}" for m in public_members(obj)]
        elif inspect.ismodule(obj):
            names += [f"lmm_bayes.{obj.__name__.split('.')[-1]}.{m}" for m in getattr(obj, "__all__", ())]
    return names


def test_expected_entries_cover_the_fit_and_model_methods():
    # the list the site is checked against is not vacuous
    names = expected_entries()
    for method in ["Fit.fixef", "Fit.predict", "Fit.summary", "Fit.save", "LMM.fit", "LMM.from_hierarchy",
                   "datasets.load", "compare_pooling", "__version__"]:
        assert f"lmm_bayes.{method}" in names
    assert "lmm_bayes.FormulaError.with_traceback" not in names


def test_every_public_name_and_method_has_an_api_page(site):
    inventory = read_inventory(site / "objects.inv")
    missing = [n for n in expected_entries() if n not in inventory]
    assert not missing, (
        f"{len(missing)} public names have no entry in the API reference: {missing[:20]}. "
        "Rebuild the site (bash run.sh docs); a name added to lmm_bayes.__all__ or a public method "
        "gets its page from docs/conf.py's autosummary without editing the docs."
    )
    no_page = [n for n in expected_entries() if not (site / inventory[n][1]).is_file()]
    assert not no_page, no_page


def _example_lacking(site: Path, inventory: dict, name: str) -> bool:
    """No ``>>>`` prompt on the entry's page (the class, method or function page; the index for data)."""
    return "&gt;&gt;&gt;" not in (site / inventory[name][1]).read_text()


def test_public_names_and_fit_and_model_methods_show_an_example(site):
    inventory = read_inventory(site / "objects.inv")
    names = [f"lmm_bayes.{n}" for n in lb.__all__]
    for cls in ("Fit", "LMM"):
        names += [f"lmm_bayes.{cls}.{m}" for m in public_members(getattr(lb, cls))
                  if callable(getattr(getattr(lb, cls), m))]
    lacking = [n for n in names if _example_lacking(site, inventory, n)]
    assert not lacking, f"API pages without a runnable example: {lacking}"


CHECK_PAGE = """<!doctype html><html><head><title>check</title></head><body>
<pre id="result">pending</pre>
<iframe id="page" src="{page}" style="width:1200px;height:3000px"></iframe>
<script>
document.getElementById("page").addEventListener("load", function () {{
  const doc = this.contentDocument;
  const images = Array.from(doc.images);
  const result = {{
    title: doc.title,
    h1: (doc.querySelector("h1") || {{textContent: ""}}).textContent.trim(),
    navbar_links: doc.querySelectorAll("header.bd-header a.nav-link").length,
    sidebar_links: doc.querySelectorAll(".bd-sidebar-primary a").length,
    themed: getComputedStyle(doc.body).getPropertyValue("--pst-color-primary").trim() !== "",
    images: images.length,
    broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src")),
  }};
  document.getElementById("result").textContent = JSON.stringify(result);
}});
</script></body></html>"""


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        if self.path.startswith("/__check__/"):
            body = CHECK_PAGE.format(page="/" + self.path.removeprefix("/__check__/")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            super().do_GET()


@pytest.fixture(scope="module")
def served(site):
    """The built site on a loopback port, as a browser reads it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("LMM_BAYES_REQUIRE_CHROMIUM") == "1":  # set by .ci/run: CI must not skip this
            pytest.fail("chromium is not installed, but .ci/run promised it (LMM_BAYES_REQUIRE_CHROMIUM=1)")
        pytest.skip("Debian's chromium package is not installed here (.ci/run installs it)")
    return browser


def render(url: str, tmp_path: Path) -> dict:
    proc = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    start = proc.stdout.find('<pre id="result">')
    assert start >= 0, proc.stderr[-2000:]
    text = proc.stdout[start + len('<pre id="result">'):proc.stdout.index("</pre>", start)]
    assert text != "pending", "the page did not finish loading in the browser"
    import html

    return json.loads(html.unescape(text))


@pytest.mark.parametrize("page, h1, min_images", [
    ("index.html", "lmm-bayes", 0),
    ("api/generated/lmm_bayes.Fit.html", "lmm_bayes.Fit", 0),
    ("user_guide/pooling.html", "Pooling comparison", 1),
])
def test_pages_render_in_headless_chromium(served, tmp_path, page, h1, min_images):
    result = render(f"{served}/__check__/{page}", tmp_path)
    assert "lmm-bayes" in result["title"], result
    assert result["h1"].rstrip("#¶ ").startswith(h1), result
    assert result["themed"], "the theme's stylesheet did not load"
    assert result["navbar_links"] >= 5, result  # Installation, Quickstart, User guide, ... API reference
    assert result["images"] >= min_images, result
    assert not result["broken_images"], result

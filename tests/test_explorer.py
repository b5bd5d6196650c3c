"""The partial-pooling explorer (issue 38): its formulas against the package's and closed forms, and
the page in headless Chromium: a slider moved, the shown B_j read and compared with the package's.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import warnings

import numpy as np
import pytest
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.results.estimates import model_shrinkage
from lmm_bayes.teaching import explorer

#: drives a page as a user would: reads what it shows, moves sliders, drags the own estimate, hovers
HARNESS = """<script>(function () {
  const shown = () => { const r = {};
    for (const e of document.querySelectorAll('[id^="lbx-out-"]')) r[e.id.slice(8)] = e.textContent; return r; };
  const set = (k, v) => { const i = document.getElementById('lbx-in-' + k); i.value = v;
    i.dispatchEvent(new Event('input')); };
  const out = {ready: document.body.dataset.lbxReady, initial: shown()};
  set('n', 25); out.n25 = shown();
  set('tau', 0.5); out.tau05 = shown();
  const svg = document.getElementById('lbx-line'), box = svg.getBoundingClientRect();
  svg.dispatchEvent(new PointerEvent('pointerdown', {clientX: box.left + box.width * (40 + 720 * 0.75) / 800,
                                                     clientY: box.top + 10, bubbles: true}));
  window.dispatchEvent(new PointerEvent('pointerup'));
  out.dragged = shown(); out.ybar = Number(document.getElementById('lbx-in-ybar').value);
  const rows = document.querySelectorAll('.cluster');
  out.clusters = rows.length;
  if (rows.length > 2) {
    rows[2].dispatchEvent(new MouseEvent('mouseenter'));
    out.hover = document.getElementById('lbx-hover').textContent;
    rows[2].dispatchEvent(new MouseEvent('click'));
    const value = (k) => Number(document.getElementById('lbx-in-' + k).value);
    out.clicked = {n: value('n'), ybar: value('ybar'), tau: value('tau'), sigma: value('sigma'), shown: shown()};
  }
  const pre = document.createElement('pre'); pre.id = 'result'; pre.textContent = JSON.stringify(out);
  document.body.append(pre);
})();</script>"""


def drive(page_html: str, chromium: str, tmp_path) -> dict:
    page = tmp_path / "page.html"
    page.write_text(page_html.replace("</body>", HARNESS + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.DOTALL)
    assert found, proc.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


def package_B(n: float, tau: float, sigma: float) -> float:
    """The package's shrinkage factor of a random intercept, from its matrix form (results.estimates)."""
    return float(model_shrinkage(np.array([[[float(n)]]]), np.array([sigma]), np.array([[[tau**2]]]))[0, 0])


def closed_forms(n, tau, sigma, ybar, mu, prob=0.94) -> dict:
    """The normal-normal posterior of μ + b_j given ȳ_j, τ, σ, written out (precision weighting)."""
    precision = n / sigma**2 + 1 / tau**2
    z = stats.norm.ppf(0.5 + prob / 2)
    return {"B": package_B(n, tau, sigma), "icc": tau**2 / (tau**2 + sigma**2), "no_pooling": ybar,
            "complete_pooling": mu, "partial_pooling": (n / sigma**2 * ybar + mu / tau**2) / precision,
            "width_no_pooling": 2 * z * sigma / np.sqrt(n), "width_partial_pooling": 2 * z / np.sqrt(precision)}


def assert_shown(shown: dict, expected: dict) -> None:
    """Every shown number equals the expected one to its display precision (B_j, ICC: 3 decimals; others: 4 digits)."""
    for key, value in expected.items():
        text = shown[key]
        if key in ("B", "icc"):
            assert text == f"{value:.3f}", (key, text, value)
        else:
            assert float(text) == pytest.approx(value, rel=5e-4, abs=1e-12), (key, text, value)


@pytest.mark.parametrize("n, tau, sigma", [(1, 1.0, 1.0), (10, 0.5, 2.0), (200, 3.0, 0.1), (3, 0.01, 5.0)])
def test_formulas_agree_with_the_package_and_closed_forms(n, tau, sigma):
    values = explorer.pooling_values(n, tau, sigma, ybar=1.7, mu=-0.4)
    for key, value in closed_forms(n, tau, sigma, 1.7, -0.4).items():
        assert values[key] == pytest.approx(value, rel=1e-12), key
    assert values["B"] == pytest.approx(sigma**2 / (sigma**2 + n * tau**2), rel=1e-12)  # DESIGN.md's form


def test_formulas_must_be_in_the_shared_syntax(monkeypatch):
    monkeypatch.setitem(explorer.FORMULAS, "icc", "tau**2 / (tau**2 + sigma**2)")  # ** is no JS of the same meaning
    with pytest.raises(ValueError, match=r"FORMULAS\['icc'\].*not in the syntax Python and JavaScript share"):
        explorer.compute_js()


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, r"n \(the cluster's rows\) must be at least 1, got 0"),
    ({"tau": -1.0}, r"tau and sigma must be positive SDs, got tau=-1.0"),
    ({"ybar": float("nan")}, r"ybar must be a finite number, got nan"),
    ({"sigma": "2"}, r"sigma must be a finite number, got '2'"),
])
def test_odd_inputs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lb.explore_pooling(**kwargs)


def test_page_is_self_contained(tmp_path):
    path = tmp_path / "explorer.html"
    page = lb.explore_pooling(path, n=5)
    text = path.read_text(encoding="utf-8")
    assert text == page.html
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link|@import|url\(", text)  # nothing fetched
    assert "srcdoc=" in page._repr_html_() and "allow-scripts" in page._repr_html_()


def test_slider_moves_B_j_as_the_package_computes(chromium, tmp_path):
    start = {"n": 10, "tau": 1.0, "sigma": 2.0, "ybar": 2.0, "mu": 0.0}
    result = drive(lb.explore_pooling(**start).html, chromium, tmp_path)
    assert result["ready"] == "yes"
    assert_shown(result["initial"], closed_forms(**start))
    assert_shown(result["n25"], closed_forms(**{**start, "n": 25}))
    assert result["n25"]["B"] == f"{package_B(25, 1.0, 2.0):.3f}" == "0.138"
    assert_shown(result["tau05"], closed_forms(**{**start, "n": 25, "tau": 0.5}))
    # dragging the own estimate three quarters along the axis moves ȳ_j there
    spread = 4 * np.hypot(1.0, 2.0)
    assert result["ybar"] == pytest.approx(-spread + 0.75 * 2 * spread, abs=0.01 * spread)
    assert_shown(result["dragged"], closed_forms(**{**start, "n": 25, "tau": 0.5, "ybar": result["ybar"]}))


def test_a_bug_in_the_formula_fails_the_check(chromium, tmp_path, monkeypatch):
    # the deliberate bug: n_j in place of σ²/n_j in B_j
    monkeypatch.setitem(explorer.FORMULAS, "B", "n / (n + tau * tau)")
    result = drive(lb.explore_pooling(n=10, tau=1.0, sigma=2.0).html, chromium, tmp_path)
    with pytest.raises(AssertionError):
        assert_shown(result["initial"], closed_forms(10, 1.0, 2.0, 2.0, 0.0))
    assert result["initial"]["B"] != f"{package_B(10, 1.0, 2.0):.3f}"


@pytest.fixture(scope="module")
def intercept_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short run: the page's numbers are compared with the same draws
        return lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
            draws=200, tune=200, chains=2, seed=3, progressbar=False)


def test_fit_page_shows_every_cluster_and_its_numbers(intercept_fit, chromium, tmp_path):
    page = intercept_fit.explore(tmp_path / "fit.html")
    assert (tmp_path / "fit.html").read_text(encoding="utf-8") == page.html
    result = drive(page.html, chromium, tmp_path)
    table = intercept_fit.shrinkage("Subject").xs("Intercept", level="effect").sort_values("no_pooling")
    assert result["clusters"] == len(table) == 18
    level = table.index[2]  # the page lists the clusters by their own estimate, as sorted here
    row = table.loc[level]
    hover = result["hover"]
    assert hover.startswith(f"{level}: n_j = {row.n_obs}; ")
    numbers = dict(re.findall(r"(own estimate|partial pooling|B_j =) ([-\d.]+)", hover))
    assert float(numbers["own estimate"]) == pytest.approx(row.no_pooling, rel=5e-4)
    assert float(numbers["partial pooling"]) == pytest.approx(row.partial_pooling, rel=5e-4)
    assert numbers["B_j ="] == f"{row.shrinkage:.3f}"
    # at the start the sliders hold the first cluster and the posterior means of τ and σ
    vc = intercept_fit.varcorr()
    tau, sigma = vc.loc[("Subject", "sd(Intercept)"), "mean"], vc.loc[("Residual", "sigma"), "mean"]
    first = table.iloc[0]
    assert_shown(result["initial"], closed_forms(first.n_obs, tau, sigma, first.no_pooling, row.population))
    # clicked: the sliders hold the cluster (τ as the harness left it), and the shown B_j follows
    clicked = result["clicked"]
    assert clicked["n"] == row.n_obs and clicked["tau"] == 0.5 and clicked["sigma"] == pytest.approx(sigma)
    assert clicked["ybar"] == pytest.approx(row.no_pooling, rel=1e-9)
    assert clicked["shown"]["B"] == f"{package_B(row.n_obs, 0.5, clicked['sigma']):.3f}"


def test_fit_page_refuses_models_beyond_one_random_intercept():
    model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 50 draws: only the refusal is tested
        slopes = model.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
    with pytest.raises(ValueError, match=r"one random intercept, \(1 \| g\).*random terms \(Intercept \+ Days \| "
                                         r"Subject\).*fit\.shrinkage\(group\)"):
        slopes.explore()


def test_the_docs_site_holds_the_current_page():
    """The user guide embeds docs/_static/explorer.html; it must be what lb.explore_pooling() writes now."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    static = (docs / "_static" / "explorer.html").read_text(encoding="utf-8")
    assert static == lb.explore_pooling().html, "run: python -c \"import lmm_bayes as lb; " \
        "lb.explore_pooling('docs/_static/explorer.html')\""
    assert 'src="../_static/explorer.html"' in (docs / "user_guide" / "pooling.md").read_text(encoding="utf-8")

"""A partial-pooling explorer: one self-contained HTML page with sliders, for a lesson or a fitted model.

One cluster with n_j rows and its own estimate ȳ_j, in a model with a random intercept of SD τ
and a residual SD σ, both taken as known. Its three estimates are the no-pooling ȳ_j, the
complete-pooling μ and the partial-pooling B_j μ + (1 − B_j) ȳ_j, with B_j = (σ²/n_j) /
(σ²/n_j + τ²), the model's own shrinkage factor (``DESIGN.md``;
:func:`lmm_bayes.results.estimates.model_shrinkage` for a random intercept). ``FORMULAS``
states them once: Python evaluates them (:func:`pooling_values`) and the page's JavaScript is
generated from the same text (:func:`compute_js`), so the two cannot disagree, and the tests
compare both with the package's functions. :func:`explore_pooling` writes the page for a lesson,
:func:`fit_explorer` for a fitted random-intercept model (every cluster's arrow from its own
estimate to the model's, from :func:`~lmm_bayes.results.shrinkage.shrinkage`).
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lazy_loader as lazy
import numpy as np

from lmm_bayes.results.shrinkage import shrinkage
from lmm_bayes.results.summary import DEFAULT_PROB, check_interval
from lmm_bayes.teaching.explorer_page import page_html

stats = lazy.load("scipy.stats", suppress_warning=True)

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["FORMULAS", "ExplorerPage", "compute_js", "explore_pooling", "fit_explorer", "pooling_values"]

#: the explorer's numbers, in order, each from the inputs (n, tau, sigma, ybar, mu, Z) and the ones
#: above it; written in the syntax Python and JavaScript share (+ - * / ( ) and sqrt)
FORMULAS: dict[str, str] = {
    "icc": "tau * tau / (tau * tau + sigma * sigma)",
    "se_own": "sigma / sqrt(n)",  # the SD of the cluster's own mean given its true value
    "B": "se_own * se_own / (se_own * se_own + tau * tau)",  # (σ²/n_j) / (σ²/n_j + τ²)
    "no_pooling": "ybar",
    "complete_pooling": "mu",
    "partial_pooling": "B * mu + (1 - B) * ybar",
    "sd_partial": "sqrt(1 / (n / (sigma * sigma) + 1 / (tau * tau)))",  # SD of μ + b_j given y, τ, σ
    "width_no_pooling": "2 * Z * se_own",
    "width_partial_pooling": "2 * Z * sd_partial",
}
INPUTS = ("n", "tau", "sigma", "ybar", "mu")
_SHARED_SYNTAX = re.compile(r"^[A-Za-z_0-9 .+\-*/()]+$")


def z_value(prob: float) -> float:
    """The standard normal quantile of a central ``prob`` interval (1.88 for 94%)."""
    return float(stats.norm.ppf(0.5 + prob / 2))


def pooling_values(n: float, tau: float, sigma: float, ybar: float, mu: float, *,
                   prob: float = DEFAULT_PROB) -> dict[str, float]:
    """The explorer's numbers for one cluster, from ``FORMULAS``, as the page shows them.

    Parameters
    ----------
    n : float
        The cluster's rows, n_j.
    tau, sigma : float
        The random intercept's SD and the residual SD, taken as known.
    ybar, mu : float
        The cluster's own estimate and the population mean.
    prob : float
        Probability mass of the (normal) intervals whose widths are shown.

    Returns
    -------
    dict
        ``B``, ``icc``, ``no_pooling``, ``complete_pooling``, ``partial_pooling``, the
        SDs and the interval widths.

    Examples
    --------
    >>> v = pooling_values(4, tau=1.0, sigma=2.0, ybar=3.0, mu=0.0)  # σ²/n = 1 = τ²
    >>> v["B"], v["partial_pooling"], v["icc"]
    (0.5, 1.5, 0.2)
    """
    check_inputs(n, tau, sigma, ybar, mu)
    _, prob = check_interval("eti", prob)
    scope: dict[str, Any] = {"sqrt": math.sqrt, "n": float(n), "tau": float(tau), "sigma": float(sigma),
                             "ybar": float(ybar), "mu": float(mu), "Z": z_value(prob)}
    values = {}
    for name, formula in FORMULAS.items():
        values[name] = scope[name] = float(eval(formula, {"__builtins__": {}}, scope))  # the module's own constant text
    return values


def compute_js(prob: float = DEFAULT_PROB) -> str:
    """The page's ``compute(n, tau, sigma, ybar, mu)``: ``FORMULAS`` as JavaScript, Z as a constant.

    Examples
    --------
    >>> print(compute_js().splitlines()[2])
      const icc = tau * tau / (tau * tau + sigma * sigma);
    """
    for name, formula in FORMULAS.items():  # a formula in other syntax would mean different things
        if not _SHARED_SYNTAX.match(formula) or "**" in formula:
            raise ValueError(f"FORMULAS[{name!r}] = {formula!r} is not in the syntax Python and JavaScript share")
    lines = [f"function compute({', '.join(INPUTS)}) {{", f"  const Z = {z_value(prob)!r}, sqrt = Math.sqrt;"]
    lines += [f"  const {name} = {formula};" for name, formula in FORMULAS.items()]
    lines += [f"  return {{{', '.join(FORMULAS)}}};", "}"]
    return "\n".join(lines)


def check_inputs(n: Any, tau: Any, sigma: Any, ybar: Any, mu: Any) -> None:
    """Every input a finite number; n at least 1, τ and σ positive; else ValueError saying which."""
    for name, value in zip(INPUTS, (n, tau, sigma, ybar, mu), strict=True):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if n < 1:
        raise ValueError(f"n (the cluster's rows) must be at least 1, got {n!r}")
    if tau <= 0 or sigma <= 0:
        raise ValueError(f"tau and sigma must be positive SDs, got tau={tau!r}, sigma={sigma!r}")


class ExplorerPage:
    """An explorer page: its ``html``, one self-contained string; :meth:`ExplorerPage.save` writes it.

    In a notebook the page sits in an ``<iframe srcdoc>``, whose scripts run in JupyterLab too.
    """

    def __init__(self, text: str, path: Path | None = None):
        self.html, self.path = text, path

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` (UTF-8); returns the path."""
        self.path = Path(path)
        self.path.write_text(self.html, encoding="utf-8")
        return self.path

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width: 100%; height: 760px; '
                'border: 1px solid #ddd" sandbox="allow-scripts"></iframe>')

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<lmm_bayes ExplorerPage{where}: {len(self.html):,} characters; open it in a browser>"


def _slider(key: str, label: str, lo: float, hi: float, value: float, *, step: float | str = "any") -> dict:
    return {"key": key, "label": label, "min": lo, "max": hi, "value": value, "step": step}  # "any": exact starts


def sliders(*, n: int, tau: float, sigma: float, ybar: float, mu: float, n_max: int = 200,
            spread: tuple[float, float] | None = None) -> list[dict]:
    """The sliders' ranges and start values: ȳ_j over ``spread`` (default μ ± 4 √(τ² + σ²))."""
    half = 4 * math.hypot(tau, sigma)
    lo, hi = spread or (mu - half, mu + half)
    lo, hi = min(lo, ybar, mu), max(hi, ybar, mu)
    top = 3 * max(tau, sigma)
    return [
        _slider("n", "n_j: the cluster's rows", 1, max(n_max, n), n, step=1),
        _slider("tau", "\u03c4: SD of the cluster means", top / 1000, top, tau),
        _slider("sigma", "\u03c3: residual SD", top / 1000, top, sigma),
        _slider("ybar", "the cluster's own estimate \u0233_j", lo, hi, ybar),
        _slider("mu", "the population mean \u03bc", lo, hi, mu),
    ]


_NOTE = ("τ and σ are taken as known; B_j = (σ²/n_j) / (σ²/n_j + τ²) is the weight the model puts on μ "
         "(lmm_bayes.results.estimates.model_shrinkage), and the intervals are normal ones given τ and σ. "
         "Move n_j up, or τ up against σ, and the partial-pooling estimate stays near the cluster's own.")


def explore_pooling(path: str | os.PathLike | None = None, *, n: int = 10, tau: float = 1.0, sigma: float = 2.0,
                    ybar: float = 2.0, mu: float = 0.0, prob: float = DEFAULT_PROB) -> ExplorerPage:
    """A page to play with partial pooling: sliders for n_j, τ, σ, the cluster's estimate and μ.

    Shows live the no-, complete- and partial-pooling estimates, the shrinkage factor B_j, the
    ICC and the interval widths, computed by ``FORMULAS``. Works offline (no server, no
    CDN), in the docs site and in a notebook (the page displays itself).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        Also write the page there.
    n, tau, sigma, ybar, mu : float
        The sliders' start values: the cluster's rows, the SD of the cluster means, the
        residual SD, the cluster's own estimate and the population mean.
    prob : float
        Probability mass of the intervals whose widths are shown.

    Returns
    -------
    ExplorerPage

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> page = lb.explore_pooling(n=5, tau=1.0, sigma=2.0)
    >>> "function compute(n, tau, sigma, ybar, mu)" in page.html, "<script src" in page.html, "<link" in page.html
    (True, False, False)
    """
    pooling_values(n, tau, sigma, ybar, mu, prob=prob)  # checks every input
    config = {"sliders": sliders(n=int(n), tau=tau, sigma=sigma, ybar=ybar, mu=mu)}
    lead = ("One cluster's estimate with no pooling (its own mean), complete pooling (the population mean) "
            "and partial pooling: move the sliders, or drag the own estimate.")
    text = page_html(title="Partial pooling, one cluster at a time", lead=lead, note=_NOTE, group="",
                     prob=prob, config=config, clusters=None, compute_js=compute_js(prob))
    page = ExplorerPage(text)
    if path is not None:
        page.save(path)
    return page


def fit_explorer(fit: Fit, path: str | os.PathLike | None = None) -> ExplorerPage:
    """The explorer for a fitted random-intercept model: every cluster's arrow, and the sliders.

    See :meth:`lmm_bayes.Fit.explore`.
    """
    design = fit.design
    groups = design.groups
    if not design.family.is_gaussian or len(groups) != 1 or list(groups[0].effects) != ["Intercept"]:
        terms = ", ".join(f"({' + '.join(g.effects)} | {g.name})" for g in groups) or "none"
        raise ValueError(
            "fit.explore() draws a Gaussian model with one random intercept, (1 | g), whose shrinkage factor is "
            f"B_j = σ²/(σ² + n_j τ²); this model has family={design.family.name!r} and random terms {terms}. "
            "Read every cluster's estimates and its model shrinkage factor with fit.shrinkage(group), or "
            "play with the one-intercept case in lb.explore_pooling()"
        )
    g = groups[0]
    table = shrinkage(fit, g.name, prob=DEFAULT_PROB).xs("Intercept", level="effect")
    vc = fit.varcorr()
    tau = float(vc.loc[(g.name, "sd(Intercept)"), "mean"])
    sigma = float(vc.loc[("Residual", "sigma"), "mean"])
    mu = float(table["population"].iloc[0])

    def number(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    rows = [{"level": str(level), "n": int(r.n_obs), "own": number(r.no_pooling), "partial": float(r.partial_pooling),
             "B": float(r.shrinkage), "note": str(r.note)} for level, r in table.iterrows()]
    rows.sort(key=lambda r: (r["own"] is None, r["own"] if r["own"] is not None else 0.0))
    first = next((r for r in rows if r["own"] is not None), None)
    own = [r["own"] for r in rows if r["own"] is not None]
    lo, hi = min(own + [mu]), max(own + [mu])
    spread = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)) if own and hi > lo else None
    config = {"sliders": sliders(n=first["n"] if first else 10, tau=tau, sigma=sigma,
                                 ybar=first["own"] if first else mu, mu=mu,
                                 n_max=max(200, 2 * max(r["n"] for r in rows)), spread=spread)}
    clusters = {"rows": rows, "population": mu, "complete": float(table["complete_pooling"].iloc[0])}
    lead = (f"{fit.model.formula}: τ and σ start at their posterior means ({tau:.3g}, {sigma:.3g}), μ at the "
            f"population intercept ({mu:.4g}). In the chart each cluster's B_j is averaged over the posterior, "
            "and its partial-pooling estimate is the posterior mean, so they differ a little from the sliders' "
            "plug-in values.")
    text = page_html(title=f"Partial pooling of {g.name}", lead=lead, note=_NOTE, group=g.name,
                     prob=DEFAULT_PROB, config=config, clusters=clusters, compute_js=compute_js())
    page = ExplorerPage(text)
    if path is not None:
        page.save(path)
    return page

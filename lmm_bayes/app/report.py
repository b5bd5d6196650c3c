"""A self-contained HTML report of a fit: tables and plots as embedded images."""

from __future__ import annotations

import base64
import html
import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lmm_bayes.api.fit import Fit
from lmm_bayes.results.comparison import HIGH_PARETO_K
from lmm_bayes.results.covariance import group_covariance
from lmm_bayes.results.effects import is_categorical
from lmm_bayes.results.residual_structure import refuse_structured
from lmm_bayes.results.summary import format_table
from lmm_bayes.teaching import check_plots, glm_plots, plots, pooling_plots

__all__ = ["report_html", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f4f4f4; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0 1.5rem; }
pre { background: #f7f7f7; padding: 0.75rem; overflow-x: auto; }
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(df: pd.DataFrame) -> str:
    return format_table(df).to_html(border=0)


def _image(caption: str, fig) -> list[str]:
    return [f"<h3>{html.escape(caption)}</h3>",
            f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{_png(fig)}'>"]


def _effects_x(fit: Fit, g) -> str | None:
    """The predictor an effects plot of factor ``g`` runs along: its first numeric random slope, else the first
    numeric fixed predictor, else the first categorical fixed predictor (points per level); None if there is none."""
    design = fit.design
    data = design.data
    factors = {f for h in design.groups for f in h.factors}
    columns = [c for c in data.columns if c != design.response and c not in factors]
    numeric = [c for c in columns if not is_categorical(fit, c)]
    for name in [*g.effects, *design.X_columns]:
        if name in numeric:
            return name
    fixed = " ".join(design.spec.fixed_terms)
    for name in design.spec.predictor_variables:
        if name in columns and is_categorical(fit, name) and re.search(rf"\b{re.escape(name)}\b", fixed):
            return name
    return None


def _group_figures(fit: Fit, g) -> list[tuple[str, Callable[[], object]]]:
    """Every figure of one grouping factor."""
    name = g.name
    out: list[tuple[str, Callable[[], object]]] = []
    x = _effects_x(fit, g)
    if x is not None:
        what = ("population mean and interval per level, every {0}'s points, data" if is_categorical(fit, x)
                else "population line and band, every {0}'s line, data").format(name)
        out.append((f"Effects of {x} by {name}: {what}", lambda: fit.plot_effects(x, group=name)))
    out.append((f"Cluster effects by {name} (caterpillar)", lambda: plots.plot_caterpillar(fit, name)))
    counts = g.counts()
    if g.n_effects >= 2 and np.all(counts == counts[0]):
        # equal cluster sizes put every cluster at one n: the shrinkage-vs-n panel would be a stripe
        out.append((f"Partial pooling of {name}: arrows from each cluster's own estimate to the model's",
                    lambda: pooling_plots.plot_arrows(fit.shrinkage(name), group_covariance(fit, name))))
    else:
        out.append((f"Shrinkage of {name} estimates", lambda: pooling_plots.plot_shrinkage(fit.shrinkage(name))))
    out.append((f"Pair plot of the {name} SDs and correlations", lambda: check_plots.plot_pair(fit, name)))
    out.append((f"Posterior predictive check per {name} (mean)",
                lambda: plots.plot_ppc(fit, kind="stat", stat="mean", group=name)))
    out.append((f"Posterior predictive check per {name} (sd)",
                lambda: plots.plot_ppc(fit, kind="stat", stat="sd", group=name)))
    return out


def _model_figures(fit: Fit) -> list[tuple[str, Callable[[], object]]]:
    chains = fit.posterior.sizes["chain"]
    family = fit.design.family
    out: list[tuple[str, Callable[[], object]]] = [
        ("Rank plots of the hyperparameters", lambda: check_plots.plot_rank(fit)) if chains > 1
        else ("Trace plots of the hyperparameters (one chain: no rank plots)", lambda: check_plots.plot_trace(fit)),
        ("Posterior predictive check", lambda: plots.plot_ppc(fit)),
    ]
    if family.counts:
        out.append(("Hanging rootogram: observed vs expected frequency of each count",
                    lambda: glm_plots.plot_rootogram(fit, max_count=_max_count(fit))))
    elif family.successes:
        out.append(("Calibration: observed vs predicted proportion of successes by bin",
                    lambda: glm_plots.plot_calibration(fit, bins=_bins(fit), seed=0)))
    what = "residuals" if family.is_gaussian else "Pearson residuals"
    out.append((f"{what.capitalize()} vs fitted; QQ plots of the {what} and of every b",
                lambda: check_plots.plot_residuals(fit)))
    if "log_likelihood" in fit.idata.children:
        out.append(("LOO-PIT calibration", lambda: check_plots.plot_loo_pit(fit)))
    if fit.design.groups:
        out.append(("Variance partition", lambda: plots.plot_variance_partition(fit)))
    return out


def _max_count(fit: Fit) -> int:
    """The rootogram's largest count: the 99th percentile of the data, at least 5, at most 60."""
    return int(min(60, max(5, np.quantile(fit.design.y, 0.99))))


def _bins(fit: Fit) -> int:
    return int(min(10, max(1, fit.design.n // 20)))


def _family_tables(fit: Fit) -> list[str]:
    """A GLMM's rate or odds ratios and its predictive-check table; nothing for a Gaussian model."""
    family = fit.design.family
    if family.is_gaussian:
        return []
    parts = []
    if family.ratio_name:
        parts += [f"<h2>Fixed effects as {html.escape(family.ratio_name)}s (exp of the coefficients)</h2>",
                  _table(fit.fixef(exponentiate=True))]
    if family.counts:
        table = fit.rootogram(max_count=_max_count(fit))
        parts += ["<h2>Rootogram table: observed and expected frequency of each count</h2>", _table(table),
                  f"<p>Rows above {table.index.max()}: observed {table.attrs['observed_above']}, "
                  f"expected {table.attrs['expected_above']:.1f}.</p>"]
    else:
        parts += ["<h2>Calibration table: proportion of successes by bin of predicted probability</h2>",
                  _table(fit.binned_calibration(bins=_bins(fit), seed=0))]
    return parts


def _diagnostic_text(name: str, value: object) -> str:
    """One diagnostic as text: R-hat to 3 decimals, BFMI to 2, ESS and counts whole."""
    if isinstance(value, (int, np.integer)) or "ess" in name:
        return f"{float(value):.0f}"
    decimals = 3 if "r_hat" in name else 2
    return f"{float(value):.{decimals}f}"


def _loo_section(fit: Fit) -> list[str]:
    """The PSIS-LOO table; its Pareto-k warning, if any, goes into the report beneath it, not to the screen."""
    if "log_likelihood" not in fit.idata.children:
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message="PSIS-LOO", category=UserWarning)
        res = fit.loo()
    k = np.asarray(res.pareto_k)
    table = pd.DataFrame(
        {"value": [f"{float(res.elpd):.1f}", f"{float(res.se):.1f}", f"{float(res.p):.1f}",
                   str(int((k > HIGH_PARETO_K).sum()))]},
        index=["elpd_loo", "se", "p_loo", f"Pareto k > {HIGH_PARETO_K}"],
    )
    notes = [f"<p>{html.escape(str(w.message))}</p>" for w in caught if str(w.message).startswith("PSIS-LOO")]
    for w in caught:  # anything else is not ours to hide
        if not str(w.message).startswith("PSIS-LOO"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ["<h2>PSIS-LOO</h2>", _table(table), *notes]


def report_html(fit: Fit, *, group: str | None = None, title: str | None = None) -> str:
    """The report as one HTML string (images inline as base64 PNG, no network needed).

    Tables (fixed effects, variance components, ICC, R², PSIS-LOO, diagnostics), then the
    model's figures (rank plots, posterior predictive check, residuals, LOO-PIT, variance
    partition) and, for every grouping factor (``group`` first), its effects plot,
    caterpillar, shrinkage (arrows in the intercept-slope plane when all clusters have the
    same size), pair plot of its SDs and correlations and per-cluster predictive checks.
    A GLMM's report adds its rate or odds ratios and a rootogram (counts) or a calibration
    table and plot by bins (choices), says which tables are on the link or latent scale, and
    shows Pearson residuals.
    Figures are drawn with whatever matplotlib backend is active (without a display
    matplotlib picks a non-interactive one itself); the backend is never changed here.
    """
    refuse_structured(fit.design, "the HTML report (its ICC, R², LOO and predictive checks)")
    groups = list(fit.design.groups)
    if group is not None:
        first = fit.design.group(group)
        groups = [first, *(g for g in groups if g.name != first.name)]
    title = title or f"lmm-bayes report: {fit.model.formula}"
    summary = fit.summary()
    family = fit.design.family
    link = "" if family.is_gaussian else f" (link scale: {family.link})"
    latent = "" if family.is_gaussian else " on the latent scale (Nakagawa, Johnson & Schielzeth 2017)"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<pre>{html.escape(summary.header)}</pre>",
        f"<h2>Fixed effects{link}</h2>", _table(summary.fixef),
        *_family_tables(fit),
        f"<h2>Variance components{link}</h2>", _table(summary.varcorr),
    ]
    if groups:
        parts += [f"<h2>Variance partition (ICC){latent}</h2>", _table(fit.icc())]
    parts += [f"<h2>R²{latent}</h2>", _table(fit.r2())]
    parts += _loo_section(fit)
    diag = pd.DataFrame({"value": [_diagnostic_text(k, v) for k, v in summary.diagnostics.items()]},
                        index=list(summary.diagnostics))
    parts += ["<h2>Diagnostics</h2>", _table(diag), f"<p>{html.escape(summary.footer)}</p>"]
    parts.append("<h2>Model checks</h2>")
    for caption, make in _model_figures(fit):
        parts += _image(caption, make())
    for g in groups:
        parts.append(f"<h2>Grouping factor {html.escape(g.name)}</h2>")
        for caption, make in _group_figures(fit, g):
            parts += _image(caption, make())
    parts.append("<h2>Priors</h2>")
    parts.append(f"<pre>{html.escape(str(fit.priors))}</pre></body></html>")
    return "\n".join(parts)


def write_report(fit: Fit, out: str | Path, *, group: str | None = None, title: str | None = None) -> dict[str, Path]:
    """Write ``fit.nc``, ``summary.txt`` and ``report.html`` into folder ``out``.

    Returns the paths written, by name.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"fit": out / "fit.nc", "summary": out / "summary.txt", "report": out / "report.html"}
    fit.save(paths["fit"])
    paths["summary"].write_text(str(fit.summary()) + "\n")
    paths["report"].write_text(report_html(fit, group=group, title=title))
    return paths

"""A self-contained HTML report of a fit: tables and plots as embedded images."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit

__all__ = ["write_report", "report_html"]

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
    return df.to_html(float_format=lambda v: f"{v:.4g}", border=0)


def _figures(fit: Fit, group: str) -> list[tuple[str, Callable[[], object]]]:
    from lmm_bayes.teaching import plots, pooling_plots

    return [
        (f"Cluster effects by {group} (caterpillar)", lambda: plots.plot_caterpillar(fit, group)),
        (f"Shrinkage of {group} estimates", lambda: pooling_plots.plot_shrinkage(fit.shrinkage(group))),
        ("Posterior predictive check", lambda: plots.plot_ppc(fit)),
        ("Variance partition", lambda: plots.plot_variance_partition(fit)),
    ]


def report_html(fit: Fit, *, group: str | None = None, title: str | None = None) -> str:
    """The report as one HTML string (images inline as base64 PNG, no network needed).

    Figures are drawn with whatever matplotlib backend is active (without a display
    matplotlib picks a non-interactive one itself); the backend is never changed here.
    """
    group = group or (fit.design.groups[0].name if fit.design.groups else None)
    title = title or f"lmm-bayes report: {fit.model.formula}"
    summary = fit.summary()
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<pre>{html.escape(summary.header)}</pre>",
        "<h2>Fixed effects</h2>", _table(summary.fixef),
        "<h2>Variance components</h2>", _table(summary.varcorr),
        "<h2>Variance partition (ICC)</h2>", _table(fit.icc()),
        "<h2>Diagnostics</h2>",
        _table(pd.DataFrame([summary.diagnostics]).T.rename(columns={0: "value"})),
        f"<p>{html.escape(summary.footer)}</p>",
    ]
    if group is not None:
        for caption, make in _figures(fit, group):
            parts.append(f"<h2>{html.escape(caption)}</h2>")
            parts.append(f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{_png(make())}'>")
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

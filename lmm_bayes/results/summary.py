"""Tables of draws and the sampler's health, written once for every kind of fit.

:func:`summarize_draws` is arviz-stats' ``summary`` (mean, SD, HDI, R-hat, ESS) shaped
as one row per entry of a labelled DataArray; :func:`diagnose` is the health check
(divergences, R-hat, ESS, BFMI, tree depth) over a list of scalar parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.spec import validate

__all__ = ["STAT_COLUMNS", "Summary", "diagnose", "reliability_problems", "summarize_draws"]

STAT_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk", "ess_tail"]
_ROW = "__row__"


def summarize_draws(draws: xr.DataArray, *, hdi_prob: float = 0.94, diagnostics: bool = True) -> pd.DataFrame:
    """One row per entry of ``draws`` (dims chain, draw, ...): mean, sd, HDI, R-hat, ESS.

    The numbers are arviz-stats' ``summary`` (HDI intervals, rank-normalised R-hat,
    bulk and tail ESS); the rows are indexed by the remaining dims' labels.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 500, 2)), dims=("chain", "draw", "k"),
    ...                   coords={"k": ["a", "b"]})
    >>> summarize_draws(da).columns.tolist()
    ['mean', 'sd', 'hdi_low', 'hdi_high', 'r_hat', 'ess_bulk', 'ess_tail']
    """
    hdi_prob = validate.check_probability(hdi_prob, "hdi_prob")
    extra = [d for d in draws.dims if d not in ("chain", "draw")]
    if len(extra) == 1:
        stacked = draws.rename({extra[0]: _ROW})
    elif extra:
        stacked = draws.stack({_ROW: extra})
    else:
        stacked = draws.expand_dims({_ROW: [0]})
    stacked = stacked.transpose("chain", "draw", _ROW)
    plain = xr.DataArray(stacked.values, dims=("chain", "draw", _ROW), name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # R-hat/ESS of a constant
        table = azs.summary(
            plain.to_dataset(), kind="all" if diagnostics else "stats", fmt="xarray",
            ci_prob=hdi_prob, ci_kind="hdi", round_to="none",
        )["x"]
    names = [str(s) for s in table["summary"].values]
    low = next(n for n in names if n.endswith("_lb"))
    high = next(n for n in names if n.endswith("_ub"))
    columns = {"mean": "mean", "sd": "sd", "hdi_low": low, "hdi_high": high}
    if diagnostics:
        columns.update(r_hat="r_hat", ess_bulk="ess_bulk", ess_tail="ess_tail")
    out = {ours: table.sel(summary=theirs).values for ours, theirs in columns.items()}
    if len(extra) == 1:
        index = pd.Index(stacked[_ROW].values, name=extra[0])
    elif extra:
        index = stacked.indexes[_ROW]
    else:
        index = pd.Index([draws.name])
    return pd.DataFrame(out, index=index)


def diagnose(params: Sequence[xr.DataArray], sample_stats: xr.Dataset) -> dict[str, Any]:
    """Sampler health over scalar parameters: divergences, max R-hat, min bulk/tail ESS, min BFMI, depth hits.

    Parameters
    ----------
    params : sequence of xarray.DataArray
        Draws (``chain``, ``draw``, ...) of the parameters to check; constant entries
        (R-hat undefined) are skipped.
    sample_stats : xarray.Dataset
        The sampler's statistics (``diverging``, ``energy``, tree depth).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = np.concatenate([np.ravel(azs.rhat(d).values) for d in params]) if params else np.array([np.nan])
        bulk = np.concatenate([np.ravel(azs.ess(d, method="bulk").values) for d in params]) if params else rhat
        tail = np.concatenate([np.ravel(azs.ess(d, method="tail").values) for d in params]) if params else rhat
        worst_rhat, least_bulk, least_tail = np.nanmax(rhat), np.nanmin(bulk), np.nanmin(tail)  # NaN: one chain
    div = sample_stats["diverging"] if "diverging" in sample_stats else None
    depth = next((sample_stats[k] for k in ("maxdepth_reached", "reached_max_treedepth") if k in sample_stats), None)
    bfmi = float(azs.bfmi(sample_stats)["energy"].min()) if "energy" in sample_stats else np.nan
    return {
        "divergences": int(div.values.sum()) if div is not None else 0,
        "max_r_hat": float(worst_rhat),
        "min_ess_bulk": float(least_bulk),
        "min_ess_tail": float(least_tail),
        "min_bfmi": bfmi,
        "treedepth_hits": int(depth.values.sum()) if depth is not None else 0,
    }


def reliability_problems(diagnostics: dict[str, Any]) -> list[str]:
    """What makes draws untrustworthy: divergences, R-hat above 1.01, bulk ESS below 400."""
    d = diagnostics
    problems = []
    if d["divergences"] > 0:
        problems.append(f"{d['divergences']} divergent transitions")
    if d["max_r_hat"] > 1.01:
        problems.append(f"max R-hat {d['max_r_hat']:.3f} > 1.01")
    if d["min_ess_bulk"] < 400:
        problems.append(f"min bulk ESS {d['min_ess_bulk']:.0f} < 400")
    return problems


@dataclass(frozen=True)
class Summary:
    """lme4-style summary: prints as text, shows as HTML tables in notebooks."""

    header: str
    varcorr: pd.DataFrame
    fixef: pd.DataFrame
    diagnostics: dict[str, Any]
    footer: str

    def __str__(self) -> str:
        vc = self.varcorr[["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]]
        fx = self.fixef[["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]]
        return "\n".join(
            [
                self.header,
                "",
                "Random effects (posterior of SDs and correlations):",
                vc.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                "Fixed effects:",
                fx.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                self.footer,
            ]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "<br>".join(self.header.splitlines())
        return (
            f"<p><b>{head}</b></p><h4>Random effects</h4>{self.varcorr.to_html(float_format='%.4g')}"
            f"<h4>Fixed effects</h4>{self.fixef.to_html(float_format='%.4g')}<p>{self.footer}</p>"
        )

"""Tables of draws and the sampler's health, written once for every kind of fit.

:func:`summarize_draws` is arviz-stats' ``summary`` (mean, SD, interval, R-hat, ESS) shaped
as one row per entry of a labelled DataArray; :func:`diagnose` is the health check
(divergences, R-hat, ESS, BFMI, tree depth) over a list of scalar parameters.

Intervals: every table of the package takes ``ci="hdi" | "eti"`` and ``prob=``; the default
is stated once, here (:data:`DEFAULT_CI`, :data:`DEFAULT_PROB`: ArviZ's 94% highest density
interval). brms and lme4 users, who read 95% equal-tailed intervals, pass
``ci="eti", prob=0.95``. A table's interval columns are named after the kind
(``hdi_low``/``hdi_high`` or ``eti_low``/``eti_high``), so two kinds can never be confused,
and ``table.attrs["interval"]`` says e.g. ``"95% ETI"``.

The tables of fixed effects, variance components, the ICC and shrinkage are ``PosteriorTable`` objects:
DataFrames that print and show in Jupyter through :func:`format_table`, holding every digit. (The
class is left out of ``__all__``: its page would list every method of pandas' DataFrame.)
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.spec import validate

__all__ = [
    "ridge_tip",
    "CI_KINDS",
    "DEFAULT_CI",
    "DEFAULT_PROB",
    "STAT_COLUMNS",
    "Summary",
    "check_interval",
    "diagnose",
    "format_table",
    "interval_bounds",
    "interval_columns",
    "interval_label",
    "reliability_problems",
    "summarize_draws",
]

#: The kinds of posterior interval: highest density (ArviZ's default) or equal-tailed (brms's).
CI_KINDS = ("hdi", "eti")
#: The interval every table reports unless told otherwise (the one place it is stated).
DEFAULT_CI = "hdi"
DEFAULT_PROB = 0.94

STAT_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk", "ess_tail"]
_ROW = "__row__"


def check_interval(ci: Any, prob: Any) -> tuple[str, float]:
    """``ci`` must be one of :data:`CI_KINDS` and ``prob`` a probability; returns them.

    Examples
    --------
    >>> check_interval("eti", 0.95)
    ('eti', 0.95)
    >>> check_interval("95%", 0.95)
    Traceback (most recent call last):
    ...
    ValueError: ci must be one of 'hdi', 'eti', got '95%'; the width goes in prob=, e.g. ci='eti', prob=0.95
    """
    if not isinstance(ci, str) or ci not in CI_KINDS:
        raise ValueError(
            f"ci must be one of {', '.join(map(repr, CI_KINDS))}, got {ci!r}; "
            "the width goes in prob=, e.g. ci='eti', prob=0.95"
        )
    return ci, validate.check_probability(prob, "prob")


def interval_columns(ci: str) -> tuple[str, str]:
    """The names of a table's interval columns for interval kind ``ci``.

    Examples
    --------
    >>> interval_columns("eti")
    ('eti_low', 'eti_high')
    """
    return f"{ci}_low", f"{ci}_high"


def interval_label(ci: str, prob: float) -> str:
    """How a table describes its interval, e.g. ``"95% ETI"``.

    Examples
    --------
    >>> interval_label("hdi", 0.94), interval_label("eti", 0.975)
    ('94% HDI', '97.5% ETI')
    """
    return f"{100 * prob:.4g}% {ci.upper()}"


def interval_bounds(
    draws: xr.DataArray, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB, dim: Sequence[str] = ("chain", "draw")
) -> tuple[xr.DataArray, xr.DataArray]:
    """Lower and upper bounds of the ``prob`` interval of kind ``ci`` over ``dim``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(1001.0).reshape(1, 1001), dims=("chain", "draw"))
    >>> low, high = interval_bounds(da, ci="eti", prob=0.9)
    >>> round(float(low), 6), round(float(high), 6)
    (50.0, 950.0)
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    ci, prob = check_interval(ci, prob)
    bounds = (azs.hdi if ci == "hdi" else azs.eti)(draws, prob=prob, dim=list(dim))
    return bounds.sel(ci_bound="lower", drop=True), bounds.sel(ci_bound="upper", drop=True)


def summarize_draws(
    draws: xr.DataArray, *, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB, diagnostics: bool = True
) -> pd.DataFrame:
    """One row per entry of ``draws`` (dims chain, draw, ...): mean, sd, interval, R-hat, ESS.

    The numbers are arviz-stats' ``summary`` (HDI or equal-tailed intervals,
    rank-normalised R-hat, bulk and tail ESS); the rows are indexed by the remaining
    dims' labels.

    Parameters
    ----------
    draws : xarray.DataArray
    ci : {"hdi", "eti"}
        Highest density or equal-tailed interval; the columns are ``{ci}_low``, ``{ci}_high``.
    prob : float
        The interval's probability.
    diagnostics : bool
        Add R-hat and ESS.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 500, 2)), dims=("chain", "draw", "k"),
    ...                   coords={"k": ["a", "b"]})
    >>> summarize_draws(da).columns.tolist()
    ['mean', 'sd', 'hdi_low', 'hdi_high', 'r_hat', 'ess_bulk', 'ess_tail']
    >>> t = summarize_draws(da, ci="eti", prob=0.95, diagnostics=False)
    >>> t.columns.tolist(), t.attrs["interval"]
    (['mean', 'sd', 'eti_low', 'eti_high'], '95% ETI')
    """
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

    ci, prob = check_interval(ci, prob)
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
            ci_prob=prob, ci_kind=ci, round_to="none",
        )["x"]
    names = [str(s) for s in table["summary"].values]
    low = next(n for n in names if n.endswith("_lb"))
    high = next(n for n in names if n.endswith("_ub"))
    ours_low, ours_high = interval_columns(ci)
    columns = {"mean": "mean", "sd": "sd", ours_low: low, ours_high: high}
    if diagnostics:
        columns.update(r_hat="r_hat", ess_bulk="ess_bulk", ess_tail="ess_tail")
    out = {ours: table.sel(summary=theirs).values for ours, theirs in columns.items()}
    if len(extra) == 1:
        index = pd.Index(stacked[_ROW].values, name=extra[0])
    elif extra:
        index = stacked.indexes[_ROW]
    else:
        index = pd.Index([draws.name])
    table = pd.DataFrame(out, index=index)
    table.attrs["interval"] = interval_label(ci, prob)
    return table


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
    import arviz_stats as azs  # at first use: `import lmm_bayes` stays light

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


#: two coefficients correlated beyond this in the posterior (on the working scale) explain slow mixing
RIDGE_CORRELATION = 0.9


def ridge_tip(beta_working: xr.DataArray, slow: Sequence[str]) -> str | None:
    """The remedy when coefficients mix slowly along a posterior correlation, or None.

    ``beta_working`` holds the draws of β on the scale the sampler used (centred, scaled
    columns: :meth:`~lmm_bayes.inference.standardize.Standardization.to_working`), where a
    correlation is the sampler's problem and not the parameterisation's (the raw intercept
    and slope of ``Days + 100`` correlate near -1 however well they mix); ``slow`` names the
    coefficients whose R-hat or bulk ESS failed. More draws only crawl along such a ridge.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = np.random.default_rng(0).normal(size=(2, 200))
    >>> beta = xr.DataArray(np.stack([x, x + 0.01 * x[::-1]], -1), dims=("chain", "draw", "coef"),
    ...                     coords={"coef": ["trt", "lbase:trt"]})
    >>> ridge_tip(beta, ["trt"])[:44]
    'beta[trt] and beta[lbase:trt] are correlated'
    """
    names = [str(c) for c in beta_working["coef"].values]
    if len(names) < 2 or not slow:
        return None
    draws = beta_working.transpose("chain", "draw", "coef").values.reshape(-1, len(names))
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.corrcoef(draws, rowvar=False)
    R = np.nan_to_num(R)
    np.fill_diagonal(R, 0.0)
    rows = [names.index(n) for n in slow if n in names]
    if not rows:
        return None
    i, j = max(((i, j) for i in rows for j in range(len(names))), key=lambda ij: abs(R[ij]))
    if abs(R[i, j]) < RIDGE_CORRELATION:
        return None
    return (
        f"beta[{names[i]}] and beta[{names[j]}] are correlated {R[i, j]:+.2f} in the posterior even with "
        "centred, scaled predictors: more draws only crawl along that ridge. Center the variables inside "
        "an interaction (center(x) * group), drop one of the two if they say the same, or fit with "
        "adaptation='low_rank' (a mass matrix that learns the correlation)"
    )


@dataclass(frozen=True)
class Summary:
    """lme4-style summary: prints as text, shows as HTML tables in notebooks."""

    header: str
    varcorr: pd.DataFrame
    fixef: pd.DataFrame
    diagnostics: dict[str, Any]
    footer: str

    def __str__(self) -> str:
        return "\n".join(
            [
                self.header,
                "",
                "Random effects (posterior of SDs and correlations; variance = posterior mean of the SD squared):",
                format_table(self.varcorr.drop(columns="ess_tail")).to_string(),
                "",
                "Fixed effects:",
                format_table(self.fixef.drop(columns="ess_tail")).to_string(),
                "",
                self.footer,
            ]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "<br>".join(self.header.splitlines())
        return (
            f"<p><b>{head}</b></p><h4>Random effects</h4>{format_table(self.varcorr).to_html()}"
            f"<h4>Fixed effects</h4>{format_table(self.fixef).to_html()}<p>{self.footer}</p>"
        )


#: columns printed with a fixed number of decimals whatever the row (R-hat to 3, ESS and counts to 0)
_FIXED_DECIMALS = {"r_hat": 3, "ess_bulk": 0, "ess_tail": 0, "n_rows": 0, "n_obs": 0, "rank": 0}
#: columns printed with the decimals their row's ``sd`` calls for (every kind's interval columns)
_ESTIMATE_COLUMNS = ("mean", "median", "sd", *(c for kind in CI_KINDS for c in interval_columns(kind)))


def _decimals_for(scale: float) -> int:
    """Decimals that show two significant digits of ``scale`` (0 to 6): 7.0 -> 1, 0.31 -> 2, 250 -> 0."""
    if not np.isfinite(scale) or scale <= 0:
        return 2
    return int(np.clip(1 - np.floor(np.log10(scale)), 0, 6))


def format_table(df: pd.DataFrame, *, sd: Sequence[float] | np.ndarray | None = None,
                 estimates: Sequence[str] = ()) -> pd.DataFrame:
    """The table as text with sensible fixed decimals, for printing and the report.

    An estimate (mean, sd, interval ends) gets the decimals that show its row's posterior
    SD to two significant digits, so a row's numbers line up and no digit is noise;
    R-hat gets 3 decimals, ESS none, and any other numeric column the decimals of its
    largest value to three significant digits. Text stays text.

    Parameters
    ----------
    df : pandas.DataFrame
    sd : array of float, optional
        Each row's posterior SD, for a table without an ``sd`` column.
    estimates : sequence of str
        Columns that are estimates besides mean, sd and the interval ends.

    Examples
    --------
    >>> t = pd.DataFrame({"mean": [251.41, 0.0691], "sd": [6.97, 0.31], "r_hat": [1.0, 0.9997]},
    ...                  index=["Intercept", "corr"])
    >>> format_table(t).to_dict("index")
    {'Intercept': {'mean': '251.4', 'sd': '7.0', 'r_hat': '1.000'}, 'corr': {'mean': '0.07', 'sd': '0.31', 'r_hat': '1.000'}}
    """
    out = pd.DataFrame(index=df.index)
    scale = df["sd"] if sd is None and "sd" in df.columns else sd
    row_decimals = None if scale is None else np.array([_decimals_for(abs(float(v))) for v in scale])
    for col in df.columns:
        values = df[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[col] = values.astype(str)
            continue
        numbers = values.to_numpy(dtype=float)
        if col in _FIXED_DECIMALS:
            decimals = np.full(len(numbers), _FIXED_DECIMALS[col])
        elif row_decimals is not None and (col in _ESTIMATE_COLUMNS or col in estimates):
            decimals = row_decimals
        else:
            finite = np.abs(numbers[np.isfinite(numbers)])
            top = float(finite.max()) if finite.size else 0.0
            decimals = np.full(len(numbers), _decimals_for(top / 10) if top > 0 else 2)
        out[col] = [("" if not np.isfinite(v) else f"{v:.{int(d)}f}") for v, d in zip(numbers, decimals)]
    return out


class PosteriorTable(pd.DataFrame):
    """A table of posterior summaries: shown rounded (:func:`format_table`), holding every digit.

    ``print(table)`` and a notebook show each estimate to the decimals its posterior SD
    supports, with a line saying what the interval is (and, for the ICC, at which values of
    the random slopes' variables it is taken); the data, ``table.loc[...]``, ``.to_numpy()``
    and ``.to_csv()`` keep full precision. It is a DataFrame in every other way, and a table
    derived from it (``.head()``, a selection of rows or columns) is shown the same way;
    ``pd.DataFrame(table)`` is the plain frame.

    Examples
    --------
    >>> t = PosteriorTable({"mean": [251.405105], "sd": [6.97]}, index=["Intercept"])
    >>> t.attrs["interval"] = "94% HDI"
    >>> print(t)
                mean   sd
    Intercept  251.4  7.0
    (94% HDI; rounded to the posterior SD, the data keep every digit)
    >>> float(t.loc["Intercept", "mean"]), type(t.head(1)).__name__, type(pd.DataFrame(t)).__name__
    (251.405105, 'PosteriorTable', 'DataFrame')
    """

    @property
    def _constructor(self) -> type[PosteriorTable]:
        return type(self)

    @classmethod
    def of(cls, df: pd.DataFrame) -> PosteriorTable:
        """``df``'s data and attrs as a :class:`PosteriorTable`."""
        out = cls(df)
        out.attrs = dict(df.attrs)
        return out

    def display_sd(self) -> np.ndarray | None:
        """Each row's posterior SD for rounding; None: the ``sd`` column (a subclass may say otherwise)."""
        return None

    def display_estimates(self) -> tuple[str, ...]:
        """The columns rounded like the estimates besides mean, sd and the interval ends."""
        return ()

    def footer(self) -> str:
        notes = [str(self.attrs[k]) for k in ("interval", "intervals", "scale") if self.attrs.get(k)]
        at = self.attrs.get("at")  # the ICC's: with random slopes it depends on their variables' values
        if at and at != "no random slopes":
            notes.append(f"variance shares {at}; fit.icc(at={{...}}) for other values")
        return f"({'; '.join(notes + ['rounded to the posterior SD, the data keep every digit'])})"

    def formatted(self) -> pd.DataFrame | None:
        """The table as text, as it is shown; None where a derived table lost its rows' SDs."""
        sd = self.display_sd()
        if sd is None and not ("sd" in self.columns and pd.api.types.is_numeric_dtype(self["sd"])):
            return None  # e.g. transposed, or a selection without the SD: shown as it is
        try:
            return format_table(pd.DataFrame(self), sd=sd, estimates=self.display_estimates())
        except (KeyError, TypeError, ValueError):  # a derived table the rule does not fit
            return None

    def __repr__(self) -> str:
        shown = self.formatted()
        return pd.DataFrame.__repr__(self) if shown is None else f"{shown!r}\n{self.footer()}"

    def _repr_html_(self) -> str:
        shown = self.formatted()
        if shown is None:
            return pd.DataFrame._repr_html_(self)
        return f"{shown._repr_html_()}<p><small>{html.escape(self.footer())}</small></p>"

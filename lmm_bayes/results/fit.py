"""``Fit``: what a user reads from a fitted model (tables are pandas, draws are xarray).

Summaries are computed from ``fit.idata`` (an ArviZ DataTree); nothing here samples.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.spec import validate
from lmm_bayes.inference.graph import covariance_values
from lmm_bayes.spec.priors import Priors

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import LMM

__all__ = ["Fit", "Summary", "summarize_draws"]

STAT_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk", "ess_tail"]


def summarize_draws(draws: xr.DataArray, *, hdi_prob: float = 0.94, diagnostics: bool = True) -> pd.DataFrame:
    """One row per entry of ``draws`` (dims chain, draw, ...): mean, sd, HDI, R-hat, ESS.

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
        stacked = draws.rename({extra[0]: "__row__"})
    elif extra:
        stacked = draws.stack(__row__=extra)
    else:
        stacked = draws.expand_dims(__row__=[0])
    stacked = stacked.transpose("chain", "draw", "__row__")
    hdi = az.hdi(stacked, prob=hdi_prob, dim=["chain", "draw"])
    out = {
        "mean": stacked.mean(("chain", "draw")).values,
        "sd": stacked.std(("chain", "draw"), ddof=1).values,
        "hdi_low": hdi.sel(ci_bound="lower").values,
        "hdi_high": hdi.sel(ci_bound="upper").values,
    }
    if diagnostics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["r_hat"] = az.rhat(stacked).values
            out["ess_bulk"] = az.ess(stacked, method="bulk").values
            out["ess_tail"] = az.ess(stacked, method="tail").values
    if len(extra) == 1:
        index = pd.Index(stacked["__row__"].values, name=extra[0])
    elif extra:
        index = stacked.indexes["__row__"]
    else:
        index = pd.Index([draws.name])
    return pd.DataFrame(out, index=index)


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


class Fit:
    """A fitted model: the draws (``idata``), the model, and readable summaries.

    Obtain one from :meth:`lmm_bayes.LMM.fit` or :func:`lmm_bayes.load`.

    Attributes
    ----------
    idata : xarray.DataTree
        posterior, sample_stats, observed_data, constant_data, log_likelihood.
    model : LMM
    """

    def __init__(self, idata: xr.DataTree, model: LMM):
        self._idata = idata
        self._model = model

    # ---------------------------------------------------------------- basics
    @property
    def idata(self) -> xr.DataTree:
        return self._idata

    @property
    def model(self) -> LMM:
        return self._model

    @property
    def design(self) -> Design:
        return self._model.design

    @property
    def priors(self) -> Priors:
        """The priors the fit used."""
        return Priors.from_dict(json.loads(self._idata.attrs["priors"]))

    @property
    def posterior(self) -> xr.Dataset:
        return self._idata["posterior"].to_dataset()

    @property
    def method(self) -> str:
        return str(self._idata.attrs["method"])

    @property
    def sampler(self) -> str:
        return str(self._idata.attrs["sampler"])

    def __repr__(self) -> str:
        a = self._idata.attrs
        return (
            f"<lmm_bayes.Fit {a['formula']!r}: method={a['method']}, sampler={a['sampler']}, "
            f"{a['chains']} chains x {a['draws']} draws>"
        )

    def _group(self, group: str) -> GroupDesign:
        return validate.check_group(self.design, group)

    # ---------------------------------------------------------------- tables
    def fixef(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Fixed effects β: one row per coefficient.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``coef``; columns mean, sd, hdi_low, hdi_high, r_hat, ess_bulk, ess_tail.
        """
        table = summarize_draws(self.posterior["beta"], hdi_prob=hdi_prob)
        table.index.name = "coef"
        return table

    def varcorr(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Variance components as SDs and correlations, plus the residual SD.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``group``, ``term``): ``sd(Intercept)``, ``corr(Intercept,Days)``,
            and (``Residual``, ``sigma``).
        """
        post = self.posterior
        pieces, keys = [], []
        for g in self.design.groups:
            sd = summarize_draws(post[f"{g.name}_sd"], hdi_prob=hdi_prob)
            pieces.append(sd)
            keys += [(g.name, f"sd({e})") for e in sd.index]
            if g.correlated:
                corr = post[f"{g.name}_corr"]
                for block in g.blocks:
                    for a in range(len(block)):
                        for c in range(a + 1, len(block)):
                            i, j = block[a], block[c]
                            da = corr.isel({g.effect_dim: i, f"{g.effect_dim}_bis": j}, drop=True)
                            pieces.append(summarize_draws(da.rename("corr"), hdi_prob=hdi_prob))
                            keys.append((g.name, f"corr({g.effects[i]},{g.effects[j]})"))
        pieces.append(summarize_draws(post["sigma"].rename("sigma"), hdi_prob=hdi_prob))
        keys.append(("Residual", "sigma"))
        table = pd.concat(pieces, ignore_index=True)
        table.index = pd.MultiIndex.from_tuples(keys, names=["group", "term"])
        return table

    def ranef(self, group: str, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Cluster deviations b of one grouping factor.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``level``, ``effect``).
        """
        g = self._group(group)
        table = summarize_draws(self.posterior[f"{g.name}_b"], hdi_prob=hdi_prob)
        table.index = table.index.set_names(["level", "effect"])
        return table

    def coef_draws(self, group: str) -> xr.DataArray:
        """Draws of the cluster-specific effects β + b, dims (chain, draw, level, effect)."""
        g = self._group(group)
        post = self.posterior
        b = post[f"{g.name}_b"]
        beta = post["beta"]
        fixed = xr.concat(
            [
                beta.sel(coef=e, drop=True) if e in self.design.X_columns else xr.zeros_like(beta.isel(coef=0, drop=True))
                for e in g.effects
            ],
            dim=g.effect_dim,
        ).assign_coords({g.effect_dim: list(g.effects)})
        return (b + fixed).rename(f"{g.name}_coef")

    def coef(self, group: str, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Cluster-specific effects β + b (an effect without a fixed part is b alone).

        Returns
        -------
        pandas.DataFrame
            Indexed by (``level``, ``effect``), same shape as :meth:`ranef`.
        """
        table = summarize_draws(self.coef_draws(group), hdi_prob=hdi_prob)
        table.index = table.index.set_names(["level", "effect"])
        return table

    def variance_draws(self, *, at: Mapping[str, float] | None = None) -> xr.DataArray:
        """Per-draw variance of each factor's contribution at predictor values ``at``, and σ².

        dims (chain, draw, component) with components the factor names and ``"Residual"``.
        """
        post = self.posterior
        at = dict(at or {})
        parts, names = [], []
        for g in self.design.groups:
            z = np.array([1.0 if e == "Intercept" else float(at.get(e, 0.0)) for e in g.effects])
            parts.append(np.einsum("i,cdij,j->cd", z, covariance_values(post, g), z))
            names.append(g.name)
        parts.append(post["sigma"].values ** 2)
        names.append("Residual")
        return xr.DataArray(
            np.stack(parts, axis=-1), dims=("chain", "draw", "component"), coords={"component": names}
        )

    def icc(self, *, at: Mapping[str, float] | None = None, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Intraclass correlation / variance partition, per draw then summarised.

        Each row is a component's share of the total variance at predictor values
        ``at`` (default: every slope's variable at 0, the intercept at 1), so shares
        sum to 1 in every draw. With one random-intercept factor, its share is the
        ICC σ_b² / (σ_b² + σ²). With random slopes the variance depends on x, and
        ``df.attrs["at"]`` says at which values it was evaluated.

        Parameters
        ----------
        at : mapping, optional
            Values of the random-slope effects, e.g. ``{"Days": 5}``.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``component`` (factors, then ``Residual``); mean, sd, hdi_low, hdi_high.
        """
        if at is not None and not isinstance(at, Mapping):
            raise TypeError(f"at must be a dict of effect values like {{'Days': 5}}, got {type(at).__name__}")
        effects = {e for g in self.design.groups for e in g.effects if e != "Intercept"}
        unknown = set(at or {}) - effects
        if unknown:
            raise ValueError(f"at names {sorted(unknown)}, which are not random slopes; slopes: {sorted(effects)}")
        v = self.variance_draws(at=at)
        share = (v / v.sum("component")).rename("share")
        table = summarize_draws(share, hdi_prob=hdi_prob, diagnostics=False)
        table.index.name = "component"
        slopes = sorted(effects)
        where = {e: float((at or {}).get(e, 0.0)) for e in slopes}
        table.attrs["at"] = (
            f"evaluated at {', '.join(f'{k}={v:g}' for k, v in where.items())}" if slopes else "no random slopes"
        )
        return table

    # ---------------------------------------------------------------- health
    def diagnostics(self) -> dict[str, Any]:
        """Sampler health: divergences, max R-hat, min bulk/tail ESS, min BFMI, tree-depth hits.

        R-hat and ESS are taken over β, σ, the SDs and the correlations.
        """
        post = self.posterior
        stats = self._idata["sample_stats"].to_dataset()
        hyper = []
        for name in post.data_vars:
            if name.endswith("_b"):
                continue
            da = post[name]
            if name.endswith("_corr"):
                dims = [d for d in da.dims if d not in ("chain", "draw")]
                i, j = np.triu_indices(da.sizes[dims[0]], k=1)
                flat = da.values[..., i, j]
                if flat.shape[-1] == 0:
                    continue
                da = xr.DataArray(flat, dims=("chain", "draw", "pair"))
            hyper.append(da)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = np.concatenate([np.atleast_1d(az.rhat(d).values).ravel() for d in hyper])
            bulk = np.concatenate([np.atleast_1d(az.ess(d, method="bulk").values).ravel() for d in hyper])
            tail = np.concatenate([np.atleast_1d(az.ess(d, method="tail").values).ravel() for d in hyper])
        div = stats["diverging"] if "diverging" in stats else None
        depth = next((stats[k] for k in ("maxdepth_reached", "reached_max_treedepth") if k in stats), None)
        bfmi = np.nan
        if "energy" in stats:
            e = stats["energy"].values
            bfmi = float(np.min(np.sum(np.diff(e, axis=1) ** 2, axis=1) / (e.shape[1] * np.var(e, axis=1))))
        return {
            "divergences": int(div.values.sum()) if div is not None else 0,
            "max_r_hat": float(np.nanmax(rhat)),
            "min_ess_bulk": float(np.nanmin(bulk)),
            "min_ess_tail": float(np.nanmin(tail)),
            "min_bfmi": bfmi,
            "treedepth_hits": int(depth.values.sum()) if depth is not None else 0,
        }

    def _warn_if_unreliable(self) -> None:
        d = self.diagnostics()
        problems = []
        if d["divergences"] > 0:
            problems.append(f"{d['divergences']} divergent transitions")
        if d["max_r_hat"] > 1.01:
            problems.append(f"max R-hat {d['max_r_hat']:.3f} > 1.01")
        if d["min_ess_bulk"] < 400:
            problems.append(f"min bulk ESS {d['min_ess_bulk']:.0f} < 400")
        if not problems:
            return
        tips = ["more draws and tuning (draws=2000, tune=2000)", "target_accept=0.95"]
        if self.method == "full":
            tips.insert(0, "method='collapsed' (no funnel)")
        from lmm_bayes.errors import SamplingWarning

        warnings.warn(
            f"the draws may not be reliable: {', '.join(problems)}. Try {'; '.join(tips)}; "
            "see fit.diagnostics()",
            SamplingWarning,
            stacklevel=4,
        )

    # ---------------------------------------------------------------- summary
    def summary(self, *, hdi_prob: float = 0.94) -> Summary:
        """lme4-style overview: formula, rows, groups, variance components, fixed effects, diagnostics."""
        a = self._idata.attrs
        d = self.design
        groups = ", ".join(f"{g.name} {g.n_levels}" for g in d.groups) or "none"
        diag = self.diagnostics()
        pct = f"{hdi_prob:.0%}"
        header = (
            f"Bayesian linear mixed model fit by {a['sampler']} (method: {a['method']})\n"
            f"Formula: {a['formula']}\n"
            f"Rows: {d.n}; groups: {groups}; intervals: {pct} HDI"
        )
        footer = (
            f"{a['chains']} chains x {a['draws']} draws ({a['tune']} tuning); "
            f"divergences {diag['divergences']}; max R-hat {diag['max_r_hat']:.3f}; "
            f"min bulk ESS {diag['min_ess_bulk']:.0f}; min tail ESS {diag['min_ess_tail']:.0f}"
        )
        return Summary(
            header=header,
            varcorr=self.varcorr(hdi_prob=hdi_prob),
            fixef=self.fixef(hdi_prob=hdi_prob),
            diagnostics=diag,
            footer=footer,
        )

    # ---------------------------------------------------------------- elsewhere
    def shrinkage(self, group: str, **kwargs: Any) -> pd.DataFrame:
        """No- vs partial-pooling estimates per cluster; see :func:`lmm_bayes.results.shrinkage.shrinkage`."""
        from lmm_bayes.results.shrinkage import shrinkage

        return shrinkage(self, group, **kwargs)

    def contextual_effect(self, within: str, between: str, **kwargs: Any) -> pd.DataFrame:
        """Between-minus-within effect; see :func:`lmm_bayes.results.contextual.contextual_effect`."""
        from lmm_bayes.results.contextual import contextual_effect

        return contextual_effect(self, within, between, **kwargs)

    def implied_covariance(self, rows: Any, **kwargs: Any) -> pd.DataFrame:
        """Model-implied Var(y) = Z G Zᵀ + σ² I; see :func:`lmm_bayes.results.covariance.implied_covariance`."""
        from lmm_bayes.results.covariance import implied_covariance

        return implied_covariance(self, rows, **kwargs)

    def predict(self, data: pd.DataFrame | None = None, **kwargs: Any) -> xr.DataArray:
        """Draws of predictions; see :func:`lmm_bayes.results.predict.predict`."""
        from lmm_bayes.results.predict import predict

        return predict(self, data, **kwargs)

    def predict_summary(self, data: pd.DataFrame | None = None, **kwargs: Any) -> pd.DataFrame:
        """Mean and interval of predictions per row; see :func:`lmm_bayes.results.predict.predict_summary`."""
        from lmm_bayes.results.predict import predict_summary

        return predict_summary(self, data, **kwargs)

    def posterior_predictive(self, **kwargs: Any) -> Fit:
        """Add a posterior_predictive group; see :func:`lmm_bayes.results.predict.posterior_predictive`."""
        from lmm_bayes.results.predict import posterior_predictive

        return posterior_predictive(self, **kwargs)

    def plot_ppc(self, **kwargs: Any):
        """Posterior predictive check plot; see :func:`lmm_bayes.teaching.plots.plot_ppc`."""
        from lmm_bayes.teaching.plots import plot_ppc

        return plot_ppc(self, **kwargs)

    def save(self, path: Any) -> None:
        """Write the fit to one netCDF file; see :func:`lmm_bayes.results.io.save`."""
        from lmm_bayes.results.io import save

        save(self, path)

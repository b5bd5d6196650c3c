"""The no-pooling and complete-pooling models that :func:`lmm_bayes.compare_pooling` fits.

Both are built straight from the mixed model's :class:`~lmm_bayes.spec.design.Design`, so all
three poolings are fitted to the same rows and compared by LOO on the same observations.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from lmm_bayes.results.shrinkage import (
    _normal_equations,
)
from lmm_bayes.results.summary import summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import LMM

__all__ = ["PoolingFit"]

_FIT_ARGS = (
    "draws",
    "tune",
    "chains",
    "sampler",
    "method",
    "target_accept",
    "seed",
    "progressbar",
    "centered",
    "log_likelihood",
)


# ====================================================================== no / complete pooling fits


class PoolingFit:
    """A no- or complete-pooling fit made by :func:`compare_pooling`.

    Same reading API as :class:`~lmm_bayes.Fit` where it makes sense:
    ``idata`` (posterior, sample_stats, observed_data, log_likelihood),
    ``posterior``, ``design`` (the mixed model's design), :meth:`fixef`,
    :meth:`coef`, :meth:`coef_draws`, :meth:`diagnostics`.

    Posterior variables: ``beta`` (dim ``coef``: the coefficients shared by all
    clusters), ``sigma``, and for no pooling ``{g}_coef`` (dims ``{g}``,
    ``{g}_effect``: every cluster's own coefficients).
    """

    def __init__(self, idata: xr.DataTree, design: Design, pooling: str, group: str):
        self._idata = idata
        self._design = design
        self._pooling = pooling
        self._group = group

    @property
    def idata(self) -> xr.DataTree:
        return self._idata

    @property
    def design(self) -> Design:
        return self._design

    @property
    def pooling(self) -> str:
        """``"no_pooling"`` or ``"complete_pooling"``."""
        return self._pooling

    @property
    def posterior(self) -> xr.Dataset:
        return self._idata["posterior"].to_dataset()

    def __repr__(self) -> str:
        a = self._idata.attrs
        return (
            f"<lmm_bayes.PoolingFit {self._pooling} for {a['formula']!r}: sampler={a['sampler']}, "
            f"{a['chains']} chains x {a['draws']} draws>"
        )

    def fixef(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """The coefficients shared by every cluster (all of X for complete pooling), as :meth:`Fit.fixef`."""
        table = summarize_draws(self.posterior["beta"], hdi_prob=hdi_prob)
        table.index.name = "coef"
        return table

    def coef_draws(self, group: str) -> xr.DataArray:
        """Draws of every cluster's effects, dims (chain, draw, level, effect), like :meth:`Fit.coef_draws`.

        Complete pooling gives every cluster the same (fixed) values, 0 for an
        effect without a fixed part.
        """
        g = validate.check_group(self._design, group)
        if g.name != self._group:
            raise ValueError(f"this fit compares poolings over {self._group!r}, not {g.name!r}")
        post = self.posterior
        if self._pooling == "no_pooling":
            return post[f"{g.name}_coef"].rename(f"{g.name}_coef")
        beta = post["beta"]
        zero = (
            xr.zeros_like(beta.isel(coef=0, drop=True))
            if beta.sizes["coef"]
            else xr.zeros_like(post["sigma"])
        )
        per_effect = xr.concat(
            [beta.sel(coef=e, drop=True) if e in self._design.X_columns else zero for e in g.effects],
            dim=g.effect_dim,
        ).assign_coords({g.effect_dim: list(g.effects)})
        levels = xr.DataArray(np.zeros(g.n_levels), dims=g.name, coords={g.name: list(g.levels)})
        return (per_effect + levels).transpose("chain", "draw", g.name, g.effect_dim).rename(f"{g.name}_coef")

    def coef(self, group: str, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Every cluster's effects, indexed by (``level``, ``effect``), like :meth:`Fit.coef`."""
        table = summarize_draws(self.coef_draws(group), hdi_prob=hdi_prob)
        table.index = table.index.set_names(["level", "effect"])
        return table

    def diagnostics(self) -> dict[str, Any]:
        """Divergences, and max R-hat and min bulk ESS of the shared parameters (``beta``, ``sigma``).

        As :meth:`Fit.diagnostics` leaves out the clusters' b, the clusters' own
        coefficients are left out here; read them with ``arviz.rhat(fit.posterior)``.
        """
        post = self.posterior
        shared = [post[v] for v in ("beta", "sigma") if v in post and post[v].size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rhat = np.concatenate([np.atleast_1d(az.rhat(d).values).ravel() for d in shared])
            ess = np.concatenate([np.atleast_1d(az.ess(d, method="bulk").values).ravel() for d in shared])
        s = self._idata["sample_stats"].to_dataset()
        div = int(s["diverging"].values.sum()) if "diverging" in s else 0
        return {
            "divergences": div,
            "max_r_hat": float(np.nanmax(rhat)),
            "min_ess_bulk": float(np.nanmin(ess)),
        }

    def _warn_if_unreliable(self) -> None:
        from lmm_bayes.errors import SamplingWarning

        d = self.diagnostics()
        problems = []
        if d["divergences"]:
            problems.append(f"{d['divergences']} divergent transitions")
        if d["max_r_hat"] > 1.01:
            problems.append(f"max R-hat {d['max_r_hat']:.3f} > 1.01")
        if d["min_ess_bulk"] < 400:
            problems.append(f"min bulk ESS {d['min_ess_bulk']:.0f} < 400")
        if problems:
            warnings.warn(
                f"the {self._pooling.replace('_', ' ')} draws may not be reliable: {', '.join(problems)}; "
                "try more draws and tuning",
                SamplingWarning,
                stacklevel=5,
            )


def _aliased_with_clusters(design: Design, g: GroupDesign, shared: list[int]) -> list[str]:
    """Shared fixed columns a no-pooling model cannot tell apart from the clusters' own effects.

    A column is aliased when, after projecting out every cluster's own effects
    within the cluster, nothing of it (or of it beyond the columns before it) is left.
    """
    if not shared:
        return []
    Xs = design.X[:, shared]
    A = _normal_equations(g)
    Ainv = np.linalg.pinv(A, rcond=1e-10, hermitian=True)
    C = np.zeros((g.n_levels, g.n_effects, len(shared)))
    np.add.at(C, g.codes, g.Z[:, :, None] * Xs[:, None, :])
    fitted = np.einsum("nk,nkl,nlp->np", g.Z, Ainv[g.codes], C[g.codes])
    R = Xs - fitted
    scale = np.maximum(np.linalg.norm(Xs, axis=0), 1.0)
    aliased, kept = [], []
    for k in range(len(shared)):
        trial = R[:, kept + [k]] / scale[kept + [k]]
        if np.linalg.matrix_rank(trial, tol=1e-8 * np.sqrt(design.n)) == len(kept):
            aliased.append(design.X_columns[shared[k]])
        else:
            kept.append(k)
    return aliased


def _column_sd(col: np.ndarray) -> float:
    s = float(np.std(col))
    return s if s > 0 and not np.allclose(col, col[0]) else 1.0


def _no_pooling_model(design: Design, g: GroupDesign, shared: list[int], priors, scale: float) -> pm.Model:
    import pymc as pm
    import pytensor.tensor as pt

    from lmm_bayes.inference.graph import add_coefficients, add_sigma

    shared_cols = [design.X_columns[k] for k in shared]
    s_y = _column_sd(design.y)
    centers = np.array([float(np.mean(design.y)) if e == "Intercept" else 0.0 for e in g.effects])
    sds = np.array([scale * s_y / _column_sd(g.Z[:, k]) for k in range(g.n_effects)])
    coords = {
        "coef": shared_cols,
        g.name: list(g.levels),
        g.effect_dim: list(g.effects),
        "obs": np.arange(design.n),
    }
    with pm.Model(coords=coords) as model:
        X = pm.Data("X", design.X[:, shared], dims=("obs", "coef"))
        y = pm.Data("y_obs", design.y, dims="obs")
        codes = pm.Data("codes", g.codes, dims="obs")
        Zg = pm.Data("Z", g.Z, dims=("obs", g.effect_dim))
        coef = pm.Normal(f"{g.name}_coef", mu=centers, sigma=sds, dims=(g.name, g.effect_dim))
        mu = pt.sum(Zg * coef[codes], axis=1)
        if shared:
            beta = add_coefficients([priors.fixed_by_name[c] for c in shared_cols])
            mu = mu + pt.dot(X, beta)
        sigma = add_sigma(priors)
        pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="obs")
    return model


def _complete_pooling_model(design: Design, priors) -> pm.Model:
    import pymc as pm
    import pytensor.tensor as pt

    from lmm_bayes.inference.graph import add_fixed_effects, add_sigma

    coords = {"coef": list(design.X_columns), "obs": np.arange(design.n)}
    with pm.Model(coords=coords) as model:
        X = pm.Data("X", design.X, dims=("obs", "coef"))
        y = pm.Data("y_obs", design.y, dims="obs")
        if design.X.shape[1]:
            mu = pt.dot(X, add_fixed_effects(design, priors))
        else:
            mu = pt.zeros(design.n)
        sigma = add_sigma(priors)
        pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="obs")
    return model


def _sample(build: Callable[[], pm.Model], key: str, updates: dict[str, np.ndarray], kw: dict[str, Any]):
    """Sample a small PyMC model through the fit layer (nutpie's compiled model cached by ``key``)."""
    from lmm_bayes.inference.sampling import run_sampler

    post, stats, _ = run_sampler(
        build, key, lambda: updates,
        sampler=kw["sampler"], draws=kw["draws"], tune=kw["tune"], chains=kw["chains"],
        target_accept=kw["target_accept"], seed=kw["seed"], progressbar=kw["progressbar"],
    )
    return post, stats


def _pooling_fit(
    model: LMM,
    g: GroupDesign,
    pooling: str,
    post: xr.Dataset,
    sample_stats: xr.Dataset,
    mu: np.ndarray,
    priors_description: dict,
    kw: dict[str, Any],
) -> PoolingFit:
    from lmm_bayes.version import __version__

    design = model.design
    obs = np.arange(design.n)
    ll = stats.norm.logpdf(design.y[None, None, :], loc=mu, scale=post["sigma"].values[:, :, None])
    sample = {"chain": post["chain"].values, "draw": post["draw"].values}
    groups = {
        "posterior": post,
        "sample_stats": sample_stats,
        "observed_data": xr.Dataset({"y": ("obs", design.y)}, coords={"obs": obs}),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), ll)}, coords={**sample, "obs": obs}),
    }
    label = (
        "complete pooling (fixed part only)"
        if pooling == "complete_pooling"
        else (f"no pooling (own {', '.join(g.effects)} per {g.name})")
    )
    attrs = {
        "lmm_bayes_version": __version__,
        "formula": model.formula,
        "pooling": pooling,
        "description": label,
        "priors": json.dumps(priors_description),
        "sampler": kw["sampler"],
        "method": "full",
        "seed": -1 if kw["seed"] is None else kw["seed"],
        "draws": kw["draws"],
        "tune": kw["tune"],
        "chains": kw["chains"],
        "target_accept": kw["target_accept"],
    }
    idata = xr.DataTree.from_dict(groups)
    idata.attrs.update(attrs)
    idata["posterior"].attrs.update(attrs)
    fit = PoolingFit(idata, design, pooling, g.name)
    fit._warn_if_unreliable()
    return fit


def _fit_no_pooling(
    model: LMM, g: GroupDesign, shared: list[int], scale: float, kw: dict[str, Any]
) -> PoolingFit:
    design, priors = model.design, model.priors
    shared_cols = [design.X_columns[k] for k in shared]
    key = json.dumps(
        [
            "no_pooling",
            design.n,
            shared_cols,
            g.name,
            g.n_levels,
            g.effects,
            scale,
            priors.to_json(),
            float(np.mean(design.y)),
            _column_sd(design.y),
            [_column_sd(g.Z[:, k]) for k in range(g.n_effects)],
        ],
        default=str,
    )
    updates = {"X": design.X[:, shared], "y_obs": design.y, "codes": g.codes, "Z": g.Z}
    post, st = _sample(lambda: _no_pooling_model(design, g, shared, priors, scale), key, updates, kw)
    coords = {"coef": shared_cols, g.name: list(g.levels), g.effect_dim: list(g.effects)}
    keep = [v for v in ("beta", "sigma", f"{g.name}_coef") if v in post]
    post = post[keep].assign_coords({k: v for k, v in coords.items() if k in post[keep].dims})
    if "beta" not in post:
        post = post.assign(
            beta=xr.DataArray(
                np.zeros(post["sigma"].shape + (0,)), dims=("chain", "draw", "coef"), coords={"coef": []}
            )
        )
    coef = post[f"{g.name}_coef"].values
    mu = np.einsum("cdnk,nk->cdn", coef[:, :, g.codes, :], g.Z)
    if shared:
        mu += np.einsum("cdp,np->cdn", post["beta"].values, design.X[:, shared])
    s_y = _column_sd(design.y)
    described = {
        "shared": {c: priors.fixed_by_name[c].to_dict() for c in shared_cols},
        "sigma": priors.sigma.to_dict(),
        "cluster_coef": {
            e: {
                "dist": "Normal",
                "mu": float(np.mean(design.y)) if e == "Intercept" else 0.0,
                "sigma": scale * s_y / _column_sd(g.Z[:, k]),
            }
            for k, e in enumerate(g.effects)
        },
    }
    return _pooling_fit(model, g, "no_pooling", post, st, mu, described, kw)


def _fit_complete_pooling(model: LMM, g: GroupDesign, kw: dict[str, Any]) -> PoolingFit:
    design, priors = model.design, model.priors
    key = json.dumps(["complete_pooling", design.n, design.X_columns, priors.to_json()], default=str)
    updates = {"X": design.X, "y_obs": design.y}
    post, st = _sample(lambda: _complete_pooling_model(design, priors), key, updates, kw)
    post = post[[v for v in ("beta", "sigma") if v in post]]
    if "beta" in post:
        post = post.assign_coords(coef=list(design.X_columns))
        mu = np.einsum("cdp,np->cdn", post["beta"].values, design.X)
    else:
        post = post.assign(
            beta=xr.DataArray(
                np.zeros(post["sigma"].shape + (0,)), dims=("chain", "draw", "coef"), coords={"coef": []}
            )
        )
        mu = np.zeros(post["sigma"].shape + (design.n,))
    described = {"fixed": {c: p.to_dict() for c, p in priors.fixed}, "sigma": priors.sigma.to_dict()}
    return _pooling_fit(model, g, "complete_pooling", post, st, mu, described, kw)

"""Running a sampler on a model, and attaching provenance and diagnostics.

The compiled nutpie model is cached by the model's structure (design shapes,
factor layout, priors, method): refitting the same structure with new data
(simulation-based calibration, bootstraps, the CLI on a fresh data file of the
same shape) swaps the data in instead of compiling again.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pymc as pm
import xarray as xr

from lmm_bayes.errors import MethodNote, SamplingWarning
from lmm_bayes.inference.graph import build_model, model_coords, posterior_vars
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit
    from lmm_bayes.spec.model import LMM

__all__ = [
    "fit_model",
    "run_sampler",
    "choose_method",
    "SamplingWarning",
    "MethodNote",
    "pointwise_log_likelihood",
    "linear_predictor",
]

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
Method = Literal["auto", "full", "collapsed"]
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
METHODS = ("auto", "full", "collapsed")
#: pointwise log-likelihood is stored when chains × draws × rows is at most this
MAX_LOGLIK_VALUES = 40_000_000

_COMPILED: OrderedDict[str, Any] = OrderedDict()
_CACHE_SIZE = 8


def choose_method(design: Design, method: str) -> tuple[str, str]:
    """Resolve ``method="auto"``; returns (method, note)."""
    validate.check_choice(method, METHODS, "method")
    if method == "full":
        return "full", ""
    from lmm_bayes.inference import collapsed

    ok, why = collapsed.supports(design)
    if method == "collapsed":
        if not ok:
            raise ValueError(f"method='collapsed' cannot be used for this model: {why}; use method='full'")
        return "collapsed", ""
    if ok:
        return "collapsed", ""
    return "full", f"method='auto' chose 'full': {why}"


def _structure_key(design: Design, priors_json: str, method: str, centered: bool) -> str:
    layout = [
        (g.name, g.n_levels, g.effects, g.blocks, g.parent) for g in design.groups
    ]
    # the collapsed graph's shapes do not depend on the number of rows
    rows = None if method == "collapsed" else design.n
    return json.dumps([method, centered, rows, design.X_columns, layout, priors_json], default=str)


def _data_updates(design: Design, method: str) -> dict[str, np.ndarray]:
    if method == "collapsed":
        from lmm_bayes.inference import collapsed

        return collapsed.data_updates(design)
    updates = {"X": design.X, "y_obs": design.y}
    for g in design.groups:
        updates[f"{g.name}_codes"] = g.codes
        updates[f"{g.name}_Z"] = g.Z
    return updates


def _pymc_model(model: LMM, method: str, centered: bool) -> pm.Model:
    if method == "collapsed":
        from lmm_bayes.inference import collapsed

        return collapsed.build_collapsed_model(model.design, model.priors)
    return build_model(model.design, model.priors, centered=centered)


def run_sampler(
    build: Callable[[], pm.Model],
    key: str,
    updates: Callable[[], dict[str, np.ndarray]],
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    seed: int | None,
    progressbar: bool,
):
    """Sample the model ``build()`` makes.

    Returns (posterior, sample_stats, reused): two ``xarray.Dataset`` and whether a
    compiled model was reused.

    With nutpie the compiled model is cached under ``key`` (the model's structure
    and priors); a later call with the same key swaps in ``updates()`` (the
    ``pm.Data`` values by name) instead of compiling again.
    """
    if sampler == "nutpie":
        import nutpie

        compiled = _COMPILED.get(key)
        reused = compiled is not None
        if compiled is None:
            compiled = nutpie.compile_pymc_model(build(), freeze_model=False)
            _COMPILED[key] = compiled
            while len(_COMPILED) > _CACHE_SIZE:
                _COMPILED.popitem(last=False)
        else:
            _COMPILED.move_to_end(key)
            compiled = compiled.with_data(**updates())
        trace = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            progress_bar=progressbar,
            target_accept=target_accept,
            save_warmup=False,
        )
        return _dataset(trace.posterior), _dataset(trace.sample_stats), reused
    if sampler in ("numpyro", "blackjax") and importlib.util.find_spec("jax") is None:
        raise ValueError(
            f"sampler={sampler!r} needs JAX, which is not installed; install it with "
            f"'pip install jax {sampler}', or use sampler='nutpie' (the default) or 'pymc'"
        )
    if sampler in ("numpyro", "blackjax") and importlib.util.find_spec(sampler) is None:
        raise ValueError(f"sampler={sampler!r} needs the {sampler} package: pip install {sampler}")
    with build():
        trace = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            target_accept=target_accept,
            random_seed=seed,
            progressbar=progressbar,
            nuts_sampler=sampler,
            compute_convergence_checks=False,
        )
    return _dataset(trace.posterior), _dataset(trace.sample_stats), False


def _dataset(group) -> xr.Dataset:
    """A sampler's group as a Dataset (samplers return DataTree nodes or Datasets)."""
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def _sample(model: LMM, *, method, sampler, draws, tune, chains, target_accept, seed, progressbar, centered):
    return run_sampler(
        lambda: _pymc_model(model, method, centered),
        _structure_key(model.design, model.priors.to_json(), method, centered),
        lambda: _data_updates(model.design, method),
        sampler=sampler, draws=draws, tune=tune, chains=chains,
        target_accept=target_accept, seed=seed, progressbar=progressbar,
    )


def linear_predictor(design: Design, posterior: xr.Dataset) -> np.ndarray:
    """``X beta + sum_g Z_g b_g[codes]`` for every draw of the fitted rows: array (chain, draw, n)."""
    beta = posterior["beta"].values
    mu = np.einsum("cdp,np->cdn", beta, design.X) if design.X.shape[1] else np.zeros(beta.shape[:2] + (design.n,))
    for g in design.groups:
        b = posterior[f"{g.name}_b"].values  # chain, draw, level, effect
        for j in range(g.n_effects):  # one effect at a time: no (chain, draw, n, q) temporary
            mu += b[:, :, g.codes, j] * g.Z[:, j]
    return mu


def pointwise_log_likelihood(design: Design, posterior: xr.Dataset) -> xr.DataArray:
    """Pointwise Gaussian log-likelihood given β, b and σ, dims (chain, draw, obs).

    Computed one chain at a time, so the peak memory is about one chain's worth.
    """
    ll = np.empty((posterior.sizes["chain"], posterior.sizes["draw"], design.n))
    for c in range(ll.shape[0]):
        one = posterior.isel(chain=[c])
        mu = linear_predictor(design, one)[0]
        sigma = one["sigma"].values[0][:, None]
        ll[c] = -0.5 * ((design.y - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values, "obs": np.arange(design.n)}
    return xr.DataArray(ll, dims=("chain", "draw", "obs"), coords=coords, name="y")


def _posterior(model: LMM, post: xr.Dataset, method: str, seed) -> xr.Dataset:
    design = model.design
    if method == "collapsed":
        from lmm_bayes.inference import collapsed

        b = collapsed.draw_random_effects(design, post, seed=seed)
        post = post.assign(b)
    keep = [v for v in posterior_vars(design) if v in post]
    out = post[keep]
    coords = model_coords(design)
    return out.assign_coords({k: v for k, v in coords.items() if k in out.dims})


def fit_model(
    model: LMM,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "nutpie",
    method: str = "auto",
    target_accept: float = 0.9,
    seed: int | None = None,
    progressbar: bool = True,
    centered: bool = False,
    log_likelihood: bool | Literal["auto"] = "auto",
) -> Fit:
    """Sample the posterior of an :class:`~lmm_bayes.LMM`.

    Parameters
    ----------
    model : LMM
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        The NUTS implementation; numpyro and blackjax need JAX.
    method : {"auto", "full", "collapsed"}
        ``"full"`` samples every cluster's b; ``"collapsed"`` integrates b out of the
        Gaussian likelihood and draws it exactly afterwards (no funnel, cost per
        gradient independent of the rows); ``"auto"`` picks collapsed where it applies.
    target_accept : float
        NUTS target acceptance rate.
    seed : int, optional
        Same seed, same draws.
    progressbar : bool
    centered : bool
        Centered parameterization of the full model (for teaching the funnel).
    log_likelihood : bool or "auto"
        Store the pointwise log-likelihood (needed by LOO); "auto" stores it when
        chains × draws × rows is at most 4e7.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> fit = model.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> bool(9 < fit.fixef().loc["Days", "mean"] < 12)
    True
    """
    from lmm_bayes.results.fit import Fit
    from lmm_bayes.version import __version__

    draws = validate.check_positive_int(draws, "draws")
    tune = validate.check_positive_int(tune, "tune", minimum=0)
    chains = validate.check_positive_int(chains, "chains")
    validate.check_choice(sampler, SAMPLERS, "sampler")
    target_accept = validate.check_probability(target_accept, "target_accept")
    if seed is not None:
        seed = validate.check_positive_int(seed, "seed", minimum=0)
    if not isinstance(progressbar, bool):
        raise TypeError(f"progressbar must be True or False, got {type(progressbar).__name__}")
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(f"log_likelihood must be True, False or 'auto', got {log_likelihood!r}")
    method, note = choose_method(model.design, method)
    if note:
        warnings.warn(note, MethodNote, stacklevel=3)
    if method == "collapsed" and centered:
        raise ValueError("centered=True only applies to method='full'; the collapsed method has no b to center")

    raw_posterior, stats, reused = _sample(
        model, method=method, sampler=sampler, draws=draws, tune=tune, chains=chains,
        target_accept=target_accept, seed=seed, progressbar=progressbar, centered=centered,
    )
    design = model.design
    posterior = _posterior(model, raw_posterior, method, seed)
    groups: dict[str, xr.Dataset] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": xr.Dataset({"y": ("obs", design.y)}, coords={"obs": np.arange(design.n)}),
        "constant_data": _constant_data(design),
    }
    n_values = chains * draws * design.n
    if log_likelihood is True or (log_likelihood == "auto" and n_values <= MAX_LOGLIK_VALUES):
        groups["log_likelihood"] = pointwise_log_likelihood(design, posterior).to_dataset()
    attrs = {
        "lmm_bayes_version": __version__,
        "formula": model.formula,
        "priors": model.priors.to_json(),
        "sampler": sampler,
        "method": method,
        "method_note": note,
        "centered": int(centered),
        "seed": -1 if seed is None else seed,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "target_accept": target_accept,
        "compiled_model_reused": int(reused),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    idata = xr.DataTree.from_dict({k: v for k, v in groups.items()})
    idata.attrs.update(attrs)
    idata["posterior"].attrs.update(attrs)
    fit = Fit(idata=idata, model=model)
    fit._warn_if_unreliable()
    return fit


def _constant_data(design: Design) -> xr.Dataset:
    data = {"X": (("obs", "coef"), design.X)}
    coords: dict[str, Any] = {"obs": np.arange(design.n), "coef": list(design.X_columns)}
    for g in design.groups:
        data[f"{g.name}_codes"] = ("obs", g.codes)
        data[f"{g.name}_Z"] = (("obs", g.effect_dim), g.Z)
        coords[g.effect_dim] = list(g.effects)
    return xr.Dataset(data, coords=coords)


def _warn(message: str) -> None:
    warnings.warn(message, SamplingWarning, stacklevel=4)

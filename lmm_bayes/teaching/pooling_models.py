"""The no-pooling and complete-pooling models that :func:`lmm_bayes.compare_pooling` fits.

Both are built straight from the mixed model's :class:`~lmm_bayes.spec.design.Design`, so all
three poolings are fitted to the same rows and compared by LOO on the same observations.
Each fit is a :class:`~lmm_bayes.results.pooling_fit.PoolingModelFit`.

For a generalized model (:class:`~lmm_bayes.GLMM`) both keep its family, link, offset and
trials (the GLM without groups; the GLM with every cluster's own coefficients, the
cluster as a fixed effect), and their coefficients are on the link scale.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from lmm_bayes import names
from lmm_bayes.inference.layout import (
    BETA,
    codes_name,
    coef_name,
    linear_predictor,
    pointwise_log_likelihood,
    z_name,
)
from lmm_bayes.inference.glm import add_glm_likelihood, glm_data
from lmm_bayes.inference.graph import add_coefficients, add_fixed_effects, add_sigma
from lmm_bayes.inference.sampling import SamplerSettings, run_sampler
from lmm_bayes.results.estimates import normal_equations
from lmm_bayes.results.pooling_fit import PoolingModelFit, shared_columns
from lmm_bayes.spec import validate
from lmm_bayes.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import pymc as pm

    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel as LMM

__all__ = [
    "aliased_with_clusters",
    "check_separable",
    "fit_complete_pooling",
    "fit_no_pooling",
]


# ====================================================================== what no pooling can estimate


def aliased_with_clusters(design: Design, g: GroupDesign) -> list[str]:
    """Shared fixed columns a no-pooling model cannot tell apart from the clusters' own effects.

    A column is aliased when, after projecting out every cluster's own effects
    within the cluster, nothing of it (or of it beyond the columns before it) is left.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("log_radon ~ floor + log_uranium + (1 | county)", lb.datasets.load("radon")).design
    >>> aliased_with_clusters(d, d.group("county"))
    ['log_uranium']
    """
    shared = shared_columns(design, g)
    if not shared:
        return []
    Xs = design.X[:, shared]
    Ainv = np.linalg.pinv(normal_equations(g), rcond=1e-10, hermitian=True)
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


def check_separable(design: Design, g: GroupDesign) -> None:
    """Raise ``ValueError`` when a fixed effect is a cluster-level predictor (:func:`aliased_with_clusters`)."""
    aliased = aliased_with_clusters(design, g)
    if aliased:
        raise ValueError(
            f"fixed effect(s) {aliased} do not vary within the clusters of {g.name!r} (apart from the "
            "clusters' own effects): a no-pooling model cannot tell such cluster-level predictors apart "
            f"from each {g.name}'s own intercept. Remove them from the formula to compare poolings"
        )


# ====================================================================== the graphs


def _column_sd(col: np.ndarray) -> float:
    s = float(np.std(col))
    return s if s > 0 and not np.allclose(col, col[0]) else 1.0


def _cluster_priors(design: Design, g: GroupDesign, scale: float, priors) -> dict[str, dict[str, Any]]:
    """Normal(mean(y) or 0, scale · s_y / s_x) for every cluster's own effects.

    A generalized model's are on the link scale: s_y = 1 (rstanarm's GLM convention) and the
    intercept centred where the mixed model's intercept prior is (the link of the pooled mean).
    """
    gaussian = design.family.is_gaussian
    s_y = _column_sd(design.y) if gaussian else 1.0
    fixed = priors.fixed_by_name.get("Intercept")
    centre = float(np.mean(design.y)) if gaussian else float(fixed.kwargs.get("mu", 0.0)) if fixed else 0.0
    return {
        e: {
            "dist": "Normal",
            "mu": centre if e == "Intercept" else 0.0,
            "sigma": scale * s_y / _column_sd(g.Z[:, k]),
        }
        for k, e in enumerate(g.effects)
    }


def _likelihood(design: Design, priors, mu, y) -> None:
    """The response given the linear predictor ``mu``: Normal with the model's σ prior, or the GLMM's family."""
    import pymc as pm

    if not design.family.is_gaussian:
        add_glm_likelihood(design, priors, mu, y)  # offset, trials, dispersion
        return
    pm.Normal(names.Y, mu=mu, sigma=add_sigma(priors), observed=y, dims=names.OBS)


def _aux_names(design: Design) -> list[str]:
    aux = design.family.aux
    return [aux] if aux else []


def _no_pooling_model(design: Design, g: GroupDesign, shared: list[int], priors, scale: float) -> pm.Model:
    import pymc as pm
    import pytensor.tensor as pt

    shared_cols = [design.X_columns[k] for k in shared]
    own = _cluster_priors(design, g, scale, priors)
    centers = np.array([own[e]["mu"] for e in g.effects])
    sds = np.array([own[e]["sigma"] for e in g.effects])
    coords = {
        names.COEF: shared_cols,
        g.name: list(g.levels),
        g.effect_dim: list(g.effects),
        names.OBS: np.arange(design.n),
    }
    with pm.Model(coords=coords) as model:
        X = pm.Data(names.X, design.X[:, shared], dims=(names.OBS, names.COEF))
        y = pm.Data(names.Y_OBS, design.y, dims=names.OBS)
        codes = pm.Data(codes_name(g), g.codes, dims=names.OBS)
        Zg = pm.Data(z_name(g), g.Z, dims=(names.OBS, g.effect_dim))
        coef = pm.Normal(coef_name(g), mu=centers, sigma=sds, dims=(g.name, g.effect_dim))
        mu = pt.sum(Zg * coef[codes], axis=1)
        if shared:
            beta = add_coefficients([priors.fixed_by_name[c] for c in shared_cols])
            mu = mu + pt.dot(X, beta)
        _likelihood(design, priors, mu, y)
    return model


def _complete_pooling_model(design: Design, priors) -> pm.Model:
    import pymc as pm
    import pytensor.tensor as pt

    coords = {names.COEF: list(design.X_columns), names.OBS: np.arange(design.n)}
    with pm.Model(coords=coords) as model:
        X = pm.Data(names.X, design.X, dims=(names.OBS, names.COEF))
        y = pm.Data(names.Y_OBS, design.y, dims=names.OBS)
        if design.X.shape[1]:
            mu = pt.dot(X, add_fixed_effects(design, priors))
        else:
            mu = pt.zeros(design.n)
        _likelihood(design, priors, mu, y)
    return model


# ====================================================================== sampling and wrapping


def _sample(
    build: Callable[[], pm.Model], key: str, updates: dict[str, np.ndarray], settings: SamplerSettings
) -> tuple[xr.Dataset, xr.Dataset]:
    """Sample a small PyMC model through the inference stage (nutpie's compiled model cached by ``key``)."""
    post, stats, _ = run_sampler(build, key, lambda: updates, settings)
    return post, stats


def _keep(post: xr.Dataset, variables: list[str], coords: dict[str, list]) -> xr.Dataset:
    """The posterior's ``variables`` with our coords; an empty ``beta`` (dim ``coef``) where nothing is shared."""
    post = post[[v for v in variables if v in post]]
    post = post.assign_coords({k: v for k, v in coords.items() if k in post.dims})
    if BETA not in post:
        empty = np.zeros((post.sizes["chain"], post.sizes["draw"], 0))
        post = post.assign({BETA: xr.DataArray(empty, dims=("chain", "draw", names.COEF), coords={names.COEF: []})})
    return post


def _pooling_fit(
    model: LMM,
    g: GroupDesign,
    pooling: str,
    post: xr.Dataset,
    sample_stats: xr.Dataset,
    mean: Callable[[xr.Dataset], np.ndarray],
    pooling_priors: dict,
    settings: SamplerSettings,
) -> PoolingModelFit:
    """Wrap the draws: log-likelihood from ``mean`` (the linear predictor of one chain), provenance, health."""
    design = model.design
    obs = np.arange(design.n)
    groups = {
        "posterior": post,
        "sample_stats": sample_stats,
        "observed_data": xr.Dataset({names.Y: (names.OBS, design.y)}, coords={names.OBS: obs}),
        "log_likelihood": pointwise_log_likelihood(design.y, post, mean, design).to_dataset(),
    }
    label = (
        "complete pooling (fixed part only)"
        if pooling == "complete_pooling"
        else f"no pooling (own {', '.join(g.effects)} per {g.name})"
    )
    attrs = {
        "lmm_bayes_version": __version__,
        "formula": model.formula,
        "pooling": pooling,
        "group": g.name,
        "description": label,
        "priors": model.priors.to_json(),  # the mixed model's: load rebuilds LMM(formula, data, priors=...)
        "pooling_priors": json.dumps(pooling_priors),  # what this pooling's graph used
        "method": "full",
        **getattr(model, "glm_attrs", {}),  # a GLMM's family, link and trials: load rebuilds it
        **settings.attrs(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    idata = xr.DataTree.from_dict(groups)
    idata.attrs.update(attrs)
    idata["posterior"].attrs.update(attrs)
    fit = PoolingModelFit(idata, model)
    # stacklevel 5: warn_if_unreliable < _pooling_fit < fit_*_pooling < compare_pooling < the caller
    fit.warn_if_unreliable(what=f"the {pooling.replace('_', ' ')} draws", stacklevel=5)
    return fit


def fit_no_pooling(
    model: LMM, group: str, *, scale: float = 10.0, settings: SamplerSettings | None = None
) -> PoolingModelFit:
    """Fit every cluster of ``group`` its own effects, with independent wide priors.

    Each cluster's own coefficients get Normal(mean(y) or 0, ``scale`` · s_y / s_x);
    the fixed effects that are not ``group``'s effects stay shared, with the mixed
    model's priors, as does σ.

    Parameters
    ----------
    model : LMM
        The mixed model whose rows, priors and grouping factor are used.
    group : str
        The grouping factor.
    scale : float
        Prior SD of each cluster's own coefficients in units of s_y / s_x.
    settings : SamplerSettings, optional
        Default ``SamplerSettings()``.

    Returns
    -------
    PoolingModelFit
        ``pooling == "no_pooling"``; posterior ``beta`` (the shared columns), ``sigma``, ``{g}_coef``.

    Raises
    ------
    ValueError
        A shared fixed effect does not vary within the clusters (:func:`check_separable`).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> fit = fit_no_pooling(model, "Subject", settings=SamplerSettings(
    ...     draws=1000, tune=500, chains=2, seed=1, progressbar=False))
    >>> fit.coef("Subject").shape, list(fit.fixef().index)
    ((18, 7), ['Days'])
    """
    design, priors = model.design, model.priors
    g = validate.check_group(design, group)
    check_separable(design, g)
    settings = settings or SamplerSettings()
    shared = shared_columns(design, g)
    shared_cols = [design.X_columns[k] for k in shared]
    own = _cluster_priors(design, g, scale, priors)
    family = design.family
    key = json.dumps(["no_pooling", design.n, shared_cols, g.name, g.n_levels, g.effects, own, priors.to_json(),
                      family.name, family.link, sorted(glm_data(design))], default=str)
    updates = {names.X: design.X[:, shared], names.Y_OBS: design.y, codes_name(g): g.codes, z_name(g): g.Z,
               **glm_data(design)}
    post, st = _sample(lambda: _no_pooling_model(design, g, shared, priors, scale), key, updates, settings)
    coords = {names.COEF: shared_cols, g.name: list(g.levels), g.effect_dim: list(g.effects)}
    post = _keep(post, [BETA, *_aux_names(design), coef_name(g)], coords)
    X = design.X[:, shared]
    offset = _offset(design)

    def mean(one: xr.Dataset) -> np.ndarray:
        b = one[coef_name(g)].transpose("chain", "draw", ...).values
        return linear_predictor(X, one[BETA].transpose("chain", "draw", ...).values, [(g.Z, g.codes, b)]) + offset

    described = {
        "shared": {c: priors.fixed_by_name[c].to_dict() for c in shared_cols},
        **_aux_priors(priors, design),
        "cluster_coef": own,
    }
    return _pooling_fit(model, g, "no_pooling", post, st, mean, described, settings)


def fit_complete_pooling(model: LMM, group: str, *, settings: SamplerSettings | None = None) -> PoolingModelFit:
    """Fit the fixed part alone, one regression for every row, with the mixed model's priors on β and σ.

    Parameters
    ----------
    model : LMM
    group : str
        The grouping factor the fit is compared over (its clusters all get the fixed values).
    settings : SamplerSettings, optional
        Default ``SamplerSettings()``.

    Returns
    -------
    PoolingModelFit
        ``pooling == "complete_pooling"``; posterior ``beta`` (every fixed column) and ``sigma``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> fit = fit_complete_pooling(model, "Subject", settings=SamplerSettings(
    ...     draws=1000, tune=500, chains=2, seed=1, progressbar=False))
    >>> list(fit.fixef().index), fit.coef("Subject")["mean"].nunique()
    (['Intercept', 'Days'], 1)
    """
    design, priors = model.design, model.priors
    g = validate.check_group(design, group)
    settings = settings or SamplerSettings()
    family = design.family
    key = json.dumps(["complete_pooling", design.n, design.X_columns, priors.to_json(), family.name, family.link,
                      sorted(glm_data(design))], default=str)
    updates = {names.X: design.X, names.Y_OBS: design.y, **glm_data(design)}
    post, st = _sample(lambda: _complete_pooling_model(design, priors), key, updates, settings)
    post = _keep(post, [BETA, *_aux_names(design)], {names.COEF: list(design.X_columns)})
    offset = _offset(design)

    def mean(one: xr.Dataset) -> np.ndarray:
        return linear_predictor(design.X, one[BETA].transpose("chain", "draw", ...).values) + offset

    described = {"fixed": {c: p.to_dict() for c, p in priors.fixed}, **_aux_priors(priors, design)}
    return _pooling_fit(model, g, "complete_pooling", post, st, mean, described, settings)


def _offset(design: Design) -> np.ndarray | float:
    """A GLMM's offset per row (added to the linear predictor of the log-likelihood), else 0."""
    offset = design.offset
    return 0.0 if offset is None else offset


def _aux_priors(priors, design: Design) -> dict[str, Any]:
    """The prior of the family's extra parameter (σ, the dispersion) by name, if it has one."""
    return {name: getattr(priors, name).to_dict() for name in _aux_names(design)}

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
from lmm_bayes.inference.glm import add_glm_likelihood, glm_data
from lmm_bayes.inference.conjugate import exact_posterior
from lmm_bayes.inference.graph import add_coefficients, add_fixed_effects, add_group_covariance, add_sigma
from lmm_bayes.inference.layout import (
    BETA,
    b_name,
    codes_name,
    coef_name,
    linear_predictor,
    pointwise_log_likelihood,
    sd_name,
    z_name,
)
from lmm_bayes.inference.sampling import SamplerSettings, log_likelihood_draws, run_sampler
from lmm_bayes.results.pooling_fit import PoolingModelFit, check_separable, shared_columns
from lmm_bayes.spec import validate
from lmm_bayes.spec.lineage import line_group, lineage
from lmm_bayes.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import pymc as pm

    from lmm_bayes.spec.design import Design, GroupDesign
    from lmm_bayes.spec.model import MixedModel as LMM

__all__ = [
    "fit_complete_pooling",
    "fit_no_pooling",
    "fit_within_pooling",
]


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
        y = pm.Data(names.Y_OBS, design.y, dims=names.OBS)
        codes = pm.Data(codes_name(g), g.codes, dims=names.OBS)
        Zg = pm.Data(z_name(g), g.Z, dims=(names.OBS, g.effect_dim))
        coef = pm.Normal(coef_name(g), mu=centers, sigma=sds, dims=(g.name, g.effect_dim))
        mu = pt.sum(Zg * coef[codes], axis=1)
        if shared:  # X only where the graph uses it: a reused compiled graph takes new values of its data only
            X = pm.Data(names.X, design.X[:, shared], dims=(names.OBS, names.COEF))
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
    *,
    whole_line: bool = False,
    label: str | None = None,
    method: str = "full",
) -> PoolingModelFit:
    """Wrap the draws: log-likelihood from ``mean`` (the linear predictor of one chain), provenance, health."""
    design = model.design
    obs = np.arange(design.n)
    groups = {
        "posterior": post,
        "sample_stats": sample_stats,
        "observed_data": xr.Dataset({names.Y: (names.OBS, design.y)}, coords={names.OBS: obs}),
        # every draw, or every k-th of each chain where all of them would be too many values (PSIS-LOO)
        "log_likelihood": pointwise_log_likelihood(design.y, log_likelihood_draws(post, design.n), mean,
                                                   design).to_dataset(),
    }
    label = label or (
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
        "method": method,
        **({"whole_line": 1} if whole_line else {}),
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
    model: LMM, group: str, *, scale: float = 10.0, settings: SamplerSettings | None = None,
    whole_line: bool = False,
) -> PoolingModelFit:
    """Fit every cluster of ``group`` its own effects, with independent wide priors.

    Each cluster's own coefficients get Normal(mean(y) or 0, ``scale`` · s_y / s_x);
    the fixed effects that are not ``group``'s effects stay shared, with the mixed
    model's priors, as does σ. With ``whole_line=True`` a nested cluster's own
    coefficients cover its whole line (:func:`~lmm_bayes.spec.lineage.line_group`: its
    own effects and those of the clusters it lies in), each neuron its own regression.

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
    if whole_line:
        g = line_group(design, g)
    check_separable(design, g)
    settings = settings or SamplerSettings()
    shared = shared_columns(design, g)
    shared_cols = [design.X_columns[k] for k in shared]
    own = _cluster_priors(design, g, scale, priors)
    family = design.family
    key = json.dumps(["no_pooling", design.n, shared_cols, g.name, g.n_levels, g.effects, own, priors.to_json(),
                      family.name, family.link, sorted(glm_data(design))], default=str)
    updates = {**({names.X: design.X[:, shared]} if shared else {}), names.Y_OBS: design.y, codes_name(g): g.codes,
               z_name(g): g.Z, **glm_data(design)}
    exact = exact_posterior(design, priors, shared, g, own, settings)
    post, st = exact or _sample(lambda: _no_pooling_model(design, g, shared, priors, scale), key, updates, settings)
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
    return _pooling_fit(model, g, "no_pooling", post, st, mean, described, settings,
                        whole_line=whole_line and bool(lineage(design, g)), method="exact" if exact else "full")


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
    exact = exact_posterior(design, priors, list(range(design.X.shape[1])), None, None, settings)
    post, st = exact or _sample(lambda: _complete_pooling_model(design, priors), key, updates, settings)
    post = _keep(post, [BETA, *_aux_names(design)], {names.COEF: list(design.X_columns)})
    offset = _offset(design)

    def mean(one: xr.Dataset) -> np.ndarray:
        return linear_predictor(design.X, one[BETA].transpose("chain", "draw", ...).values) + offset

    described = {"fixed": {c: p.to_dict() for c, p in priors.fixed}, **_aux_priors(priors, design)}
    return _pooling_fit(model, g, "complete_pooling", post, st, mean, described, settings,
                        method="exact" if exact else "full")


def _within_data(design: Design, g: GroupDesign, rest: list[int]) -> dict[str, np.ndarray]:
    """The data of the within-pooling graph, by name (the graph's and a reused graph's updates alike).

    A Gaussian response enters through sums per cluster of ``g``: with W = [line columns, the
    other shared columns], θ_j the cluster's coefficients on them and r = y − W θ0 the residual
    of the pooled least squares θ0 (so large offsets cancel row by row, not in the sums), the
    cluster's residual sum of squares is r_jᵀr_j − 2 δ_jᵀ W_jᵀr_j + δ_jᵀ W_jᵀW_j δ_j, δ_j = θ_j − θ0:
    each gradient costs O(clusters), not O(rows). Other families keep their rows.
    """
    line = line_group(design, g)
    W = np.column_stack([line.Z, design.X[:, rest]])
    if not design.family.is_gaussian:
        return {**({names.X: design.X[:, rest]} if rest else {}), names.Y_OBS: design.y,
                codes_name(g): g.codes, z_name(g): line.Z, **glm_data(design)}
    theta0 = np.linalg.lstsq(W, design.y, rcond=None)[0]
    r = design.y - W @ theta0
    k, J = W.shape[1], g.n_levels
    M, v, rr = np.zeros((J, k, k)), np.zeros((J, k)), np.zeros(J)
    np.add.at(M, g.codes, W[:, :, None] * W[:, None, :])
    np.add.at(v, g.codes, W * r[:, None])
    np.add.at(rr, g.codes, r * r)
    return {"ss_M": M, "ss_v": v, "ss_rr": rr, "ss_n": g.counts().astype(float), "ss_theta0": theta0}


def _within_model(design: Design, g: GroupDesign, parent: GroupDesign, shared: list[int], priors,
                  scale: float, data: dict[str, np.ndarray]) -> pm.Model:
    """Each parent cluster its own line (wide priors), ``g``'s clusters pooled around it with the model's G prior."""
    import pymc as pm
    import pytensor.tensor as pt

    shared_cols = [design.X_columns[k] for k in shared]
    own = _cluster_priors(design, parent, scale, priors)
    line = line_group(design, g)
    rest = [k for k, c in enumerate(shared_cols) if c not in line.effects]  # shared columns no line covers
    codes_up = lineage(design, g)[0][1]  # each g level's parent level
    coords = {names.COEF: shared_cols, parent.name: list(parent.levels), parent.effect_dim: list(parent.effects),
              g.name: list(g.levels), g.effect_dim: list(g.effects), line.effect_dim + "_line": list(line.effects),
              names.OBS: np.arange(design.n)}
    with pm.Model(coords=coords) as model:
        held = {k: pm.Data(k, v) for k, v in data.items()}
        coef_up = pm.Normal(coef_name(parent), mu=np.array([own[e]["mu"] for e in parent.effects]),
                            sigma=np.array([own[e]["sigma"] for e in parent.effects]),
                            dims=(parent.name, parent.effect_dim))
        _, L = add_group_covariance(g, priors.group_by_name[g.name])
        z = pm.Normal(names.z_offsets_name(g.name), 0.0, 1.0, dims=(g.name, g.effect_dim))
        b = pm.Deterministic(b_name(g), pt.dot(z, L.T), dims=(g.name, g.effect_dim))
        beta = add_coefficients([priors.fixed_by_name[c] for c in shared_cols]) if shared else None
        # every g cluster's whole line: its parent's own line, its own b, β for effects only g has
        parts = []
        for e in line.effects:
            part = coef_up[codes_up, parent.effects.index(e)] if e in parent.effects else (
                beta[shared_cols.index(e)] if e in shared_cols else pt.zeros(g.n_levels))
            parts.append(part + b[:, g.effects.index(e)] if e in g.effects else part)
        lines = pm.Deterministic(coef_name(g), pt.stack(parts, axis=1), dims=(g.name, line.effect_dim + "_line"))
        if design.family.is_gaussian:  # the residual sums of squares from the sums of _within_data
            theta = lines if not rest else pt.concatenate(
                [lines, pt.repeat(beta[rest][None, :], g.n_levels, axis=0)], axis=1)
            delta = theta - held["ss_theta0"][None, :]
            ss = (held["ss_rr"] - 2 * pt.sum(delta * held["ss_v"], axis=1)
                  + pt.sum(delta[:, :, None] * held["ss_M"] * delta[:, None, :], axis=(1, 2)))
            sigma = add_sigma(priors)
            pm.Potential("y_log_likelihood", pt.sum(-held["ss_n"] * (np.log(2 * np.pi) / 2 + pt.log(sigma))
                                                    - ss / (2 * sigma**2)))
            return model
        mu = pt.sum(held[z_name(g)] * lines[held[codes_name(g)]], axis=1)
        if rest:
            mu = mu + pt.dot(held[names.X], beta[rest])
        _likelihood(design, priors, mu, held[names.Y_OBS])
    return model


def fit_within_pooling(
    model: LMM, group: str, *, scale: float = 10.0, settings: SamplerSettings | None = None
) -> PoolingModelFit:
    """Pool a nested factor's clusters within their parent, and not the parents: the in-between of a hierarchy.

    Each parent cluster (a subject) gets its own line, the effects of every factor above
    ``group``, with the no-pooling priors Normal(mean(y) or 0, ``scale`` · s_y / s_x);
    ``group``'s clusters (its neurons) vary around it with the mixed model's own G and
    priors for them. The other fixed effects and σ are shared, with the model's priors.

    Parameters
    ----------
    model : LMM
        A mixed model in which ``group`` is nested in another factor.
    group : str
        The nested factor, e.g. ``"subject:neuron"``.
    scale : float
        Prior SD of each parent's own coefficients in units of s_y / s_x.
    settings : SamplerSettings, optional

    Returns
    -------
    PoolingModelFit
        ``pooling == "within_pooling"``; posterior ``beta`` (the shared columns), ``sigma``,
        ``{parent}_coef``, ``{g}_b``, ``{g}_sd`` and ``{g}_coef`` (every cluster's whole line).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.calibration.simulate import simulate_hierarchy
    >>> df = simulate_hierarchy(4, 5, 10, beta=[1.0, 0.5], G=[[0.25, 0], [0, 0.09]], sigma_neuron=0.4,
    ...                         sigma=1.0, seed=1).data
    >>> model = lb.LMM("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df)
    >>> fit = fit_within_pooling(model, "subject:neuron", settings=SamplerSettings(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False))
    >>> fit.coef_draws("subject:neuron").shape
    (2, 300, 20, 2)
    """
    design, priors = model.design, model.priors
    g = validate.check_group(design, group)
    chain = lineage(design, g)
    if not chain:
        raise ValueError(f"{g.name!r} lies in no other grouping factor: there is nothing to pool it within")
    parent = line_group(design, chain[0][0])  # a parent's own line covers every factor above g
    settings = settings or SamplerSettings()
    shared = shared_columns(design, parent)
    shared_cols = [design.X_columns[k] for k in shared]
    own = _cluster_priors(design, parent, scale, priors)
    family = design.family
    key = json.dumps(["within_pooling", design.n, design.family.is_gaussian, shared_cols, g.name, g.n_levels, g.effects, parent.name,
                      parent.n_levels, own, priors.to_json(), family.name, family.link, sorted(glm_data(design))],
                     default=str)
    line = line_group(design, g)
    data = _within_data(design, g, [k for k in shared if design.X_columns[k] not in line.effects])
    post, st = _sample(lambda: _within_model(design, g, parent, shared, priors, scale, data), key, data, settings)
    coords = {names.COEF: shared_cols, g.name: list(g.levels), g.effect_dim: list(line.effects)}
    post = post.rename({g.effect_dim: g.effect_dim + "_own", line.effect_dim + "_line": g.effect_dim})
    post = _keep(post, [BETA, *_aux_names(design), coef_name(g), coef_name(parent), b_name(g), sd_name(g)], coords)
    X = design.X[:, [k for k in shared if design.X_columns[k] not in line.effects]]
    rest = [c for c in shared_cols if c not in line.effects]
    offset = _offset(design)

    def mean(one: xr.Dataset) -> np.ndarray:
        lines = one[coef_name(g)].transpose("chain", "draw", ...).values
        beta = one[BETA].sel({names.COEF: rest}).transpose("chain", "draw", ...).values
        return linear_predictor(X, beta, [(line.Z, g.codes, lines)]) + offset

    described = {"shared": {c: priors.fixed_by_name[c].to_dict() for c in shared_cols},
                 **_aux_priors(priors, design), "parent_coef": own, "group": priors.to_dict()["groups"][g.name]}
    label = f"pooled within {parent.name} (each {parent.name} its own line, {g.name} pooled around it)"
    return _pooling_fit(model, g, "within_pooling", post, st, mean, described, settings, label=label)


def _offset(design: Design) -> np.ndarray | float:
    """A GLMM's offset per row (added to the linear predictor of the log-likelihood), else 0."""
    offset = design.offset
    return 0.0 if offset is None else offset


def _aux_priors(priors, design: Design) -> dict[str, Any]:
    """The prior of the family's extra parameter (σ, the dispersion) by name, if it has one."""
    return {name: getattr(priors, name).to_dict() for name in _aux_names(design)}

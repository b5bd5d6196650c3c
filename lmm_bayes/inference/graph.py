"""Design + priors → ``pm.Model`` (random effects sampled; non-centered by default).

Variable names (shared with the collapsed graph, so results code sees one layout):

=====================  ===================================  ======================================
name                   dims                                 what
=====================  ===================================  ======================================
``beta``               ``coef``                             fixed effects
``sigma``              —                                    residual SD
``{g}_sd``             ``{g}_effect``                       SDs of factor g's effects
``{g}_corr``           ``{g}_effect``, ``{g}_effect_bis``   correlations (correlated factors only)
``{g}_b``              ``{g}``, ``{g}_effect``              cluster deviations b
``y``                  ``obs``                              the likelihood (observed)
=====================  ===================================  ======================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import GroupPriors, Prior, Priors

__all__ = [
    "build_model",
    "model_coords",
    "covariance_values",
    "add_coefficients",
    "add_fixed_effects",
    "add_group_covariance",
    "add_sigma",
    "posterior_vars",
]


def posterior_vars(design: Design) -> list[str]:
    """The variables a fit keeps in its posterior, in display order."""
    names = ["beta", "sigma"]
    for g in design.groups:
        names.append(f"{g.name}_sd")
        if g.correlated:
            names.append(f"{g.name}_corr")
    names += [f"{g.name}_b" for g in design.groups]
    return names


def covariance_values(posterior, g: GroupDesign) -> np.ndarray:
    """G = diag(sd) corr diag(sd) for every draw of a posterior in this layout: (chain, draw, q, q).

    ``corr`` is the identity where the factor has no ``{g}_corr`` (independent effects).
    """
    sd = posterior[f"{g.name}_sd"].transpose("chain", "draw", ...).values
    name = f"{g.name}_corr"
    if name in posterior:
        corr = posterior[name].transpose("chain", "draw", ...).values
    else:
        corr = np.eye(g.n_effects)
    return sd[..., :, None] * corr * sd[..., None, :]


def model_coords(design: Design) -> dict[str, Sequence]:
    """Coords named after the grouping factors (levels as the user wrote them)."""
    coords: dict[str, Sequence] = {"coef": list(design.X_columns), "obs": np.arange(design.n)}
    for g in design.groups:
        coords[g.name] = list(g.levels)
        coords[g.effect_dim] = list(g.effects)
        coords[f"{g.effect_dim}_bis"] = list(g.effects)
    return coords


def _dist(priors: Sequence[Prior], name: str | None = None, **kwargs):
    """One vector-valued PyMC distribution from priors of a single family."""
    families = {p.dist for p in priors}
    if len(families) != 1:
        raise ValueError(
            f"priors of one vector must share a family, got {sorted(families)}; "
            "use the same distribution for these parameters"
        )
    family = families.pop()
    params = {k: np.array([p.kwargs[k] for p in priors]) for k in priors[0].kwargs}
    cls = getattr(pm, family)
    if name is None:
        return cls.dist(**params, **kwargs)
    return cls(name, **params, **kwargs)


def _vector_rv(name: str, priors: Sequence[Prior], size: int) -> pt.TensorVariable:
    """A vector parameter whose entries may use different prior families."""
    families = list(dict.fromkeys(p.dist for p in priors))
    if len(families) == 1:
        return _dist(priors, name=name, shape=size)
    out = pt.zeros(size)
    for family in families:
        idx = [i for i, p in enumerate(priors) if p.dist == family]
        part = _dist([priors[i] for i in idx], name=f"{name}_{family}", shape=len(idx))
        out = pt.set_subtensor(out[idx], part)
    return out


def add_sigma(priors: Priors) -> pt.TensorVariable:
    """The residual SD ``sigma``; call inside a model context."""
    return getattr(pm, priors.sigma.dist)("sigma", **priors.sigma.kwargs)


def add_coefficients(plist: Sequence[Prior]) -> pt.TensorVariable:
    """``beta`` on dim ``coef`` from one location prior per coefficient (families may mix)."""
    if len({p.dist for p in plist}) == 1:
        return _dist(plist, name="beta", dims="coef")
    return pm.Deterministic("beta", _vector_rv("beta_parts", plist, len(plist)), dims="coef")


def add_fixed_effects(design: Design, priors: Priors) -> pt.TensorVariable:
    """``beta`` on dim ``coef``; call inside a model context."""
    if not design.X_columns:
        return pt.zeros(0)
    return add_coefficients([priors.fixed_by_name[c] for c in design.X_columns])


def add_group_covariance(g: GroupDesign, gp: GroupPriors) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """SDs, correlations and the Cholesky factor L of G for one factor.

    Returns ``(sd, L)``; ``{g}_sd`` (and ``{g}_corr`` when correlated) are added as
    named deterministics. Correlated blocks get ``LKJCholeskyCov``; effects in
    different blocks are independent.
    """
    sd_priors = gp.sd_by_effect
    parts_sd, parts_L, parts_corr = [], [], []
    singles = [b[0] for b in g.blocks if len(b) == 1]
    if singles:
        indep = _vector_rv(f"{g.name}_sd_indep", [sd_priors[g.effects[i]] for i in singles], len(singles))
    for block in g.blocks:
        if len(block) == 1:
            k = singles.index(block[0])
            s = indep[k : k + 1]
            parts_sd.append(s)
            parts_L.append(pt.reshape(s, (1, 1)))
            parts_corr.append(pt.ones((1, 1)))
            continue
        suffix = "" if len(g.blocks) == 1 else f"_{block[0]}"
        chol, corr, sds = pm.LKJCholeskyCov(
            f"{g.name}_chol_cov{suffix}",
            n=len(block),
            eta=gp.eta,
            sd_dist=_dist([sd_priors[g.effects[i]] for i in block], shape=len(block)),
            compute_corr=True,
            store_in_trace=False,
        )
        parts_sd.append(sds)
        parts_L.append(chol)
        parts_corr.append(corr)
    sd = pm.Deterministic(f"{g.name}_sd", pt.concatenate(parts_sd), dims=g.effect_dim)
    L = parts_L[0] if len(parts_L) == 1 else pt.linalg.block_diag(*parts_L)
    if g.correlated:
        corr = parts_corr[0] if len(parts_corr) == 1 else pt.linalg.block_diag(*parts_corr)
        pm.Deterministic(f"{g.name}_corr", corr, dims=(g.effect_dim, f"{g.effect_dim}_bis"))
    return sd, L


def build_model(design: Design, priors: Priors, *, centered: bool = False) -> pm.Model:
    """The full model: every cluster's b is a parameter.

    Parameters
    ----------
    design : Design
    priors : Priors
    centered : bool
        ``False`` (default) samples standard-normal offsets z and sets
        ``b = z Lᵀ`` (no funnel); ``True`` samples ``b ~ MvNormal(0, G)`` directly.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> pm_model = m.pymc_model()
    >>> sorted(v.name for v in pm_model.free_RVs)
    ['Subject_chol_cov', 'Subject_z', 'beta', 'sigma']
    >>> pm_model.named_vars_to_dims["Subject_b"]
    ('Subject', 'Subject_effect')
    """
    with pm.Model(coords=model_coords(design)) as model:
        X = pm.Data("X", design.X, dims=("obs", "coef"))
        y = pm.Data("y_obs", design.y, dims="obs")
        beta = add_fixed_effects(design, priors)
        mu = pt.dot(X, beta) if design.X.shape[1] else pt.zeros(design.n)
        for g, (_, gp) in zip(design.groups, priors.groups):
            _, L = add_group_covariance(g, gp)
            if centered:
                b = pm.MvNormal(f"{g.name}_b", mu=pt.zeros(g.n_effects), chol=L, dims=(g.name, g.effect_dim))
            else:
                z = pm.Normal(f"{g.name}_z", 0.0, 1.0, dims=(g.name, g.effect_dim))
                b = pm.Deterministic(f"{g.name}_b", pt.dot(z, L.T), dims=(g.name, g.effect_dim))
            codes = pm.Data(f"{g.name}_codes", g.codes, dims="obs")
            Zg = pm.Data(f"{g.name}_Z", g.Z, dims=("obs", g.effect_dim))
            mu = mu + pt.sum(Zg * b[codes], axis=1)
        sigma = add_sigma(priors)
        pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="obs")
    return model

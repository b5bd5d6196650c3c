"""Design + priors → ``pm.Model`` (random effects sampled; non-centered by default).

The variables are named by :mod:`lmm_bayes.inference.layout`, shared with the collapsed
graph, so everything downstream sees one layout. The building blocks
(:func:`add_fixed_effects`, :func:`add_group_covariance`, :func:`add_sigma`) are shared
with the collapsed graph and the pooling models.
"""

from __future__ import annotations

from collections.abc import Sequence

import lazy_loader as lazy
import numpy as np

from lmm_bayes import names
from lmm_bayes.inference.glm import add_glm_likelihood
from lmm_bayes.inference.layout import (
    BETA,
    SIGMA,
    b_name,
    bis,
    codes_name,
    corr_name,
    model_coords,
    sd_name,
    z_name,
)
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.priors import GroupPriors, Prior, Priors

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")
pytensor = lazy.load("pytensor")  # its .tensor (imported by pytensor itself) is the graphs' algebra

__all__ = [
    "build_model",
    "add_coefficients",
    "add_fixed_effects",
    "add_group_covariance",
    "add_sigma",
]


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


def _vector_rv(name: str, priors: Sequence[Prior], size: int) -> pytensor.tensor.TensorVariable:
    """A vector parameter whose entries may use different prior families."""
    families = list(dict.fromkeys(p.dist for p in priors))
    if len(families) == 1:
        return _dist(priors, name=name, shape=size)
    out = pytensor.tensor.zeros(size)
    for family in families:
        idx = [i for i, p in enumerate(priors) if p.dist == family]
        part = _dist([priors[i] for i in idx], name=f"{name}_{family}", shape=len(idx))
        out = pytensor.tensor.set_subtensor(out[idx], part)
    return out


def add_sigma(priors: Priors) -> pytensor.tensor.TensorVariable:
    """The residual SD ``sigma``; call inside a model context."""
    return getattr(pm, priors.sigma.dist)(SIGMA, **priors.sigma.kwargs)


def add_coefficients(plist: Sequence[Prior]) -> pytensor.tensor.TensorVariable:
    """``beta`` on dim ``coef`` from one location prior per coefficient (families may mix)."""
    if len({p.dist for p in plist}) == 1:
        return _dist(plist, name=BETA, dims=names.COEF)
    return pm.Deterministic(BETA, _vector_rv(names.BETA_PARTS, plist, len(plist)), dims=names.COEF)


def add_fixed_effects(design: Design, priors: Priors) -> pytensor.tensor.TensorVariable:
    """``beta`` on dim ``coef``; call inside a model context."""
    if not design.X_columns:
        return pytensor.tensor.zeros(0)
    return add_coefficients([priors.fixed_by_name[c] for c in design.X_columns])


def add_group_covariance(g: GroupDesign, gp: GroupPriors) -> tuple[pytensor.tensor.TensorVariable, pytensor.tensor.TensorVariable]:
    """SDs, correlations and the Cholesky factor L of G for one factor.

    Returns ``(sd, L)``; ``{g}_sd`` (and ``{g}_corr`` when correlated) are added as
    named deterministics. Correlated blocks get ``LKJCholeskyCov``; effects in
    different blocks are independent.
    """
    sd_priors = gp.sd_by_effect
    parts_sd, parts_L, parts_corr = [], [], []
    singles = [b[0] for b in g.blocks if len(b) == 1]
    if singles:
        indep = _vector_rv(names.sd_indep_name(g.name), [sd_priors[g.effects[i]] for i in singles], len(singles))
    for block in g.blocks:
        if len(block) == 1:
            k = singles.index(block[0])
            s = indep[k : k + 1]
            parts_sd.append(s)
            parts_L.append(pytensor.tensor.reshape(s, (1, 1)))
            parts_corr.append(pytensor.tensor.ones((1, 1)))
            continue
        chol, corr, sds = pm.LKJCholeskyCov(
            names.chol_cov_name(g.name, None if len(g.blocks) == 1 else block[0]),
            n=len(block),
            eta=gp.eta,
            sd_dist=_dist([sd_priors[g.effects[i]] for i in block], shape=len(block)),
            compute_corr=True,
            store_in_trace=False,
        )
        parts_sd.append(sds)
        parts_L.append(chol)
        parts_corr.append(corr)
    sd = pm.Deterministic(sd_name(g), pytensor.tensor.concatenate(parts_sd), dims=g.effect_dim)
    L = parts_L[0] if len(parts_L) == 1 else pytensor.tensor.linalg.block_diag(*parts_L)
    if g.correlated:
        corr = parts_corr[0] if len(parts_corr) == 1 else pytensor.tensor.linalg.block_diag(*parts_corr)
        pm.Deterministic(corr_name(g), corr, dims=(g.effect_dim, bis(g.effect_dim)))
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
        X = pm.Data(names.X, design.X, dims=(names.OBS, names.COEF))
        y = pm.Data(names.Y_OBS, design.y, dims=names.OBS)
        beta = add_fixed_effects(design, priors)
        mu = pytensor.tensor.dot(X, beta) if design.X.shape[1] else pytensor.tensor.zeros(design.n)
        for g, (_, gp) in zip(design.groups, priors.groups):
            _, L = add_group_covariance(g, gp)
            if centered:
                b = pm.MvNormal(b_name(g), mu=pytensor.tensor.zeros(g.n_effects), chol=L, dims=(g.name, g.effect_dim))
            else:
                z = pm.Normal(names.z_offsets_name(g.name), 0.0, 1.0, dims=(g.name, g.effect_dim))
                b = pm.Deterministic(b_name(g), pytensor.tensor.dot(z, L.T), dims=(g.name, g.effect_dim))
            codes = pm.Data(codes_name(g), g.codes, dims=names.OBS)
            Zg = pm.Data(z_name(g), g.Z, dims=(names.OBS, g.effect_dim))
            mu = mu + pytensor.tensor.sum(Zg * b[codes], axis=1)
        if not design.family.is_gaussian:  # a GLMM: link, offset, trials (inference/glm.py)
            add_glm_likelihood(design, priors, mu, y)
            return model
        sigma = add_sigma(priors)
        pm.Normal(names.Y, mu=mu, sigma=sigma, observed=y, dims=names.OBS)
    return model

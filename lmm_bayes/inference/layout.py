"""The posterior's layout, in one place: names, dims, coords, hyperparameters, G, X β + Z b.

Every stage that makes or reads draws (the graphs, the samplers, results, prediction,
simulation, pooling fits, calibration) takes the names and the algebra from here:

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

The layout belongs to the inference stage, the lowest one that makes a posterior, so the
PyMC graphs below results name their variables with it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from lmm_bayes import names
from lmm_bayes.errors import RandomEffectsNotKept
from lmm_bayes.spec.families.registry import GAUSSIAN
from lmm_bayes.spec.lineage import line_group, lineage
from lmm_bayes.spec.residual import SIGMA_BETA, SIGMA_U, posterior_names

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.design import Design, GroupDesign

__all__ = [
    "BETA",
    "KEEP_B",
    "SIGMA",
    "Hyperparameter",
    "row_sigma_draws",
    "b_draws",
    "b_name",
    "bis",
    "codes_name",
    "coef_name",
    "constant_data",
    "corr_name",
    "cov_name",
    "covariance_values",
    "gaussian_log_likelihood",
    "hyperparameter_draws",
    "hyperparameters",
    "line_draws",
    "linear_predictor",
    "model_coords",
    "pointwise_log_likelihood",
    "population_effects",
    "posterior_vars",
    "sd_name",
    "fitted_linear_predictor",
    "fitted_terms",
    "z_name",
]

BETA = names.BETA
SIGMA = names.SIGMA
_SAMPLE_DIMS = ("chain", "draw")


# ---------------------------------------------------------------------------- names


def _name(group: GroupDesign | str) -> str:
    return group if isinstance(group, str) else group.name


def sd_name(group: GroupDesign | str) -> str:
    """``"{g}_sd"``: the SDs of a factor's effects."""
    return names.sd_name(_name(group))


def corr_name(group: GroupDesign | str) -> str:
    """``"{g}_corr"``: the correlation matrix of a factor's effects."""
    return names.corr_name(_name(group))


def b_name(group: GroupDesign | str) -> str:
    """``"{g}_b"``: every cluster's deviations b."""
    return names.b_name(_name(group))


def cov_name(group: GroupDesign | str) -> str:
    """``"{g}_cov"``: G, the covariance of a factor's effects (in simulated truth)."""
    return names.cov_name(_name(group))


def coef_name(group: GroupDesign | str) -> str:
    """``"{g}_coef"``: every cluster's own effects β + b (or a no-pooling fit's coefficients)."""
    return names.coef_name(_name(group))


def codes_name(group: GroupDesign | str) -> str:
    """``"{g}_codes"``: the level index of every row (constant data)."""
    return names.codes_name(_name(group))


def z_name(group: GroupDesign | str) -> str:
    """``"{g}_Z"``: the per-row values multiplying a factor's effects (constant data)."""
    return names.z_name(_name(group))


def bis(dim: str) -> str:
    """The second dim of a square matrix over ``dim`` (``"Subject_effect_bis"``)."""
    return names.bis(dim)


def posterior_vars(design: Design) -> list[str]:
    """The variables a fit keeps in its posterior, in display order.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> posterior_vars(lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design)
    ['beta', 'sigma', 'Subject_sd', 'Subject_corr', 'Subject_b']
    """
    aux = design.family.aux
    names = [BETA, *([aux] if aux else [])]
    for g in design.groups:
        names.append(sd_name(g))
        if g.correlated:
            names.append(corr_name(g))
    names += posterior_names(design.residual)  # sigma= and ar= (spec/residual.py)
    names += [b_name(g) for g in design.groups]
    return names


def model_coords(design: Design) -> dict[str, Sequence]:
    """Coords named after the grouping factors (levels as the user wrote them)."""
    coords: dict[str, Sequence] = {names.COEF: list(design.X_columns), names.OBS: np.arange(design.n)}
    for g in design.groups:
        coords[g.name] = list(g.levels)
        coords[g.effect_dim] = list(g.effects)
        coords[bis(g.effect_dim)] = list(g.effects)
    return coords


def constant_data(design: Design) -> xr.Dataset:
    """The design as a fit stores it: ``X`` (obs, coef) and per factor ``{g}_codes``, ``{g}_Z``."""
    data = {names.X: ((names.OBS, names.COEF), design.X)}
    coords: dict[str, Any] = {names.OBS: np.arange(design.n), names.COEF: list(design.X_columns)}
    for g in design.groups:
        data[codes_name(g)] = (names.OBS, g.codes)
        data[z_name(g)] = ((names.OBS, g.effect_dim), g.Z)
        coords[g.effect_dim] = list(g.effects)
    return xr.Dataset(data, coords=coords)


# ---------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class Hyperparameter:
    """One scalar hyperparameter: where it sits in a posterior and how tables label it.

    Attributes
    ----------
    var : str
        The posterior variable (``"beta"``, ``"Subject_sd"``, ...).
    sel : tuple of (dim, label)
        The selection of the scalar inside ``var``.
    group : str
        ``"Fixed"``, ``"Residual"`` or the grouping factor's name.
    term : str
        ``"Days"``, ``"sigma"``, ``"sd(Days)"``, ``"corr(Intercept,Days)"``.
    dim, coord : str or None
        The dim and label of this scalar in a table of one value per hyperparameter
        (``{g}_pair`` for correlations).
    """

    var: str
    sel: tuple[tuple[str, str], ...]
    group: str
    term: str
    dim: str | None
    coord: str | None

    @property
    def label(self) -> str:
        """``"beta[Days]"``, ``"sigma"``, ``"Subject_sd[Days]"``, ``"Subject_corr[Intercept, Days]"``."""
        return self.var if self.coord is None else f"{self.var}[{self.coord}]"


def hyperparameters(design: Design, *, fixed: bool = True) -> tuple[Hyperparameter, ...]:
    """Every scalar hyperparameter of a design, in display order.

    β (when ``fixed``), σ, then per grouping factor its SDs and the correlations
    *within* each correlated block (effects in different blocks are independent, so
    their correlation is a constant 0 and not a parameter).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> [h.label for h in hyperparameters(d)]
    ['beta[Intercept]', 'beta[Days]', 'sigma', 'Subject_sd[Intercept]', 'Subject_sd[Days]', 'Subject_corr[Intercept, Days]']
    """
    out = []
    if fixed:
        out += [Hyperparameter(BETA, ((names.COEF, c),), "Fixed", c, names.COEF, c) for c in design.X_columns]
    aux = design.family.aux  # sigma (Gaussian), dispersion (negative binomial), or none
    if aux:
        out.append(Hyperparameter(aux, (), "Residual", aux, None, None))
    for g in design.groups:
        ed = g.effect_dim
        out += [Hyperparameter(sd_name(g), ((ed, e),), g.name, f"sd({e})", ed, e) for e in g.effects]
        for block in g.blocks:
            for k, i in enumerate(block):
                for j in block[k + 1 :]:
                    a, c = g.effects[i], g.effects[j]
                    out.append(
                        Hyperparameter(
                            corr_name(g), ((ed, a), (bis(ed), c)), g.name, f"corr({a},{c})",
                            names.pair_dim(g.name), f"{a}, {c}",
                        )
                    )
    return tuple(out)


def hyperparameter_draws(posterior: xr.Dataset, params: Iterable[Hyperparameter]) -> xr.DataArray:
    """The draws of scalar hyperparameters side by side: dims (``chain``, ``draw``, ``parameter``).

    Works on any dataset with the variables (a posterior, a prior, simulated truth
    without sample dims).
    """
    params = tuple(params)
    parts = [posterior[p.var].sel(dict(p.sel), drop=True) for p in params]
    labels = [p.label for p in params]
    if not parts:
        sample = {d: posterior.sizes[d] for d in _SAMPLE_DIMS if d in posterior.dims}
        return xr.DataArray(np.zeros(tuple(sample.values()) + (0,)), dims=(*sample, "parameter"),
                            coords={"parameter": []})
    return xr.concat(parts, dim="parameter", coords="minimal", compat="override").assign_coords(parameter=labels)


# ---------------------------------------------------------------------------- G and X beta + Z b


def covariance_values(posterior: Any, g: GroupDesign) -> np.ndarray:
    """G = diag(sd) corr diag(sd) for every draw of a posterior in this layout: (chain, draw, q, q).

    ``corr`` is the identity where the factor has no ``{g}_corr`` (independent effects).
    """
    sd = posterior[sd_name(g)].transpose("chain", "draw", ...).values
    name = corr_name(g)
    corr = posterior[name].transpose("chain", "draw", ...).values if name in posterior else np.eye(g.n_effects)
    G = sd[..., :, None] * corr * sd[..., None, :]
    # exactly symmetric (the stored correlations and the products can differ in the last bit)
    return (G + np.swapaxes(G, -1, -2)) / 2


def linear_predictor(
    X: np.ndarray, beta: np.ndarray | None, terms: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]] = ()
) -> np.ndarray:
    """``X beta + sum_g Z_g b_g[codes_g]`` for one parameter point or a batch of draws.

    Parameters
    ----------
    X : ndarray (n, p)
    beta : ndarray (..., p) or None
        Leading axes (e.g. chain, draw) are kept; ``None`` or ``p == 0`` adds nothing.
    terms : iterable of (Z, codes, b)
        Per grouping factor: ``Z`` (n, q), ``codes`` (n,) indexing the levels of ``b``
        (..., levels, q), with the same leading axes as ``beta``.

    Returns
    -------
    ndarray (..., n)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.ones((3, 1)); Z = np.ones((3, 1)); codes = np.array([0, 1, 1])
    >>> linear_predictor(X, np.array([2.0]), [(Z, codes, np.array([[0.5], [-1.0]]))])
    array([2.5, 1. , 1. ])
    """
    n = X.shape[0]
    lead: tuple[int, ...] = () if beta is None else np.shape(beta)[:-1]
    if beta is not None and X.shape[1]:
        mu = np.tensordot(beta, X, axes=([-1], [1]))
    else:
        mu = None
    for Z, codes, b in terms:
        lead = np.shape(b)[:-2]
        for j in range(Z.shape[1]):  # one effect at a time: no (..., n, q) temporary
            part = b[..., codes, j] * Z[:, j]
            mu = part if mu is None else mu + part
    return np.zeros(lead + (n,)) if mu is None else mu


def population_effects(posterior: xr.Dataset, g: GroupDesign) -> xr.DataArray:
    """The fixed part of each of ``g``'s effects per draw (its β, 0 where it has none): (chain, draw, ``{g}_effect``).

    ``β + b`` of a cluster is this plus its b; a complete-pooling fit gives every cluster this.
    """
    beta = posterior[BETA]
    # zeros per draw (a GLMM has no sigma to take the shape from)
    zero = xr.zeros_like(posterior[SIGMA]) if SIGMA in posterior else xr.zeros_like(posterior["chain"] * 0.0 + posterior["draw"] * 0.0)
    columns = set(beta["coef"].values.tolist())
    parts = [beta.sel(coef=e, drop=True) if e in columns else zero for e in g.effects]
    return xr.concat(parts, dim=g.effect_dim).assign_coords({g.effect_dim: list(g.effects)}).transpose(
        "chain", "draw", g.effect_dim
    )


def line_draws(posterior: xr.Dataset, design: Design, g: GroupDesign, *, own: bool = True,
               needed_by: str = "the clusters' whole lines") -> xr.DataArray:
    """Every cluster's whole line per draw: β + the b of the clusters it lies in + its own b.

    Over :func:`~lmm_bayes.spec.lineage.line_effects` (its ancestors' effects and its own),
    dims (chain, draw, ``g.name``, ``{g}_effect``). For a factor nested in nothing it is
    ``β + b``, as ``fit.coef_draws``. With ``own=False`` the cluster's own b is left out:
    its parent's line, the line partial pooling pulls it toward (β for a factor nested in
    nothing). ``needed_by`` names the caller in the error of a fit that kept no b.
    """
    line = line_group(design, g)
    chain = [*([(g, np.arange(g.n_levels))] if own else []), *lineage(design, g)]
    pop = population_effects(posterior, line).transpose("chain", "draw", line.effect_dim).values
    total = np.repeat(pop[:, :, None, :], g.n_levels, axis=2)
    for h, codes in chain:
        b = b_draws(posterior, h, needed_by).transpose("chain", "draw", h.name, h.effect_dim).values
        for k, e in enumerate(h.effects):
            total[:, :, :, line.effects.index(e)] += b[:, :, codes, k]
    return xr.DataArray(
        total,
        dims=("chain", "draw", g.name, g.effect_dim),
        coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values,
                g.name: list(g.levels), g.effect_dim: list(line.effects)},
        name=coef_name(g),
    )


#: what ``keep_b`` may be: every draw of b in float64, every draw in float32 (half the memory), or none
KEEP_B = ("all", "float32", "none")


def b_draws(posterior: xr.Dataset, g: GroupDesign, needed_by: str = "this") -> xr.DataArray:
    """The draws of factor g's b, or :class:`~lmm_bayes.errors.RandomEffectsNotKept` saying how to get them."""
    name = b_name(g)
    if name not in posterior:
        raise RandomEffectsNotKept(
            f"{needed_by} needs the draws of the {g.name!r} random effects, and this fit kept none "
            "(keep_b='none'); fit again with keep_b='all' (or keep_b='float32', half the memory)"
        )
    return posterior[name]


def fitted_terms(design: Design, posterior: xr.Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The ``(Z, codes, b)`` of every factor on the fitted rows, b from the posterior (chain, draw, ...)."""
    return [
        (g.Z, g.codes, b_draws(posterior, g, "the linear predictor").transpose("chain", "draw", ...).values)
        for g in design.groups
    ]


def fitted_linear_predictor(design: Design, posterior: xr.Dataset) -> np.ndarray:
    """``X beta + Z b`` on the fitted rows for every draw: (chain, draw, n)."""
    beta = posterior[BETA].transpose("chain", "draw", ...).values if BETA in posterior else None
    eta = linear_predictor(design.X, beta, fitted_terms(design, posterior))
    offset = design.offset  # a GLMM's offset(...) terms
    return eta if offset is None else eta + offset


# ---------------------------------------------------------------------------- log-likelihood


def gaussian_log_likelihood(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``log N(y | mu, sigma^2)`` elementwise (``sigma`` broadcast against ``mu``)."""
    return GAUSSIAN.log_likelihood(y, mu, sigma)


def row_sigma_draws(design: Design, posterior: xr.Dataset) -> np.ndarray:
    """Each row's residual SD per draw (chain, draw, n) under ``sigma=`` (:mod:`lmm_bayes.spec.residual`):
    ``sigma exp(u_j + gamma_c)`` for its level j and category c."""
    res = design.residual
    post = posterior.transpose("chain", "draw", ...)
    log_s = np.log(post[SIGMA].values)[..., None] * np.ones(design.n)
    if res.sigma_by:
        log_s = log_s + post[SIGMA_U].transpose("chain", "draw", res.group).values[..., design.group(res.group).codes]
    if res.sigma_fixed:
        gamma = np.concatenate([np.zeros(post[SIGMA].shape + (1,)), post[SIGMA_BETA].values], axis=-1)
        log_s = log_s + gamma[..., res.category]
    return np.exp(log_s)


def pointwise_log_likelihood(y: np.ndarray, posterior: xr.Dataset, mean, design: Design | None = None) -> xr.DataArray:
    """Pointwise log-likelihood of ``y`` given every draw, dims (chain, draw, obs).

    Gaussian, or the family of ``design`` (a GLMM's, with its trials) when given; with ``sigma=`` (and no
    ``ar=``: rows are then independent given b) each row's own residual SD (:func:`row_sigma_draws`).

    ``mean(one_chain_posterior)`` returns the linear predictor (1, draw, n) of one chain;
    the log-likelihood is computed one chain at a time, so the peak memory is about
    one chain's worth.
    """
    posterior = posterior.transpose("chain", "draw", ...)
    ll = np.empty((posterior.sizes["chain"], posterior.sizes["draw"], len(y)))
    family, trials = (GAUSSIAN, None) if design is None else (design.family, design.trials)
    for c in range(ll.shape[0]):
        one = posterior.isel(chain=[c])
        aux = one[family.aux].values[0][:, None] if family.aux else None  # sigma for a Gaussian model
        if design is not None and design.residual is not None:
            aux = row_sigma_draws(design, one)[0]
        ll[c] = family.log_likelihood(y, mean(one)[0], aux, trials)
    coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values, names.OBS: np.arange(len(y))}
    return xr.DataArray(ll, dims=("chain", "draw", names.OBS), coords=coords, name=names.Y)

"""Default priors scaled to the data, user overrides, and their printable description.

The defaults follow rstanarm's *autoscaling* (Gabry & Goodrich, "Prior
distributions for rstanarm models"): every scale is expressed in units of the
response's standard deviation ``s_y`` divided by the predictor's ``s_x``, so the
same priors are equally weak whatever the units of the data.

==========================  ==============================================
parameter                   default
==========================  ==============================================
Intercept                   Normal(mean(y), 2.5 s_y)   (bambi's location)
slope of column x           Normal(0, 2.5 s_y / s_x)
sigma (residual SD)         Exponential(rate = 1 / s_y)
SD of a random intercept    HalfNormal(s_y)
SD of a random slope on z   HalfNormal(s_y / s_z)
correlations (LKJ)          eta = 2
==========================  ==============================================

``eta = 2`` rather than 1: with few clusters, eta = 1 puts real mass on
correlations near ±1.

The intercept's prior applies to the intercept at the means of the predictors (as in
rstanarm and brms), and in a correlated block ``(1 + x | g)`` so do the priors on G:
:attr:`Priors.centered`, which ``lb.LMM(..., center_predictors=False)`` turns off. The
samplers see these priors mapped onto centred, scaled columns
(:mod:`lmm_bayes.inference.standardize`).

For a generalized model (:class:`~lmm_bayes.GLMM`, any family but Gaussian)
every prior is on the link scale and ``s_y`` is taken as 1, as rstanarm's GLM defaults do
(a log rate or log odds of ±2.5 is already a large effect; the response's own SD says
nothing about the link scale):

==========================  ==============================================
parameter                   default (link scale)
==========================  ==============================================
Intercept                   Normal(g(overall mean), 2.5)
slope of column x           Normal(0, 2.5 / s_x)
SD of a random intercept    HalfNormal(1)
SD of a random slope on z   HalfNormal(1 / s_z)
dispersion = 1/√alpha       HalfNormal(1)   (negative binomial only)
==========================  ==============================================

``g(overall mean)`` is the link of the pooled mean: log(total count / total exposure) with
an offset, logit of the pooled proportion, clipped away from 0 and 1. The negative
binomial's prior is on ``1/√alpha`` rather than on ``alpha`` (the Stan prior-choice
recommendation): it puts the most mass on little overdispersion, so a Poisson-like data
set is not pushed to overdispersion by the prior, as ``alpha ~ Exponential(1)`` would be.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design
from lmm_bayes.spec.distribution import Prior, is_constant

__all__ = ["Prior", "GroupPriors", "Priors", "resolve_priors", "DEFAULT_ETA"]

DEFAULT_ETA = 2.0

@dataclass(frozen=True)
class GroupPriors:
    """Priors of one grouping factor: an SD prior per effect and the LKJ ``eta``."""

    sd: tuple[tuple[str, Prior], ...]
    eta: float = DEFAULT_ETA

    @property
    def sd_by_effect(self) -> dict[str, Prior]:
        return dict(self.sd)


@dataclass(frozen=True)
class Priors:
    """Resolved priors of a model; ``print`` shows them as a table.

    Attributes
    ----------
    fixed : tuple of (name, Prior)
        One per column of X.
    sigma : Prior or None
        The residual SD (None for a family without one: Poisson, Bernoulli, binomial, ...).
    groups : tuple of (group name, GroupPriors)
    dispersion : Prior or None
        The negative binomial's ``1/√alpha``; None for every other family.
    centered : bool
        True (the default, as in rstanarm and brms): the intercept's prior, and in a
        correlated block ``(1 + x | g)`` the priors of G, apply at the means of the
        predictors (the intercept is the response at the average x, which the data
        inform), so where a predictor's zero lies changes nothing. False
        (``lb.LMM(..., center_predictors=False)``): they apply to the raw intercept,
        the response at x = 0, as brms's ``0 + Intercept`` does.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> priors = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).priors
    >>> [name for name, _ in priors.fixed], priors.sigma.dist, priors.group_by_name["Subject"].eta
    (['Intercept', 'Days'], 'Exponential', 2.0)
    """

    fixed: tuple[tuple[str, Prior], ...]
    sigma: Prior | None
    groups: tuple[tuple[str, GroupPriors], ...] = field(default=())
    dispersion: Prior | None = None
    centered: bool = True

    @property
    def fixed_by_name(self) -> dict[str, Prior]:
        """Fixed-effect name -> its :class:`Prior`."""
        return dict(self.fixed)

    @property
    def group_by_name(self) -> dict[str, GroupPriors]:
        """Grouping factor -> its :class:`GroupPriors`."""
        return dict(self.groups)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for provenance and saved fits)."""
        out = {
            "fixed": {k: p.to_dict() for k, p in self.fixed},
            "sigma": None if self.sigma is None else self.sigma.to_dict(),
            "groups": {
                g: {"sd": {e: p.to_dict() for e, p in gp.sd}, "eta": gp.eta} for g, gp in self.groups
            },
        }
        if self.dispersion is not None:
            out["dispersion"] = self.dispersion.to_dict()
        out["centered"] = self.centered
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Priors:
        """Rebuild priors from :meth:`to_dict`'s output."""
        def mk(v: Mapping[str, Any]) -> Prior:
            v = dict(v)
            return Prior(v.pop("dist"), **v)

        return cls(
            fixed=tuple((k, mk(v)) for k, v in d["fixed"].items()),
            sigma=None if d["sigma"] is None else mk(d["sigma"]),
            groups=tuple(
                (g, GroupPriors(sd=tuple((e, mk(p)) for e, p in gp["sd"].items()), eta=float(gp["eta"])))
                for g, gp in d["groups"].items()
            ),
            dispersion=mk(d["dispersion"]) if d.get("dispersion") is not None else None,
            # fits saved before priors applied at the centred predictors were raw
            centered=bool(d.get("centered", False)),
        )

    def as_overrides(self) -> dict[str, Any]:
        """The same priors as a dict of overrides, so they pass the checks a dict gets."""
        out: dict[str, Any] = dict(self.fixed)
        out.update({k: p for k, p in (("sigma", self.sigma), ("dispersion", self.dispersion)) if p is not None})
        for g, gp in self.groups:
            out[g] = {**{f"sd({e})": p for e, p in gp.sd}, "eta": gp.eta}
        return out

    def table(self) -> list[tuple[str, str, str]]:
        """Rows of (parameter, prior, a note: where it applies)."""
        at_means = "at the means of the predictors" if self.centered else ""
        slopes = len(self.fixed) > 1
        rows = [(f"beta[{k}]", repr(p), at_means if k == "Intercept" and slopes else "") for k, p in self.fixed]
        rows += [(k, repr(p), "") for k, p in (("sigma", self.sigma), ("dispersion", self.dispersion)) if p is not None]
        for g, gp in self.groups:
            rows += [(f"sd({e} | {g})", repr(p), at_means if e == "Intercept" and len(gp.sd) > 1 else "")
                     for e, p in gp.sd]
            if len(gp.sd) > 1:
                rows.append((f"corr(* | {g})", f"LKJ(eta={_fmt(gp.eta)})",
                             "correlated blocks only" + (f", {at_means}" if at_means else "")))
        return rows

    def __str__(self) -> str:
        rows = self.table()
        w = max(len(r[0]) for r in rows)
        v = max(len(r[1]) for r in rows)
        return "Priors\n" + "\n".join(
            f"  {name:<{w}}  ~ {prior:<{v}}  ({note})".rstrip() if note else f"  {name:<{w}}  ~ {prior}"
            for name, prior, note in rows
        )

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{n}</td><td>{p}</td><td>{w}</td></tr>" for n, p, w in self.table())
        head = "<tr><th>parameter</th><th>prior</th><th>applies</th></tr>"
        return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _sd(x: np.ndarray) -> float:
    s = float(np.std(x))
    return s if s > 0 else 1.0


def _scales(design: Design) -> tuple[float, float, list[float], dict[str, list[tuple[bool, float]]]]:
    """Mean and SD of y, SD of each X column, and (constant?, SD) of each Z column of every factor.

    From the rows in memory, or from a reduction's sums over every row (the same numbers
    to rounding; :mod:`lmm_bayes.spec.reduction`).
    """
    red = design.reduction
    if red is None:
        y = design.y
        z = {g.name: [(is_constant(g.Z[:, k]), _sd(g.Z[:, k])) for k in range(g.n_effects)]
             for g in design.groups}
        return float(np.mean(y)), _sd(y), [_sd(design.X[:, j]) for j in range(design.X.shape[1])], z
    z, start = {}, 0
    for g in design.groups:
        z[g.name] = [(red.constant(start + k), red.sd(start + k) or 1.0) for k in range(g.n_effects)]
        start += g.n_effects
    last = red.products.shape[1] - 1
    x_sds = [red.sd(start + j) or 1.0 for j in range(last - start)]
    return red.mean(last), red.sd(last) or 1.0, x_sds, z


def default_priors(design: Design) -> Priors:
    """The data-scaled defaults described in the module docstring."""
    if not design.family.is_gaussian:
        return _link_scale_priors(design)
    mean_y, s_y, x_sds, z = _scales(design)
    fixed = []
    for j, name in enumerate(design.X_columns):
        if name == "Intercept":
            fixed.append((name, Prior("Normal", mu=mean_y, sigma=2.5 * s_y)))
        else:
            fixed.append((name, Prior("Normal", mu=0.0, sigma=2.5 * s_y / x_sds[j])))
    groups = []
    for g in design.groups:
        sds = []
        for effect, (constant, sd) in zip(g.effects, z[g.name]):
            scale = s_y if constant else s_y / sd
            sds.append((effect, Prior("HalfNormal", sigma=scale)))
        groups.append((g.name, GroupPriors(sd=tuple(sds), eta=DEFAULT_ETA)))
    return Priors(fixed=tuple(fixed), sigma=Prior("Exponential", lam=1.0 / s_y), groups=tuple(groups))


def _link_scale_priors(design: Design) -> Priors:
    """The defaults of a generalized model: rstanarm's GLM autoscaling with s_y = 1 on the link scale."""
    family = design.family
    center = family.default_intercept(design.y, design.trials, design.offset)
    fixed = []
    for j, name in enumerate(design.X_columns):
        if name == "Intercept":
            fixed.append((name, Prior("Normal", mu=center, sigma=2.5)))
        else:
            fixed.append((name, Prior("Normal", mu=0.0, sigma=2.5 / _sd(design.X[:, j]))))
    groups = []
    for g in design.groups:
        sds = []
        for k, effect in enumerate(g.effects):
            col = g.Z[:, k]
            sds.append((effect, Prior("HalfNormal", sigma=1.0 if is_constant(col) else 1.0 / _sd(col))))
        groups.append((g.name, GroupPriors(sd=tuple(sds), eta=DEFAULT_ETA)))
    dispersion = family.default_aux_prior()
    return Priors(fixed=tuple(fixed), sigma=None, groups=tuple(groups), dispersion=dispersion)


def resolve_priors(
    design: Design, overrides: Mapping[str, Any] | Priors | None = None, *, centered: bool | None = None
) -> Priors:
    """Defaults with the user's overrides applied.

    Parameters
    ----------
    design : Design
    overrides : mapping, optional
        Keys are

        * a fixed-effect name (``"Intercept"``, ``"Days"``): a location prior
          (``Normal`` or ``StudentT``);
        * ``"sigma"``: a scale prior (``HalfNormal``, ``Exponential``,
          ``HalfStudentT``, ``HalfCauchy``);
        * a grouping factor's name (``"Subject"``): a dict with ``"sd"`` (a scale
          prior for every effect's SD), ``"sd(Days)"`` (one effect's SD) and/or
          ``"eta"`` (the LKJ shape, > 0).

        A prior is ``lb.Prior("Normal", mu=0, sigma=10)`` or the same as a dict,
        ``{"dist": "Normal", "mu": 0, "sigma": 10}``.
    centered : bool, optional
        Whether the intercept's prior (and G's, in a correlated block) applies at the means
        of the predictors (:attr:`Priors.centered`). None: an ``overrides`` that is a whole
        :class:`Priors` keeps its own, anything else gets True.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"),
    ...            priors={"Days": lb.Prior("Normal", mu=0, sigma=20), "Subject": {"eta": 4}})
    >>> m.priors.fixed_by_name["Days"], m.priors.group_by_name["Subject"].eta
    (Normal(mu=0, sigma=20), 4.0)
    """
    if centered is None:
        centered = overrides.centered if isinstance(overrides, Priors) else True
    if not isinstance(centered, bool):
        raise TypeError(f"center_predictors must be True or False, got {type(centered).__name__}")
    base = replace(default_priors(design), centered=centered)
    if overrides is None:
        return base
    if isinstance(overrides, Priors):
        _check_same_parameters(base, overrides)
        overrides = overrides.as_overrides()
    if not isinstance(overrides, Mapping):
        raise TypeError(f"priors must be a dict keyed by parameter, got {type(overrides).__name__}")
    fixed = base.fixed_by_name
    groups = base.group_by_name
    sigma, dispersion = base.sigma, base.dispersion
    aux = [k for k, p in (("sigma", sigma), ("dispersion", dispersion)) if p is not None]
    known = [*fixed, *aux, *groups]
    for key, value in overrides.items():
        if key in fixed:
            fixed[key] = Prior.from_value(value, where=key, scale=False)
        elif key in aux and key == "sigma":
            sigma = Prior.from_value(value, where="sigma", scale=True)
        elif key in aux:
            dispersion = Prior.from_value(value, where="dispersion", scale=True)
        elif key in ("sigma", "dispersion"):
            raise ValueError(
                f"priors: family={design.family.name!r} has no {key!r} parameter; "
                f"its parameters are {known}"
            )
        elif key in groups:
            groups[key] = _group_override(key, groups[key], value)
        else:
            hint = validate.did_you_mean(str(key), known)
            raise ValueError(f"priors: unknown key {key!r}{hint}; known keys: {known}")
    _check_block_families(design, groups)
    return Priors(fixed=tuple(fixed.items()), sigma=sigma, groups=tuple(groups.items()), dispersion=dispersion,
                  centered=centered)


def _check_block_families(design: Design, groups: Mapping[str, GroupPriors]) -> None:
    """The SD priors of one correlated block must be one family.

    PyMC's ``LKJCholeskyCov`` takes the SDs of a block as one vector distribution, so
    ``sd(Intercept)`` HalfNormal and ``sd(Days)`` Exponential in ``(Days | Subject)``
    cannot be built; said here, at ``LMM(...)``, rather than when the graph is built.
    Effects in different blocks (``||``, separate terms) are independent and may mix.
    """
    for g in design.groups:
        sd = groups[g.name].sd_by_effect
        for block in g.blocks:
            effects = [g.effects[i] for i in block]
            families = list(dict.fromkeys(sd[e].dist for e in effects))
            if len(families) > 1:
                given = ", ".join(f"sd({e}) {sd[e].dist}" for e in effects)
                raise ValueError(
                    f"priors[{g.name!r}]: the correlated effects {effects} of grouping factor {g.name!r} "
                    "need SD priors of one distribution family (the LKJ prior draws their SDs as one "
                    f"vector), got {given}; give them one family, e.g. "
                    f"{{'sd': lb.Prior({families[0]!r}, ...)}} or the same 'dist' in every "
                    "'sd(<effect>)', or make the effects independent with '||'"
                )


def _check_same_parameters(base: Priors, given: Priors) -> None:
    """A whole :class:`Priors` object must name exactly the model's parameters."""
    want = [name for name, _, _ in base.table()]
    have = [name for name, _, _ in given.table()]
    if sorted(want) != sorted(have):
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        raise ValueError(
            "priors (an lb.Priors) do not match the model's parameters: "
            f"missing {missing}, not in the model {extra}; take model.priors as a start, or pass a dict "
            "of the priors to change"
        )


def _group_override(group: str, base: GroupPriors, value: Any) -> GroupPriors:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"priors[{group!r}] must be a dict with 'sd', 'sd(<effect>)' or 'eta', got {type(value).__name__}"
        )
    sd = base.sd_by_effect
    eta = base.eta
    known = ["sd", "eta", *(f"sd({e})" for e in sd)]
    for key, v in value.items():
        if key == "eta":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"priors[{group!r}]['eta'] must be a positive number, got {v!r}")
            eta = float(v)
        elif key == "sd":
            p = Prior.from_value(v, where=f"sd(* | {group})", scale=True)
            sd = {e: p for e in sd}
        elif key in known:
            effect = key[3:-1]
            sd[effect] = Prior.from_value(v, where=f"{key} | {group}", scale=True)
        else:
            raise ValueError(f"priors[{group!r}]: unknown key {key!r}; known keys: {known}")
    return GroupPriors(sd=tuple(sd.items()), eta=eta)

"""The assumed truth of a plan and the quantities it reports, checked against the model at one design point.

The truth is :func:`~lmm_bayes.simulate`'s ``params`` (``"beta"``, ``"G"``, ``"sigma"``), where a
factor's G may also be given as its SDs and correlation: ``{"sd": [0.5, 0.2], "corr": 0.3}``
(a number for two effects, a matrix for more; 0 when left out). Or the truth is a pilot
fit's posterior (:class:`PilotDraws`): each simulation then draws its truth from it, and power
becomes *assurance*, the probability of success averaged over what the pilot leaves uncertain.
A quantity is a fixed
effect's name (``"condition"``), ``"sigma"``, or a factor's SD, ``"sd(subject)"`` (its first
effect) or ``"sd(subject, condition)"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from lmm_bayes.inference.layout import BETA, SIGMA, covariance_values, sd_name
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import Design

__all__ = ["PilotDraws", "Quantity", "resolve_quantities", "truth_params"]

_SD = re.compile(r"^sd\(\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)$")


@dataclass(frozen=True)
class Quantity:
    """A reported quantity: its name as the user wrote it, its kind, and where it sits in a posterior.

    ``kind`` is ``"coef"`` (a fixed effect: power, type S and M), ``"sigma"`` or ``"sd"``
    (positive: width, coverage and bias only).
    """

    name: str
    kind: str
    var: str
    select: tuple[tuple[str, str], ...] = ()
    group: str = ""

    def of(self, data: xr.Dataset) -> xr.DataArray:
        """This quantity in ``data`` (a posterior or a truth dataset)."""
        return data[self.var].sel(dict(self.select))


def _cov_from_sd(name: str, entry: Mapping) -> np.ndarray:
    extra = set(entry) - {"sd", "corr"}
    if extra or "sd" not in entry:
        raise ValueError(f"truth['G'][{name!r}] as a dict takes 'sd' (one per effect) and optionally 'corr', "
                         f"got keys {sorted(entry)}")
    sd = np.atleast_1d(np.asarray(entry["sd"], dtype=float))
    corr = entry.get("corr", 0.0)
    R = np.asarray(corr, dtype=float)
    if R.ndim == 0:
        if len(sd) > 2 and float(R) != 0:
            raise ValueError(f"truth['G'][{name!r}]: a single corr is for two effects; give a {len(sd)}x{len(sd)} matrix")
        R = np.full((len(sd), len(sd)), float(R))
        np.fill_diagonal(R, 1.0)
    if R.shape != (len(sd), len(sd)):
        raise ValueError(f"truth['G'][{name!r}]['corr'] must be a number or a {len(sd)}x{len(sd)} matrix, "
                         f"got shape {R.shape}")
    return R * np.outer(sd, sd)


def truth_params(truth: Any) -> dict[str, Any]:
    """``truth`` as :func:`~lmm_bayes.simulate`'s ``params``: every ``{"sd", "corr"}`` entry of G as a covariance.

    Examples
    --------
    >>> truth_params({"beta": [0, 1], "G": {"g": {"sd": [2.0, 1.0], "corr": 0.5}}, "sigma": 1})["G"]["g"]
    array([[4., 1.],
           [1., 1.]])
    """
    if not isinstance(truth, Mapping):
        raise TypeError("truth must be a dict with 'beta', 'G' and 'sigma', e.g. {'beta': {'Intercept': 0, "
                        "'condition': 0.3}, 'G': {'subject': {'sd': [0.5, 0.2], 'corr': 0.3}}, 'sigma': 1.0}; "
                        f"got {type(truth).__name__}")
    params = dict(truth)
    if isinstance(params.get("G"), Mapping):
        params["G"] = {g: _cov_from_sd(g, v) if isinstance(v, Mapping) else v for g, v in params["G"].items()}
    return params


def resolve_quantities(quantities: Any, design: Design) -> tuple[Quantity, ...]:
    """The quantities named by ``quantities`` (default: every fixed effect but the intercept).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> [(q.name, q.kind) for q in resolve_quantities(["Days", "sd(Subject, Days)", "sigma"], d)]
    [('Days', 'coef'), ('sd(Subject, Days)', 'sd'), ('sigma', 'sigma')]
    """
    columns = list(design.X_columns)
    if quantities is None:
        quantities = [c for c in columns if c != "Intercept"]
        if not quantities:
            raise ValueError("the formula has no fixed effect but the intercept; name the quantities to report, "
                             "e.g. quantities=['Intercept'] or ['sd(subject)']")
    if isinstance(quantities, str) or not isinstance(quantities, Sequence) or not quantities:
        raise TypeError(f"quantities must be a non-empty list of names, e.g. ['condition'], got {quantities!r}")
    found = []
    for q in quantities:
        if not isinstance(q, str):
            raise TypeError(f"each quantity must be a string, got {type(q).__name__}")
        if q in columns:
            found.append(Quantity(q, "coef", BETA, (("coef", q),)))
        elif q == "sigma":
            found.append(Quantity(q, "sigma", SIGMA))
        elif (m := _SD.match(q)) is not None:
            g = design.group(m.group(1))
            effect = m.group(2) or g.effects[0]
            if effect not in g.effects:
                raise ValueError(f"{q!r}: {g.name} has the effects {list(g.effects)}{validate.did_you_mean(effect, g.effects)}")
            found.append(Quantity(q, "sd", sd_name(g), ((g.effect_dim, effect),), g.name))
        else:
            raise ValueError(
                f"quantity {q!r} is not in the formula{validate.did_you_mean(q, columns)}: a fixed effect "
                f"{columns}, 'sigma', or a factor's SD such as 'sd({design.groups[0].name if design.groups else 'g'})'"
            )
    if len({q.name for q in found}) != len(found):
        raise ValueError(f"quantities repeat a name: {list(quantities)}")
    return tuple(found)


@dataclass(frozen=True, eq=False)
class PilotDraws:
    """A pilot fit's posterior draws, flattened over chains: the truth of assurance.

    Simulation ``sim`` takes draw :meth:`index` (from ``(seed, sim)`` alone, so the same truth at
    every design point: the curves compare designs on common truths).
    """

    columns: tuple[str, ...]
    beta: np.ndarray  # (draws, p)
    G: dict[str, np.ndarray]  # group -> (draws, q, q)
    effects: dict[str, tuple[str, ...]]
    sigma: np.ndarray  # (draws,)

    @classmethod
    def of(cls, fit: Any) -> PilotDraws:
        """The draws of ``fit`` (an ``lb.Fit`` of a Gaussian model)."""
        design = fit.model.design
        if not design.family.is_gaussian:
            raise ValueError(f"a pilot fit for plan_study must be a Gaussian model (lb.LMM); this one is "
                             f"family={design.family.name!r}")
        post = fit.idata.posterior.to_dataset()
        beta = post[BETA].transpose("chain", "draw", "coef").values
        flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731 - (chain, draw, ...) -> (draws, ...)
        return cls(columns=tuple(design.X_columns), beta=flat(beta),
                   G={g.name: flat(covariance_values(post, g)) for g in design.groups},
                   effects={g.name: tuple(g.effects) for g in design.groups},
                   sigma=post[SIGMA].values.reshape(-1))

    def check(self, design: Design) -> None:
        """``ValueError`` unless the plan's model has the pilot's fixed effects and factors."""
        mine = (tuple(design.X_columns), {g.name: tuple(g.effects) for g in design.groups})
        if mine != (self.columns, self.effects):
            raise ValueError(f"the pilot fit's parameters (fixed effects {list(self.columns)}, factors {self.effects}) "
                             f"are not the plan's ({list(mine[0])}, {mine[1]}): fit the pilot with the plan's formula")

    def index(self, seed: int, sim: int) -> int:
        """The draw simulation ``sim`` takes: uniform over the draws, from ``(seed, sim)`` alone."""
        return int(np.random.default_rng(np.random.SeedSequence([int(seed), int(sim)])).integers(len(self.sigma)))

    def params(self, j: int) -> dict[str, Any]:
        """Draw ``j`` as :func:`~lmm_bayes.simulate`'s ``params``."""
        return {"beta": dict(zip(self.columns, self.beta[j])), "G": {g: v[j] for g, v in self.G.items()},
                "sigma": float(self.sigma[j])}

    def value(self, q: Quantity, j: int) -> float:
        """Quantity ``q`` at draw ``j``."""
        if q.kind == "coef":
            return float(self.beta[j, self.columns.index(dict(q.select)["coef"])])
        if q.kind == "sigma":
            return float(self.sigma[j])
        k = self.effects[q.group].index(q.select[0][1])
        return float(np.sqrt(self.G[q.group][j, k, k]))

    def digest(self) -> str:
        """A fingerprint of the draws, for the folder's settings."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.beta, self.sigma, *(self.G[g] for g in sorted(self.G))):
            h.update(np.ascontiguousarray(a, dtype=float).tobytes())
        return h.hexdigest()[:16]

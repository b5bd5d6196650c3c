"""One prior: a named PyMC distribution from a fixed list, its checks, and how it follows a change of scale.

The allowed families are those the samplers can build (the PyMC graphs by name, the compiled
kernels from a table): ``Normal`` and ``StudentT`` for coefficients, ``HalfNormal``,
``Exponential``, ``HalfStudentT`` and ``HalfCauchy`` for SDs. Each is closed under the affine
maps of :meth:`Prior.affine`, which is how a model's priors follow its data onto the
standardized scale the samplers work on (:mod:`lmm_bayes.inference.standardize`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Prior", "is_constant"]

# distribution -> its parameters (in order), for coefficients and for SDs
_LOCATION_DISTS = {"Normal": ("mu", "sigma"), "StudentT": ("nu", "mu", "sigma")}
_SCALE_DISTS = {
    "HalfNormal": ("sigma",),
    "Exponential": ("lam",),
    "HalfStudentT": ("nu", "sigma"),
    "HalfCauchy": ("beta",),
}


@dataclass(frozen=True)
class Prior:
    """A named PyMC distribution with its parameters.

    Examples
    --------
    >>> Prior("Normal", mu=0, sigma=10)
    Normal(mu=0, sigma=10)
    """

    dist: str
    params: tuple[tuple[str, float], ...] = ()

    def __init__(self, dist: str, **params: float):
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple((k, float(v)) for k, v in params.items()))

    @property
    def kwargs(self) -> dict[str, float]:
        """The parameters as a dict, as PyMC takes them."""
        return dict(self.params)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.dist}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """The prior as a JSON-able dict, ``{"dist": ..., **parameters}``."""
        return {"dist": self.dist, **self.kwargs}

    def affine(self, scale: float, shift: float = 0.0) -> Prior:
        """The prior of ``scale * theta + shift`` when ``theta`` has this prior (``scale > 0``).

        Every allowed family is closed under it: a location family moves its ``mu`` and
        scales its ``sigma``; a scale family (``shift`` must be 0) scales its scale
        parameter (an Exponential's rate is divided). How the priors of a model follow its
        data to the standardized scale the samplers work on
        (:mod:`lmm_bayes.inference.standardize`).

        Examples
        --------
        >>> Prior("Normal", mu=250, sigma=100).affine(0.5, -125.0)
        Normal(mu=0, sigma=50)
        >>> Prior("Exponential", lam=0.02).affine(0.01)
        Exponential(lam=2)
        """
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(shift)):
            raise ValueError(f"a prior can be mapped by a positive finite scale and a finite shift, got {scale}, {shift}")
        if self.dist in _SCALE_DISTS and shift != 0:
            raise ValueError(f"a {self.dist} prior on a scale parameter cannot be shifted")
        out = {}
        for k, v in self.params:
            if k == "mu":
                v = scale * v + shift
            elif k in ("sigma", "beta"):
                v = scale * v
            elif k == "lam":
                v = v / scale
            out[k] = v
        return Prior(self.dist, **out)

    @classmethod
    def from_value(cls, value: Any, *, where: str, scale: bool) -> Prior:
        """Accept a :class:`Prior` or a dict ``{"dist": "Normal", "mu": 0, "sigma": 1}``."""
        allowed = _SCALE_DISTS if scale else _LOCATION_DISTS
        if isinstance(value, Prior):
            dist, kwargs = value.dist, value.kwargs
        elif isinstance(value, Mapping):
            kwargs = dict(value)
            dist = kwargs.pop("dist", None)
            if dist is None:
                raise ValueError(f"prior for {where} needs a 'dist' key, e.g. {{'dist': '{next(iter(allowed))}', ...}}")
        else:
            raise TypeError(
                f"prior for {where} must be lb.Prior(...) or a dict like "
                f"{{'dist': '{next(iter(allowed))}', ...}}; got {type(value).__name__}"
            )
        if dist not in allowed:
            raise ValueError(f"prior for {where}: distribution {dist!r} is not one of {list(allowed)}")
        expected = allowed[dist]
        if set(kwargs) != set(expected):
            raise ValueError(
                f"prior for {where}: {dist} takes parameters {list(expected)}, got {sorted(kwargs)}"
            )
        for k, v in kwargs.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v):
                raise ValueError(f"prior for {where}: parameter {k} must be a finite number, got {v!r}")
            if k != "mu" and v <= 0:
                raise ValueError(f"prior for {where}: parameter {k} must be positive, got {v}")
        return cls(dist, **{k: kwargs[k] for k in expected})



def _fmt(v: float) -> str:
    return f"{v:.4g}"


def is_constant(x: np.ndarray) -> bool:
    """Whether a column holds one value, up to rounding in its last bits.

    Not ``np.allclose``'s relative tolerance: ``Days + 1e6`` varies by 9 in 10^6 and is
    a predictor, not an intercept.

    Examples
    --------
    >>> is_constant(np.ones(4)), is_constant(np.arange(4.0) + 1e6)
    (True, False)
    """
    x = np.asarray(x, dtype=float)
    if not x.size:
        return True
    return bool(np.ptp(x) <= 4 * np.spacing(np.max(np.abs(x))))

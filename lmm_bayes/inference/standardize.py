"""The scale every sampler works on: centred, scaled predictors and response, mapped back draw by draw.

An answer must not depend on where a column's zero lies or on its units. Every method
(the collapsed kernel, crossed, Gibbs, Laplace, the full graphs) therefore samples a
*working* model whose columns are standardized, and every draw is mapped back to the
user's parameterisation before anything else sees it (tables, predictions, saved files,
plots): :func:`standardize` makes the working design, :meth:`Standardization.priors`
maps the priors onto it and :meth:`Standardization.to_user` maps a posterior back.

The working model
-----------------
With an ``Intercept`` column (the usual case), each other column of X is centred and
scaled, ``x_w = (x - m) / s``, and a Gaussian response too, ``y_w = (y - c) / s_y``. In
a correlated block holding an intercept, ``(1 + x | g)``, the column of x in Z is centred
the same way, so the block's effects (and the priors on their SDs and LKJ correlation) are
the effects at the mean of x; other columns of Z are only scaled. With ``X = X_w A`` and
``Z_g = Z_g,w T_g`` (``A`` and ``T_g`` unit upper triangular up to the scales), the
parameters map as

* β_w = (A β − c e_0) / s_y,   σ_w = σ / s_y,   b_w = T b / s_y,   G_w = T G Tᵀ / s_y²;

so the sums the collapsed method forms are of numbers of order one (``y + 1e9`` loses
nothing), the intercept is not correlated with the slopes in the posterior (NUTS's diagonal
mass matrix needs no help), and nutpie starts near the posterior whatever the units.

The priors follow exactly (:meth:`~lmm_bayes.Prior.affine`), with one
deliberate change, as in rstanarm and brms: when :attr:`~lmm_bayes.Priors.centered`
is True (the default), the intercept's prior, and G's in a correlated block, are priors on
the intercept *at the means of the predictors*. The data-scaled defaults then read the
same for any data (Normal(0, 2.5) for every β_w, HalfNormal(1) for every SD, Exponential(1)
for σ_w), which also lets a compiled model be reused across data sets. With
``centered=False`` X and Z are only scaled, so the priors stay on the raw intercept.

A block of independent effects, ``(x || g)``, is never centred: after a shift of x it is a
different model (its intercept variance changes), as in lme4. Without an intercept column
nothing is centred and y is not shifted (only scaled): the shift could not be absorbed.

Examples
--------
>>> import lmm_bayes as lb
>>> df = lb.datasets.load("sleepstudy")
>>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", df)
>>> std = standardize(model.design, centered=model.priors.centered)
>>> round(abs(float(std.design.X[:, 1].mean())), 12), round(float(std.design.y.std()), 12)
(0.0, 1.0)
>>> std.priors(model.priors).fixed_by_name["Days"]
Normal(mu=0, sigma=2.5)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from lmm_bayes.inference.layout import BETA, SIGMA, b_name, corr_name, covariance_values, sd_name
from lmm_bayes.spec.design import Design, GroupDesign
from lmm_bayes.spec.distribution import is_constant
from lmm_bayes.spec.priors import GroupPriors, Priors

__all__ = ["ColumnScale", "Standardization", "WorkingScales", "standardize", "check_representable"]

#: a column whose spread is below this fraction of its magnitude has lost its variation to rounding
MIN_RELATIVE_SPREAD = 1e-13
#: beyond this magnitude the squares of a column overflow float64 in the sums
MAX_MAGNITUDE = 1e150


@dataclass(frozen=True)
class ColumnScale:
    """How one column is standardized: ``(value - shift) / scale``."""

    shift: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class WorkingScales:
    """Every column's shift and scale, without the designs: what a refit of the same structure reuses.

    :func:`standardize` with ``scales=`` takes these instead of the data's own means and SDs,
    so refits of one model on new responses (simulation-based calibration, bootstraps) get
    the same working priors, hence the same compiled graph, while any fixed shift and scale
    is still an exact reparameterisation. Picklable (it crosses to worker processes).
    """

    y: ColumnScale
    x: tuple[ColumnScale, ...]
    z: tuple[tuple[str, tuple[ColumnScale, ...]], ...]

    def powers_of_two(self) -> WorkingScales:
        """The same shifts with every scale rounded to a power of two: the priors' numbers then map
        exactly (a prior's 1 stays 1 within a factor of two, in binary), which refits that share
        one scale (simulation-based calibration) use.

        Examples
        --------
        >>> WorkingScales(y=ColumnScale(3.0, 0.886), x=(), z=()).powers_of_two().y
        ColumnScale(shift=3.0, scale=1.0)
        """
        def rounded(c: ColumnScale) -> ColumnScale:
            return ColumnScale(c.shift, float(2.0 ** np.round(np.log2(c.scale))))

        return WorkingScales(y=rounded(self.y), x=tuple(map(rounded, self.x)),
                             z=tuple((g, tuple(map(rounded, cs))) for g, cs in self.z))


@dataclass(frozen=True, eq=False)
class Standardization:
    """A design's working (standardized) version and the maps between the two parameterisations.

    Attributes
    ----------
    design : Design
        The working design every method samples.
    user : Design
        The design as the user built it.
    y : ColumnScale
        The response's shift and scale (shift 0, scale 1 for a GLMM: its y is counts).
    x : tuple of ColumnScale
        One per column of X (shift 0, scale 1 for the intercept).
    z : dict of str to tuple of ColumnScale
        Per grouping factor, one per effect (shift only inside a correlated block with an
        intercept).
    centered : bool
        Whether X and Z were centred (the priors' :attr:`~lmm_bayes.Priors.centered`).
    """

    design: Design
    user: Design
    y: ColumnScale
    x: tuple[ColumnScale, ...]
    z: dict[str, tuple[ColumnScale, ...]]
    centered: bool

    @property
    def scales(self) -> WorkingScales:
        """The shifts and scales alone (:class:`WorkingScales`), to standardize another data set alike."""
        return WorkingScales(y=self.y, x=self.x, z=tuple(self.z.items()))

    @property
    def is_identity(self) -> bool:
        """True when nothing moves (every shift 0, every scale 1)."""
        cols = [self.y, *self.x, *(c for cs in self.z.values() for c in cs)]
        return all(c.shift == 0.0 and c.scale == 1.0 for c in cols)

    @property
    def log_jacobian(self) -> float:
        """``log p(y) - log p(y_w)``: the response's scale moves every row's density by ``-log s_y``."""
        return -self.user.n_rows * float(np.log(self.y.scale))

    # ------------------------------------------------------------------ the maps of T and A

    def _intercept(self) -> int | None:
        cols = self.user.X_columns
        return cols.index("Intercept") if "Intercept" in cols else None

    def _t_inverse(self, g: GroupDesign) -> np.ndarray:
        """T_g⁻¹: the user's b of one cluster from the working one (without the response scale)."""
        return np.linalg.solve(self._t(g), np.eye(g.n_effects))

    def _t(self, g: GroupDesign) -> np.ndarray:
        cs = self.z[g.name]
        T = np.diag([c.scale for c in cs])
        i0 = g.effects.index("Intercept") if "Intercept" in g.effects else None
        for k, c in enumerate(cs):
            if c.shift != 0.0:
                T[i0, k] = c.shift
        return T

    # ------------------------------------------------------------------ priors

    def priors(self, priors: Priors) -> Priors:
        """The user's priors as priors on the working parameters (exact for every allowed family).

        The intercept's prior is taken to be on the intercept at the centring point of X (the
        means of the predictors when :attr:`centered`, the raw intercept otherwise).

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
        >>> w = standardize(m.design).priors(m.priors)
        >>> w.fixed_by_name["Intercept"], w.sigma, w.group_by_name["Subject"].sd_by_effect["Days"]
        (Normal(mu=0, sigma=2.5), Exponential(lam=1), HalfNormal(sigma=1))
        """
        sy, cy = self.y.scale, self.y.shift
        i0 = self._intercept()
        fixed = []
        for j, (name, p) in enumerate(priors.fixed):
            if j == i0:
                fixed.append((name, p.affine(1.0, -cy).affine(1.0 / sy)))  # (mu - c) / s: 0 for the default
            else:
                fixed.append((name, p.affine(self.x[j].scale / sy)))
        groups = []
        for g, (name, gp) in zip(self.user.groups, priors.groups):
            cs = self.z[g.name]
            sd = tuple((e, p.affine(cs[k].scale / sy)) for k, (e, p) in enumerate(gp.sd))
            groups.append((name, GroupPriors(sd=sd, eta=gp.eta)))
        sigma = None if priors.sigma is None else priors.sigma.affine(1.0 / sy)
        return replace(priors, fixed=tuple(fixed), sigma=sigma, groups=tuple(groups))

    # ------------------------------------------------------------------ posterior

    def to_user(self, posterior: xr.Dataset) -> xr.Dataset:
        """A posterior (or prior) in the working parameters mapped to the user's, draw by draw.

        β, σ, every factor's SDs and correlations (through G = T⁻¹ G_w T⁻ᵀ s_y²) and b;
        other variables (a negative binomial's dispersion) are unchanged. Variables absent
        from ``posterior`` (b not kept) are skipped.
        """
        if self.is_identity:
            return posterior
        sy, cy = self.y.scale, self.y.shift
        out = posterior.copy()
        if BETA in posterior and self.x:
            beta = posterior[BETA]
            values = beta.values.astype(float) * sy
            axis = beta.dims.index("coef")
            values = np.moveaxis(values, axis, -1)
            i0 = self._intercept()
            if i0 is not None:
                values[..., i0] += cy
            for j, c in enumerate(self.x):
                if j != i0:
                    values[..., j] /= c.scale
            if i0 is not None:
                for j, c in enumerate(self.x):
                    if j != i0 and c.shift != 0.0:
                        values[..., i0] -= c.shift * values[..., j]
            out[BETA] = beta.copy(data=np.moveaxis(values, -1, axis).astype(beta.dtype))
        if SIGMA in posterior:
            out[SIGMA] = posterior[SIGMA] * sy
        for g in self.user.groups:
            self._group_to_user(g, posterior, out)
        return out

    def _group_to_user(self, g: GroupDesign, posterior: xr.Dataset, out: xr.Dataset) -> None:
        sy = self.y.scale
        Tinv = self._t_inverse(g)
        diagonal = not np.any(Tinv - np.diag(np.diag(Tinv)))
        sd, corr = sd_name(g), corr_name(g)
        if sd in posterior:
            if diagonal:  # independent scaling: the correlations do not move
                out[sd] = posterior[sd] * xr.DataArray(sy * np.diag(Tinv), dims=g.effect_dim)
            else:
                sample = [d for d in ("chain", "draw") if d in posterior[sd].dims]
                G = covariance_values(_with_sample_dims(posterior, sample), g)
                s, R = _sd_corr(sy**2 * np.einsum("ij,...jk,lk->...il", Tinv, G, Tinv))
                s, R = _drop_sample_dims(s, sample), _drop_sample_dims(R, sample)
                out[sd] = (posterior[sd].transpose(*sample, ...).copy(data=s))
                if corr in posterior:
                    out[corr] = posterior[corr].transpose(*sample, ...).copy(data=R)
        name = b_name(g)
        if name in posterior:
            b = posterior[name]
            dims = b.dims
            b = b.transpose(..., g.name, g.effect_dim)
            values = sy * np.einsum("...lk,jk->...lj", b.values.astype(float), Tinv)
            out[name] = b.copy(data=values.astype(b.dtype)).transpose(*dims)

    def to_working(self, posterior: xr.Dataset) -> xr.Dataset:
        """The inverse of :meth:`to_user` for β, σ, the SDs and correlations (b is not mapped).

        For checks: the working model's log density at a user's parameter point.
        """
        sy, cy = self.y.scale, self.y.shift
        out = posterior.copy()
        if BETA in posterior and self.x:
            beta = posterior[BETA]
            axis = beta.dims.index("coef")
            v = np.moveaxis(beta.values.astype(float), axis, -1).copy()
            i0 = self._intercept()
            if i0 is not None:
                v[..., i0] += sum(c.shift * v[..., j] for j, c in enumerate(self.x) if j != i0)
                v[..., i0] -= cy
            for j, c in enumerate(self.x):
                if j != i0:
                    v[..., j] *= c.scale
            out[BETA] = beta.copy(data=np.moveaxis(v / sy, -1, axis))
        if SIGMA in posterior:
            out[SIGMA] = posterior[SIGMA] / sy
        for g in self.user.groups:
            sd, corr = sd_name(g), corr_name(g)
            if sd not in posterior:
                continue
            sample = [d for d in ("chain", "draw") if d in posterior[sd].dims]
            G = covariance_values(_with_sample_dims(posterior, sample), g)
            T = self._t(g)
            s, R = _sd_corr(np.einsum("ij,...jk,lk->...il", T, G, T) / sy**2)
            out[sd] = posterior[sd].transpose(*sample, ...).copy(data=_drop_sample_dims(s, sample))
            if corr in posterior:
                out[corr] = posterior[corr].transpose(*sample, ...).copy(data=_drop_sample_dims(R, sample))
        return out

    def max_predictor_correlation(self) -> float:
        """The largest absolute correlation between two columns of X other than the intercept (0 with fewer).

        From the rows in memory, or from a reduction's sums over every row.
        """
        keep = [j for j, name in enumerate(self.design.X_columns) if name != "Intercept"]
        if len(keep) < 2:
            return 0.0
        red = self.design.reduction
        if red is None:
            X = self.design.X[:, keep]
            C = X.T @ X / len(X) - np.outer(X.mean(axis=0), X.mean(axis=0))
        else:
            start = sum(g.n_effects for g in self.design.groups)
            cols = [start + j for j in keep]
            P = red.products_about(np.zeros(red.products.shape[1]), np.ones(red.products.shape[1])).sum(axis=0)
            m = red.sums[cols] / red.n
            C = P[np.ix_(cols, cols)] / red.n - np.outer(m, m)
        d = np.sqrt(np.clip(np.diag(C), 1e-300, None))
        R = C / np.outer(d, d)
        np.fill_diagonal(R, 0.0)
        return float(np.max(np.abs(R)))

    def y_to_user(self, y_working: np.ndarray) -> np.ndarray:
        """Draws of the working response (a prior predictive) on the user's scale (counts stay counts)."""
        if self.y == ColumnScale():
            return np.asarray(y_working)
        return self.y.shift + self.y.scale * np.asarray(y_working)


def _sd_corr(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDs and correlations (unit diagonal exactly) of covariance matrices (..., q, q)."""
    s = np.sqrt(np.diagonal(G, axis1=-2, axis2=-1))
    R = G / (s[..., :, None] * s[..., None, :])
    q = G.shape[-1]
    R[..., np.arange(q), np.arange(q)] = 1.0
    return s, R


def _with_sample_dims(posterior: xr.Dataset, sample: list[str]) -> xr.Dataset:
    """``covariance_values`` reads (chain, draw, ...): give a point without them those dims."""
    missing = [d for d in ("chain", "draw") if d not in sample]
    return posterior.expand_dims(missing) if missing else posterior


def _drop_sample_dims(values: np.ndarray, sample: list[str]) -> np.ndarray:
    missing = 2 - len(sample)
    return values.reshape(values.shape[missing:]) if missing else values


# ---------------------------------------------------------------------------- making one


def check_representable(values: np.ndarray, name: str) -> ColumnScale:
    """The mean and SD of a column, or ``ValueError`` naming it when float64 cannot carry it.

    A column is refused when its values overflow the sums (``|x| > 1e150``) or when its
    spread is below ``1e-13`` of its size, i.e. rounding has already eaten its variation
    (``1e20 + x``): subtract a constant from it first. A constant column (an intercept)
    gets shift 0 and scale 1.

    Examples
    --------
    >>> check_representable(np.arange(4.0) + 1e9, "x")
    ColumnScale(shift=1000000001.5, scale=1.118033988749895)
    """
    values = np.asarray(values, dtype=float)
    top = float(np.max(np.abs(values))) if values.size else 0.0
    _check_magnitude(top, name)
    if is_constant(values):
        return ColumnScale()
    mean = float(np.mean(values))
    return _checked(mean, float(np.std(values - mean)), top, name)


def _check_magnitude(top: float, name: str) -> None:
    if not np.isfinite(top) or top > MAX_MAGNITUDE:
        raise ValueError(
            f"column {name!r} holds values up to {top:.3g}, too large for float64 sums of squares "
            f"(the limit is {MAX_MAGNITUDE:.0e}); rescale it (e.g. divide it by a power of ten) before fitting"
        )


def _checked(mean: float, sd: float, top: float, name: str) -> ColumnScale:
    if not sd > MIN_RELATIVE_SPREAD * top:
        raise ValueError(
            f"column {name!r} varies by only {sd:.3g} around {mean:.6g}: float64 keeps about 16 significant "
            "digits, so its variation is lost to rounding; subtract a constant from it before fitting "
            f"(e.g. {name} - {mean:.6g})"
        )
    return ColumnScale(mean, sd)


def standardize(design: Design, *, centered: bool = True, scales: WorkingScales | None = None) -> Standardization:
    """The working design of ``design`` and the maps between the parameterisations (module docstring).

    Parameters
    ----------
    design : Design
    centered : bool
        Centre X (and Z inside correlated blocks with an intercept) as well as scale them;
        the priors' :attr:`~lmm_bayes.Priors.centered`.
    scales : WorkingScales, optional
        Another standardization's shifts and scales (:attr:`Standardization.scales`) to use
        instead of this data's: the same working priors for every refit of one structure.

    Raises
    ------
    ValueError
        A column (response, predictor or random-effect column) that float64 cannot carry:
        see :func:`check_representable`.
    """
    if scales is not None:
        return _alike(design, scales, centered)
    red = design.reduction
    has_intercept = "Intercept" in design.X_columns
    # the columns of F = [Z_1 ... Z_K, X, y], as a reduction orders them; y and X are checked
    # first, so a refusal names the column the user wrote rather than its copy in Z
    start = sum(g.n_effects for g in design.groups)
    y = ColumnScale()
    if design.family.is_gaussian:
        c = _column(red, start + len(design.X_columns), design.y, design.response)
        y = ColumnScale(c.shift if has_intercept else 0.0, c.scale)
    x = []
    for j, name in enumerate(design.X_columns):
        c = ColumnScale() if name == "Intercept" else _column(red, start + j, design.X[:, j], name)
        x.append(ColumnScale(c.shift if centered and has_intercept else 0.0, c.scale))
    z: dict[str, tuple[ColumnScale, ...]] = {}
    start = 0
    for g in design.groups:
        # the effects that share a correlated block with the intercept: centred with it
        i0 = g.effects.index("Intercept") if "Intercept" in g.effects else None
        with_intercept = {k for b in g.blocks if len(b) > 1 and i0 in b for k in b if k != i0}
        cs = []
        for k, effect in enumerate(g.effects):
            c = _column(red, start + k, g.Z[:, k], f"{effect} | {g.name}")
            cs.append(ColumnScale(c.shift if centered and k in with_intercept else 0.0, c.scale))
        z[g.name] = tuple(cs)
        start += g.n_effects
    work = _working_design(design, y, tuple(x), z)
    return Standardization(design=work, user=design, y=y, x=tuple(x), z=z, centered=centered)


def _alike(design: Design, scales: WorkingScales, centered: bool) -> Standardization:
    """:func:`standardize` with given shifts and scales, for a design of the same structure."""
    z = dict(scales.z)
    same = (len(scales.x) == design.X.shape[1] and list(z) == [g.name for g in design.groups]
            and all(len(z[g.name]) == g.n_effects for g in design.groups))
    if not same:
        raise ValueError("scales= come from a model of another structure (other columns or grouping factors); "
                         "take them from a model of the same formula")
    work = _working_design(design, scales.y, scales.x, z)
    return Standardization(design=work, user=design, y=scales.y, x=scales.x, z=z, centered=centered)


def _column(red, index: int, values: np.ndarray, name: str) -> ColumnScale:
    """One column's mean and SD, over every row (a reduction's sums) or the rows in memory."""
    if red is None:
        return check_representable(values, name)
    top = max(abs(float(red.mins[index])), abs(float(red.maxs[index])))
    _check_magnitude(top, name)
    if red.constant(index):
        return ColumnScale()
    return _checked(red.mean(index), red.sd(index), top, name)


def _working_design(design: Design, y: ColumnScale, x: tuple[ColumnScale, ...],
                    z: dict[str, tuple[ColumnScale, ...]]) -> Design:
    def apply(values: np.ndarray, cs) -> np.ndarray:
        shift = np.array([c.shift for c in cs])
        scale = np.array([c.scale for c in cs])
        return (values - shift) / scale

    groups = tuple(replace(g, Z=apply(g.Z, z[g.name])) for g in design.groups)
    X = apply(design.X, x) if design.X.shape[1] else design.X
    changes = dict(y=(design.y - y.shift) / y.scale, X=X, groups=groups)
    if design.reduction is not None:
        columns = [c for g in design.groups for c in z[g.name]] + list(x) + [y]
        changes["reduction"] = design.reduction.standardized(
            np.array([c.shift for c in columns]), np.array([c.scale for c in columns])
        )
    return replace(design, **changes)

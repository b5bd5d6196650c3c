"""Residuals beyond ``sigma^2 I``: ``sigma=`` (the residual SD by a grouping factor) and ``ar=`` (AR(1) over trials).

``lb.LMM(formula, data, sigma="~ (1 | neuron)", ar="trial | neuron")`` reads like brms's
``sigma ~ (1 | neuron)`` and ``ar(time = trial, gr = neuron)`` (nlme: ``varIdent(~ 1 | neuron)``,
``corAR1(~ trial | neuron)``). For cluster j of the grouping factor g, with its rows ordered by the
ordering column,

    e_j ~ N(0, R_j),   R_j = sigma_j^2 S_j A_j(rho) S_j,   log sigma_j = log sigma + u_j,   u_j ~ N(0, tau^2),

``S_j`` diagonal with ``exp(gamma_c)`` for each row's category c of ``sigma="~ cond"`` (brms's
``sigma ~ cond``; nlme's ``varIdent(~ 1 | cond)``; gamma = 0 for the first category,
prior Normal(0, 1) on each other), and ``A_j`` the correlation matrix of a stationary AR(1) observed at the integer times ``t_i``:
``corr(e_i, e_k) = rho^|t_i - t_k|``. A gap in the order (a rejected trial: 1, 2, 4) is that same
process with a value missing, so it is handled exactly (``rho^2`` across a gap of 2); what is refused
is what it cannot be: an ordering column that is not integer-valued, ties within a cluster, missing
values, and more than :data:`MAX_GAPS` distinct gap lengths (each costs one set of sums,
:mod:`lmm_bayes.inference.methods.structured.sums`).

This module parses the two arguments (:func:`parse_residual`) and checks them against the design
and the data (:func:`residual_design`); the likelihood is :mod:`lmm_bayes.inference.methods.structured`'s.

Scope (the first increment of issue 31): one grouping factor in the formula, ``(1 | g)`` or
``(1 + x | g)``, with ``sigma=``'s random term and ``ar=`` both by that same factor, and at most one
categorical column (2 to :data:`MAX_CATEGORIES` values) on log sigma; anything else is refused with a
message saying what is supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_GAPS", "RESERVED", "SUPPORTED", "ResidualDesign", "ResidualSpec", "parse_residual", "residual_design",
    "MAX_CATEGORIES", "RHO", "SIGMA_BETA", "SIGMA_COEF", "SIGMA_LOG", "SIGMA_SD", "SIGMA_SD_PRIOR", "SIGMA_U", "posterior_names", "with_residual",
]

#: what this version fits, for the messages that refuse the rest
SUPPORTED = ("sigma='~ (1 | g)' (a residual SD per level of g), sigma='~ cond' or '~ cond + (1 | g)' (and per "
             "category of the column cond) and/or ar='time | g' (AR(1) over the integer column time within each "
             "level of g), where g is the formula's one grouping factor, e.g. 'y ~ x + (1 + x | g)'")
#: the most categories of sigma='~ cond' (the sums grow with their square under ar=)
MAX_CATEGORIES = 10
#: the most distinct gap lengths between successive rows of a cluster (each costs one set of sums)
MAX_GAPS = 8
#: the AR(1) coefficient (prior Uniform(-1, 1), as brms's ``ar()``)
RHO = "rho"
#: tau, the SD of log sigma_j across levels; log sigma_j is unitless, so its prior is the package's
#: working-scale SD prior, HalfNormal(SIGMA_SD_PRIOR) = HalfNormal(1): a factor of e per SD
SIGMA_SD = "sigma_sd"
SIGMA_SD_PRIOR = 1.0
#: u_j = log sigma_j - log sigma on the factor's dim, and log sigma_j itself, the parameter sampled
#: (hierarchically centred, log sigma_j ~ N(log sigma, tau^2): the data pin each sigma_j down, and the
#: non-centred u_j = tau z_j mixed at bulk ESS 130 of 4000 on 500 neurons x 100 trials)
SIGMA_U = "sigma_u"
SIGMA_LOG = "sigma_log"
#: sigma="~ cond": log(sigma_c / sigma_reference) per other category, on dim SIGMA_COEF (prior Normal(0, 1))
SIGMA_BETA = "sigma_beta"
SIGMA_COEF = "sigma_coef"
#: the posterior names of the residual structure: a grouping factor cannot take them
RESERVED = (RHO, SIGMA_SD, SIGMA_U, SIGMA_LOG, SIGMA_BETA, SIGMA_COEF)

_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_GROUP_TERM = re.compile(rf"^\(\s*1\s*\|\s*({_NAME})\s*\)$")
_COLUMN = re.compile(rf"^{_NAME}$")
_AR = re.compile(rf"^\s*({_NAME})\s*\|\s*({_NAME})\s*$")


@dataclass(frozen=True)
class ResidualSpec:
    """The ``sigma=`` and ``ar=`` arguments as given, and what they name.

    Examples
    --------
    >>> s = parse_residual("~ (1 | neuron)", "trial | neuron")
    >>> s.sigma_group, s.ar_time, s.group, s.kwargs()
    ('neuron', 'trial', 'neuron', {'sigma': '~ (1 | neuron)', 'ar': 'trial | neuron'})
    """

    sigma: str | None = None
    ar: str | None = None
    sigma_group: str | None = None
    ar_time: str | None = None
    ar_group: str | None = None
    sigma_fixed: str | None = None

    @property
    def group(self) -> str | None:
        """The grouping factor the residual structure is by (None: ``sigma="~ cond"`` alone)."""
        return self.sigma_group or self.ar_group

    def kwargs(self) -> dict[str, str]:
        """The model's ``sigma=`` and ``ar=`` arguments (those given), to rebuild it."""
        return {k: v for k, v in (("sigma", self.sigma), ("ar", self.ar)) if v is not None}


def parse_residual(sigma: Any = None, ar: Any = None) -> ResidualSpec | None:
    """Read ``sigma=`` and ``ar=``; None when neither is given (the model's ``sigma^2 I``).

    Raises
    ------
    TypeError
        Either is not a string.
    ValueError
        A form this version does not fit (fixed effects on log sigma, slopes, two factors), with
        what it does fit.

    Examples
    --------
    >>> parse_residual() is None
    True
    >>> parse_residual(ar="trial | neuron").ar_group
    'neuron'
    >>> parse_residual(sigma="~ cond + (1 | neuron)").sigma_fixed
    'cond'
    >>> parse_residual(sigma="~ cond + x")
    Traceback (most recent call last):
    ...
    ValueError: sigma='~ cond + x' is not a form this version fits; it fits sigma='~ (1 | g)' (a residual SD per level of g), sigma='~ cond' or '~ cond + (1 | g)' (and per category of the column cond) and/or ar='time | g' (AR(1) over the integer column time within each level of g), where g is the formula's one grouping factor, e.g. 'y ~ x + (1 + x | g)'
    """
    for value, name in ((sigma, "sigma"), (ar, "ar")):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string such as {'~ (1 | neuron)' if name == 'sigma' else 'trial | neuron'!r}"
                            f" or None, got {type(value).__name__}")
    if sigma is None and ar is None:
        return None
    sigma_group = ar_time = ar_group = sigma_fixed = None
    if sigma is not None:
        sigma_group, sigma_fixed = _sigma_terms(sigma)
    if ar is not None:
        m = _AR.match(ar)
        if m is None:
            raise ValueError(f"ar={ar!r} is not a form this version fits (write 'time | group', e.g. "
                             f"'trial | neuron'); it fits {SUPPORTED}")
        ar_time, ar_group = m.group(1), m.group(2)
    if sigma_group and ar_group and sigma_group != ar_group:
        raise ValueError(f"sigma= is by {sigma_group!r} and ar= by {ar_group!r}; this version fits both only by "
                         f"the same factor: {SUPPORTED}")
    return ResidualSpec(sigma=sigma, ar=ar, sigma_group=sigma_group, ar_time=ar_time, ar_group=ar_group,
                        sigma_fixed=sigma_fixed)


def _sigma_terms(sigma: str) -> tuple[str | None, str | None]:
    """``sigma=``'s random term's factor and its one categorical column (either may be None)."""
    text = sigma.strip()
    text = text[1:] if text.startswith("~") else text
    terms = [t.strip() for t in re.split(r"\+(?![^(]*\))", text)]  # "+" outside parentheses
    group = column = None
    for term in terms:
        m = _GROUP_TERM.match(term)
        if term == "1":
            continue
        if m is not None and group is None:
            group = m.group(1)
        elif m is None and _COLUMN.match(term) and column is None:
            column = term
        else:
            raise ValueError(f"sigma={sigma!r} is not a form this version fits; it fits {SUPPORTED}")
    if group is None and column is None:
        raise ValueError(f"sigma={sigma!r} is not a form this version fits; it fits {SUPPORTED}")
    return group, column


@dataclass(frozen=True, eq=False)
class ResidualDesign:
    """The residual structure checked against a design: which factor, and each row's place in its cluster.

    Attributes
    ----------
    spec : ResidualSpec
    group : str
        The design's grouping factor (``Design.group(group)``) the structure is by.
    sigma_by : bool
        One residual SD per level of ``group``.
    time : ndarray of int or None
        The ordering column per row (row order), None without ``ar=``.
    order : ndarray of int
        The rows sorted by cluster, then time (all rows, in cluster order, without ``ar=``).
    gap : ndarray of int
        Per row (row order): its time minus that of the previous row of its cluster, 0 for a
        cluster's first row (and every row without ``ar=``).
    category : ndarray of int
        Per row, its category of ``sigma="~ cond"`` (all 0 without one).
    categories : tuple of str
        The categories, the reference (log sigma ratio 0) first; ``("(all)",)`` without one.
    """

    spec: ResidualSpec
    group: str
    sigma_by: bool
    time: np.ndarray | None
    order: np.ndarray
    gap: np.ndarray
    category: np.ndarray
    categories: tuple[str, ...] = ("(all)",)

    @property
    def sigma_fixed(self) -> bool:
        """A residual SD per category of a column (``sigma="~ cond"``)."""
        return self.spec.sigma_fixed is not None

    @property
    def ar(self) -> bool:
        """AR(1) within clusters."""
        return self.time is not None

    @property
    def gap_values(self) -> np.ndarray:
        """The distinct gap lengths, ascending (empty without ``ar=``)."""
        return np.unique(self.gap[self.gap > 0])


def posterior_names(res: ResidualDesign | None) -> list[str]:
    """The posterior variables of a residual structure (none without one)."""
    if res is None:
        return []
    return [*([SIGMA_BETA] if res.sigma_fixed else []), *([SIGMA_SD, SIGMA_U] if res.sigma_by else []),
            *([RHO] if res.ar else [])]


def residual_design(spec: ResidualSpec, groups: Any, data: pd.DataFrame, index: pd.Index,
                    codes: np.ndarray) -> ResidualDesign:
    """Check ``spec`` against the model's grouping factors and the rows used; ``ValueError`` saying what is wrong.

    ``groups`` are the design's factors (``GroupDesign``), ``index`` the rows used (of ``data``), and
    ``codes`` the level of each of those rows in the factor the structure is by.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"y": np.arange(6.0), "g": list("aaabbb"), "trial": [1, 2, 4, 3, 2, 1]})
    >>> r = lb.LMM("y ~ 1 + (1 | g)", df, ar="trial | g").design.residual
    >>> r.order.tolist(), r.gap.tolist(), r.gap_values.tolist()
    ([0, 1, 2, 5, 4, 3], [0, 1, 2, 1, 1, 0], [1, 2])
    """
    names = [grp.name for grp in groups]
    g = spec.group or (groups[0].name if len(groups) == 1 else "(none)")
    if len(groups) != 1 or groups[0].factors != (g,):
        have = f"the formula's grouping factors are {names}" if names else "the formula has no grouping factor"
        raise ValueError(f"residual structure by {g!r}, but {have}; this version fits {SUPPORTED}")
    if g in RESERVED:
        raise ValueError(f"a grouping factor named {g!r} clashes with the posterior's residual parameters "
                         f"{list(RESERVED)}; rename the column")
    n = len(index)
    time = None
    gap = np.zeros(n, dtype=np.int64)
    category, categories = _categories(spec, data, index)
    if spec.ar_time is None:
        order = np.argsort(codes, kind="stable")
        return ResidualDesign(spec, g, spec.sigma_group is not None, None, order, gap, category, categories)
    col = spec.ar_time
    if col not in data.columns:
        raise ValueError(f"ar={spec.ar!r} orders rows by column {col!r}, which the data lack; "
                         f"columns: {list(data.columns)[:20]}")
    raw = data.loc[index, col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        rows = list(index[bad][:5])
        raise ValueError(f"ar={spec.ar!r}: column {col!r} must hold whole numbers (trial numbers), but "
                         f"{int(bad.sum())} row(s) do not (first rows: {rows}); number the trials 1, 2, 3, ...")
    time = values.astype(np.int64)
    order = np.lexsort((time, codes))
    same = codes[order][1:] == codes[order][:-1]
    step = np.diff(time[order])
    ties = same & (step == 0)
    if ties.any():
        k = int(np.flatnonzero(ties)[0])
        rows = [index[order[k]], index[order[k + 1]]]
        raise ValueError(f"ar={spec.ar!r}: rows {rows} have the same {col!r} ({int(time[order[k]])}) within one "
                         f"level of {g!r}; AR(1) needs one row per time point per cluster (average repeated "
                         "rows, or number them apart)")
    gap[order[1:][same]] = step[same]
    if len(np.unique(gap[gap > 0])) > MAX_GAPS:
        raise ValueError(f"ar={spec.ar!r}: the rows of a cluster are {len(np.unique(gap[gap > 0]))} different "
                         f"distances apart in {col!r}; this version handles at most {MAX_GAPS} distinct gaps "
                         "(each costs a set of sums): renumber the trials 1, 2, 3, ... within each cluster if "
                         "the missing ones do not matter")
    return ResidualDesign(spec, g, spec.sigma_group is not None, time, order, gap, category, categories)


def _categories(spec: ResidualSpec, data: pd.DataFrame, index: pd.Index) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's category of ``sigma="~ cond"`` and the categories (a categorical's order, else sorted)."""
    col = spec.sigma_fixed
    if col is None:
        return np.zeros(len(index), dtype=np.int64), ("(all)",)
    if col not in data.columns:
        raise ValueError(f"sigma={spec.sigma!r} names column {col!r}, which the data lack; "
                         f"columns: {list(data.columns)[:20]}")
    values = data.loc[index, col]
    if values.isna().any():
        rows = list(index[values.isna().to_numpy()][:5])
        raise ValueError(f"sigma={spec.sigma!r}: column {col!r} has missing values (first rows: {rows}); drop "
                         "those rows or give them a category")
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in values.cat.categories if (values == c).any()]
    else:
        levels = sorted(values.astype(str).unique())
    if not 2 <= len(levels) <= MAX_CATEGORIES:
        raise ValueError(f"sigma={spec.sigma!r}: column {col!r} has {len(levels)} categories; a residual SD per "
                         f"category needs 2 to {MAX_CATEGORIES} (a numeric or many-valued column is not fitted yet)")
    codes = pd.Categorical(values.astype(str), categories=levels).codes.astype(np.int64)
    return codes, tuple(levels)


def with_residual(design: Any, spec: ResidualSpec | None, data: pd.DataFrame) -> Any:
    """``design`` with its :class:`ResidualDesign` (None: unchanged), the ordering column kept in its data.

    The ordering column joins ``design.data`` (the rows a saved fit stores), so a loaded fit rebuilds
    the same structure.
    """
    if spec is None:
        return design
    if design.reduction is not None:
        raise ValueError("sigma= and ar= need every row in memory (the order of the trials within each cluster); "
                         "a model of a Dask DataFrame or Parquet files keeps per-cluster sums only: load the data "
                         "with pandas")
    g = design.groups[0] if len(design.groups) == 1 else None
    codes = g.codes if g is not None else np.zeros(design.n, dtype=np.int64)
    res = residual_design(spec, design.groups, data, design.index, codes)
    kept = design.data
    for col in (spec.ar_time, spec.sigma_fixed):  # kept with the data a saved fit stores
        if col is not None and col not in kept.columns:
            kept = kept.assign(**{col: data.loc[design.index, col].to_numpy()})
    return replace(design, residual=res, data=kept)

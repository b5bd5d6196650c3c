"""Data + :class:`~lmm_bayes.ModelSpec` → :class:`Design` (numpy arrays and Z).

The design is everything a sampler needs and nothing more: the response ``y``,
the fixed-effects matrix ``X`` with column names, and one :class:`GroupDesign`
per grouping factor (level codes, level labels, effect names and the per-row
block of Z). ``Design.Z`` assembles the textbook random-effects design matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lmm_bayes import names
from lmm_bayes.spec import labels as lab
from lmm_bayes.spec import matrices, validate
from lmm_bayes.spec.families.registry import GAUSSIAN, Family
from lmm_bayes.spec.formula import ModelSpec
from lmm_bayes.spec.labels import group_labels
from lmm_bayes.spec.reduction import Reduction

__all__ = ["Design", "GroupDesign", "NewRows", "build_design", "group_labels"]


@dataclass(frozen=True, eq=False)
class GroupDesign:
    """The random-effects design of one grouping factor.

    Attributes
    ----------
    name : str
        ``"Subject"`` or ``"subject:neuron"``; also the dim name of its levels.
    factors : tuple of str
        Data columns that define the clusters.
    levels : tuple of str
        Level labels as the user wrote them (``"308"``; ``"s1:n3"`` for interactions);
        see :mod:`lmm_bayes.spec.labels` for how a value prints.
    codes : ndarray of int, shape (n,)
        Level index of every row.
    effects : tuple of str
        Effect names, e.g. ``("Intercept", "Days")``.
    Z : ndarray, shape (n, q)
        The values multiplying the cluster's effects on each row.
    blocks : tuple of tuple of int
        Effects whose correlations are modelled together (one LKJ prior each);
        effects in different blocks are independent. ``(Days||Subject)`` gives
        ``((0,), (1,))``.
    parent : str or None
        The grouping factor this one is nested in (each level lies within one
        level of the parent), if any.
    parent_codes : ndarray of int or None
        For every level, the index of its parent level.
    keys : tuple of tuple of str
        Every level's identity: the label of each factor's value, ``("s1", "n3")``.
        New rows are matched to levels by these tuples, never by the joined name.
        Defaults to the level for one factor, or its parts split at ``":"``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> g = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design.group("Subject")
    >>> g.n_levels, g.effects, g.effect_dim, g.blocks
    (18, ('Intercept', 'Days'), 'Subject_effect', ((0, 1),))
    """

    name: str
    factors: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    effects: tuple[str, ...]
    Z: np.ndarray
    blocks: tuple[tuple[int, ...], ...]
    parent: str | None = None
    parent_codes: np.ndarray | None = None
    keys: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.keys is None:
            object.__setattr__(self, "keys", lab.default_keys(self.levels, len(self.factors)))

    @property
    def n_levels(self) -> int:
        """Number of levels (clusters) of the factor."""
        return len(self.levels)

    @property
    def n_effects(self) -> int:
        """Number of random effects per cluster."""
        return len(self.effects)

    @property
    def correlated(self) -> bool:
        """True when any block holds more than one effect (an LKJ prior is needed)."""
        return any(len(b) > 1 for b in self.blocks)

    @property
    def effect_dim(self) -> str:
        """Name of the posterior dim of the effects, ``"{name}_effect"``."""
        return names.effect_dim(self.name)

    def counts(self) -> np.ndarray:
        """Rows per level."""
        return np.bincount(self.codes, minlength=self.n_levels)


@dataclass(frozen=True, eq=False)
class NewRows:
    """Predictor values of new rows, evaluated with the fitted design's coding.

    ``labels[g]`` holds each row's level label for group ``g`` (possibly unseen);
    ``codes[g]`` the index into the fitted levels, or -1 for an unseen level.
    """

    index: pd.Index
    X: np.ndarray
    Z: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Design:
    """Numeric arrays for ``y = X beta + Z b + e``.

    Attributes
    ----------
    spec : ModelSpec
    y : ndarray, shape (n,)
    response : str
    X : ndarray, shape (n, p)
    X_columns : tuple of str
    groups : tuple of GroupDesign
    index : pandas.Index
        The data's row labels of the rows used.
    data : pandas.DataFrame
        The used columns of the used rows, as given (grouping columns as text).
    reduction : Reduction or None
        For data beyond memory (a Dask DataFrame, Parquet files; :mod:`lmm_bayes.spec.dask_data`):
        the sums over every row the fit needs. ``y``, ``X``, the groups' ``codes`` and ``Z``,
        ``index`` and ``data`` then hold a seeded random sample of the rows (for posterior
        predictive checks, LOO and ``predict()`` without new data), and :attr:`n_rows` counts them all.
    family : Family
        The response family and link (:mod:`lmm_bayes.spec.families`); Gaussian by default.
    offset : ndarray or None
        A GLMM's summed ``offset(...)`` terms per row, on the link scale; None: no offset.
    trials : ndarray or None
        Trials per row (binomial only); None otherwise.
    residual : ResidualDesign or None
        ``sigma=`` and ``ar=`` checked against the rows (:mod:`lmm_bayes.spec.residual`); None: ``sigma^2 I``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> d.X_columns, d.Z.shape
    (('Intercept', 'Days'), (180, 36))
    """

    spec: ModelSpec
    y: np.ndarray
    response: str
    X: np.ndarray
    X_columns: tuple[str, ...]
    groups: tuple[GroupDesign, ...]
    index: pd.Index
    data: pd.DataFrame
    reduction: Reduction | None = field(default=None, repr=False)
    family: Family = GAUSSIAN
    offset: np.ndarray | None = field(default=None, repr=False)
    trials: np.ndarray | None = field(default=None, repr=False)
    residual: Any = field(default=None, repr=False)
    _fixed: Any = field(default=None, repr=False)
    _effects: dict = field(default_factory=dict, repr=False)
    _reference: pd.DataFrame | None = field(default=None, repr=False)
    _category_columns: tuple[str, ...] = field(default=(), repr=False)
    _renames: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Rows held in memory (``y``, ``X``): all of them, or the sample of a :attr:`reduction`."""
        return len(self.y)

    @property
    def n_rows(self) -> int:
        """Rows the model is fitted to: :attr:`n`, or every row of a :attr:`reduction`."""
        return self.n if self.reduction is None else self.reduction.n

    def group(self, name: str) -> GroupDesign:
        """The :class:`GroupDesign` called ``name``; ``ValueError`` listing the names otherwise."""
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(f"no grouping factor {name!r}; the model has {[g.name for g in self.groups]}")

    @cached_property
    def Z(self) -> sp.csr_matrix:
        """The whole random-effects design matrix, CSR, shape (n, sum of levels × effects).

        Columns are grouped by term, then level, then effect (labels in :attr:`Z_columns`).
        """
        blocks = []
        rows = np.arange(self.n)
        for g in self.groups:
            q = g.n_effects
            cols = g.codes[:, None] * q + np.arange(q)[None, :]
            blocks.append(
                sp.csr_matrix(
                    (g.Z.ravel(), (np.repeat(rows, q), cols.ravel())), shape=(self.n, g.n_levels * q)
                )
            )
        if not blocks:
            return sp.csr_matrix((self.n, 0))
        Z = sp.hstack(blocks, format="csr")
        Z.eliminate_zeros()
        return Z

    @property
    def Z_columns(self) -> tuple[str, ...]:
        """Labels of the columns of :attr:`Z`: ``"Days|Subject[308]"``."""
        return tuple(
            f"{e}|{g.name}[{lev}]" for g in self.groups for lev in g.levels for e in g.effects
        )

    # ------------------------------------------------------------------ new data

    def evaluate(self, data: pd.DataFrame) -> NewRows:
        """Evaluate the fixed and random predictors on new rows.

        Stateful transformations (``center``, ``scale``) and categorical codings
        keep the values learnt from the fitted data. The response is not needed.
        The cost grows with the new rows and the number of levels, not with the
        fitted rows: formulae keeps what it learnt in fitting, and the few fitted
        rows of the reference frame (one per category of each categorical column)
        give ``C(x, levels=[...])`` every level it must see.

        Parameters
        ----------
        data : pandas.DataFrame
            The predictor and grouping columns of the formula; grouping levels may be new.

        Returns
        -------
        NewRows

        Raises
        ------
        ValueError
            A column is missing or holds NaN/inf; a fixed-effect column holds a category
            not seen in fitting; a transformation gives NaN/inf (``log`` of 0); a grouping
            value prints like another value or another cluster (see :mod:`~lmm_bayes.spec.labels`).

        Examples
        --------
        >>> import pandas as pd, lmm_bayes as lb
        >>> d = lb.LMM("Reaction ~ center(Days) + (Days | Subject)", lb.datasets.load("sleepstudy")).design
        >>> rows = d.evaluate(pd.DataFrame({"Days": [4.5, 0.0], "Subject": ["309", "new"]}))
        >>> rows.X.tolist(), rows.codes["Subject"].tolist()
        ([[1.0, 0.0], [1.0, -4.5]], [1, -1])
        """
        validate.check_dataframe(data)
        needed = list(self.spec.predictor_variables)
        validate.check_columns(data, needed, context="prediction")
        validate.check_missing(data, needed, "raise")
        new = data[needed].copy()
        factor_labels = {f: lab.column_labels(new[f], f) for g in self.groups for f in g.factors}
        for f, values in factor_labels.items():
            new[f] = pd.Series(values, index=new.index).astype(str)
        _check_categories(self, new)
        # prepend the reference rows (fitted rows holding every category) and cut them off
        new = matrices.for_formulae(new, self.spec)
        ref = self._reference if self._reference is not None else new.iloc[:0]
        both = pd.concat([ref, new], ignore_index=True) if len(ref) else new.reset_index(drop=True)
        n_ref, m = len(ref), len(new)
        where = " in the new rows"
        if self._fixed is None:
            X = np.zeros((m, 0))
        else:
            X = _evaluate_new(self._fixed, both, n_ref)
            matrices.check_finite(X, self._fixed.slices, self._renames, where)
        Z, labels, codes = {}, {}, {}
        for g in self.groups:
            parts = []
            for dm in self._effects[g.name]:
                parts.append(_evaluate_new(dm, both, n_ref))
                matrices.check_finite(parts[-1], dm.slices, {}, where)
            Z[g.name] = np.hstack(parts)
            if g.keys is None:
                raise ValueError(f"grouping factor {g.name!r} was built without level keys; it cannot match new rows")
            codes[g.name], labels[g.name] = lab.lookup_levels(g.keys, [factor_labels[f] for f in g.factors], g.factors)
        return NewRows(index=data.index, X=X, Z=Z, labels=labels, codes=codes)


def _evaluate_new(dm: Any, both: pd.DataFrame, n_ref: int) -> np.ndarray:
    """formulae's evaluation of new rows, its errors as ours."""
    try:
        with np.errstate(all="ignore"):
            values = np.asarray(dm.evaluate_new_data(both)).astype(float)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 (formulae/numpy: a text column where numbers were fitted, ...)
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ValueError(
            f"the new rows cannot be evaluated with the fitted formula ({reason}); "
            "give every column the type it had in fitting"
        ) from None
    return values[n_ref:]


def _check_categories(design: Design, new: pd.DataFrame) -> None:
    """New categories in a fixed-effect column cannot be predicted (no estimate for them)."""
    group_cols = {f for g in design.groups for f in g.factors}
    for col in design._category_columns:
        if col in group_cols:
            continue
        seen = design._reference[col]
        if pd.api.types.is_numeric_dtype(seen):  # C(k, levels=[...]) on numbers: compare values
            unseen = sorted(set(new[col][~new[col].isin(seen.unique())].tolist()), key=str)
        else:
            unseen = sorted(set(new[col].astype(str)) - set(seen.astype(str)))
        if unseen:
            raise ValueError(
                f"column {col!r} has values not seen in fitting: {unseen[:10]}; "
                "a fixed effect has no estimate for them"
            )


def _reference_rows(used: pd.DataFrame, spec: ModelSpec, dms: list) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The fitted rows new data is evaluated with, and the categorical columns they cover.

    formulae keeps every category and every stateful transform's values itself, but
    ``C(x, levels=[...])`` insists on seeing all its levels in the data it evaluates.
    One fitted row for the first occurrence of each category of each categorical column
    that formulae reads (non-numeric, or named in a ``C(x, levels=...)`` call) gives it
    them: at most the sum of those columns' category counts, independent of ``n``.
    """
    read = set().union(*(t.var_names for dm in dms if dm is not None for t in dm.terms.values()))
    levels_cols = {c.column for c in spec.levels_calls}
    predictors = list(spec.predictor_variables)
    cols = tuple(
        c for c in predictors
        if c in read and (c in levels_cols or not pd.api.types.is_numeric_dtype(used[c]))
    )
    first = np.zeros(len(used), dtype=bool)
    for c in cols:
        first |= ~used[c].duplicated().to_numpy()
    return used.loc[first, predictors].reset_index(drop=True), cols


def build_design(spec: ModelSpec, data: pd.DataFrame, *, na_action: str = "raise", n_rows: int | None = None,
                 one_per_row: bool = False) -> Design:
    """Evaluate a spec on data.

    Parameters
    ----------
    spec : ModelSpec
    data : pandas.DataFrame
        Must hold every column the formula names; other columns are ignored.
    na_action : {"raise", "drop"}
        What to do with rows holding NaN or inf in a used column.
    n_rows : int, optional
        The rows ``data`` stands for, when it holds one row per cluster of a larger data set
        (:mod:`lmm_bayes.spec.dask_data`): fewer levels than rows is checked against it, and
        the fixed effects' rank is left to the caller (on the whole data's ``X'X``).
    one_per_row : bool
        Accept one level per row (a GLMM's observation-level effect).

    Returns
    -------
    Design

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.spec.formula import parse_formula
    >>> d = build_design(parse_formula("Reaction ~ Days + (1 | Subject)"), lb.datasets.load("sleepstudy"))
    >>> d.groups[0].n_levels, d.groups[0].effects
    (18, ('Intercept',))
    """
    validate.check_dataframe(data)
    validate.check_names(spec)
    matrices.check_powers(spec)
    validate.check_columns(data, spec.variables)
    used = data[list(spec.variables)]
    used = validate.check_missing(used, spec.variables, na_action)
    for col in spec.response_variables:
        validate.check_numeric_response(used[col], col)
    validate.check_levels_calls(spec, used)
    used = used.copy()
    factor_labels = {f: lab.column_labels(used[f], f) for t in spec.random for f in t.factors}
    for f, values in factor_labels.items():
        used[f] = pd.Series(values, index=used.index).astype(str)
    frame = matrices.for_formulae(used, spec)

    text, namespace, renames, fixed_parts = matrices.fixed_formula(spec)
    fixed = matrices.run_formulae(text, frame, namespace, formula=spec.formula, parts=fixed_parts)
    y = np.asarray(fixed.response.design_matrix, dtype=float).reshape(len(used), -1)
    if y.shape[1] != 1:
        raise ValueError(f"the response {spec.response!r} must be one numeric column, got {y.shape[1]} columns")
    y = y[:, 0]
    matrices.check_finite(y, matrices.response_slices(spec.response), {})
    if fixed.common is None:
        X = np.zeros((len(used), 0))
        X_columns: tuple[str, ...] = ()
    else:
        X = np.asarray(fixed.common.design_matrix, dtype=float)
        matrices.check_finite(X, fixed.common.slices, renames)
        X_columns = tuple(matrices.rename(str(c), renames) for c in fixed.common.as_dataframe().columns)
    if n_rows is None:
        validate.check_full_rank(X, X_columns)

    groups = []
    effects_dms = {}
    for term in spec.random:
        codes, levels, keys = lab.encode_levels([factor_labels[f] for f in term.factors], term.factors)
        validate.check_grouping(term.group, len(levels), n_rows or len(used), one_per_row=one_per_row)
        parts, names, blocks = [], [], []
        dms = []
        for block in term.blocks:
            dm = matrices.run_formulae(
                block.expr, frame, namespace, formula=spec.formula, parts=[(block.expr, block.expr)]
            ).common
            if dm is None:
                raise ValueError(f"the random term ({block.expr} | {term.group}) has no effects")
            values = np.asarray(dm.design_matrix, dtype=float)
            matrices.check_finite(values, dm.slices, {})
            start = len(names)
            for c in dm.as_dataframe().columns:
                if str(c) in names:
                    raise ValueError(
                        f"effect {str(c)!r} appears twice for grouping factor {term.group!r}; "
                        "list each effect in one term only"
                    )
                names.append(str(c))
            idx = tuple(range(start, len(names)))
            blocks.extend([idx] if block.correlated else [(k,) for k in idx])
            parts.append(values)
            dms.append(dm)
        effects_dms[term.group] = dms
        groups.append(
            GroupDesign(
                name=term.group,
                factors=term.factors,
                levels=levels,
                codes=codes,
                effects=tuple(names),
                Z=np.hstack(parts),
                blocks=tuple(blocks),
                keys=keys,
            )
        )
    groups = _with_parents(groups)
    reference, categories = _reference_rows(
        frame, spec, [fixed.common, *(dm for dms in effects_dms.values() for dm in dms)]
    )
    single = {g.factors[0]: (g.codes, g.levels) for g in groups if len(g.factors) == 1}
    explicit = {g.name for g in groups}
    if len(single) > 1:
        validate.check_implicit_nesting(single, explicit, y)

    return Design(
        spec=spec,
        y=y,
        response=spec.response,
        X=X,
        X_columns=X_columns,
        groups=tuple(groups),
        index=used.index,
        data=used,
        _fixed=fixed.common,
        _effects=effects_dms,
        _reference=reference,
        _category_columns=categories,
        _renames=renames,
    )


def _with_parents(groups: list[GroupDesign]) -> list[GroupDesign]:
    """Find, for each factor, the finest other factor it is nested in."""
    out = []
    for g in groups:
        best = None
        for h in groups:
            if h is g or h.n_levels >= g.n_levels:
                continue
            parent_of = np.full(g.n_levels, -1)
            parent_of[g.codes] = h.codes
            nested = np.array_equal(parent_of[g.codes], h.codes)
            if nested and (best is None or h.n_levels > best[0].n_levels):
                best = (h, parent_of)
        if best is None:
            out.append(g)
        else:
            out.append(replace(g, parent=best[0].name, parent_codes=best[1]))
    return out

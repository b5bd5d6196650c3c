"""A mixed model as data (:class:`MixedModel`): formula + data → spec, design and priors.

Fitting, graphs and prior draws are added by the top layer (:class:`lmm_bayes.LMM`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lmm_bayes.spec import validate
from lmm_bayes.spec.dask_data import (
    DEFAULT_SAMPLE_ROWS,
    build_reduced_design,
    is_dask_frame,
    reduced_design,
)
from lmm_bayes.spec.design import Design, build_design
from lmm_bayes.spec.formula import ModelSpec, parse_formula
from lmm_bayes.spec.parquet_files import parquet_frame
from lmm_bayes.spec.priors import Priors, resolve_priors
from lmm_bayes.spec.residual import parse_residual, with_residual

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.spec.reduction import Reduction

__all__ = ["MixedModel"]


class MixedModel:
    """A mixed model as data: the parsed formula, the design and the priors, and nothing fitted.

    The user's class is its subclass :class:`lmm_bayes.LMM` (:mod:`lmm_bayes.api.model`), which
    adds what is done with a model (``fit``, ``pymc_model``, ``prior_predictive``) and documents
    the arguments. Every stage below the top layer takes a ``MixedModel``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = MixedModel("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> model.design.Z.shape, isinstance(lb.LMM("Reaction ~ Days + (1 | Subject)", model.design.data), MixedModel)
    ((180, 36), True)
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        priors: Mapping[str, Any] | None = None,
        na_action: str = "raise",
        center_predictors: bool | None = None,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        sample_seed: int = 0,
        progress: bool = True,
        sigma: str | None = None,
        ar: str | None = None,
    ):
        self._build(formula, data, priors, na_action, dict(sample_rows=sample_rows, seed=sample_seed, progress=progress),
                    center_predictors=center_predictors, residual=(sigma, ar))

    def _build(self, formula: str, data: Any, priors: Any, na_action: str, dask_options: dict,
               files: list[str] | None = None, center_predictors: bool | None = None,
               residual: tuple[Any, Any] = (None, None)) -> None:
        validate.check_choice(na_action, ("raise", "drop"), "na_action")
        structure = parse_residual(*residual)  # sigma= and ar= (spec/residual.py), read before the data
        self._spec = parse_formula(formula)
        if is_dask_frame(data):
            self._design = build_reduced_design(self._spec, data, na_action=na_action, files=files, **dask_options)
        else:
            self._design = build_design(self._spec, data, na_action=na_action)
        self._design = with_residual(self._design, structure, data)
        self._priors = resolve_priors(self._design, priors, centered=center_predictors)

    # ---------------------------------------------------------------- stages
    @property
    def spec(self) -> ModelSpec:
        """The parsed formula."""
        return self._spec

    @property
    def design(self) -> Design:
        """y, X, and the random-effects design."""
        return self._design

    @property
    def priors(self) -> Priors:
        """The resolved priors (defaults scaled to the data, plus overrides)."""
        return self._priors

    @property
    def formula(self) -> str:
        """The model's formula in lme4 syntax."""
        return self._spec.formula

    @property
    def residual_attrs(self) -> dict[str, str]:
        """The ``sigma=`` and ``ar=`` arguments a fit records (JSON under ``"residual"``), or none."""
        res = self._design.residual
        return {} if res is None else {"residual": json.dumps(res.spec.kwargs())}

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_parquet(
        cls,
        path: str | Path,
        formula: str,
        *,
        priors: Mapping[str, Any] | None = None,
        na_action: str = "raise",
        center_predictors: bool | None = None,
        sample_rows: int = DEFAULT_SAMPLE_ROWS,
        sample_seed: int = 0,
        progress: bool = True,
    ) -> MixedModel:
        """A model of Parquet files too large for memory: one Dask partition per file.

        Only the formula's columns are read, twice (levels, then sums; see
        :mod:`lmm_bayes.spec.dask_data`), on the active Dask scheduler: start a
        ``distributed.Client`` first to use a cluster. The fit uses the collapsed method.

        Parameters
        ----------
        path : str or pathlib.Path
            A Parquet file, a folder of them, or a glob (``"data/part-*.parquet"``).
        formula : str
        priors, na_action, center_predictors, sample_rows, sample_seed, progress
            As for :class:`LMM`.

        Raises
        ------
        ValueError
            No file matches; a file is empty, truncated or corrupt, lacks a column, or holds a
            column as text where the others hold numbers (each named); missing values (the partition and
            file named); crossed factors, a transformed response, ``center()``/``scale()``.

        Examples
        --------
        >>> import tempfile, pathlib, lmm_bayes as lb
        >>> df = lb.datasets.load("sleepstudy")
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for k in range(3):
        ...     df.iloc[k * 60:(k + 1) * 60].to_parquet(folder / f"part-{k}.parquet")
        >>> m = lb.LMM.from_parquet(folder / "part-*.parquet", "Reaction ~ Days + (1 | Subject)",
        ...                         sample_rows=40, progress=False)
        >>> m.design.n_rows, m.design.n, m.design.reduction.source
        (180, 40, '3 Parquet files')
        """
        spec = parse_formula(formula)
        frame, files = parquet_frame(path, list(spec.variables))
        model = cls.__new__(cls)
        model._build(formula, frame, priors, na_action,
                     dict(sample_rows=sample_rows, seed=sample_seed, progress=progress), files=files,
                     center_predictors=center_predictors)
        return model

    @classmethod
    def from_reduction(
        cls, formula: str, reduction: Reduction, sample: pd.DataFrame, *, priors: Mapping[str, Any] | None = None
    ) -> MixedModel:
        """The model of data reduced from Dask, rebuilt from its sums and sample without the data.

        :func:`lmm_bayes.load` uses it for a fit of a model built from a Dask DataFrame or Parquet
        files (``model.design.reduction`` and ``model.design.data`` are what it takes).

        Parameters
        ----------
        formula : str
            The model's formula, as it was fitted.
        reduction : Reduction
            The per-cluster sums (``model.design.reduction``).
        sample : pandas.DataFrame
            The rows kept in memory (``model.design.data``).
        priors : mapping, optional
            As for :class:`~lmm_bayes.LMM`.

        Examples
        --------
        >>> import dask.dataframe as dd, lmm_bayes as lb
        >>> ddf = dd.from_pandas(lb.datasets.load("sleepstudy"), npartitions=2)
        >>> m = lb.LMM("Reaction ~ Days + (1 | Subject)", ddf, sample_rows=30, progress=False)
        >>> again = lb.LMM.from_reduction(m.formula, m.design.reduction, m.design.data)
        >>> again.design.n_rows, again.priors == m.priors
        (180, True)
        """
        model = cls.__new__(cls)
        model._spec = parse_formula(formula)
        model._design = reduced_design(model._spec, reduction, sample)
        model._priors = resolve_priors(model._design, priors)
        return model

    @classmethod
    def from_hierarchy(
        cls,
        data: pd.DataFrame,
        *,
        response: str,
        levels: Sequence[str],
        fixed: Sequence[str] = (),
        random_slopes: Mapping[str, Sequence[str]] | None = None,
        priors: Mapping[str, Any] | None = None,
        na_action: str = "raise",
    ) -> MixedModel:
        """Build a nested model from its levels, outermost first.

        ``levels=["subject", "neuron"]`` gives a random intercept per subject and per
        neuron *within* subject (``(1 | subject:neuron)``), so neuron labels reused
        across subjects are never merged.

        Parameters
        ----------
        data : pandas.DataFrame
        response : str
            The response column.
        levels : sequence of str
            Grouping columns, outermost first.
        fixed : sequence of str
            Fixed-effect columns (an intercept is always included).
        random_slopes : mapping, optional
            ``{level: [columns]}``: slopes that vary across that level's clusters.
        priors, na_action
            As for :class:`~lmm_bayes.LMM`.

        Examples
        --------
        >>> import numpy as np, pandas as pd, lmm_bayes as lb
        >>> rng = np.random.default_rng(1)
        >>> df = pd.DataFrame({"subject": np.repeat(["a", "b", "c"], 20),
        ...                    "neuron": np.tile(np.repeat(["n1", "n2"], 10), 3),
        ...                    "x": rng.normal(size=60), "y": rng.normal(size=60)})
        >>> m = lb.LMM.from_hierarchy(df, response="y", levels=["subject", "neuron"],
        ...                           fixed=["x"], random_slopes={"subject": ["x"]})
        >>> m.formula
        'y ~ x + (1 + x | subject) + (1 | subject:neuron)'
        """
        validate.check_dataframe(data)
        if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
            raise TypeError("levels must be a non-empty list of grouping columns, outermost first, e.g. ['subject', 'neuron']")
        if isinstance(fixed, str):
            raise TypeError(f"fixed must be a list of columns, e.g. [{fixed!r}]")
        slopes = dict(random_slopes or {})
        unknown = [k for k in slopes if k not in levels]
        if unknown:
            raise ValueError(f"random_slopes names {unknown}, which are not in levels {list(levels)}")
        names = [response, *levels, *fixed, *(s for v in slopes.values() for s in v)]
        for name in names:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    f"column name {name!r} cannot be used in a formula; rename it to letters, digits and _"
                )
        validate.check_columns(data, names, context="from_hierarchy")
        rhs = [*fixed] if fixed else ["1"]
        for k, level in enumerate(levels):
            group = ":".join(levels[: k + 1])
            effects = " + ".join(["1", *slopes.get(level, [])])
            rhs.append(f"({effects} | {group})")
        return cls(f"{response} ~ {' + '.join(rhs)}", data, priors=priors, na_action=na_action)

    # ---------------------------------------------------------------- display
    def __repr__(self) -> str:
        d = self._design
        lines = [
            f"LMM: {self._spec.formula}",
            f"  response:      {d.response}",
            f"  fixed effects: {', '.join(d.X_columns) or '(none)'}",
            "  random effects:",
        ]
        for g in d.groups:
            kind = _correlation_text(g.effects, g.blocks)
            nested = f", nested in {g.parent}" if g.parent else ""
            extra = f" ({kind})" if kind else ""
            lines.append(
                f"    {g.name}: {g.n_levels} levels; effects {', '.join(g.effects)}{extra}{nested}"
            )
        if not d.groups:
            lines.append("    (none)")
        if d.residual is not None:
            lines.append(f"  residuals:     {', '.join(f'{k}={v!r}' for k, v in d.residual.spec.kwargs().items())}")
        if d.reduction is None:
            lines.append(f"  rows used:     {d.n}")
        else:
            lines.append(f"  rows used:     {d.n_rows:,} (from {d.reduction.source}; {d.n:,} kept as a random sample)")
        return "\n".join(lines)


def _correlation_text(effects: Sequence[str], blocks: Sequence[Sequence[int]]) -> str:
    """Which of a factor's effects are correlated, block by block ("" for a single effect).

    ``(1 + x | g) + (0 + z | g)`` correlates Intercept with x only, so "correlated" alone
    would be wrong: it reads "Intercept and x correlated; z independent".

    Examples
    --------
    >>> _correlation_text(["Intercept", "x"], [(0, 1)]), _correlation_text(["Intercept", "x"], [(0,), (1,)])
    ('correlated', 'independent')
    >>> _correlation_text(["Intercept", "x", "z"], [(0, 1), (2,)])
    'Intercept and x correlated; z independent'
    """
    if len(effects) < 2:
        return ""
    correlated = [b for b in blocks if len(b) > 1]
    if not correlated:
        return "independent"
    if len(blocks) == 1:
        return "correlated"
    parts = [f"{_and([effects[i] for i in b])} correlated" for b in correlated]
    singles = [effects[b[0]] for b in blocks if len(b) == 1]
    if singles:
        parts.append(f"{_and(singles)} independent")
    return "; ".join(parts)


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

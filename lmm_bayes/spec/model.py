"""The :class:`LMM` facade: formula + data → spec, design, priors, graph and fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lmm_bayes.spec import validate
from lmm_bayes.spec.dask_data import (
    DEFAULT_SAMPLE_ROWS,
    build_reduced_design,
    is_dask_frame,
    parquet_frame,
    reduced_design,
)
from lmm_bayes.spec.design import Design, build_design
from lmm_bayes.spec.formula import ModelSpec, parse_formula

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from lmm_bayes.results.fit import Fit
    from lmm_bayes.spec.priors import Priors
    from lmm_bayes.spec.reduction import Reduction

__all__ = ["LMM"]


class LMM:
    """A Bayesian linear mixed-effects model ``y = X beta + Z b + e``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame or dask.dataframe.DataFrame
        Holds every column the formula names; other columns are ignored. A Dask DataFrame
        (data beyond memory) is reduced partition by partition to the sums the collapsed
        method needs, on the active Dask scheduler, and only a random sample of
        ``sample_rows`` rows is kept (:mod:`lmm_bayes.spec.dask_data`); see also :meth:`from_parquet`.
    priors : mapping, optional
        Overrides of the default priors; see :func:`lmm_bayes.spec.priors.resolve_priors`.
    na_action : {"raise", "drop"}
        Rows with NaN/inf in a used column raise by default; ``"drop"`` drops them
        with a warning that says how many.
    center_predictors : bool, optional
        True (the default, as rstanarm and brms do): the intercept's prior, and in a
        correlated block ``(1 + x | g)`` the priors of its SDs and correlations, apply at
        the means of the predictors, so shifting a predictor (``Days + 100``) leaves the
        posterior of every slope, SD and correlation unchanged. False: they apply to the raw
        intercept (the response at x = 0), to match a brms model prior for prior. Either
        way every table reports the coefficients of the formula as written, and the
        sampler works on centred, scaled columns (:mod:`lmm_bayes.inference.standardize`).
        None: a whole :class:`~lmm_bayes.spec.priors.Priors` given as ``priors`` keeps its
        own setting, else True.
    sample_rows, sample_seed, progress
        Dask input only: the rows kept in memory (for posterior predictive checks, LOO, R² and
        ``predict()`` without data), the seed that draws them, and whether to show progress.

    Attributes
    ----------
    spec : ModelSpec
    design : Design
    priors : Priors

    Raises
    ------
    TypeError
        ``formula`` is not a string, ``data`` not a DataFrame.
    FormulaError
        A formula that cannot be read or evaluated (a ``ValueError``; a caret marks the term),
        including ``x ** 2`` outside ``I(...)``, which would silently mean ``x``.
    ValueError
        A missing column or NaN/inf; a transformation giving NaN/inf (``log(x)`` with
        ``x <= 0``); grouping values that would merge (``1`` and ``"1"`` in one column,
        clusters of ``a:b`` that print alike; see :mod:`lmm_bayes.spec.labels`); a column
        named like the package's own things (``Intercept`` as a predictor, a grouping
        factor named ``chain``, ``obs``, ``beta`` ...; see
        :func:`lmm_bayes.spec.validate.check_names`).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> print(model)  # doctest: +NORMALIZE_WHITESPACE
    LMM: Reaction ~ Days + (Days | Subject)
      response:      Reaction
      fixed effects: Intercept, Days
      random effects:
        Subject: 18 levels; effects Intercept, Days (correlated)
      rows used:     180
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
    ):
        self._build(formula, data, priors, na_action, dict(sample_rows=sample_rows, seed=sample_seed, progress=progress),
                    center_predictors=center_predictors)

    def _build(self, formula: str, data: Any, priors: Any, na_action: str, dask_options: dict,
               files: list[str] | None = None, center_predictors: bool | None = None) -> None:
        from lmm_bayes.spec.priors import resolve_priors

        validate.check_choice(na_action, ("raise", "drop"), "na_action")
        self._spec = parse_formula(formula)
        if is_dask_frame(data):
            self._design = build_reduced_design(self._spec, data, na_action=na_action, files=files, **dask_options)
        else:
            self._design = build_design(self._spec, data, na_action=na_action)
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

    def pymc_model(self, *, method: str = "full", centered: bool = False, standardized: bool = False) -> pm.Model:
        """The PyMC model, to read or to extend.

        ``method="full"`` (default): every cluster's b is a parameter (non-centered
        unless ``centered``); ``"collapsed"``: b integrated out, the likelihood a
        potential on the sufficient statistics.

        ``standardized=False`` (default): the graph on the data as given, each prior on the
        parameter it names, the intercept's on the raw intercept (the model of
        ``center_predictors=False``). ``standardized=True``: the graph a fit samples, on
        centred, scaled columns with the priors mapped to them (:mod:`lmm_bayes.inference.standardize`;
        ``Standardization.to_user`` maps its draws back); with the default
        ``center_predictors=True`` its intercept prior sits at the means of the predictors.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
        >>> sorted(rv.name for rv in model.pymc_model().free_RVs)  # non-centered: b = sd * z
        ['Subject_sd_indep', 'Subject_z', 'beta', 'sigma']
        >>> sorted(rv.name for rv in model.pymc_model(method="collapsed").free_RVs)  # b integrated out
        ['Subject_sd_indep', 'beta', 'sigma']
        """
        from lmm_bayes.inference.methods import resolve_method
        from lmm_bayes.inference.standardize import standardize

        validate.check_choice(method, ("full", "collapsed"), "method")
        if not isinstance(standardized, bool):
            raise TypeError(f"standardized must be True or False, got {type(standardized).__name__}")
        if not standardized:
            return resolve_method(self._design, method, centered=centered)[0].build(self._priors)
        working = standardize(self._design, centered=self._priors.centered)
        return resolve_method(working.design, method, centered=centered)[0].build(working.priors(self._priors))

    def fit(self, **kwargs: Any) -> Fit:
        """Sample the posterior; see :func:`lmm_bayes.results.fitting.fit_model` for the arguments.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
        ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
        >>> fit.method, fit.sampler
        ('collapsed', 'nutpie')
        """
        from lmm_bayes.results.fitting import fit_model

        return fit_model(self, **kwargs)

    def prior_predictive(self, *, draws: int = 500, seed: int | None = None):
        """Draw from the prior predictive; see :func:`lmm_bayes.results.predictive.prior_predictive`.

        Examples
        --------
        >>> import lmm_bayes as lb
        >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
        >>> prior = model.prior_predictive(draws=100, seed=1)
        >>> list(prior.children), prior["prior_predictive"]["y"].shape
        (['prior', 'prior_predictive', 'observed_data'], (1, 100, 180))
        """
        from lmm_bayes.results.predictive import prior_predictive

        return prior_predictive(self, draws=draws, seed=seed)

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
    ) -> LMM:
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
            No file matches; a file lacks a column (named); missing values (the partition and
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
    ) -> LMM:
        """The model of data reduced from Dask, rebuilt from its sums and sample without the data.

        :func:`lmm_bayes.load` uses it for a fit of a model built from a Dask DataFrame or Parquet
        files (``model.design.reduction`` and ``model.design.data`` are what it takes).

        Examples
        --------
        >>> import dask.dataframe as dd, lmm_bayes as lb
        >>> ddf = dd.from_pandas(lb.datasets.load("sleepstudy"), npartitions=2)
        >>> m = lb.LMM("Reaction ~ Days + (1 | Subject)", ddf, sample_rows=30, progress=False)
        >>> again = lb.LMM.from_reduction(m.formula, m.design.reduction, m.design.data)
        >>> again.design.n_rows, again.priors == m.priors
        (180, True)
        """
        from lmm_bayes.spec.priors import resolve_priors

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
    ) -> LMM:
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

"""A generalized mixed model as data (:class:`GeneralizedMixedModel`, the spec of :class:`lmm_bayes.GLMM`):
counts and choices with the formulas, designs and priors of :class:`~lmm_bayes.LMM`.

The API: ``lb.GLMM(formula, data, family="poisson")``, a subclass of :class:`~lmm_bayes.LMM`
sharing everything (formula syntax, designs, priors and their overrides, ``fit``, every
table, ``predict``, ``save``/``load``). Why a class of its own rather than ``family=`` on
``LMM``:

* lme4 users know the split: ``lmer`` for Gaussian responses, ``glmer(family=...)`` for the
  rest, and the methods differ in the same way here: a Gaussian model has an exact
  collapsed likelihood (b integrated out in closed form), a GLMM has none, so its fast
  path is an approximation that has to be checked. One class per kind keeps that
  difference visible where the model is made, not hidden behind a keyword.
* brms and bambi users write ``family=`` as they do there: ``GLMM`` takes the same family
  names (``"poisson"``, ``"negativebinomial"``, ``"bernoulli"``, ``"binomial"``, and
  ``"gaussian"``, which gives the LMM's likelihood through the GLMM code path), and
  ``link=`` (canonical by default; ``"probit"`` for binary and binomial data).
* ``isinstance(model, lb.LMM)`` stays true, so everything that takes a model takes a GLMM.

Formula additions, read here and nowhere else (nothing is evaluated beyond the
formula's own list of transformations):

* ``cbind(successes, failures) ~ ...`` (lme4) for binomial data; or ``trials="n"`` (a
  column) or ``trials=20`` (every row) with the successes as the response;
* ``offset(expr)`` terms, e.g. ``+ offset(log(duration))``: added to the linear predictor
  with coefficient 1 (rates per unit of exposure); new rows given to ``predict`` need
  the offset's columns too.

Responses are checked against the family (:meth:`~lmm_bayes.Family.check_response`):
negative or fractional counts, values other than 0/1 for Bernoulli, successes above
trials raise a ``ValueError`` that names the column and the first bad rows. A boolean
response column is read as 0/1.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from lmm_bayes.errors import FormulaError, SeparationWarning
from lmm_bayes.spec import validate
from lmm_bayes.spec.dask_data import is_dask_frame
from lmm_bayes.spec.design import Design, build_design
from lmm_bayes.spec.families.registry import Family, check_trials, get_family
from lmm_bayes.spec.formula import parse_formula
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.spec.priors import resolve_priors

__all__ = ["GLMDesign", "GeneralizedMixedModel", "split_glm_formula"]


@dataclass(frozen=True, eq=False)
class GLMDesign(Design):
    """A :class:`~lmm_bayes.spec.design.Design` that can evaluate its trials and offset on new rows.

    (``family``, ``trials`` and ``offset`` are every design's fields.)

    Attributes
    ----------
    offset_terms : tuple of str
        The offsets' expressions, to evaluate them on new rows.
    trials_terms : tuple of str
        The expressions whose sum is the trials (``(successes, failures)`` from ``cbind``,
        or the trials column); empty with one number of trials for every row.
    """

    offset_terms: tuple[str, ...] = ()
    trials_terms: tuple[str, ...] = ()

    def trials_for(self, data: pd.DataFrame) -> np.ndarray | None:
        """The trials of new rows (binomial only; None otherwise); their columns must be present."""
        if self.trials is None:
            return None
        if not self.trials_terms:
            return np.full(len(data), float(self.trials[0]))
        return check_trials(_evaluate_sum(self.trials_terms, data, "trials"), " + ".join(self.trials_terms),
                            index=data.index)

    def offset_for(self, data: pd.DataFrame) -> np.ndarray:
        """The offset of new rows (zeros for a model without one); their columns must be present."""
        if not self.offset_terms:
            return np.zeros(len(data))
        return _evaluate_sum(self.offset_terms, data, "offset")


def split_glm_formula(formula: str) -> tuple[str, tuple[str, str] | None, tuple[str, ...]]:
    """Split ``cbind(s, f)`` off the response and ``offset(...)`` terms off the predictors.

    Returns ``(formula for the design, (successes, failures) or None, offset expressions)``.

    Examples
    --------
    >>> split_glm_formula("cbind(k, n - k) ~ x + offset(log(t)) + (1 | g)")
    ('k ~ x + (1 | g)', ('k', 'n - k'), ('log(t)',))
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string like 'y ~ x + (1 | g)', got {type(formula).__name__}")
    parts = _top_level(formula, "~")
    if len(parts) != 2:
        raise FormulaError(formula, 0, "a formula needs one '~' between the response and the predictors")
    lhs, rhs = parts[0].strip(), parts[1]
    binomial = None
    if lhs.startswith("cbind(") and lhs.endswith(")"):
        args = [a.strip() for a in _top_level(lhs[len("cbind("):-1], ",")]
        if len(args) != 2 or not all(args):
            raise FormulaError(formula, 0, "cbind() takes two arguments: cbind(successes, failures)")
        binomial = (args[0], args[1])
        lhs = args[0] if args[0].isidentifier() else f"I({args[0]})"
    terms = [t.strip() for t in _top_level(rhs, "+")]
    offsets = tuple(t[len("offset("):-1].strip() for t in terms if t.startswith("offset(") and t.endswith(")"))
    kept = [t for t in terms if not (t.startswith("offset(") and t.endswith(")"))]
    if offsets and not kept:
        kept = ["1"]
    return f"{lhs} ~ {' + '.join(kept)}", binomial, offsets


class GeneralizedMixedModel(MixedModel):
    """A generalized mixed model as data: family, link, trials and offset on top of :class:`MixedModel`.

    The user's class is its subclass :class:`lmm_bayes.GLMM` (:mod:`lmm_bayes.api.model`), which
    documents the arguments and adds fitting.
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        family: str | Family,
        link: str | None = None,
        trials: str | int | None = None,
        priors: Mapping[str, Any] | None = None,
        na_action: str = "raise",
        center_predictors: bool | None = None,
    ):
        fam = get_family(family, link)
        if is_dask_frame(data):
            raise TypeError(
                "lb.GLMM takes a pandas DataFrame only, got a Dask DataFrame: a model is reduced to per-cluster "
                "sums, exact only for a Gaussian response (lb.LMM), and a GLMM's likelihood has no such sums. "
                "Load the rows with data.compute() if they fit in memory, or fit a Gaussian response with lb.LMM"
            )
        validate.check_dataframe(data)
        validate.check_choice(na_action, ("raise", "drop"), "na_action")
        design_formula, binomial, offsets = split_glm_formula(formula)
        if binomial is not None and trials is not None:
            raise ValueError("give the trials once: either cbind(successes, failures) or trials=, not both")
        if not fam.needs_trials and (binomial is not None or trials is not None):
            raise ValueError(
                f"cbind(...) and trials= are for family='binomial', not family={fam.name!r}; "
                "use family='binomial', or give the response alone"
            )
        if fam.needs_trials and binomial is None and trials is None:
            raise ValueError(
                "family='binomial' needs the number of trials per row: write the response as "
                "cbind(successes, failures) or give trials='<column>' (or a number); "
                "for one trial per row use family='bernoulli'"
            )
        if trials is not None and not isinstance(trials, str) and (
            isinstance(trials, bool) or not isinstance(trials, (int, np.integer))
        ):
            raise TypeError(f"trials must be a column name or a whole number, got {type(trials).__name__}")
        if fam.is_gaussian and offsets:
            raise ValueError(
                "offset(...) with family='gaussian': subtract the offset from the response and use lb.LMM "
                "(its exact collapsed method then applies)"
            )
        spec = parse_formula(design_formula)
        extra_exprs = [*offsets, *(binomial or ()), *([trials] if isinstance(trials, str) else [])]
        extra_cols = _columns_of(extra_exprs)
        validate.check_columns(data, [*spec.variables, *extra_cols], context="GLMM")
        used = validate.check_missing(data[list(dict.fromkeys([*spec.variables, *extra_cols]))],
                                      [*spec.variables, *extra_cols], na_action)
        used = used.assign(**{c: used[c].astype(int) for c in spec.response_variables
                              if pd.api.types.is_bool_dtype(used[c])})
        for col in spec.response_variables:  # before build_design, whose words are the LMM's
            validate.check_numeric_response(used[col], col, needs=f"a GLMM with family={fam.name!r} needs "
                                            f"{_response_words(fam)}")
        design = build_design(spec, used, na_action="raise", one_per_row=True)  # overdispersion: one level per row
        rows = used.loc[design.index]
        n_trials = None
        if binomial is not None:
            failures = _evaluate_sum((binomial[1],), rows, "failures")
            n_trials = design.y + failures
        elif isinstance(trials, str):
            n_trials = _evaluate_sum((trials,), rows, "trials")
        elif trials is not None:
            if trials < 1:
                raise ValueError(f"trials must be at least 1, got {trials}")
            n_trials = np.full(design.n, float(trials))
        if n_trials is not None:
            name = trials if isinstance(trials, str) else "trials" if binomial is None else (
                f"{binomial[0]} + {binomial[1]}")
            n_trials = check_trials(n_trials, name, index=design.index)
        fam.check_response(design.y, binomial[0] if binomial else design.response, n_trials, index=design.index)
        _check_one_per_row(design, fam, n_trials)
        note = fam.separation_note(design.y, binomial[0] if binomial else design.response, n_trials,
                                   design.X, design.X_columns)
        if note is not None:
            warnings.warn(note, SeparationWarning, stacklevel=2)
        offset = _evaluate_sum(offsets, rows, "offset") if offsets else None
        base = {f.name: getattr(design, f.name) for f in fields(Design)}
        base.update(data=rows, family=fam, trials=n_trials, offset=offset)
        self._spec = spec
        trials_terms = tuple(binomial) if binomial else (trials,) if isinstance(trials, str) else ()
        self._design = GLMDesign(**base, offset_terms=offsets, trials_terms=trials_terms)
        self._formula = formula
        self._trials_arg = trials
        self._priors = resolve_priors(self._design, priors, centered=center_predictors)

    @property
    def family(self) -> Family:
        """The response family and its link."""
        return self._design.family

    @property
    def formula(self) -> str:
        """The formula as given (with ``cbind`` and ``offset`` terms)."""
        return self._formula

    @property
    def glm_attrs(self) -> dict[str, Any]:
        """What a saved fit needs to rebuild this model: family, link, trials argument."""
        t = self._trials_arg
        return {"family": self.family.name, "link": self.family.link, "trials": "" if t is None else str(t),
                "trials_kind": "none" if t is None else ("column" if isinstance(t, str) else "number")}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], data: pd.DataFrame, *, priors: Any = None) -> GeneralizedMixedModel:
        """The model again from :attr:`glm_attrs` and the formula (as a saved fit stores them).

        Parameters
        ----------
        attrs : mapping
            :attr:`glm_attrs` and ``"formula"``.
        data : pandas.DataFrame
            The training data.
        priors : mapping or Priors, optional
            As for :class:`~lmm_bayes.GLMM`.
        """
        kind, value = attrs.get("trials_kind", "none"), attrs.get("trials", "")
        trials = None if kind == "none" else value if kind == "column" else int(value)
        return cls(attrs["formula"], data, family=attrs["family"], link=attrs["link"], trials=trials, priors=priors)

    def __repr__(self) -> str:
        lines = super().__repr__().splitlines()
        lines[0] = f"GLMM: {self._formula}"
        lines.insert(1, f"  family:        {self.family.name} (link: {self.family.link})")
        return "\n".join(lines)


def _check_one_per_row(design: Design, family: Family, trials: np.ndarray | None) -> None:
    """Refuse an observation-level effect on 0/1 responses, where nothing tells it apart from the mean."""
    per_row = [g.name for g in design.groups if g.n_levels == design.n]
    # k of n successes with one trial a row (a Bernoulli response: no trials given) cannot be overdispersed
    if per_row and family.successes and (trials is None or np.all(trials == 1)):
        raise ValueError(
            f"grouping factor {per_row[0]!r} has one level per row: an observation-level random effect models "
            "overdispersion, which a 0/1 response cannot show (each row's own effect is not identified). "
            "Drop the term, or group the rows (e.g. by subject)"
        )


def _columns_of(exprs: list[str]) -> list[str]:
    cols: list[str] = []
    for e in exprs:
        cols += list(parse_formula(f"{_wrapped(e)} ~ 1").response_variables)
    return list(dict.fromkeys(cols))


def _wrapped(expr: str) -> str:
    return expr if expr.isidentifier() else f"I({expr})"


def _response_words(fam: Family) -> str:
    """What a family's response is, for the message on a response that is not numbers."""
    if fam.counts:
        return "counts (0, 1, 2, ...)"
    if fam.successes and not fam.needs_trials:
        return "0/1 (or True/False)"
    if fam.successes:
        return "numbers of successes (0, 1, 2, ...)"
    return "a continuous response"


def _evaluate_sum(exprs: tuple[str, ...], data: pd.DataFrame, what: str) -> np.ndarray:
    """The sum of expressions on data, each evaluated with the formula's own transformations."""
    total = np.zeros(len(data))
    for e in exprs:
        spec = parse_formula(f"{_wrapped(e)} ~ 1")
        validate.check_columns(data, spec.response_variables, context=what)
        frame = data[list(spec.response_variables)].reset_index(drop=True)
        values = build_design(spec, frame).y
        if not np.all(np.isfinite(values)):
            raise ValueError(f"the {what} {e!r} is not finite on {int((~np.isfinite(values)).sum())} rows; "
                             "check its columns (log of 0 or of a negative number?)")
        total = total + values
    return total


def _top_level(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts

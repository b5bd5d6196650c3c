"""What a formula says, frozen: :class:`ModelSpec` and its random terms.

:mod:`lmm_bayes.spec.formula` reads lme4 text into these; the design stage reads them.
They hold text only, never data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LevelsCall", "ModelSpec", "RandomBlock", "RandomTerm"]


@dataclass(frozen=True)
class RandomBlock:
    """One parenthesised random term, ``(expr | g)`` or ``(expr || g)``.

    Attributes
    ----------
    expr : str
        The effects as written before the bar, e.g. ``"1 + Days"``.
    correlated : bool
        False for ``||``: every effect gets its own independent SD.
    """

    expr: str
    correlated: bool


@dataclass(frozen=True)
class RandomTerm:
    """Everything the formula says about one grouping factor.

    Several terms on the same factor (``(1|g) + (0 + x|g)``) are kept as
    separate blocks of one term: effects in different blocks are independent.

    Attributes
    ----------
    factors : tuple of str
        The data columns whose combinations define the clusters, e.g.
        ``("subject", "neuron")`` for ``subject:neuron``.
    blocks : tuple of RandomBlock
    """

    factors: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]

    @property
    def group(self) -> str:
        """The grouping factor's name, as used for dims: ``"subject:neuron"``."""
        return ":".join(self.factors)

    def __str__(self) -> str:
        return " + ".join(
            f"({b.expr} {'|' if b.correlated else '||'} {self.group})" for b in self.blocks
        )


@dataclass(frozen=True)
class LevelsCall:
    """A ``C(column, levels=[...])`` call found in the fixed part."""

    text: str
    column: str
    levels: tuple


@dataclass(frozen=True)
class ModelSpec:
    """A parsed lme4 formula.

    Attributes
    ----------
    formula : str
        The formula as given (whitespace normalised).
    response : str
        The response expression, e.g. ``"Reaction"`` or ``"log(y)"``.
    fixed_terms : tuple of str
        Fixed-effect terms as written, without the intercept.
    intercept : bool
        Whether the fixed part has an intercept.
    random : tuple of RandomTerm
        One entry per grouping factor, in order of first appearance.
    variables : tuple of str
        Every data column the formula reads.
    levels_calls : tuple of LevelsCall
        ``C(x, levels=...)`` calls, for the design stage.

    Examples
    --------
    >>> from lmm_bayes.spec.formula import parse_formula
    >>> spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    >>> spec.response, spec.fixed_terms, spec.random[0].group
    ('Reaction', ('Days',), 'Subject')
    >>> [t.group for t in parse_formula("y ~ 1 + (1 | a/b)").random]
    ['a', 'a:b']
    """

    formula: str
    response: str
    fixed_terms: tuple[str, ...]
    intercept: bool
    random: tuple[RandomTerm, ...]
    variables: tuple[str, ...]
    levels_calls: tuple[LevelsCall, ...] = field(default=())
    response_variables: tuple[str, ...] = field(default=())

    @property
    def predictor_variables(self) -> tuple[str, ...]:
        """The columns needed to predict: every variable the right-hand side reads."""
        return tuple(v for v in self.variables if v not in self.response_variables)

    @property
    def fixed_formula(self) -> str:
        """The fixed part as formulae reads it, e.g. ``"Reaction ~ 1 + Days"``."""
        rhs = ["1" if self.intercept else "0", *self.fixed_terms]
        return f"{self.response} ~ {' + '.join(rhs)}"

    @property
    def groups(self) -> tuple[str, ...]:
        """Names of the grouping factors."""
        return tuple(t.group for t in self.random)

    def __str__(self) -> str:
        return self.formula

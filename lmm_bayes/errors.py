"""Every error and warning class of the package, at the bottom of the house.

Each stage raises or warns with these; none of them knows a fitted model, so any
stage may import this module. Errors subclass ``ValueError`` (a bad value), so
``except ValueError`` keeps catching them.
"""

from __future__ import annotations

__all__ = [
    "FitFileError",
    "FormulaError",
    "ImplicitNestingWarning",
    "MethodNote",
    "ModelFileError",
    "RandomEffectsNotKept",
    "RowsDroppedWarning",
    "SamplingWarning",
]


class FormulaError(ValueError):
    """A formula that cannot be read; the message points at the problem with a caret."""

    def __init__(self, formula: str, position: int, message: str):
        self.formula = formula
        self.position = position
        caret = " " * max(position, 0) + "^"
        super().__init__(f"{message}\n  {formula}\n  {caret}")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the key."""


class FitFileError(ValueError):
    """The file is not an lmm-bayes fit, was written by a newer version, or was altered."""


class RandomEffectsNotKept(ValueError):
    """A fit made with ``keep_b="none"`` was asked for something that needs the draws of b."""


class RowsDroppedWarning(UserWarning):
    """Rows were dropped because ``na_action="drop"`` was asked for."""


class ImplicitNestingWarning(UserWarning):
    """A grouping factor's labels repeat across the levels of another factor."""


class SamplingWarning(UserWarning):
    """Divergences, high R-hat or low ESS: the draws may not be trustworthy."""


class MethodNote(UserWarning):
    """``method="auto"`` could not use the collapsed method, and says why."""

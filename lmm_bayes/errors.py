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
    "SeparationWarning",
]


class FormulaError(ValueError):
    """A formula that cannot be read; the message points at the problem with a caret.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> try:
    ...     lb.parse_formula("Reaction ~ Days +")
    ... except lb.FormulaError as err:
    ...     print(isinstance(err, ValueError), err.position)
    True 16
    """

    def __init__(self, formula: str, position: int, message: str):
        self.formula = formula
        self.position = position
        caret = " " * max(position, 0) + "^"
        super().__init__(f"{message}\n  {formula}\n  {caret}")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the key.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import pathlib, tempfile
    >>> from lmm_bayes.app.modelfile import load_model_file
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.toml"
    >>> _ = path.write_text('[data]\\ndataset = "sleepstudy"\\n[model]\\nformula = "Reaction ~ Days"\\nbogus = 1\\n')
    >>> try:
    ...     load_model_file(path)
    ... except lb.ModelFileError as err:
    ...     print("unknown key [model] 'bogus'" in str(err))
    True
    """


class FitFileError(ValueError):
    """The file is not an lmm-bayes fit, was written by a newer version, or was altered.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "not_a_fit.nc"
    >>> _ = path.write_text("hello")
    >>> try:
    ...     lb.load(path)
    ... except lb.FitFileError as err:
    ...     print(isinstance(err, ValueError))
    True
    """


class RandomEffectsNotKept(ValueError):
    """A fit made with ``keep_b="none"`` was asked for something that needs the draws of b.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False, keep_b="none")
    >>> try:
    ...     fit.ranef("Subject")
    ... except lb.RandomEffectsNotKept as err:
    ...     print("keep_b" in str(err))
    True
    """


class RowsDroppedWarning(UserWarning):
    """Rows were dropped because ``na_action="drop"`` was asked for.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import warnings, numpy as np
    >>> df = lb.datasets.load("sleepstudy")
    >>> df.loc[0, "Reaction"] = np.nan
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = lb.LMM("Reaction ~ Days + (1 | Subject)", df, na_action="drop")
    >>> [w.category.__name__ for w in caught], model.design.n
    (['RowsDroppedWarning'], 179)
    """


class ImplicitNestingWarning(UserWarning):
    """A grouping factor's labels repeat across the levels of another factor.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import warnings, pandas as pd
    >>> df = pd.DataFrame({"subject": list("aaaaaabbbb"), "neuron": list("1122331122"),
    ...                    "y": [1.0, 2.0, 3.0, 4.0, 2.0, 3.0, 5.0, 4.0, 6.0, 5.0]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = lb.LMM("y ~ 1 + (1 | subject) + (1 | neuron)", df)  # neuron "1" of a and of b merged
    >>> [w.category.__name__ for w in caught]
    ['ImplicitNestingWarning']
    """


class SeparationWarning(UserWarning):
    """A binary or binomial response is separated: its likelihood has no finite maximum.

    Every response one outcome (all 0, all 1, every trial a success), or a binary predictor
    that is one value exactly where the response is a success: the data push the intercept
    (or that predictor's coefficient) towards infinity, so its posterior is its prior's tail.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import warnings, pandas as pd
    >>> df = pd.DataFrame({"y": [0] * 8, "g": list("abcd") * 2})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = lb.GLMM("y ~ 1 + (1 | g)", df, family="bernoulli")
    >>> [w.category.__name__ for w in caught]
    ['SeparationWarning']
    """


class SamplingWarning(UserWarning):
    """Divergences, high R-hat or low ESS: the draws may not be trustworthy.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...         draws=20, tune=20, chains=2, seed=1, progressbar=False)  # far too few draws
    >>> [w.category.__name__ for w in caught]
    ['SamplingWarning']
    """


class MethodNote(UserWarning):
    """``method="auto"`` could not use the collapsed method, and says why.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> from lmm_bayes.inference.methods.registry import resolve_method
    >>> import pandas as pd
    >>> df = pd.DataFrame({"s": list("aabbccdd") * 2, "item": list("xyxyxyxy") * 2, "y": range(16)})
    >>> model = lb.LMM("y ~ 1 + (1 | s) + (1 | item)", df)  # crossed factors
    >>> print(resolve_method(model.design, "auto", sampler="pymc")[1])  # what fit(sampler="pymc") warns
    method='auto' chose 'full': ...
    """

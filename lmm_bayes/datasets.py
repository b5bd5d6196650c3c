"""Data sets shipped with the package (sources in ``lmm_bayes/data/SOURCE.md``).

>>> import lmm_bayes as lb
>>> lb.datasets.names()
('sleepstudy', 'radon')
>>> lb.datasets.load("sleepstudy").columns.tolist()
['Reaction', 'Days', 'Subject']
"""

from __future__ import annotations

import difflib
from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

# name -> (file, grouping columns returned as text)
_BUNDLED = {
    "sleepstudy": ("sleepstudy.csv", ("Subject",)),
    "radon": ("radon.csv", ("county",)),
}


def names() -> tuple[str, ...]:
    """Names of the bundled data sets.

    Examples
    --------
    >>> names()
    ('sleepstudy', 'radon')
    """
    return tuple(_BUNDLED)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a fresh DataFrame.

    Grouping columns come back as text (``Subject`` "308", ``county`` "AITKIN"),
    never as integers, so they cannot be mistaken for numeric predictors.

    Parameters
    ----------
    name : {"sleepstudy", "radon"}

    Examples
    --------
    >>> df = load("sleepstudy")
    >>> df.shape, df["Subject"].iloc[0]
    ((180, 3), '308')
    >>> load("radon")["county"].nunique()
    85
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {list(_BUNDLED)}; got {type(name).__name__}")
    if name not in _BUNDLED:
        close = difflib.get_close_matches(name, list(_BUNDLED), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"no bundled data set {name!r}{hint}; bundled: {', '.join(_BUNDLED)}")
    file, groups = _BUNDLED[name]
    with resources.files("lmm_bayes.data").joinpath(file).open("r") as fh:
        df = pd.read_csv(fh, dtype={g: str for g in groups})
    return df

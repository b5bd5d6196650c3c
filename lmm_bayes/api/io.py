"""The user's :func:`load`: a saved fit back as the user's classes.

Reading and checking the file is :func:`lmm_bayes.results.io.load`; this passes it the classes
of the top layer, so a loaded fit and its model have every method a fitted one has.
"""

from __future__ import annotations

import os

from lmm_bayes.api.fit import Fit, PoolingFit
from lmm_bayes.api.model import GLMM, LMM
from lmm_bayes.results import io
from lmm_bayes.results.base import FittedModel

__all__ = ["load"]

#: what a file becomes: the user's model and fit classes
USER_CLASSES = io.FitClasses(model=LMM, glmm=GLMM, fit=Fit, pooling_fit=PoolingFit)


def load(path: str | os.PathLike) -> FittedModel:
    """Read a fit written by :func:`~lmm_bayes.results.io.save` (or ``fit.save``).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    Fit or PoolingFit
        The kind that was saved (a :class:`~lmm_bayes.PoolingFit` for a no- or complete-pooling
        fit, else a :class:`~lmm_bayes.Fit`), with its
        model rebuilt from the stored formula, priors and training data: ``predict``,
        summaries and plots give the same numbers as before saving.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FitFileError
        (a ``ValueError``) The file is not a netCDF file written by lmm-bayes, was
        written by a newer format version, holds an unknown kind of fit, refers to
        another file (an external or soft link, external storage, a virtual dataset:
        refused before anything is read), was altered after saving (its checksums
        differ or are missing), is damaged (h5py, netCDF or xarray cannot read it,
        or an attribute, the training data or the posterior cannot be read), or its
        stored design no longer matches the design rebuilt from its training data.
        The message names the file and the problem.

    Warns
    -----
    UserWarning
        The file has format version 1, whose checksums left out the draws: load and
        save it again (``lb.load(path).save(path)``) to check it fully from then on.

    Examples
    --------
    >>> import pathlib, tempfile, lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
    >>> fit.save(path)
    >>> loaded = lb.load(path)
    >>> loaded.model.formula, loaded.posterior["Subject_b"].shape
    ('Reaction ~ Days + (1 | Subject)', (2, 500, 18, 1))
    """
    return io.load(path, classes=USER_CLASSES)

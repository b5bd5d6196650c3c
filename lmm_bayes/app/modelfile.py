"""Model files: a TOML description of data + formula + priors + sampler settings.

A model file is what the ``lmm-bayes`` command runs, and what notebooks and tests
load. Every key is checked; unknown keys are rejected with the list of known ones.
The formula goes through the same no-eval parser as ``lb.LMM``.

Where a model file may read from: a bundled data set, a simulation, or a ``.csv`` file
in the model file's own folder or below it (``path`` is relative to the model file; an
absolute path, or one that leaves the folder through ``..`` or a link, is refused). So
running a model file written by someone else reads nothing outside its folder, and no
error message ever quotes the data's contents beyond its column names.

.. code-block:: toml

    [data]
    dataset = "sleepstudy"          # a bundled data set, or
    # path = "my_data.csv"          # a CSV file in this file's folder (or below it), or
    # simulate = { n_subjects = 20, n_neurons = 25, n_trials = 40, seed = 1, ... }  (seed required)

    [model]
    formula = "Reaction ~ Days + (Days | Subject)"
    na_action = "raise"             # or "drop"
    # family = "poisson"            # a GLMM (lb.GLMM): also link = "probit", trials = "n" or 20

    [priors]                        # optional; same keys as LMM(priors=...)
    Days = { dist = "Normal", mu = 0, sigma = 50 }

    [fit]                           # optional; arguments of LMM.fit
    method = "auto"
    draws = 1000
    seed = 1

    [report]                        # optional
    group = "Subject"               # the grouping factor the report plots
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmm_bayes import datasets
from lmm_bayes.api.model import GLMM, LMM
from lmm_bayes.calibration.simulate import simulate_hierarchy
from lmm_bayes.errors import ModelFileError
from lmm_bayes.spec import validate
from lmm_bayes.spec.families.registry import get_family
from lmm_bayes.spec.formula import parse_formula
from lmm_bayes.spec.glmm import split_glm_formula

__all__ = ["ModelFile", "ModelFileError", "data_path", "load_model_file"]

_SECTIONS = {
    "data": {"dataset": str, "path": str, "simulate": dict},
    "model": {"formula": str, "na_action": str, "family": str, "link": str, "trials": (str, int)},
    "priors": None,  # free-form: checked by resolve_priors against the model
    "fit": {
        "method": str, "sampler": str, "draws": int, "tune": int, "chains": int,
        "seed": int, "target_accept": float, "progressbar": bool,
    },
    "report": {"group": str, "title": str},
}
_SIMULATE = {
    "n_subjects": int, "n_neurons": int, "n_trials": (int, list), "beta": list, "G": list,
    "sigma_neuron": float, "sigma": float, "x_within_sd": float, "x_between_sd": float, "seed": int,
}


@dataclass(frozen=True)
class ModelFile:
    """A validated model file.

    Attributes
    ----------
    path : Path
    data_source : dict
        Exactly one of ``dataset``, ``path`` or ``simulate``.
    formula : str
    na_action : str
    priors : dict
    fit_options : dict
    report : dict
    glm : dict
        ``family``, ``link`` and ``trials`` of a GLMM; empty for an LMM.

    Examples
    --------
    >>> from pathlib import Path
    >>> import lmm_bayes as lb
    >>> mf = load_model_file(Path(lb.__file__).parents[1] / "models" / "sleepstudy_random_slopes.toml")
    >>> mf.formula
    'Reaction ~ Days + (Days | Subject)'
    >>> mf.model().design.n
    180
    """

    path: Path
    data_source: dict[str, Any]
    formula: str
    na_action: str = "raise"
    priors: dict[str, Any] = field(default_factory=dict)
    fit_options: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    glm: dict[str, Any] = field(default_factory=dict)

    def data(self) -> pd.DataFrame:
        """The data the file names."""
        src = self.data_source
        if "dataset" in src:
            try:
                return datasets.load(src["dataset"])
            except ValueError as err:
                raise ModelFileError(f"{self.path}: [data] dataset: {err}") from None
        if "path" in src:
            csv = data_path(self.path, src["path"])
            try:
                return pd.read_csv(csv)
            except (ValueError, OSError, UnicodeDecodeError) as err:
                raise ModelFileError(
                    f"{self.path}: [data] path: {src['path']!r} cannot be read as CSV ({type(err).__name__})"
                ) from None
        kwargs = dict(src["simulate"])
        for key in ("n_neurons", "n_trials", "trials"):  # (low, high) ranges are TOML arrays
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        args = [kwargs.pop(k) for k in ("n_subjects", "n_neurons", "n_trials")]
        return simulate_hierarchy(*args, **kwargs).data

    def model(self):
        """The :class:`~lmm_bayes.LMM` the file describes (a :class:`~lmm_bayes.GLMM` with a ``family``)."""
        if self.glm:
            return GLMM(self.formula, self.data(), **self.glm, priors=self.priors or None, na_action=self.na_action)
        return LMM(self.formula, self.data(), priors=self.priors or None, na_action=self.na_action)

    def fit(self, **overrides: Any):
        """Fit the model with the file's settings, ``overrides`` taking precedence."""
        return self.model().fit(**{**self.fit_options, **overrides})


def data_path(model_file: Path, relative: str) -> Path:
    """The CSV a model file's ``[data] path`` names, confined to the model file's folder.

    Raises
    ------
    ModelFileError
        An absolute path, a path leaving the folder (``..``, a link), a name not ending
        in ``.csv``, or no such file.
    """
    folder = model_file.parent.resolve()
    given = Path(relative)
    csv = (folder / given).resolve()
    if given.is_absolute() or not csv.is_relative_to(folder):
        raise ModelFileError(
            f"{model_file}: [data] path {relative!r} lies outside the model file's folder; a model file "
            "reads only files in its own folder or below it: copy the data there"
        )
    if csv.suffix.lower() != ".csv":
        raise ModelFileError(f"{model_file}: [data] path {relative!r} must name a .csv file")
    if not csv.is_file():
        raise ModelFileError(f"{model_file}: [data] path: no file {relative!r} in {folder}")
    return csv


def _check_keys(where: str, given: Mapping[str, Any], known: Mapping[str, Any], path: Path) -> None:
    for key, value in given.items():
        if key not in known:
            hint = validate.did_you_mean(key, list(known))
            raise ModelFileError(f"{path}: unknown key {where}{key!r}{hint}; known keys: {', '.join(known)}")
        expected = known[key]
        types = expected if isinstance(expected, tuple) else (expected,)
        ok = any(
            isinstance(value, t) and not (t in (int, float) and isinstance(value, bool))
            or (t is float and isinstance(value, int) and not isinstance(value, bool))
            for t in types
        )
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ModelFileError(
                f"{path}: {where}{key} must be {names}, got {type(value).__name__} {value!r}"
            )


def load_model_file(path: str | Path) -> ModelFile:
    """Read and validate a model file.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError
        (a ValueError) bad TOML, unknown or missing keys, wrong types, a bad formula.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ModelFileError(f"{path}: not valid TOML: {err}") from None
    _check_keys("", {k: {} for k in raw}, {k: dict for k in _SECTIONS}, path)
    for section, known in _SECTIONS.items():
        if known is not None and section in raw:
            _check_keys(f"[{section}] ", raw[section], known, path)
    data = raw.get("data", {})
    sources = [k for k in ("dataset", "path", "simulate") if k in data]
    if len(sources) != 1:
        raise ModelFileError(
            f"{path}: [data] needs exactly one of 'dataset', 'path' or 'simulate', got {sources or 'none'}"
        )
    if "simulate" in data:
        _check_keys("[data.simulate] ", data["simulate"], _SIMULATE, path)
        # The seed is required, as by lb.simulate_hierarchy: a file without one would fit other
        # rows on every run, and the report could not be reproduced from the file alone.
        required = {"n_subjects", "n_neurons", "n_trials", "beta", "G", "sigma_neuron", "sigma", "seed"}
        missing = required - set(data["simulate"])
        if missing:
            hint = ("; add seed = <int> under [data.simulate] so that every run simulates the same data"
                    if "seed" in missing else "")
            raise ModelFileError(f"{path}: [data.simulate] is missing {sorted(missing)}{hint}")
    model = raw.get("model", {})
    if "formula" not in model:
        raise ModelFileError(f"{path}: [model] formula is required, e.g. formula = \"y ~ x + (1 | g)\"")
    glm = {k: model[k] for k in ("family", "link", "trials") if k in model}
    if glm and "family" not in glm:
        raise ModelFileError(f"{path}: [model] link and trials need a family, e.g. family = \"binomial\"")
    try:
        get_family(glm["family"], glm.get("link")) if glm else None
    except ValueError as err:
        raise ModelFileError(f"{path}: [model] family: {err}") from None
    try:
        parse_formula(split_glm_formula(model["formula"])[0] if glm else model["formula"])
    except ValueError as err:
        raise ModelFileError(f"{path}: [model] formula: {err}") from None
    na_action = model.get("na_action", "raise")
    if na_action not in ("raise", "drop"):
        raise ModelFileError(f"{path}: [model] na_action must be 'raise' or 'drop', got {na_action!r}")
    return ModelFile(
        path=path,
        data_source=dict(data),
        formula=model["formula"],
        na_action=na_action,
        priors=dict(raw.get("priors", {})),
        fit_options=dict(raw.get("fit", {})),
        report=dict(raw.get("report", {})),
        glm=glm,
    )

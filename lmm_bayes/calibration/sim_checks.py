"""Checks of the known parameters and counts that :mod:`lmm_bayes.calibration.simulate` draws from.

Each raises ``TypeError`` for a wrong type and ``ValueError`` for a bad value, naming the
entry (``params['G']['g']``, ``n_trials``) and saying what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmm_bayes.spec import validate
from lmm_bayes.spec.design import GroupDesign

__all__ = [
    "MAX_SIMULATED_ROWS", "check_beta", "check_cov", "check_keys", "check_number", "check_params", "check_rows",
    "counts", "seeded_rng",
]

# Each simulated row holds a handful of 8-byte columns plus its labels (about 4 GB at this
# limit); 1e15 rows failed only when numpy tried to allocate petabytes.
MAX_SIMULATED_ROWS = 100_000_000


def check_number(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite (``positive``: > 0) number as a float.

    Examples
    --------
    >>> check_number(2, "sigma", positive=True)
    2.0
    >>> check_number(0.0, "sigma", positive=True)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a positive finite number, got 0.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or (positive and value <= 0):
        kind = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


def check_keys(given: Mapping, expected: Sequence[str], name: str) -> None:
    """``given`` must have exactly the keys ``expected`` (an unknown one gets a did-you-mean).

    Examples
    --------
    >>> check_keys({"beta": 1}, ["beta", "G"], "params")
    Traceback (most recent call last):
    ...
    ValueError: params lacks ['G']; give a value for each of ['beta', 'G']
    """
    unknown = [k for k in given if k not in expected]
    for key in unknown:
        hint = validate.did_you_mean(str(key), list(expected))
        raise ValueError(f"{name} has unknown key {key!r}{hint}; expected keys {list(expected)}")
    missing = [k for k in expected if k not in given]
    if missing:
        raise ValueError(f"{name} lacks {missing}; give a value for each of {list(expected)}")


def check_beta(beta: Any, names: Sequence[str], name: str = "params['beta']") -> np.ndarray:
    """Fixed effects as a dict keyed by name or a list in X column order; returns them in that order.

    Examples
    --------
    >>> check_beta({"x": 2.0, "Intercept": 1.0}, ["Intercept", "x"])
    array([1., 2.])
    """
    if isinstance(beta, Mapping):
        check_keys(beta, names, name)
        values = [beta[k] for k in names]
    elif isinstance(beta, (Sequence, np.ndarray)) and not isinstance(beta, str):
        values = list(np.asarray(beta, dtype=object).ravel())
        if len(values) != len(names):
            raise ValueError(
                f"{name} has {len(values)} values for {len(names)} fixed effects {list(names)}; "
                "give one per column of X, in that order, or a dict keyed by name"
            )
    else:
        raise TypeError(
            f"{name} must be a dict like {{{', '.join(f'{n!r}: 0.0' for n in names)}}} or a list "
            f"in X column order, got {type(beta).__name__}"
        )
    return np.array([check_number(v, f"{name}[{k!r}]") for k, v in zip(names, values)])


def check_cov(value: Any, group: GroupDesign, name: str) -> np.ndarray:
    """A factor's covariance G: q x q, symmetric, positive definite, 0 between independent blocks.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> g = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design.group("Subject")
    >>> check_cov(4.0, g, "G")
    array([[4.]])
    """
    q = len(group.effects)
    try:
        G = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a {q}x{q} matrix of numbers, got {type(value).__name__}") from None
    if G.ndim == 0 and q == 1:
        G = G.reshape(1, 1)
    if G.shape != (q, q):
        raise ValueError(
            f"{name} must be a {q}x{q} covariance matrix (effects {list(group.effects)}), got shape {G.shape}"
        )
    if not np.all(np.isfinite(G)) or not np.allclose(G, G.T):
        raise ValueError(f"{name} must be a finite symmetric matrix, got {G.tolist()}")
    block_of = {k: i for i, b in enumerate(group.blocks) for k in b}
    for i in range(q):
        for j in range(i):
            if block_of[i] != block_of[j] and G[i, j] != 0:
                raise ValueError(
                    f"{name}: the formula makes {group.effects[j]!r} and {group.effects[i]!r} independent "
                    f"('||' or separate terms), but their covariance is {G[i, j]}; set it to 0, "
                    "or write the effects in one (... | g) term"
                )
    try:
        np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{name} must be positive definite (variances > 0, |correlations| < 1); "
            f"its eigenvalues are {np.round(np.linalg.eigvalsh(G), 6).tolist()}"
        ) from None
    return G


def check_params(params: Any, X_columns: Sequence[str], groups: Sequence[GroupDesign],
                 scale: str | None = "sigma") -> tuple:
    """Check ``params`` against a design; return ``(beta, {group: G}, params[scale])`` as numpy.

    ``scale`` names the family's scale entry: ``"sigma"`` (Gaussian), ``"dispersion"`` (negative
    binomial) or None (Poisson, Bernoulli, binomial: no entry, None returned). Raises
    ``TypeError``/``ValueError`` naming the offending entry.

    Examples
    --------
    >>> check_params({"beta": [1.0], "sigma": 2}, ["Intercept"], [])
    (array([1.]), {}, 2.0)
    """
    if not isinstance(params, Mapping):
        raise TypeError(
            "params must be a dict with 'beta', 'G' and 'sigma', e.g. "
            "{'beta': {'Intercept': 5.0}, 'G': {'g': [[1.0]]}, 'sigma': 2.0}; "
            f"got {type(params).__name__}"
        )
    given = dict(params)
    if not groups and isinstance(given.get("G"), Mapping) and not given["G"]:
        del given["G"]  # an empty G for a model without random effects
    check_keys(given, ["beta"] + (["G"] if groups else []) + ([scale] if scale else []), "params")
    beta = check_beta(params["beta"], X_columns)
    sigma = check_number(params[scale], f"params[{scale!r}]", positive=True) if scale else None
    G: dict[str, np.ndarray] = {}
    if groups:
        if not isinstance(params["G"], Mapping):
            raise TypeError(
                f"params['G'] must be a dict keyed by grouping factor {[g.name for g in groups]}, "
                f"got {type(params['G']).__name__}"
            )
        check_keys(params["G"], [g.name for g in groups], "params['G']")
        G = {g.name: check_cov(params["G"][g.name], g, f"params['G'][{g.name!r}]") for g in groups}
    return beta, G, sigma


def seeded_rng(seed: Any) -> np.random.Generator:
    """A numpy Generator from an int, a Generator, a SeedSequence or None.

    Examples
    --------
    >>> float(seeded_rng(1).random()) == float(np.random.default_rng(1).random())
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, np.random.Generator,
                                                        np.random.SeedSequence, type(None))):
        raise TypeError(
            f"seed must be an int, a numpy Generator or SeedSequence, or None; got {type(seed).__name__}"
        )
    return np.random.default_rng(seed)


def check_rows(*sizes: Any) -> None:
    """Refuse ``simulate_hierarchy``'s sizes whose product (a range at its high end) exceeds :data:`MAX_SIMULATED_ROWS`.

    Sizes that are not positive ints or pairs of them are left to :func:`counts` to refuse.

    Examples
    --------
    >>> check_rows(10**15, 2, (1, 3))
    Traceback (most recent call last):
    ...
    ValueError: n_subjects x n_neurons x n_trials = 1000000000000000 x 2 x (1, 3) would simulate up to \
6,000,000,000,000,000 rows; at most 100,000,000 rows are simulated (about 4 GB of columns): use smaller sizes
    """
    most = 1
    for value in sizes:
        pair = isinstance(value, (tuple, list)) and len(value) == 2
        parts = list(value) if pair else [value]
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in parts):
            return
        most *= int(max(parts))
    if most > MAX_SIMULATED_ROWS:
        shown = " x ".join(str(tuple(v) if isinstance(v, list) else v) for v in sizes)
        raise ValueError(
            f"n_subjects x n_neurons x n_trials = {shown} would simulate up to {most:,} rows; at most "
            f"{MAX_SIMULATED_ROWS:,} rows are simulated (about 4 GB of columns): use smaller sizes"
        )


def counts(value: Any, size: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """``size`` counts: all ``value``, or uniform on ``low..high`` (inclusive).

    Examples
    --------
    >>> counts(3, 2, np.random.default_rng(0), "n_trials").tolist()
    [3, 3]
    >>> bool(np.isin(counts((2, 4), 50, np.random.default_rng(0), "n_trials"), [2, 3, 4]).all())
    True
    """
    """``size`` counts: all ``value``, or uniform on ``low..high`` (inclusive)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return np.full(size, validate.check_positive_int(value, name))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        low = validate.check_positive_int(value[0], f"{name}[0]")
        high = validate.check_positive_int(value[1], f"{name}[1]")
        if high < low:
            raise ValueError(f"{name} range must be (low, high) with low <= high, got {tuple(value)}")
        return rng.integers(low, high, size=size, endpoint=True)
    raise TypeError(f"{name} must be an int or a (low, high) pair of ints, got {value!r}")

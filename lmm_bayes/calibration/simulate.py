"""Data with known truth: a response drawn from known β, G and σ.

:func:`simulate` draws the response of any formula on the predictors and
grouping columns of a data frame; :func:`simulate_hierarchy` also builds the
subject / neuron / trial skeleton of the teaching examples. Both return a
:class:`Simulation` whose ``.truth`` uses the names of the posterior
(``beta`` on ``coef``, ``{g}_sd`` on ``{g}_effect``, ``{g}_corr`` on
(``{g}_effect``, ``{g}_effect_bis``), ``{g}_b`` on (``{g}``, ``{g}_effect``),
``sigma``), so truth and posterior line up label by label. ``{g}_cov`` holds G.

Both also draw counts, choices and k of n successes (``family="poisson"``,
``"negativebinomial"``, ``"bernoulli"``, ``"binomial"``): β and G are then link-scale truth and
the response is drawn from the family at ``g⁻¹(eta)`` (:func:`draw_glm_response`).

The model is ``y = X beta + Z b + e`` with ``b ~ N(0, G)`` independently per
cluster of each grouping factor and ``e ~ N(0, sigma^2)``. With one seed the
draws come in a fixed order (the b of each factor in formula order, then e),
so the same seed gives the same data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes import names
from lmm_bayes.inference.layout import BETA, SIGMA, b_name, bis, corr_name, cov_name, linear_predictor, sd_name
from lmm_bayes.calibration.sim_checks import (
    check_beta, check_cov, check_number, check_params, check_rows, counts, seeded_rng,
)
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import GroupDesign, build_design
from lmm_bayes.spec.families.registry import GAUSSIAN, Family, get_family
from lmm_bayes.spec.formula import ModelSpec, parse_formula
from lmm_bayes.spec.glmm import GeneralizedMixedModel, split_glm_formula

__all__ = [
    "Simulation", "draw_glm_response", "draw_response", "plain_response", "simulate", "simulate_hierarchy",
    "truth_dataset",
]

Seed = int | np.random.Generator | np.random.SeedSequence | None
HIERARCHY_FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"


@dataclass(frozen=True, eq=False)
class Simulation:
    """Simulated data and the truth it was drawn from.

    Attributes
    ----------
    data : pandas.DataFrame
        The input columns with the response filled in.
    truth : xarray.Dataset
        ``beta`` (``coef``), ``sigma``, and per grouping factor ``g``:
        ``{g}_sd`` (``{g}_effect``), ``{g}_cov`` = G and, for correlated
        effects, ``{g}_corr`` (both on ``{g}_effect``, ``{g}_effect_bis``),
        and every cluster's ``{g}_b`` (``{g}``, ``{g}_effect``), labelled by level.
    formula : str
        The model the data follow (``cbind(y, n - y) ~ ...`` for binomial data).
    family : Family
        The response's family and link (Gaussian by default); fit the data with
        ``lb.GLMM(sim.formula, sim.data, family=sim.family)``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> sim = lb.simulate_hierarchy(3, 2, 5, beta=[10.0, 2.0], G=[[1.0, 0.1], [0.1, 0.25]],
    ...                             sigma_neuron=0.5, sigma=1.0, seed=1)
    >>> sim.data.shape, sim.formula
    ((30, 5), 'y ~ x + (1 + x | subject) + (1 | subject:neuron)')
    >>> float(sim.truth["sigma"])
    1.0
    """

    data: pd.DataFrame
    truth: xr.Dataset
    formula: str
    family: Family = GAUSSIAN


# ---------------------------------------------------------------- drawing


def draw_response(
    X: np.ndarray, groups: Sequence[GroupDesign], beta: np.ndarray, G: Mapping[str, np.ndarray],
    sigma: float, rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw every cluster's b and the response y from known β, G and σ.

    ``b ~ N(0, G)`` per cluster of each grouping factor (in the order of ``groups``),
    then ``y = X beta + Z b + e`` with ``e ~ N(0, sigma^2)``; the draws come in that
    order, so the same ``rng`` state gives the same data. The parameters are not
    checked (:func:`simulate` checks them).

    Parameters
    ----------
    X : ndarray (n, p)
    groups : sequence of GroupDesign
        The grouping factors (``codes``, ``Z``, ``levels``, ``effects``), e.g. ``design.groups``.
    beta : ndarray (p,)
    G : dict
        Per grouping factor's name, the covariance (q, q) of its effects.
    sigma : float
    rng : numpy.random.Generator

    Returns
    -------
    y : ndarray (n,)
    b : dict
        Per grouping factor's name, every cluster's effects (levels, q).

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> y, b = draw_response(d.X, d.groups, np.array([250.0, 10.0]), {"Subject": np.diag([600.0, 35.0])},
    ...                      25.0, np.random.default_rng(1))
    >>> y.shape, b["Subject"].shape
    ((180,), (18, 2))
    """
    bs = {}
    for g in groups:
        L = np.linalg.cholesky(G[g.name])
        bs[g.name] = rng.standard_normal((len(g.levels), len(g.effects))) @ L.T
    mu = linear_predictor(X, beta, [(g.Z, g.codes, bs[g.name]) for g in groups])
    return mu + sigma * rng.standard_normal(len(mu)), bs


def draw_glm_response(
    X: np.ndarray, groups: Sequence[GroupDesign], beta: np.ndarray, G: Mapping[str, np.ndarray], family: Family,
    rng: np.random.Generator, *, aux: float | None = None, trials: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw every cluster's b and a response from ``family`` at ``g⁻¹(X beta + Z b + offset)``.

    The b are drawn as in :func:`draw_response` (same order, same values for the same
    ``rng`` state), then the response from the family
    (:meth:`~lmm_bayes.Family.draw`): counts, 0/1, or the successes of each row's ``trials``.

    Parameters
    ----------
    X, groups, beta, G, rng
        As for :func:`draw_response`; β and G on the link scale.
    family : Family
    aux : float, optional
        The family's extra parameter (the negative binomial's dispersion 1/√alpha; σ for Gaussian).
    trials : ndarray (n,), optional
        Binomial trials per row.
    offset : ndarray (n,), optional

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> from lmm_bayes.spec.families.registry import get_family
    >>> d = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).design
    >>> y, b = draw_glm_response(d.X, d.groups, np.array([1.0, 0.1]), {"Subject": [[0.25]]},
    ...                          get_family("poisson"), np.random.default_rng(1))
    >>> bool((y == np.round(y)).all() and y.min() >= 0), b["Subject"].shape
    (True, (18, 1))
    """
    bs = {}
    for g in groups:
        L = np.linalg.cholesky(np.asarray(G[g.name], dtype=float))
        bs[g.name] = rng.standard_normal((len(g.levels), len(g.effects))) @ L.T
    eta = linear_predictor(X, beta, [(g.Z, g.codes, bs[g.name]) for g in groups])
    if offset is not None:
        eta = eta + offset
    return family.draw(rng, eta, aux, trials), bs


def truth_dataset(
    X_columns: Sequence[str], groups: Sequence[GroupDesign], beta: np.ndarray, G: Mapping[str, np.ndarray],
    sigma: float | None, b: Mapping[str, np.ndarray] | None = None, *, formula: str = "",
    family: Family = GAUSSIAN, aux: float | None = None,
) -> xr.Dataset:
    """The true parameters as an :class:`xarray.Dataset` in the posterior's layout.

    ``beta`` (``coef``), ``sigma``, and per grouping factor ``{g}_sd``, ``{g}_cov`` = G,
    ``{g}_corr`` for correlated effects and, when ``b`` is given, every cluster's
    ``{g}_b``
    (see :mod:`lmm_bayes.inference.layout`). A generalized model has no ``sigma``
    (pass None) and its extra parameter, if any, as ``aux`` (the negative binomial's
    ``dispersion``); ``attrs`` name the family and link.

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> d = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).design
    >>> t = truth_dataset(d.X_columns, d.groups, np.array([250.0, 10.0]),
    ...                   {"Subject": [[625.0, 5.0], [5.0, 36.0]]}, 25.0)
    >>> t["Subject_sd"].values, t["Subject_corr"].values.round(3).tolist()
    (array([25.,  6.]), [[1.0, 0.033], [0.033, 1.0]])
    """
    data: dict[str, Any] = {BETA: ((names.COEF,), np.asarray(beta, float))}
    if sigma is not None:
        data[SIGMA] = ((), float(sigma))
    if family.aux and not family.is_gaussian:
        data[family.aux] = ((), float(aux))
    coords: dict[str, Any] = {names.COEF: list(X_columns)}
    for g in groups:
        e, e2 = g.effect_dim, bis(g.effect_dim)
        cov = np.asarray(G[g.name], float)
        sd = np.sqrt(np.diag(cov))
        coords[e] = coords[e2] = list(g.effects)
        data[sd_name(g)] = ((e,), sd)
        data[cov_name(g)] = ((e, e2), cov)
        if g.correlated:
            data[corr_name(g)] = ((e, e2), cov / np.outer(sd, sd))
        if b is not None:
            coords[g.name] = list(g.levels)
            data[b_name(g)] = ((g.name, e), b[g.name])
    return xr.Dataset(data, coords=coords, attrs={"formula": formula, "family": family.name, "link": family.link})


def plain_response(spec: ModelSpec) -> str:
    """The response column of ``spec``; ``ValueError`` for a transformed one (``log(y)``).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> plain_response(lb.parse_formula("y ~ x + (1 | g)"))
    'y'
    """
    if spec.response_variables != (spec.response,):
        raise ValueError(
            f"cannot simulate the transformed response {spec.response!r}; simulate a plain column "
            "and transform it afterwards"
        )
    return spec.response


# ---------------------------------------------------------------- public


def simulate(formula: str, data: pd.DataFrame, *, params: Mapping[str, Any], seed: Seed,
             family: str | Family = "gaussian", link: str | None = None, trials: str | None = None) -> Simulation:
    """Draw the response of ``formula`` on the rows of ``data`` from known parameters.

    Parameters
    ----------
    formula : str
        lme4 syntax; the response must be a plain column name (it may be absent
        from ``data``; if present, it is replaced). For a family other than Gaussian,
        ``offset(expr)`` terms are added to the linear predictor, as in :class:`~lmm_bayes.GLMM`.
    data : pandas.DataFrame
        The predictors and grouping columns.
    params : dict
        ``"beta"``: a dict keyed by fixed-effect name (the columns of X, e.g.
        ``"Intercept"``, ``"x"``) or a list in that order; ``"G"``: per grouping
        factor, the covariance matrix of its effects (a number for a single
        effect); ``"sigma"``: the residual SD (Gaussian only); ``"dispersion"``:
        1/√alpha (negative binomial only). β and G are on the link scale. Effects
        the formula makes independent (``||``) must have zero covariance.
    seed : int, numpy Generator or SeedSequence, or None
        The same seed gives the same data.
    family : str or Family
        ``"gaussian"`` (default), ``"poisson"``, ``"negativebinomial"``, ``"bernoulli"``
        or ``"binomial"``.
    link : str, optional
        The family's canonical link by default; ``"probit"`` for Bernoulli and binomial.
    trials : str, optional
        Binomial only (and required there): the column of ``data`` holding each row's
        trials; the response holds the successes and ``.formula`` reads
        ``cbind(y, n - y) ~ ...``.

    Returns
    -------
    Simulation
        ``.data``: a copy of ``data`` with the response; ``.truth``: the
        parameters and every cluster's b (see :class:`Simulation`); ``.family``.

    Raises
    ------
    TypeError
        ``params`` or one of its entries, or ``seed``, has the wrong type.
    ValueError
        Missing or unknown names, a wrong shape, a covariance that is not
        positive definite, a non-positive ``sigma`` or ``dispersion``, a transformed
        response, ``trials`` missing for the binomial or given for another family.

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> df = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 4), "x": np.tile([0.0, 1, 2, 3], 3)})
    >>> sim = lb.simulate("y ~ x + (1 | g)", df, seed=1,
    ...                   params={"beta": {"Intercept": 5.0, "x": 1.5}, "G": {"g": [[0.5]]}, "sigma": 1.0})
    >>> sim.data.columns.tolist(), sim.truth["g_b"].dims
    (['g', 'x', 'y'], ('g', 'g_effect'))
    >>> sim.truth["g_sd"].values.round(3)
    array([0.707])
    >>> k = lb.simulate("k ~ x + (1 | g)", df.assign(n=10), family="binomial", trials="n", seed=1,
    ...                 params={"beta": [0.0, 0.2], "G": {"g": 0.3}})
    >>> k.formula, bool(k.data["k"].between(0, 10).all())
    ('cbind(k, n - k) ~ x + (1 | g)', True)
    """
    fam = get_family(family, link)
    if not fam.is_gaussian:
        return _simulate_glm(formula, data, params, seed, fam, trials)
    if trials is not None:
        raise ValueError("trials='<column>' (each row's trials) is for family='binomial', not 'gaussian'")
    spec = parse_formula(formula)
    response = plain_response(spec)
    validate.check_dataframe(data)
    validate.check_columns(data, spec.predictor_variables)
    design = build_design(spec, data[list(spec.predictor_variables)].assign(**{response: 0.0}))
    beta, G, sigma = check_params(params, design.X_columns, design.groups)
    y, b = draw_response(design.X, design.groups, beta, G, sigma, seeded_rng(seed))
    truth = truth_dataset(design.X_columns, design.groups, beta, G, sigma, b, formula=spec.formula)
    return Simulation(data=data.assign(**{response: y}), truth=truth, formula=spec.formula)


def _simulate_glm(formula: str, data: pd.DataFrame, params: Any, seed: Seed, fam: Family,
                  trials: str | None) -> Simulation:
    """:func:`simulate` for other families: a GLMM's design (offsets, trials), the family's draws."""
    plain, cbind, _ = split_glm_formula(formula)
    if cbind is not None:
        raise ValueError("simulate takes the successes as a plain response with trials='<column>', "
                         f"not cbind({', '.join(cbind)})")
    if fam.needs_trials != (trials is not None):
        raise ValueError(f"trials='<column>' (each row's trials) is for family='binomial', and needed there; "
                         f"got trials={trials!r} for family={fam.name!r}")
    if trials is not None and not isinstance(trials, str):
        raise TypeError(f"trials must name a column of data, got {type(trials).__name__}")
    response = plain_response(parse_formula(plain))  # as for a Gaussian response: a plain column
    validate.check_dataframe(data)
    design = GeneralizedMixedModel(formula, data.assign(**{response: 0}), family=fam, trials=trials).design
    beta, G, aux = check_params(params, design.X_columns, design.groups,
                                scale=fam.aux)
    y, b = draw_glm_response(design.X, design.groups, beta, G, fam, seeded_rng(seed), aux=aux,
                             trials=design.trials, offset=design.offset)
    if trials is not None:
        formula = f"cbind({response}, {trials} - {response}) ~{formula.split('~', 1)[1]}"
    truth = truth_dataset(design.X_columns, design.groups, beta, G, None, b, formula=formula, family=fam, aux=aux)
    return Simulation(data=data.assign(**{response: y.astype(np.int64)}), truth=truth, formula=formula, family=fam)


def simulate_hierarchy(
    n_subjects: int,
    n_neurons: int | tuple[int, int],
    n_trials: int | tuple[int, int],
    *,
    beta: Mapping[str, float] | Sequence[float],
    G: Any,
    sigma_neuron: float,
    sigma: float | None = None,
    family: str | Family = "gaussian",
    link: str | None = None,
    trials: int | tuple[int, int] | None = None,
    dispersion: float | None = None,
    x_within_sd: float = 1.0,
    x_between_sd: float = 0.0,
    seed: Seed,
) -> Simulation:
    """Trials in neurons in subjects, from ``y ~ x + (1 + x | subject) + (1 | subject:neuron)``.

    Parameters
    ----------
    n_subjects : int
        At least 2; labelled ``"s01"``, ``"s02"``, ...
    n_neurons : int or (low, high)
        Neurons per subject, or a range (inclusive) to draw each subject's
        number from. Labelled ``"n1"``, ``"n2"``, ... within every subject, so
        labels repeat across subjects as in real recordings.
    n_trials : int or (low, high)
        Trials per neuron, or a range (inclusive) for unbalanced data.
    beta : dict or sequence
        ``{"Intercept": ..., "x": ...}`` or ``[intercept, slope]``.
    G : 2x2 array-like
        Covariance of the subjects' (Intercept, x) effects.
    sigma_neuron : float
        SD of the neurons' intercepts around their subject's.
    sigma : float
        Residual (trial-to-trial) SD; Gaussian only (and required there).
    family : str or Family
        ``"gaussian"`` (default), ``"poisson"``, ``"negativebinomial"``, ``"bernoulli"`` or
        ``"binomial"``; β, G and ``sigma_neuron`` are then on the link scale.
    link : str, optional
        The family's canonical link by default; ``"probit"`` for Bernoulli and binomial.
    trials : int or (low, high), optional
        Binomial only (and required there): the trials of every row, or a range (inclusive)
        to draw each row's from; the column ``n``, and the formula ``cbind(y, n - y) ~ ...``.
    dispersion : float, optional
        Negative binomial only (and required there): 1/√alpha, the SD of the gamma rate
        multiplier (``Var(y) = mu + dispersion² mu²``).
    x_within_sd, x_between_sd : float
        ``x = m_subject + e`` with ``m_subject ~ N(0, x_between_sd)`` and
        ``e ~ N(0, x_within_sd)`` per trial.
    seed : int, numpy Generator or SeedSequence, or None

    Returns
    -------
    Simulation
        ``.data`` has columns ``subject``, ``neuron``, ``trial`` (from 1 within
        each neuron), ``x``, ``y`` (and ``n``, binomial); ``subject`` and ``neuron`` are
        categorical. ``.truth`` holds β, the SDs, correlations, G and every b (link
        scale), ``sigma`` (Gaussian) or ``dispersion`` (negative binomial).

    Raises
    ------
    TypeError, ValueError
        As for :func:`simulate`, for counts that are not positive ints or ranges,
        for more than ``MAX_SIMULATED_ROWS`` rows (100,000,000, ranges at their high end),
        and for negative SDs of ``x``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> sim = lb.simulate_hierarchy(3, 2, (4, 6), beta={"Intercept": 10.0, "x": 2.0},
    ...                             G=[[1.0, 0.1], [0.1, 0.25]], sigma_neuron=0.5, sigma=1.0, seed=1)
    >>> sim.data.columns.tolist()
    ['subject', 'neuron', 'trial', 'x', 'y']
    >>> sim.data["neuron"].cat.categories.tolist(), sim.truth["subject:neuron_b"].shape
    (['n1', 'n2'], (6, 1))
    >>> k = lb.simulate_hierarchy(3, 2, 4, beta=[0.0, 0.5], G=[[0.3, 0.0], [0.0, 0.1]], sigma_neuron=0.2,
    ...                           family="binomial", trials=10, seed=1)
    >>> k.formula, bool((k.data["y"] <= k.data["n"]).all())
    ('cbind(y, n - y) ~ x + (1 + x | subject) + (1 | subject:neuron)', True)
    """
    n_subjects = validate.check_positive_int(n_subjects, "n_subjects", minimum=2)
    check_rows(n_subjects, n_neurons, n_trials)  # before any array is allocated
    fam = get_family(family, link)
    _check_family_arguments(fam, sigma, trials, dispersion)
    rng = seeded_rng(seed)
    wsd = check_number(x_within_sd, "x_within_sd")
    bsd = check_number(x_between_sd, "x_between_sd")
    if wsd < 0 or bsd < 0:
        raise ValueError(f"x_within_sd and x_between_sd must be >= 0, got {wsd} and {bsd}")
    per_subject = counts(n_neurons, n_subjects, rng, "n_neurons")
    per_neuron = counts(n_trials, int(per_subject.sum()), rng, "n_trials")
    neuron_subject = np.repeat(np.arange(n_subjects), per_subject)
    within = np.arange(len(neuron_subject)) - np.repeat(np.cumsum(per_subject) - per_subject, per_subject)
    row_neuron = np.repeat(np.arange(len(neuron_subject)), per_neuron)
    row_subject = neuron_subject[row_neuron]
    n = len(row_neuron)
    x = bsd * rng.standard_normal(n_subjects)[row_subject] + wsd * rng.standard_normal(n)

    width = max(2, len(str(n_subjects)))
    subjects = [f"s{k:0{width}d}" for k in range(1, n_subjects + 1)]
    neurons = [f"n{k}" for k in range(1, int(per_subject.max()) + 1)]
    X = np.column_stack([np.ones(n), x])
    groups = [
        GroupDesign(name="subject", factors=("subject",), levels=tuple(subjects), codes=row_subject,
                    effects=("Intercept", "x"), Z=X, blocks=((0, 1),)),
        GroupDesign(name="subject:neuron", factors=("subject", "neuron"),
                    levels=tuple(f"{subjects[s]}:{neurons[k]}" for s, k in zip(neuron_subject, within)),
                    codes=row_neuron, effects=("Intercept",), Z=X[:, :1], blocks=((0,),),
                    parent="subject", parent_codes=neuron_subject),
    ]
    b_ = check_beta(beta, ("Intercept", "x"), "beta")
    G_ = {"subject": check_cov(G, groups[0], "G"),
          "subject:neuron": np.array([[check_number(sigma_neuron, "sigma_neuron", positive=True) ** 2]])}
    data = pd.DataFrame({
        "subject": pd.Categorical.from_codes(row_subject, categories=subjects),
        "neuron": pd.Categorical.from_codes(within[row_neuron], categories=neurons),
        "trial": np.arange(n) - np.repeat(np.cumsum(per_neuron) - per_neuron, per_neuron) + 1,
        "x": x,
    })
    formula = HIERARCHY_FORMULA
    if fam.is_gaussian:
        s_ = check_number(sigma, "sigma", positive=True)
        y, b = draw_response(X, groups, b_, G_, s_, rng)
        truth = truth_dataset(("Intercept", "x"), groups, b_, G_, s_, b, formula=formula)
        return Simulation(data=data.assign(y=y), truth=truth, formula=formula)
    n_per_row = counts(trials, n, rng, "trials") if fam.needs_trials else None
    aux = None if dispersion is None else check_number(dispersion, "dispersion", positive=True)
    y, b = draw_glm_response(X, groups, b_, G_, fam, rng, aux=aux, trials=n_per_row)
    if n_per_row is not None:
        data["n"] = n_per_row
        formula = "cbind(y, n - y)" + HIERARCHY_FORMULA[1:]
    truth = truth_dataset(("Intercept", "x"), groups, b_, G_, None, b, formula=formula, family=fam, aux=aux)
    return Simulation(data=data.assign(y=y.astype(np.int64)), truth=truth, formula=formula, family=fam)


def _check_family_arguments(fam: Family, sigma: Any, trials: Any, dispersion: Any) -> None:
    """sigma for Gaussian, trials for binomial, dispersion for the negative binomial, and nothing else."""
    if fam.is_gaussian:
        if sigma is None:
            raise TypeError("simulate_hierarchy needs sigma, the residual SD, for family='gaussian'")
    elif sigma is not None:
        raise ValueError(
            f"sigma is the Gaussian residual SD; family={fam.name!r} has none (its trial-to-trial "
            "variation comes from the family itself): leave sigma out"
            + ("; the negative binomial's extra variation is dispersion=" if fam.aux == "dispersion" else "")
        )
    if fam.needs_trials != (trials is not None):
        raise ValueError("trials= (the trials of each row: an int or a (low, high) range) is for family='binomial'"
                         + (", which needs it" if fam.needs_trials else f", not family={fam.name!r}"))
    if (fam.aux == "dispersion") != (dispersion is not None):
        raise ValueError("dispersion= (1/sqrt(alpha), > 0) is for family='negativebinomial'"
                         + (", which needs it" if fam.aux == "dispersion" else f", not family={fam.name!r}"))

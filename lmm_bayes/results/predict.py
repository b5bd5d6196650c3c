"""Predictions for existing, population-average and new clusters.

Three questions, three answers (``levels=``):

==============  ==========================================================  ==========================
``levels``      the prediction for a row of cluster j                       lme4 / brms
==============  ==========================================================  ==========================
``existing``    ``x beta + z b_j`` with the fitted ``b_j``                  ``re.form = NULL``
``population``  ``x beta`` (the best guess for an unseen cluster)           ``re.form = NA``
``new``         ``x beta + z b_new``, ``b_new ~ N(0, G)`` drawn per new     ``allow_new_levels`` with
                cluster and per posterior draw (seen clusters keep b_j)     ``sample_new_levels="gaussian"``
==============  ==========================================================  ==========================

Every prediction is a set of draws with dims (``chain``, ``draw``, ``obs``), one per
posterior draw, so its spread carries the uncertainty about β, G and b. ``kind="response"``
adds the residual noise ``N(0, sigma^2)`` (a new observation rather than its expected value).

With nested factors a new neuron inside a known subject keeps the subject's fitted
effect and draws only its own; two different new clusters get independent draws.

New rows are coded by :meth:`~lmm_bayes.Design.evaluate` (cost in the new
rows and the levels, not the fitted rows); ``X beta + Z b`` is
:func:`~lmm_bayes.inference.layout.linear_predictor`. Replicated data sets (posterior
and prior predictive, the per-cluster check) live in :mod:`lmm_bayes.results.predictive`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.inference.layout import (
    BETA,
    SIGMA,
    b_draws,
    bis,
    cov_name,
    covariance_values,
    linear_predictor,
)
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.glm import on_scale
from lmm_bayes.results.residual_structure import refuse_structured
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, check_interval, summarize_draws
from lmm_bayes.spec import validate
from lmm_bayes.spec.design import NewRows
from lmm_bayes.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit
    from lmm_bayes.spec.design import GroupDesign

__all__ = ["KINDS", "LEVELS", "covariance_draws", "predict", "predict_summary"]

Levels = Literal["existing", "population", "new"]
Kind = Literal["mean", "response", "link"]
LEVELS = ("existing", "population", "new")
KINDS = ("mean", "response", "link")


# ---------------------------------------------------------------------------- checks


def _check_data(data: Any) -> pd.DataFrame | None:
    if data is None:
        return None
    return validate.check_dataframe(data)


# ---------------------------------------------------------------------------- covariance draws


def covariance_draws(fit: Fit, group: str) -> xr.DataArray:
    """Draws of G, the covariance of one grouping factor's effects.

    ``G = diag(sd) corr diag(sd)`` per posterior draw (``corr`` is the identity
    where the factor's effects are independent).

    Parameters
    ----------
    fit : Fit
    group : str
        A grouping factor's name, e.g. ``"Subject"``.

    Returns
    -------
    xarray.DataArray
        dims (``chain``, ``draw``, ``{group}_effect``, ``{group}_effect_bis``).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> covariance_draws(fit, "Subject").dims
    ('chain', 'draw', 'Subject_effect', 'Subject_effect_bis')
    """
    fit = check_fit(fit)
    g = validate.check_group(fit.design, group)
    post = fit.posterior
    values = covariance_values(post, g)
    return xr.DataArray(
        values,
        dims=("chain", "draw", g.effect_dim, bis(g.effect_dim)),
        coords={
            "chain": post["chain"].values,
            "draw": post["draw"].values,
            g.effect_dim: list(g.effects),
            bis(g.effect_dim): list(g.effects),
        },
        name=cov_name(g),
    )


def _factor(G: np.ndarray) -> np.ndarray:
    """A batch of A with ``A Aᵀ = G``: Cholesky, or an eigen-factor where G is numerically singular."""
    try:
        return np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(G)
        return V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


# ---------------------------------------------------------------------------- predict


def _population_fill(design, data: pd.DataFrame) -> pd.DataFrame:
    """For ``levels="population"``, grouping-only columns may be absent: fill them with a seen label."""
    missing = [f for g in design.groups for f in g.factors if f not in data.columns]
    if not missing:
        return data
    spec = design.spec
    elsewhere = " ".join([spec.fixed_formula.split("~", 1)[1], *(b.expr for t in spec.random for b in t.blocks)])
    fill = {}
    for col in dict.fromkeys(missing):
        if re.search(rf"\b{re.escape(col)}\b", elsewhere):
            continue  # a predictor too: let evaluate() report it missing
        fill[col] = design.data[col].iloc[0]
    return data.assign(**fill) if fill else data


def _rows(fit: Fit, data: pd.DataFrame | None, levels: str) -> NewRows:
    design = fit.design
    if data is None:
        return NewRows(
            index=design.index,
            X=design.X,
            Z={g.name: g.Z for g in design.groups},
            labels={g.name: np.asarray(g.levels, dtype=object)[g.codes] for g in design.groups},
            codes={g.name: g.codes for g in design.groups},
        )
    if levels == "population":
        data = _population_fill(design, data)
    return design.evaluate(data)


def _unseen_error(g: GroupDesign, labels: np.ndarray) -> ValueError:
    shown = list(dict.fromkeys(str(x) for x in labels))
    more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
    return ValueError(
        f"levels='existing' needs clusters seen in fitting, but grouping factor {g.name!r} has "
        f"{len(shown)} unseen level(s): {shown[:10]}{more}. Use levels='new' to draw each new "
        "cluster's effects from N(0, G), or levels='population' for the population-average "
        "prediction (fixed effects alone)"
    )


def _with_new_clusters(
    post: xr.Dataset, g: GroupDesign, b: np.ndarray, codes: np.ndarray, labels: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """b with one ``N(0, G)`` draw per unseen cluster and posterior draw appended; codes pointing at them.

    Rows of the same unseen label share a draw; different unseen labels get independent ones.
    """
    unseen = codes < 0
    new_labels, inverse = np.unique(labels[unseen].astype(str), return_inverse=True)
    n_chain, n_draw = b.shape[:2]
    A = _factor(covariance_values(post, g))  # (chain, draw, q, q)
    z = rng.standard_normal((n_chain, n_draw, len(new_labels), g.n_effects))
    b_new = np.einsum("cdij,cdkj->cdki", A, z)
    codes = codes.copy()
    codes[unseen] = g.n_levels + inverse.ravel()
    return np.concatenate([b, b_new], axis=2), codes


def _obs_coord(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.MultiIndex):
        out = np.empty(len(index), dtype=object)
        out[:] = list(index)
        return out
    return np.asarray(index)


def _new_trials(design, data: pd.DataFrame) -> np.ndarray | None:
    """The trials of new rows for ``kind="response"``; a missing or bad column's error says why they are needed."""
    try:
        return design.trials_for(data)
    except ValueError as err:
        raise ValueError(
            f"kind='response' draws each new row's successes out of its trials, so data needs the trials' "
            f"columns ({err}); kind='mean' (the probability per trial) and kind='link' need no trials"
        ) from None


def predict(
    fit: Fit,
    data: pd.DataFrame | None = None,
    *,
    levels: Levels = "existing",
    kind: Kind = "mean",
    seed: int | np.random.Generator | None = None,
) -> xr.DataArray:
    """Draws of the prediction for each row of ``data``.

    Parameters
    ----------
    fit : Fit
    data : pandas.DataFrame, optional
        Rows to predict; needs the predictor and grouping columns of the formula (not
        the response). With ``levels="population"`` grouping columns may be left out.
        ``None`` predicts the fitted rows.
    levels : {"existing", "population", "new"}
        ``"existing"``: ``x beta + z b`` with each row's fitted cluster effects; a
        level not seen in fitting raises ``ValueError``. ``"population"``: ``x beta``
        alone. ``"new"``: seen clusters keep their b; every unseen cluster gets, per
        posterior draw, its own ``b ~ N(0, G)`` (shared by its rows, independent of
        other new clusters).
    kind : {"mean", "response", "link"}
        ``"mean"``: the expected value (for a Gaussian model the linear predictor; for a
        GLMM the inverse link of it: the expected count of the row, offset included, or
        the probability per trial); ``"response"``: a new observation (adding
        ``N(0, sigma^2)`` noise, or drawn from the family: a count, a 0/1, the successes
        of the row's trials); ``"link"``: the linear predictor on the link scale (log
        rate, log odds; for a Gaussian model the same as ``"mean"``). A GLMM's new rows
        need the columns of its offsets; a binomial model's need the columns of its
        trials for ``"response"`` only (``"mean"`` and ``"link"`` need no trials).
    seed : int or numpy.random.Generator, optional
        Seeds the draws of new clusters' effects and of the noise; the same seed
        gives the same array. Not used by ``levels="existing"``/``"population"``
        with ``kind="mean"``, which are deterministic.

    Returns
    -------
    xarray.DataArray
        Named after the response, dims (``chain``, ``draw``, ``obs``); ``obs`` holds
        the row labels of ``data`` (of the fitted rows when ``data`` is None).
        Attributes say ``levels``, ``kind``, the formula and the package version.

    Raises
    ------
    TypeError
        ``fit`` is not a Fit, ``data`` not a DataFrame, a choice not a string, a bad seed type.
    ValueError
        An unknown ``levels``/``kind``; a column of the formula missing from ``data`` or
        holding NaN; a fixed-effect category not seen in fitting; with
        ``levels="existing"``, a cluster not seen in fitting.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "new subject"]})
    >>> p = fit.predict(new, levels="new", seed=1)
    >>> p.dims, p.shape
    (('chain', 'draw', 'obs'), (2, 500, 2))
    >>> bool(p.std(("chain", "draw"))[0] < p.std(("chain", "draw"))[1])  # a new subject is less certain
    True
    """
    fit = check_fit(fit)
    data = _check_data(data)
    validate.check_choice(levels, LEVELS, "levels")
    validate.check_choice(kind, KINDS, "kind")
    if kind == "response":  # a drawn response needs R (sigma_j, the AR term): not yet
        refuse_structured(fit.design, "predict(kind='response')")
    rng = validate.check_seed(seed)
    design = fit.design
    rows = _rows(fit, data, levels)
    post = fit.posterior.transpose("chain", "draw", ...)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    beta = post[BETA].values if BETA in post else np.zeros((n_chain, n_draw, 0))  # no fixed effects
    terms = []
    if levels != "population":
        for g in design.groups:
            codes = rows.codes[g.name]
            unseen = codes < 0
            if unseen.any() and levels == "existing":
                raise _unseen_error(g, rows.labels[g.name][unseen])
            b = b_draws(post, g, "a prediction for fitted clusters").values  # (chain, draw, level, effect)
            if unseen.any():
                b, codes = _with_new_clusters(post, g, b, codes, rows.labels[g.name], rng)
            terms.append((rows.Z[g.name], codes, b))
    mu = linear_predictor(rows.X, beta, terms)
    if not design.family.is_gaussian:  # a GLMM: offset, the link, the family's draws (results/glm.py)
        offset = design.offset if data is None else design.offset_for(data)
        # only a drawn response needs the trials: the mean is the probability per trial
        trials = design.trials if data is None or kind != "response" else _new_trials(design, data)
        mu = on_scale(fit, mu, kind, rng, offset, trials)
    elif kind == "response":
        mu += post[SIGMA].values[:, :, None] * rng.standard_normal(mu.shape)
    return xr.DataArray(
        mu,
        dims=("chain", "draw", "obs"),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "obs": _obs_coord(rows.index)},
        name=design.response,
        attrs={
            "levels": levels,
            "kind": kind,
            "formula": design.spec.formula,
            "lmm_bayes_version": __version__,
        },
    )


def predict_summary(
    fit: Fit,
    data: pd.DataFrame | None = None,
    *,
    levels: Levels = "existing",
    kind: Kind = "mean",
    seed: int | np.random.Generator | None = None,
    ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    """Mean, SD and interval (HDI or ETI) of the predictions, one row per input row.

    Parameters
    ----------
    fit, data, levels, kind, seed
        As for :func:`predict`.
    ci : {"hdi", "eti"}
        Highest density or equal-tailed intervals (default: :data:`~lmm_bayes.results.summary.DEFAULT_CI`).
    prob : float
        Probability mass of every interval.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``data`` (the fitted rows when ``data`` is None); columns
        ``mean``, ``sd``, ``{ci}_low``, ``{ci}_high``. ``df.attrs`` records
        ``levels``, ``kind`` and ``interval``.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit.predict_summary(pd.DataFrame({"Days": [5]}), levels="population").columns.tolist()
    ['mean', 'sd', 'hdi_low', 'hdi_high']
    """
    ci, prob = check_interval(ci, prob)
    draws = predict(fit, data, levels=levels, kind=kind, seed=seed)
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    index = fit.design.index if data is None else data.index
    table.index = index
    table.attrs.update({"levels": levels, "kind": kind})
    return table

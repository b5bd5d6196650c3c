"""Predictions for existing, population-average and new clusters; posterior and prior predictive.

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
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from lmm_bayes.inference.layout import covariance_values, posterior_vars
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.summary import summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import Fit
    from lmm_bayes.spec.design import GroupDesign, NewRows
    from lmm_bayes.spec.model import LMM

__all__ = [
    "KINDS",
    "LEVELS",
    "STATS",
    "cluster_stat_check",
    "covariance_draws",
    "posterior_predictive",
    "predict",
    "predict_summary",
    "prior_predictive",
]

Levels = Literal["existing", "population", "new"]
Kind = Literal["mean", "response"]
Stat = Literal["mean", "sd"]
LEVELS = ("existing", "population", "new")
KINDS = ("mean", "response")
STATS = ("mean", "sd")


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
        dims=("chain", "draw", g.effect_dim, f"{g.effect_dim}_bis"),
        coords={
            "chain": post["chain"].values,
            "draw": post["draw"].values,
            g.effect_dim: list(g.effects),
            f"{g.effect_dim}_bis": list(g.effects),
        },
        name=f"{g.name}_cov",
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
    from lmm_bayes.spec.design import NewRows

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


def _obs_coord(index: pd.Index) -> np.ndarray:
    if isinstance(index, pd.MultiIndex):
        out = np.empty(len(index), dtype=object)
        out[:] = list(index)
        return out
    return np.asarray(index)


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
    kind : {"mean", "response"}
        ``"mean"``: the linear predictor (the expected value); ``"response"``: a new
        observation, adding ``N(0, sigma^2)`` noise.
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
    from lmm_bayes.version import __version__

    fit = check_fit(fit)
    data = _check_data(data)
    validate.check_choice(levels, LEVELS, "levels")
    validate.check_choice(kind, KINDS, "kind")
    rng = validate.check_seed(seed)
    design = fit.design
    rows = _rows(fit, data, levels)
    post = fit.posterior.transpose("chain", "draw", ...)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    m = rows.X.shape[0]

    if rows.X.shape[1]:
        beta = post["beta"].values
        mu = np.tensordot(beta, rows.X, axes=([2], [1]))
    else:
        mu = np.zeros((n_chain, n_draw, m))
    if levels != "population":
        for g in design.groups:
            codes = rows.codes[g.name]
            unseen = codes < 0
            if unseen.any() and levels == "existing":
                raise _unseen_error(g, rows.labels[g.name][unseen])
            b = post[f"{g.name}_b"].values  # (chain, draw, level, effect)
            if unseen.any():
                new_labels, inverse = np.unique(rows.labels[g.name][unseen].astype(str), return_inverse=True)
                A = _factor(covariance_values(post, g))  # (chain, draw, q, q)
                z = rng.standard_normal((n_chain, n_draw, len(new_labels), g.n_effects))
                b_new = np.einsum("cdij,cdkj->cdki", A, z)
                b = np.concatenate([b, b_new], axis=2)
                codes = codes.copy()
                codes[unseen] = g.n_levels + inverse.ravel()
            Zg = rows.Z[g.name]
            for j in range(g.n_effects):
                mu += b[:, :, codes, j] * Zg[:, j]
    if kind == "response":
        mu += post["sigma"].values[:, :, None] * rng.standard_normal(mu.shape)
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
    hdi_prob: float = 0.94,
) -> pd.DataFrame:
    """Mean, SD and highest-density interval of the predictions, one row per input row.

    Parameters
    ----------
    fit, data, levels, kind, seed
        As for :func:`predict`.
    hdi_prob : float
        Probability mass of the interval.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``data`` (the fitted rows when ``data`` is None); columns
        ``mean``, ``sd``, ``hdi_low``, ``hdi_high``. ``df.attrs`` records
        ``levels``, ``kind`` and ``hdi_prob``.

    Examples
    --------
    >>> import pandas as pd, lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit.predict_summary(pd.DataFrame({"Days": [5]}), levels="population").columns.tolist()
    ['mean', 'sd', 'hdi_low', 'hdi_high']
    """
    hdi_prob = validate.check_probability(hdi_prob, "hdi_prob")
    draws = predict(fit, data, levels=levels, kind=kind, seed=seed)
    table = summarize_draws(draws, hdi_prob=hdi_prob, diagnostics=False)
    index = fit.design.index if data is None else data.index
    table.index = index
    table.attrs.update({"levels": levels, "kind": kind, "hdi_prob": hdi_prob})
    return table


# ---------------------------------------------------------------------------- posterior predictive


def posterior_predictive(fit: Fit, *, seed: int | np.random.Generator | None = None) -> Fit:
    """A copy of ``fit`` whose ``idata`` also holds a ``posterior_predictive`` group.

    One replicated data set per posterior draw: ``y_rep = X beta + Z b + e`` with
    ``e ~ N(0, sigma^2)`` on the fitted rows (the clusters' own b). ``y`` sits on
    dim ``obs`` as in ``observed_data``, so ArviZ's PPC plots pair them up. The
    input fit is not changed.

    Parameters
    ----------
    fit : Fit
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    Fit

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> fit.posterior_predictive(seed=1).idata["posterior_predictive"]["y"].dims
    ('chain', 'draw', 'obs')
    """
    from lmm_bayes.results.fit import Fit

    fit = check_fit(fit)
    draws = predict(fit, None, levels="existing", kind="response", seed=seed)
    obs = fit.idata["observed_data"]["obs"].values
    pp = xr.Dataset(
        {"y": (("chain", "draw", "obs"), draws.values)},
        coords={"chain": draws["chain"].values, "draw": draws["draw"].values, "obs": obs},
    )
    pp.attrs.update({k: v for k, v in fit.idata.attrs.items() if k in _PROVENANCE})
    pp.attrs["seed"] = int(seed) if isinstance(seed, (int, np.integer)) else -1
    tree = fit.idata.copy()
    tree["posterior_predictive"] = xr.DataTree(pp)
    return Fit(idata=tree, model=fit.model)


_PROVENANCE = ("lmm_bayes_version", "formula", "priors", "sampler", "method")


def cluster_stat_check(
    fit: Fit,
    group: str,
    *,
    stat: Stat = "mean",
    prob: float = 0.94,
    seed: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Per-cluster posterior predictive check: a statistic of each cluster's rows, observed vs replicated.

    Parameters
    ----------
    fit : Fit
        Uses its ``posterior_predictive`` group, drawn (with ``seed``) if absent.
    group : str
        The grouping factor whose clusters are checked.
    stat : {"mean", "sd"}
        The statistic of a cluster's responses (``sd`` with ``ddof=1``; NaN for
        one-row clusters).
    prob : float
        Mass of the central interval of the replicated statistic.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    xarray.Dataset
        On dim ``group`` (the level labels): ``observed``, ``predicted_mean``,
        ``predicted_low``, ``predicted_high``, ``p_value`` (share of replicated
        statistics at least the observed one) and ``n_rows``; ``predicted``
        holds the replicated statistics (``chain``, ``draw``, ``group``).

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> cluster_stat_check(fit, "Subject", stat="sd", seed=1)["observed"].sizes
    Frozen({'Subject': 18})
    """
    fit = check_fit(fit)
    g = validate.check_group(fit.design, group)
    validate.check_choice(stat, STATS, "stat")
    prob = validate.check_probability(prob, "prob")
    if "posterior_predictive" not in fit.idata.children:
        fit = posterior_predictive(fit, seed=seed)
    rep = fit.idata["posterior_predictive"]["y"].transpose("chain", "draw", "obs")
    y = fit.design.y
    n_chain, n_draw, n = rep.shape
    indicator = sp.csr_matrix((np.ones(n), (np.arange(n), g.codes)), shape=(n, g.n_levels))
    counts = np.asarray(indicator.sum(axis=0)).ravel()
    flat = rep.values.reshape(-1, n)

    def per_cluster(values: np.ndarray) -> np.ndarray:  # (k, n) -> (k, levels)
        means = np.asarray(values @ indicator) / counts
        if stat == "mean":
            return means
        dev2 = (values - means[:, g.codes]) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.asarray(dev2 @ indicator) / (counts - 1))

    observed = per_cluster(y[None, :])[0]
    predicted = per_cluster(flat).reshape(n_chain, n_draw, g.n_levels)
    alpha = (1 - prob) / 2
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(predicted, [alpha, 1 - alpha], axis=(0, 1))
        p_value = (predicted >= observed).mean(axis=(0, 1))
    p_value = np.where(np.isnan(observed), np.nan, p_value)
    level = {g.name: list(g.levels)}
    return xr.Dataset(
        {
            "observed": (g.name, observed),
            "predicted_mean": (g.name, predicted.mean(axis=(0, 1))),
            "predicted_low": (g.name, low),
            "predicted_high": (g.name, high),
            "p_value": (g.name, p_value),
            "n_rows": (g.name, counts.astype(int)),
            "predicted": (("chain", "draw", g.name), predicted),
        },
        coords={**level, "chain": rep["chain"].values, "draw": rep["draw"].values},
        attrs={"stat": stat, "prob": prob, "group": g.name, "response": fit.design.response},
    )


# ---------------------------------------------------------------------------- prior predictive


def prior_predictive(model: LMM, *, draws: int = 500, seed: int | None = None) -> xr.DataTree:
    """Draws from the prior and the prior predictive on the model's rows.

    Shows what the priors imply on the data's scale before any fitting.

    Parameters
    ----------
    model : LMM
    draws : int
        Number of prior draws (one chain).
    seed : int, optional

    Returns
    -------
    xarray.DataTree
        ``prior`` (``beta``, ``sigma``, ``{g}_sd``, ``{g}_corr``, ``{g}_b``, as in a
        posterior), ``prior_predictive`` (``y`` on ``obs``) and ``observed_data``;
        root attributes give the formula, priors and package version.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> model = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy"))
    >>> pp = model.prior_predictive(draws=50, seed=1)
    >>> pp["prior_predictive"]["y"].shape, sorted(pp["prior"].data_vars)
    ((1, 50, 180), ['Subject_b', 'Subject_sd', 'beta', 'sigma'])
    """
    import logging

    import pymc as pm

    from lmm_bayes.spec.model import LMM
    from lmm_bayes.version import __version__

    if not isinstance(model, LMM):
        raise TypeError(f"model must be an lmm_bayes.LMM, got {type(model).__name__}")
    draws = validate.check_positive_int(draws, "draws")
    if seed is not None:
        seed = validate.check_positive_int(seed, "seed", minimum=0)
    design = model.design
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with model.pymc_model():
            tree = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    finally:
        logger.setLevel(level)
    prior = tree["prior"].to_dataset()
    prior = prior[[v for v in posterior_vars(design) if v in prior]]
    prior = prior.drop_vars([c for c in prior.coords if c not in prior.dims])
    obs = np.arange(design.n)
    pp = tree["prior_predictive"].to_dataset()[["y"]].assign_coords(obs=obs)
    observed = xr.Dataset({"y": ("obs", design.y)}, coords={"obs": obs})
    out = xr.DataTree.from_dict({"prior": prior, "prior_predictive": pp, "observed_data": observed})
    out.attrs.update(
        {
            "lmm_bayes_version": __version__,
            "formula": model.formula,
            "priors": model.priors.to_json(),
            "response": design.response,
            "draws": draws,
            "seed": -1 if seed is None else seed,
        }
    )
    return out

"""Replicated data: the posterior predictive, a per-cluster check of it, and the prior predictive.

* :func:`posterior_predictive`: one replicated data set per posterior draw on the
  fitted rows (``levels="existing"``, ``kind="response"`` of
  :func:`~lmm_bayes.results.predict.predict`), stored as the ``posterior_predictive``
  group ArviZ's PPC plots read;
* :func:`cluster_stat_check`: a statistic of each cluster's rows, observed against
  replicated;
* :func:`prior_predictive`: what the priors imply on the data's scale, before fitting.

Predictions for new rows live in :mod:`lmm_bayes.results.predict`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import lazy_loader as lazy
import numpy as np
import scipy.sparse as sp
import xarray as xr

from lmm_bayes.inference.layout import posterior_vars
from lmm_bayes.inference.model_graph import model_graph
from lmm_bayes.inference.standardize import standardize
from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.predict import predict
from lmm_bayes.results.residual_structure import refuse_structured
from lmm_bayes.spec import validate
from lmm_bayes.spec.model import MixedModel
from lmm_bayes.version import __version__

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
pm = lazy.load("pymc")

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["STATS", "cluster_stat_check", "posterior_predictive", "prior_predictive"]

Stat = Literal["mean", "sd"]
STATS = ("mean", "sd")


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
    fit = check_fit(fit)
    refuse_structured(fit.design, "posterior_predictive")
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
    return type(fit)(idata=tree, model=fit.model)  # the caller's kind of fit (the user's lb.Fit)


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


def prior_predictive(model: MixedModel, *, draws: int = 500, seed: int | None = None) -> xr.DataTree:
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
    if not isinstance(model, MixedModel):
        raise TypeError(f"model must be an lmm_bayes.LMM, got {type(model).__name__}")
    draws = validate.check_positive_int(draws, "draws")
    if seed is not None:
        seed = validate.check_positive_int(seed, "seed", minimum=0)
    refuse_structured(model.design, "prior_predictive (it draws from the full graph)")
    design = model.design
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with model_graph(model, standardized=True):
            tree = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    finally:
        logger.setLevel(level)
    # the graph is the standardized model's (as every fit's): its draws mapped to the user's scale
    working = standardize(design, centered=model.priors.centered)
    prior = tree["prior"].to_dataset()
    prior = working.to_user(prior[[v for v in posterior_vars(design) if v in prior]])
    prior = prior.drop_vars([c for c in prior.coords if c not in prior.dims])
    obs = np.arange(design.n)
    pp = tree["prior_predictive"].to_dataset()[["y"]].assign_coords(obs=obs)
    pp["y"] = pp["y"].copy(data=working.y_to_user(pp["y"].values))
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

"""Posterior predictive checks for counts and binary data, as tables (plots draw from them).

* :func:`rootogram`: for each count 0, 1, ..., K the observed frequency beside the
  frequency the model expects, ``sum_i P(y_i = k | eta_i)`` per posterior draw, summarised
  (Kleiber & Zeileis 2016, "Visualizing count data regressions using rootograms", plot
  the square roots). Expected frequencies are exact sums of the family's probabilities,
  not counts of replicated data, so they carry no extra simulation noise.
* :func:`binned_calibration`: rows binned by their posterior mean probability; per bin the
  observed proportion of successes beside the replicated proportions' interval (a
  calibration plot with posterior predictive bands, as brms's ``pp_check(type =
  "bars")`` and the "binned residual" plots of Gelman & Hill, ch. 5).

Both use the fitted clusters' own b (``levels="existing"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.results.predict import predict
from lmm_bayes.results.summary import DEFAULT_CI, DEFAULT_PROB, summarize_draws
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["MAX_ROOTOGRAM_COUNTS", "binned_calibration", "rootogram"]

# One row per count 0..K, each a pass over every row and draw into chains x draws x (K + 1)
# floats: counts near 1e9 would ask for terabytes, and no picture shows 10,000 bars.
MAX_ROOTOGRAM_COUNTS = 10_000


def rootogram(fit: Fit, *, max_count: int | None = None, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """Observed and expected frequency of each count (Poisson and negative binomial fits).

    Parameters
    ----------
    fit : Fit
    max_count : int, optional
        The largest count tabulated (default: the largest observed), at most
        ``MAX_ROOTOGRAM_COUNTS - 1``; ``df.attrs["expected_above"]`` holds the expected
        number of rows above it.
    ci, prob
        The interval of the expected frequencies.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``count``; columns ``observed``, then the expected frequency's mean,
        sd and interval.

    Raises
    ------
    ValueError
        A fit whose family is not a count family; more than ``MAX_ROOTOGRAM_COUNTS``
        counts to tabulate (checked before anything is allocated).
    """
    family = fit.design.family
    if not family.counts:
        raise ValueError(
            f"a rootogram compares frequencies of counts; this fit is family={family.name!r}; "
            "for binary and binomial data use binned_calibration"
        )
    y = fit.design.y
    k_max = int(y.max()) if max_count is None else validate.check_positive_int(max_count, "max_count", minimum=0)
    if k_max >= MAX_ROOTOGRAM_COUNTS:
        what = f"the largest observed count is {k_max}" if max_count is None else f"max_count={k_max} is too large"
        raise ValueError(
            f"{what}; a rootogram tabulates at most {MAX_ROOTOGRAM_COUNTS:,} counts (0 to "
            f"{MAX_ROOTOGRAM_COUNTS - 1}), as each count is a pass over every row and draw and takes "
            "chains x draws x 8 bytes; give max_count=, e.g. fit.rootogram(max_count=100): "
            "attrs['observed_above'] and attrs['expected_above'] then count the rows above it"
        )
    eta = predict(fit, kind="link").transpose("chain", "draw", "obs").values
    post = fit.posterior.transpose("chain", "draw", ...)
    aux = post[family.aux].values[:, :, None] if family.aux else None
    expected = np.empty(eta.shape[:2] + (k_max + 1,))
    for k in range(k_max + 1):
        expected[..., k] = np.exp(family.log_likelihood(np.full(y.shape, k), eta, aux)).sum(axis=-1)
    draws = xr.DataArray(expected, dims=("chain", "draw", "count"), coords={"count": np.arange(k_max + 1)})
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    # only the tabulated counts: bincount of every y would allocate as many bins as the largest count
    table.insert(0, "observed", np.bincount(y[y <= k_max].astype(np.int64), minlength=k_max + 1))
    table.index.name = "count"
    table.attrs["expected_above"] = float(len(y) - expected.sum(axis=-1).mean())
    table.attrs["observed_above"] = int((y > k_max).sum())
    return table


def binned_calibration(fit: Fit, *, bins: int = 10, ci: str = DEFAULT_CI, prob: float = DEFAULT_PROB,
                       seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """Observed proportion of successes per bin of predicted probability, with the replicated interval.

    Rows are put into ``bins`` bins of equal size by the posterior mean of their probability
    (per trial); in each bin the observed proportion (successes / trials) is compared with the
    same proportion in data replicated from the posterior (``kind="response"``).

    Parameters
    ----------
    fit : Fit
        A Bernoulli or binomial GLMM's fit.
    bins : int
        Number of bins, of equal size.
    ci, prob
        The replicated proportion's interval: ``"hdi"`` or ``"eti"``, and its probability mass.
    seed : int or numpy.random.Generator, optional
        For the replicated data.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``bin`` (0 = lowest predicted); columns ``rows``, ``predicted`` (mean
        predicted probability, trial-weighted), ``observed``, then the replicated
        proportion's mean, sd and interval.

    Raises
    ------
    ValueError
        A fit whose family is not Bernoulli or binomial; ``bins`` not between 1 and the rows.
    """
    family = fit.design.family
    if not family.successes:
        raise ValueError(
            f"binned calibration compares proportions of successes; this fit is family={family.name!r}; "
            "for counts use rootogram"
        )
    d = fit.design
    bins = validate.check_positive_int(bins, "bins", maximum=d.n)
    trials = np.ones(d.n) if d.trials is None else d.trials
    p = predict(fit, kind="mean").mean(("chain", "draw")).values
    order = np.argsort(p, kind="stable")
    which = np.empty(d.n, dtype=np.int64)
    which[order] = np.arange(d.n) * bins // d.n
    rep = predict(fit, kind="response", seed=seed).transpose("chain", "draw", "obs").values
    per_bin = np.stack([rep[..., which == b].sum(-1) / trials[which == b].sum() for b in range(bins)], axis=-1)
    draws = xr.DataArray(per_bin, dims=("chain", "draw", "bin"), coords={"bin": np.arange(bins)})
    table = summarize_draws(draws, ci=ci, prob=prob, diagnostics=False)
    n_per = np.bincount(which, minlength=bins)
    t_per = np.bincount(which, weights=trials, minlength=bins)
    table.insert(0, "observed", np.bincount(which, weights=d.y, minlength=bins) / t_per)
    table.insert(0, "predicted", np.bincount(which, weights=p * trials, minlength=bins) / t_per)
    table.insert(0, "rows", n_per)
    table.index.name = "bin"
    return table

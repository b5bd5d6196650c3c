"""Posterior predictive checks of counts and choices as pictures: a hanging rootogram and a calibration plot.

Both draw the tables of :mod:`lmm_bayes.results.glm_checks` (:meth:`Fit.rootogram`,
:meth:`Fit.binned_calibration`); nothing is computed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lmm_bayes.results.fit import check_fit
from lmm_bayes.results.glm_checks import binned_calibration, rootogram
from lmm_bayes.results.summary import DEFAULT_CI, interval_columns

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["plot_calibration", "plot_rootogram"]


def plot_rootogram(fit: Fit, **kwargs: Any) -> Figure:
    """Hanging rootogram (Kleiber & Zeileis 2016) of a count model.

    Each count's bar has the height √observed and hangs from the curve √expected, so a bar
    that ends above 0 means fewer rows with that count than the model expects, below 0 more.

    Parameters
    ----------
    fit : Fit
        A Poisson or negative-binomial fit.
    **kwargs
        Passed to :meth:`Fit.rootogram` (``max_count``, ``ci``, ``prob``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": np.repeat(np.arange(20), 10)})
    >>> df["y"] = rng.poisson(np.exp(1 + rng.normal(0, 0.3, 20)[df["g"]]))
    >>> fit = lb.GLMM("y ~ 1 + (1 | g)", df, family="poisson").fit(
    ...     draws=200, tune=200, chains=2, seed=1, progressbar=False)
    >>> plot_rootogram(fit).axes[0].get_xlabel()
    'y (count)'
    """
    import matplotlib.pyplot as plt

    fit = check_fit(fit)
    table = rootogram(fit, **kwargs)
    k = table.index.to_numpy()
    expected = np.sqrt(table["mean"].to_numpy())
    observed = np.sqrt(table["observed"].to_numpy())
    fig, ax = plt.subplots(figsize=(6.0, 3.6), layout="constrained")
    ax.bar(k, observed, bottom=expected - observed, width=0.8, color="0.75", edgecolor="0.4", label="observed")
    ax.plot(k, expected, "o-", color="C3", markersize=3, label="expected (posterior mean)")
    ax.axhline(0, color="0.2", lw=0.8)
    ax.set_xlabel(f"{fit.design.response} (count)")
    ax.set_ylabel("√frequency")
    ax.set_title("Hanging rootogram", fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    return fig


def plot_calibration(fit: Fit, **kwargs: Any) -> Figure:
    """Observed against predicted proportion of successes per bin, with the replicated interval.

    Points on the diagonal: calibrated. The bars are the interval of the same proportion in
    data replicated from the posterior; an observed point outside its bar is a bin the model
    does not reproduce.

    Parameters
    ----------
    fit : Fit
        A Bernoulli or binomial fit.
    **kwargs
        Passed to :meth:`Fit.binned_calibration` (``bins``, ``ci``, ``prob``, ``seed``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, pandas as pd, lmm_bayes as lb
    >>> rng = np.random.default_rng(2)
    >>> df = pd.DataFrame({"g": np.repeat(np.arange(20), 10), "x": rng.normal(size=200)})
    >>> df["y"] = rng.binomial(1, 1 / (1 + np.exp(-df["x"])))
    >>> fit = lb.GLMM("y ~ x + (1 | g)", df, family="bernoulli").fit(
    ...     draws=200, tune=200, chains=2, seed=1, progressbar=False)
    >>> plot_calibration(fit, bins=5).axes[0].get_xlabel()
    'predicted probability (posterior mean)'
    """
    import matplotlib.pyplot as plt

    fit = check_fit(fit)
    table = binned_calibration(fit, **kwargs)
    low, high = interval_columns(kwargs.get("ci", DEFAULT_CI))
    x = table["predicted"].to_numpy()
    fig, ax = plt.subplots(figsize=(4.2, 4.0), layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1)
    ax.vlines(x, table[low], table[high], color="C0", lw=3, alpha=0.4, label=f"replicated ({table.attrs.get('interval', 'interval')})")
    ax.plot(x, table["observed"], "o", color="C3", label="observed")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (posterior mean)")
    ax.set_ylabel("observed proportion")
    ax.set_title("Calibration by bins of predicted probability", fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    return fig

"""``fit.draws()``: the posterior as one tidy table, a row per draw (brms ``as_draws_df``).

Columns ``chain`` and ``draw``, then one per scalar parameter under the names the posterior,
the trace plots and the diagnostics use (:func:`~lmm_bayes.inference.layout.hyperparameters`:
``beta[Days]``, ``sigma``, ``Subject_sd[Intercept]``, ``Subject_corr[Intercept, Days]``), and on
request every cluster's effects, ``Subject_b[308, Intercept]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import b_draws, hyperparameter_draws, hyperparameters

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit

__all__ = ["draws_table"]


def draws_table(fit: Fit, *, b: bool = False) -> pd.DataFrame:
    """The draws of every scalar parameter, one row per chain and draw.

    Parameters
    ----------
    fit : Fit
    b : bool
        Also every cluster's effects, a column each (``{group}_b[{level}, {effect}]``).

    Returns
    -------
    pandas.DataFrame
        Columns ``chain``, ``draw`` and the parameters; rows in chain order, then draw order.

    Raises
    ------
    RandomEffectsNotKept
        ``b=True`` for a fit made with ``keep_b="none"``.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> table = draws_table(fit)
    >>> table.shape, table.columns.tolist()
    ((1000, 6), ['chain', 'draw', 'beta[Intercept]', 'beta[Days]', 'sigma', 'Subject_sd[Intercept]'])
    """
    if not isinstance(b, bool):
        raise TypeError(f"b must be True or False, got {type(b).__name__}")
    post = fit.posterior
    parts = [hyperparameter_draws(post, hyperparameters(fit.design)).transpose("chain", "draw", "parameter")]
    labels = [list(map(str, parts[0]["parameter"].values))]
    if b:
        for g in fit.design.groups:
            draws = b_draws(post, g, "fit.draws(b=True)").transpose("chain", "draw", g.name, g.effect_dim)
            parts.append(draws.stack(column=(g.name, g.effect_dim)))
            labels.append([f"{g.name}_b[{level}, {effect}]" for level, effect in parts[-1]["column"].values])
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    values = np.concatenate([p.values.reshape(n_chains * n_draws, -1) for p in parts], axis=1)
    columns = [c for part in labels for c in part]
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "draw", np.tile(post["draw"].values, n_chains))
    table.insert(0, "chain", np.repeat(post["chain"].values, n_draws))
    return table

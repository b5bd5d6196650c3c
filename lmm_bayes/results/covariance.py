"""The model-implied covariance of the observations, Var(y) = Z (I_J ⊗ G) Zᵀ + σ² I, and G itself.

G is the q × q covariance of one cluster's effects; the covariance of all J clusters'
effects stacked is the block diagonal I_J ⊗ G, which is what Z (n × Jq) multiplies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from lmm_bayes.inference.layout import SIGMA, corr_name, covariance_values
from lmm_bayes.results.residual_structure import refuse_structured
from lmm_bayes.results.fit import check_fit
from lmm_bayes.spec import validate

if TYPE_CHECKING:  # pragma: no cover
    from lmm_bayes.results.fit import MixedModelFit as Fit
    from lmm_bayes.spec.design import GroupDesign


__all__ = ["group_covariance", "implied_covariance"]

_MAX_COV_ROWS = 10_000


# ====================================================================== G and Var(y)


def group_covariance(
    fit: Fit, group: str, *, kind: Literal["covariance", "correlation"] = "covariance"
) -> pd.DataFrame:
    """Posterior mean of G, the covariance of one cluster's random effects, or of their correlation matrix.

    The mean is taken draw by draw: of G = diag(sd) R diag(sd) (not G built from the
    mean SDs and correlations), or of R. Effects in different ``||`` blocks have a
    correlation of exactly 0.

    Parameters
    ----------
    fit : Fit
    group : str
        The grouping factor.
    kind : {"covariance", "correlation"}

    Returns
    -------
    pandas.DataFrame
        Square, rows and columns labelled by the factor's effects.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)
    >>> G = fit.G("Subject")
    >>> G.columns.tolist(), bool(G.loc["Intercept", "Days"] == G.loc["Days", "Intercept"])
    (['Intercept', 'Days'], True)
    >>> float(fit.G("Subject", kind="correlation").loc["Days", "Days"])
    1.0
    """
    check_fit(fit)
    g = validate.check_group(fit.design, group)
    validate.check_choice(kind, ("covariance", "correlation"), "kind")
    if kind == "covariance":
        values = _mean_G(fit, g)
    else:
        name = corr_name(g)
        post = fit.posterior
        values = post[name].mean(("chain", "draw")).values if name in post else np.eye(g.n_effects)
    return pd.DataFrame(values, index=list(g.effects), columns=list(g.effects))


def _mean_G(fit: Fit, g: GroupDesign) -> np.ndarray:
    """The posterior mean of G = diag(sd) corr diag(sd), taken draw by draw: (effects, effects)."""
    return covariance_values(fit.posterior, g).mean(axis=(0, 1))


def implied_covariance(
    fit: Fit,
    rows: Sequence[Any] | pd.Index | np.ndarray | pd.DataFrame,
    *,
    kind: Literal["covariance", "correlation"] = "covariance",
) -> pd.DataFrame:
    """The model-implied marginal covariance Var(y) = Z (I_J ⊗ G) Zᵀ + σ² I of some rows (posterior mean).

    Two rows covary through every grouping factor they share a level of: for a
    random intercept and slope on x, two rows of the same cluster covary by
    τ0² + τ01 (x + x') + τ1² x x', and rows of different clusters by 0. The
    posterior means of G and of σ² are used, so the matrix is the posterior
    mean of Var(y).

    Parameters
    ----------
    fit : Fit
    rows : list of row labels, or pandas.DataFrame
        Labels of rows of the fitted data (its index), or a DataFrame of rows
        (fitted or new; rows with the same grouping labels share a cluster,
        an unseen label is a new cluster).
    kind : {"covariance", "correlation"}

    Returns
    -------
    pandas.DataFrame
        Square, rows and columns labelled by the rows' labels.

    Raises
    ------
    TypeError
        ``fit`` is not a Fit, or ``rows`` is not a list of labels or a DataFrame.
    ValueError
        ``rows`` is empty, too long (more than 10,000), or names labels that are
        not rows of the fitted data.

    Examples
    --------
    >>> import lmm_bayes as lb
    >>> fit = lb.LMM("Reaction ~ Days + (1 | Subject)", lb.datasets.load("sleepstudy")).fit(
    ...     draws=500, tune=500, chains=2, seed=1, progressbar=False)
    >>> V = fit.implied_covariance([0, 1, 10])       # rows 0 and 1: subject 308; row 10: 309
    >>> V.shape, float(V.loc[0, 10])
    ((3, 3), 0.0)
    >>> bool(V.loc[0, 1] > 0)
    True
    """
    refuse_structured(fit.design, "implied_covariance (sigma^2 I on the diagonal)")
    check_fit(fit)
    validate.check_choice(kind, ("covariance", "correlation"), "kind")
    design = fit.design
    if isinstance(rows, pd.DataFrame):
        validate.check_dataframe(rows, "rows")
        if len(rows) > _MAX_COV_ROWS:
            raise ValueError(
                f"rows has {len(rows)} rows; at most {_MAX_COV_ROWS} make a dense matrix, pass fewer"
            )
        new = design.evaluate(rows)
        index = rows.index
        Zs = {g.name: new.Z[g.name] for g in design.groups}
        labels = {g.name: np.asarray(new.labels[g.name]) for g in design.groups}
    else:
        if isinstance(rows, (str, bytes)) or not isinstance(
            rows, (Sequence, pd.Index, np.ndarray, pd.Series)
        ):
            raise TypeError(
                f"rows must be a list of row labels of the fitted data or a DataFrame of rows, "
                f"got {type(rows).__name__}"
            )
        wanted = list(rows)
        if not wanted:
            raise ValueError("rows is empty; pass at least one row label")
        if len(wanted) > _MAX_COV_ROWS:
            raise ValueError(f"rows has {len(wanted)} labels; at most {_MAX_COV_ROWS} make a dense matrix")
        if not design.index.is_unique:
            raise ValueError("the fitted data's row labels are not unique; pass a DataFrame of rows instead")
        pos = design.index.get_indexer(wanted)
        if (pos < 0).any():
            missing = [w for w, p in zip(wanted, pos) if p < 0]
            raise ValueError(
                f"rows {missing[:10]}{' ...' if len(missing) > 10 else ''} are not rows of the fitted data "
                f"(labels of its index, e.g. {list(design.index[:3])}); pass a DataFrame for new rows"
            )
        index = pd.Index(wanted)
        Zs = {g.name: g.Z[pos] for g in design.groups}
        labels = {g.name: np.asarray(g.codes[pos]) for g in design.groups}
    m = len(index)
    V = np.zeros((m, m))
    for g in design.groups:
        G = _mean_G(fit, g)
        Z = Zs[g.name]
        same = labels[g.name][:, None] == labels[g.name][None, :]
        V += (Z @ G @ Z.T) * same
    V += float(np.mean(fit.posterior[SIGMA].values ** 2)) * np.eye(m)
    if kind == "correlation":
        d = np.sqrt(np.diag(V))
        V = V / d[:, None] / d[None, :]
    return pd.DataFrame(V, index=index, columns=index)

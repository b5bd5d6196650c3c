"""The result of simulation-based calibration: ranks, their uniformity tests, coverage, the ECDF plot.

:func:`lmm_bayes.sbc` makes an :class:`SBCResult`; :meth:`SBCResult.from_ranks`
makes one from any ranks dataset (dim ``sim``), e.g. ranks gathered elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lazy_loader as lazy
import numpy as np
import pandas as pd
import xarray as xr

from lmm_bayes.calibration.workers import Failure
from lmm_bayes.inference.layout import Hyperparameter
from lmm_bayes.spec import validate

# heavy libraries load at first use (lazy_loader): `import lmm_bayes` and the kernel path never pay for them
stats = lazy.load("scipy.stats", suppress_warning=True)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["SBCResult", "failures_table", "ranks_dataset"]

_COVERAGE = (0.5, 0.9)


def ranks_dataset(
    ranks: np.ndarray, params: Sequence[Hyperparameter], attrs: Mapping[str, Any], *,
    sims: Sequence[int] | None = None,
) -> xr.Dataset:
    """Ranks (sim, parameter) as a Dataset named like the posterior, one variable per ``Hyperparameter.var``.

    ``beta`` on (``sim``, ``coef``), ``sigma`` on ``sim``, ``{g}_sd`` on (``sim``,
    ``{g}_effect``), ``{g}_corr`` on (``sim``, ``{g}_pair``) with coords like ``"Intercept, x"``.
    ``sims`` labels the rows (the simulations' indices; default ``0, 1, ...``).

    Examples
    --------
    >>> import numpy as np, lmm_bayes as lb
    >>> from lmm_bayes.inference.layout import hyperparameters
    >>> m = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
    >>> ds = ranks_dataset(np.zeros((3, 6), int), hyperparameters(m.design), {})
    >>> ds["Subject_corr"].dims, ds["Subject_pair"].values.tolist()
    (('sim', 'Subject_pair'), ['Intercept, Days'])
    """
    by_var: dict[str, list[int]] = {}
    for k, p in enumerate(params):
        by_var.setdefault(p.var, []).append(k)
    data, coords = {}, {"sim": np.arange(ranks.shape[0]) if sims is None else np.asarray(sims, dtype=int)}
    for var, idx in by_var.items():
        first = params[idx[0]]
        if first.dim is None:
            data[var] = ("sim", ranks[:, idx[0]])
        else:
            data[var] = (("sim", first.dim), ranks[:, idx])
            coords[first.dim] = [params[k].coord for k in idx]
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))


def _flat(ds: xr.Dataset, dim: str = "sim") -> pd.DataFrame:
    """A (sim × parameter) table of a ranks dataset, labelled ``beta[Intercept]``."""
    cols = {}
    for name, da in ds.data_vars.items():
        other = [d for d in da.dims if d != dim]
        if not other:
            cols[str(name)] = da.values
            continue
        stacked = da.stack(_p=other) if len(other) > 1 else da.rename({other[0]: "_p"})
        for k, label in enumerate(stacked["_p"].values):
            cols[f"{name}[{label}]"] = stacked.isel(_p=k).values
    return pd.DataFrame(cols, index=pd.Index(ds[dim].values, name=dim))


# ---------------------------------------------------------------- the result


def _chi_square(ranks: np.ndarray, n_draws: int, bins: int) -> tuple[float, float]:
    """Chi-square test of discrete uniformity on ``0..n_draws``, ranks pooled into ``bins``."""
    which = np.arange(n_draws + 1) * bins // (n_draws + 1)
    expected = np.bincount(which, minlength=bins) / (n_draws + 1) * len(ranks)
    observed = np.bincount(which[ranks], minlength=bins)
    res = stats.chisquare(observed, expected)
    return float(res.statistic), float(res.pvalue)


def _default_bins(n_sims: int, n_draws: int) -> int:
    return int(min(n_draws + 1, max(2, min(20, n_sims // 10))))


@dataclass(frozen=True, eq=False)
class SBCResult:
    """Ranks of the true hyperparameters among posterior draws, and their checks.

    Attributes
    ----------
    ranks : xarray.Dataset
        Dims ``sim`` and the parameter's own (``beta`` on ``coef``, ``{g}_sd``
        on ``{g}_effect``, ``{g}_corr`` on ``{g}_pair``, ``sigma``); values in
        ``0..n_draws``.
    n_draws : int
        Thinned posterior draws per simulation (the largest possible rank).
    uniformity : pandas.DataFrame
        Per parameter: ``chi2``, ``df``, ``p_value`` of a chi-square test that
        the ranks are uniform (small p: miscalibrated), and ``bins``.
    coverage : pandas.DataFrame
        Per parameter, the share of simulations whose truth lies in the central
        50% and 90% posterior interval (``"50%"``, ``"90%"``); calibrated: 0.5 and 0.9.
    diagnostics : pandas.DataFrame
        Per simulation: the sampler's health as :meth:`Fit.diagnostics` reports it
        (``divergences``, ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` of the
        hyperparameters, ``min_bfmi``, ``treedepth_hits``) and ``seconds``.
    failures : pandas.DataFrame
        The simulations whose fit raised, left out of everything above: indexed by
        ``sim``, columns ``seed`` (the fit's), ``error`` (the type) and ``message``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ranks = xr.Dataset({"sigma": ("sim", np.random.default_rng(1).integers(0, 100, 50))})
    >>> res = SBCResult.from_ranks(ranks, n_draws=99)
    >>> res.uniformity.columns.tolist(), res.coverage.columns.tolist()
    (['chi2', 'df', 'p_value', 'bins'], ['50%', '90%'])
    """

    ranks: xr.Dataset
    n_draws: int
    uniformity: pd.DataFrame
    coverage: pd.DataFrame
    diagnostics: pd.DataFrame
    failures: pd.DataFrame = field(default_factory=lambda: failures_table([]))

    @classmethod
    def from_ranks(cls, ranks: xr.Dataset, n_draws: int, *, diagnostics: pd.DataFrame | None = None,
                   bins: int | None = None, failures: pd.DataFrame | None = None) -> SBCResult:
        """Compute the tests and coverage from a ranks dataset (dim ``sim``); ``failures`` as :func:`sbc` makes."""
        flat = _flat(ranks)
        n_draws = validate.check_positive_int(n_draws, "n_draws")
        if flat.to_numpy().min() < 0 or flat.to_numpy().max() > n_draws:
            raise ValueError(f"ranks must lie in 0..n_draws = 0..{n_draws}")
        if bins is None:
            bins = _default_bins(len(flat), n_draws)
        bins = validate.check_positive_int(bins, "bins", minimum=2)
        rows = {c: (*_chi_square(flat[c].to_numpy(), n_draws, bins), bins - 1) for c in flat}
        uniformity = pd.DataFrame.from_dict(rows, orient="index", columns=["chi2", "p_value", "df"])
        uniformity = uniformity[["chi2", "df", "p_value"]].assign(bins=bins).rename_axis("parameter")
        q = flat.to_numpy() / n_draws
        coverage = pd.DataFrame(
            {f"{p:.0%}": ((q >= (1 - p) / 2) & (q <= (1 + p) / 2)).mean(axis=0) for p in _COVERAGE},
            index=pd.Index(flat.columns, name="parameter"),
        )
        if diagnostics is None:
            diagnostics = pd.DataFrame(index=flat.index)
        return cls(ranks=ranks, n_draws=n_draws, uniformity=uniformity, coverage=coverage,
                   diagnostics=diagnostics, failures=failures_table([]) if failures is None else failures)

    def pit(self) -> xr.Dataset:
        """The ranks as probability integral transforms in (0, 1): ``(rank + 0.5) / (n_draws + 1)``."""
        return (self.ranks + 0.5) / (self.n_draws + 1)

    def plot(self, *, coverage: bool = False, prob: float = 0.95) -> Figure:
        """ECDF of the ranks minus the uniform CDF, one panel per parameter.

        The grey band is the simultaneous ``prob`` band of Säilynoja et al.
        (2022), computed by :func:`arviz_stats.ecdf_utils.ecdf_pit`: a calibrated
        parameter's line leaves it with probability ``1 - prob``. A line above
        zero on the left (below on the right) means the truth tends to be low
        (high) in the posterior; a ∪ shape means too narrow posteriors, a ∩
        shape too wide. ``coverage=True`` plots the coverage of central
        intervals against their width instead. (For the Dataset form, use
        :meth:`pit` with :func:`arviz_plots.plot_ecdf_pit`.)

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> ranks = xr.Dataset({"sigma": ("sim", np.random.default_rng(1).integers(0, 100, 50))})
        >>> fig = SBCResult.from_ranks(ranks, n_draws=99).plot()
        >>> [ax.get_title() for ax in fig.axes]
        ['sigma']
        """
        import matplotlib.pyplot as plt
        from arviz_stats.ecdf_utils import ecdf_pit

        prob = validate.check_probability(prob, "prob")
        u = _flat(self.pit())
        if coverage:
            u = 2 * (u - 0.5).abs()
        ncols = min(4, u.shape[1])
        nrows = -(-u.shape[1] // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), sharex=True,
                                 sharey=True, squeeze=False, layout="constrained")
        for ax, name in zip(axes.flat, u.columns):
            x, ecdf, lower, upper = ecdf_pit(u[name].to_numpy(), prob, 1000, rng=np.random.default_rng(0))
            ax.fill_between(x, lower - x, upper - x, step="post", color="0.85", lw=0)
            ax.step(x, ecdf - x, where="post", color="C0")
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
            ax.set_title(name, fontsize="medium")
        for ax in axes.flat[u.shape[1]:]:
            ax.remove()
        fig.supxlabel("central interval width" if coverage else "fractional rank (PIT)")
        fig.supylabel("coverage - width" if coverage else "ECDF - uniform CDF")
        return fig

    def __repr__(self) -> str:
        table = self.uniformity[["p_value"]].join(self.coverage)
        failed = ""
        if len(self.failures):
            first = self.failures.iloc[0]
            message = (str(first["message"]).strip().splitlines() or [""])[0]
            failed = (f"{len(self.failures)} simulation(s) failed and are left out (see .failures); the first, "
                      f"simulation {self.failures.index[0]} (seed {first['seed']}), raised {first['error']}: "
                      f"{message}\n")
        return (f"SBCResult: {self.ranks.sizes['sim']} simulations, ranks in 0..{self.n_draws}\n{failed}"
                f"{table.to_string(float_format=lambda v: f'{v:.3f}')}")


def failures_table(failures: Sequence[Failure]) -> pd.DataFrame:
    """The failed simulations as :attr:`SBCResult.failures` holds them (indexed by ``sim``)."""
    rows = [(f.index, f.seed, f.error, f.message) for f in failures]
    table = pd.DataFrame(rows, columns=["sim", "seed", "error", "message"]).astype({"sim": int, "seed": int})
    return table.set_index("sim")

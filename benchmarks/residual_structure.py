"""Benchmark: residuals beyond sigma^2 I (issue 31) — sigma by neuron and AR(1) over trials, against the same data without them.

Data: 20 subjects x 25 neurons (500 neurons, labelled apart across subjects) x ``--trials`` trials,
``y = 2 + 0.5 x + b0_j + b1_j x + e``, b ~ N(0, diag(0.8^2, 0.3^2)), e AR(1) with rho = 0.6 within each
neuron and sigma_j = 0.7 exp(u_j), u_j ~ N(0, 0.4^2). Model ``y ~ x + (1 + x | neuron)``:

* **plain**: sigma^2 I, the collapsed kernel (compiled once per machine);
* **structured**: ``sigma="~ (1 | neuron)", ar="trial | neuron"``, the PyTensor graph on per-cluster sums
  (:mod:`lmm_bayes.inference.methods.structured`), compiled by nutpie (numba) once per structure.

Each fit twice in one process (*cold*: the first, with any compile; *warm*: the same model again, the
compiled model reused), 4 chains x (1000 tuning + 1000 kept), nutpie, seed 1. Reported: the times,
the time to the per-cluster sums, the min bulk ESS over beta, sigma, the SDs (and rho, sd(log sigma)),
divergences, rho's posterior and the correlation of the posterior mean log sigma_j with the truth.
Written to ``benchmarks/RESULTS_residual_structure.md``.

Usage::

    python benchmarks/residual_structure.py --trials 100
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collapsed_vs_full import _machine, _versions  # noqa: E402

FORMULA = "y ~ x + (1 + x | neuron)"
SUBJECTS, NEURONS, RHO = 20, 25, 0.6


def simulate(trials: int, seed: int = 1) -> tuple[pd.DataFrame, dict[str, float]]:
    rng = np.random.default_rng(seed)
    J = SUBJECTS * NEURONS
    labels = [f"s{s:02d}n{n:02d}" for s in range(SUBJECTS) for n in range(NEURONS)]
    u = rng.normal(scale=0.4, size=J)
    sig = 0.7 * np.exp(u)
    b0, b1 = rng.normal(scale=0.8, size=J), rng.normal(scale=0.3, size=J)
    e = np.empty((J, trials))
    e[:, 0] = rng.normal(size=J)
    innov = rng.normal(size=(J, trials)) * np.sqrt(1 - RHO**2)
    for t in range(1, trials):
        e[:, t] = RHO * e[:, t - 1] + innov[:, t]
    x = rng.normal(size=(J, trials))
    y = 2.0 + 0.5 * x + b0[:, None] + b1[:, None] * x + sig[:, None] * e
    df = pd.DataFrame({"neuron": np.repeat(labels, trials), "trial": np.tile(np.arange(1, trials + 1), J),
                       "x": x.ravel(), "y": y.ravel()})
    return df, dict(zip(labels, np.log(sig)))


def _min_ess(fit, extra: list[str]) -> float:
    import arviz_stats as azs

    names = ["beta", "sigma", "neuron_sd", *extra]
    ess = azs.ess(fit.posterior[names].to_dataset() if hasattr(fit.posterior, "to_dataset") else fit.posterior[names])
    return float(min(float(ess[v].min()) for v in names))


def run(trials: int) -> list[dict]:
    import lmm_bayes as lb
    from lmm_bayes.inference.methods.structured.sums import residual_sums

    df, log_sig = simulate(trials)
    rows = []
    for label, kwargs in (("plain", {}), ("structured", {"sigma": "~ (1 | neuron)", "ar": "trial | neuron"})):
        t0 = time.perf_counter()
        model = lb.LMM(FORMULA, df, **kwargs)
        t_design = time.perf_counter() - t0
        t_sums = np.nan
        if kwargs:
            t0 = time.perf_counter()
            residual_sums(model.design)
            t_sums = time.perf_counter() - t0
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = model.fit(draws=1000, tune=1000, chains=4, seed=1, progressbar=False)
            times.append(time.perf_counter() - t0)
        extra = ["rho", "sigma_sd"] if kwargs else []
        row = {"model": label, "rows": len(df), "design s": t_design, "sums s": t_sums, "cold fit s": times[0],
               "warm fit s": times[1], "min ESS": _min_ess(fit, extra),
               "divergences": int(fit.idata["sample_stats"]["diverging"].sum())}
        if kwargs:
            rho = fit.posterior["rho"].values.ravel()
            row["rho"] = f"{rho.mean():.3f} ± {rho.std():.3f} (truth {RHO})"
            u = fit.posterior["sigma_u"].mean(("chain", "draw"))
            truth = np.array([log_sig[str(lv)] for lv in u["neuron"].values])
            row["corr(log sigma_j, truth)"] = f"{np.corrcoef(u.values, truth)[0, 1]:.3f}"
        rows.append(row)
        print(row, flush=True)
    return rows


def write(rows: list[dict], trials: int, load: tuple[float, float]) -> Path:
    """The run's section (``## N trials per neuron``) replaced or added in the results file; other sections and
    the notes after ``## Notes`` are kept."""
    out = HERE / "RESULTS_residual_structure.md"
    table = pd.DataFrame(rows).set_index("model")
    header = [
        "# Residuals beyond sigma^2 I: results",
        "",
        f"`{FORMULA}`, {SUBJECTS} subjects x {NEURONS} neurons x the trials of each section; *plain*: sigma^2 I "
        "(collapsed kernel); *structured*: `sigma=\"~ (1 | neuron)\", ar=\"trial | neuron\"` (PyTensor graph on "
        "per-cluster sums, nutpie). 4 chains x (1000 + 1000) draws, seed 1; *cold*: the first fit in the process "
        "(with any compile), *warm*: the same model again. min ESS: bulk, over beta, sigma, the SDs (and rho, "
        "sd(log sigma)). Written by `python benchmarks/residual_structure.py --trials N`.",
        "",
    ]
    section = "\n".join([
        f"## {trials} trials per neuron",
        "",
        f"{datetime.now():%Y-%m-%d %H:%M}. Machine: {_machine()}. Load average (1 min) at start {load[0]:.1f}, "
        f"at end {load[1]:.1f}. Versions: {_versions()}.",
        "",
        table.to_markdown(floatfmt=".2f"),
        "",
    ])
    sections, notes = {}, ""
    if out.exists():
        text = out.read_text()
        if "\n## Notes" in text:
            text, notes = text.split("\n## Notes", 1)
            notes = "## Notes" + notes
        for part in text.split("\n## ")[1:]:
            sections[int(part.split(" ", 1)[0])] = "## " + part.rstrip() + "\n"
    sections[trials] = section
    body = "\n".join(sections[k] for k in sorted(sections))
    out.write_text("\n".join(header) + "\n" + body + ("\n" + notes if notes else ""))
    return out


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    start = os.getloadavg()[0]
    rows = run(args.trials)
    print(write(rows, args.trials, (start, os.getloadavg()[0])))


if __name__ == "__main__":
    main()

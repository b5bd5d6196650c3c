"""Benchmark: a Poisson GLMM by the full method (nutpie), beside bambi and lme4's glmer when installed.

The data of issue 20: simulated nested spike counts, 20 subjects x 25 neurons x 40 trials
= 20,000 rows, ``spikes ~ x + (1 + x | subject) + (1 | subject:neuron)``, log rate about
1.5, subject SDs (0.5, 0.2), neuron SD 0.3. Each tool fits the same data:

* lmm-bayes ``lb.GLMM(..., family="poisson").fit(method="full")`` with nutpie;
* bambi (``family="poisson"``, ``nuts_sampler="nutpie"``) when importable;
* lme4 ``glmer`` (Laplace ML, no posterior) when ``Rscript`` with lme4 is on the path.

Reported: wall seconds (compile included), min bulk ESS over the hyperparameters (β,
the SDs, the correlation), min ESS per second, divergences, max R-hat. A ratio is only
quoted between rows of one run of this script. Results go to ``benchmarks/RESULTS_glmm.md``.

Usage::

    python benchmarks/glmm_full.py                          # 4 chains x (1000 + 1000)
    python benchmarks/glmm_full.py --draws 500 --tune 500 --chains 2
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "spikes ~ x + (1 + x | subject) + (1 | subject:neuron)"
HERE = Path(__file__).resolve().parent


def simulate(*, subjects: int = 20, neurons: int = 25, trials: int = 40, seed: int = 0) -> pd.DataFrame:
    """Nested spike counts with known truth (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = subjects * neurons * trials
    s = np.repeat(np.arange(subjects), neurons * trials)
    nn = np.repeat(np.arange(subjects * neurons), trials)
    x = rng.standard_normal(n)
    L = np.linalg.cholesky(np.array([[0.25, -0.3 * 0.5 * 0.2], [-0.3 * 0.5 * 0.2, 0.04]]))
    b = rng.standard_normal((subjects, 2)) @ L.T
    u = rng.normal(0, 0.3, subjects * neurons)
    eta = 1.5 + 0.3 * x + b[s, 0] + b[s, 1] * x + u[nn]
    return pd.DataFrame({"spikes": rng.poisson(np.exp(eta)), "x": x, "subject": [f"s{i}" for i in s],
                         "neuron": [f"n{i % neurons}" for i in nn]})


def ours(df: pd.DataFrame, args, centered: bool) -> dict:
    import lmm_bayes as lb

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.GLMM(FORMULA, df, family="poisson").fit(
            method="full", centered=centered, draws=args.draws, tune=args.tune, chains=args.chains, seed=1,
            progressbar=False, log_likelihood=False)
    wall = time.perf_counter() - t
    d = fit.diagnostics()
    kind = "hierarchically centered, centered=True" if centered else "non-centered, the default"
    return {"tool": f"lmm-bayes full, {kind} (nutpie)", "seconds": wall, "min_ess": d["min_ess_bulk"],
            "divergences": d["divergences"], "max_r_hat": d["max_r_hat"],
            "beta": fit.fixef()["mean"].round(3).to_dict()}


def bambi(df: pd.DataFrame, args) -> dict | None:
    if importlib.util.find_spec("bambi") is None:
        return None
    import arviz as az
    import bambi as bmb

    t = time.perf_counter()
    model = bmb.Model(FORMULA, df, family="poisson")
    idata = model.fit(draws=args.draws, tune=args.tune, chains=args.chains, random_seed=1,
                      nuts_sampler="nutpie", progressbar=False)
    wall = time.perf_counter() - t
    post = idata.posterior
    names = [v for v in post.data_vars if set(post[v].dims) <= {"chain", "draw"}]  # β, the SDs
    ess = az.ess(idata.posterior[names])
    return {"tool": "bambi (nutpie)", "seconds": wall, "min_ess": float(min(ess[v].min() for v in ess.data_vars)),
            "divergences": int(idata.sample_stats["diverging"].sum()), "max_r_hat": float("nan"), "beta": {}}


def glmer(df: pd.DataFrame) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        df.to_csv(csv, index=False)
        script = (f'suppressMessages(library(lme4)); d <- read.csv("{csv}"); '
                  f't <- system.time(m <- glmer({FORMULA}, data = d, family = poisson))[["elapsed"]]; '
                  'cat(t, fixef(m), "\\n")')
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
    if out.returncode:
        return None
    t, *beta = map(float, out.stdout.split())
    return {"tool": "lme4 glmer (Laplace ML)", "seconds": t, "min_ess": float("nan"), "divergences": 0,
            "max_r_hat": float("nan"), "beta": {"Intercept": round(beta[0], 3), "x": round(beta[1], 3)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    args = p.parse_args()
    df = simulate()
    rows = [r for r in (ours(df, args, False), ours(df, args, True), bambi(df, args), glmer(df)) if r is not None]
    lines = [
        f"# GLMM, full method ({len(df):,} rows, `{FORMULA}`, Poisson)",
        "",
        f"{platform.processor() or platform.machine()}, {args.chains} chains x ({args.tune} + {args.draws}) draws; "
        "`python benchmarks/glmm_full.py` " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "",
        "| tool | seconds | min bulk ESS | min ESS / s | divergences | max R-hat | β |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['tool']} | {r['seconds']:.1f} | {r['min_ess']:.0f} | {r['min_ess'] / r['seconds']:.2f} | "
                     f"{r['divergences']} | {r['max_r_hat']:.3f} | {r['beta']} |")
    text = "\n".join(lines) + "\n"
    (HERE / "RESULTS_glmm.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Benchmark: a Poisson GLMM by the full method (nutpie), beside bambi and lme4's glmer.

The data of issue 20: simulated nested spike counts, 20 subjects x 25 neurons x 40 trials
= 20,000 rows, ``spikes ~ x + (1 + x | subject) + (1 | subject:neuron)``, log rate about
1.5, subject SDs (0.5, 0.2) with correlation -0.3, neuron SD 0.3. Each tool fits the same
data frame, one after the other, in one run of this script:

* lmm-bayes ``lb.GLMM(..., family="poisson").fit(method="full")`` with nutpie, non-centered
  b (the default) and hierarchically centered (``centered=True``);
* lmm-bayes ``fit(method="laplace")`` when ``lmm_bayes.inference.methods.registry.METHODS`` has it
  (skipped, and said so, otherwise), with its ``diagnostics()`` and every
  ``fit.posterior.attrs`` key starting with ``laplace_``;
* bambi (``family="poisson"``, nutpie: ``inference_method="nutpie"``, which bambi hands to
  ``pm.sample(nuts_sampler=...)``): in this interpreter when bambi
  imports here, else in the interpreter given by ``--bambi-python`` (bambi 0.21 pins
  formulae < 0.7 and lmm-bayes needs formulae >= 0.9, so the two live in separate virtual
  environments; the data frame goes to the bambi process as a CSV file);
* lme4 ``glmer`` (Laplace ML, no posterior) when ``Rscript`` with lme4 is on the path.

Reported: wall seconds from the data frame to the finished fit (model building, compile
and sampling; not Python's start or imports), min bulk ESS over the hyperparameters
(lmm-bayes: β, the SDs and the correlation; bambi's default model has no correlation), the
min bulk ESS over β and the SDs only (the same parameters for every tool: the column ratios
are taken from), min ESS per second, divergences, max R-hat over the same parameters, and
β. A ratio is only quoted between rows of one run of this script.

Usage::

    python benchmarks/glmm_full.py --bambi-python /tmp/bvenv/bin/python --out benchmarks/glmm_run.md
    python benchmarks/glmm_full.py --quick --bambi-python /tmp/bvenv/bin/python   # smoke run, ~2 min
    python benchmarks/glmm_full.py --centering --chains 2 --out c.md  # non-centered vs centered=True

``--centering`` fits twelve data sets (bernoulli and Poisson with 5 to 100 trials per
cluster, lme4's cbpp, grouseticks (two ways of writing it) and a VerbAgg subset) both ways and reports, per grouping factor, the
median over clusters of κ_j = τ² I_j (τ the posterior median SD, I_j the cluster's Fisher
information about its intercept, at the fixed-effects-only GLM ("pooled") and at the
posterior mean of each row ("fitted")): the data's weight against the prior's in a
cluster, the quantity the choice of parameterization turns on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "spikes ~ x + (1 + x | subject) + (1 | subject:neuron)"
HERE = Path(__file__).resolve().parent


def simulate(*, subjects: int = 20, neurons: int = 25, trials: int = 40, seed: int = 0,
             conditions: int = 0) -> pd.DataFrame:
    """Nested spike counts with known truth (see the module docstring).

    ``conditions=K`` (K >= 2) gives x K evenly spaced values in [-1, 1], one per trial at
    random (a stimulus condition), instead of a standard normal value per trial.
    """
    rng = np.random.default_rng(seed)
    n = subjects * neurons * trials
    s = np.repeat(np.arange(subjects), neurons * trials)
    nn = np.repeat(np.arange(subjects * neurons), trials)
    x = rng.standard_normal(n)
    if conditions:
        x = np.linspace(-1.0, 1.0, conditions)[rng.integers(conditions, size=n)]
    L = np.linalg.cholesky(np.array([[0.25, -0.3 * 0.5 * 0.2], [-0.3 * 0.5 * 0.2, 0.04]]))
    b = rng.standard_normal((subjects, 2)) @ L.T
    u = rng.normal(0, 0.3, subjects * neurons)
    eta = 1.5 + 0.3 * x + b[s, 0] + b[s, 1] * x + u[nn]
    return pd.DataFrame({"spikes": rng.poisson(np.exp(eta)), "x": x, "subject": [f"s{i}" for i in s],
                         "neuron": [f"n{i % neurons}" for i in nn]})


def _row(tool: str, seconds: float, min_ess: float, min_ess_common: float, divergences: int, max_r_hat: float,
         beta: dict, extra: dict | None = None) -> dict:
    return {"tool": tool, "seconds": seconds, "min_ess": min_ess, "min_ess_common": min_ess_common,
            "divergences": divergences, "max_r_hat": max_r_hat, "beta": beta, "extra": extra or {}}


def _ours_common_ess(fit) -> float:
    """min bulk ESS over β and the SDs (the correlation left out), as for bambi."""
    import arviz as az

    post = fit.posterior
    names = ["beta"] + [v for v in post.data_vars if str(v).endswith("_sd")]
    ess = az.ess(post[names])
    return float(min(float(ess[v].min()) for v in ess.data_vars))


def ours(df: pd.DataFrame, args, *, method: str = "full", centered: bool = False) -> dict:
    import lmm_bayes as lb

    kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, seed=1, progressbar=False, log_likelihood=False)
    if method == "full":
        kw["centered"] = centered
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.GLMM(FORMULA, df, family="poisson").fit(method=method, **kw)
    wall = time.perf_counter() - t
    d = fit.diagnostics()
    if method == "full":
        tool = "lmm-bayes full, " + ("hierarchically centered, centered=True" if centered else "non-centered, the default")
        extra = {}
    else:
        tool = f"lmm-bayes {method}"
        extra = {"diagnostics": d, **{k: v for k, v in fit.posterior.attrs.items() if str(k).startswith("laplace_")}}
    return _row(tool + " (nutpie)" if method == "full" else tool, wall, d["min_ess_bulk"], _ours_common_ess(fit),
                d["divergences"], d["max_r_hat"], fit.fixef()["mean"].round(3).to_dict(), extra)


def laplace(df: pd.DataFrame, args) -> dict | None:
    """The fast path's row, when this lmm-bayes has ``method="laplace"``; None (and a note) otherwise."""
    from lmm_bayes.inference.methods.registry import METHODS

    if "laplace" not in METHODS:
        print(f"method='laplace' is not in lmm_bayes.inference.methods.registry.METHODS {METHODS}: its row is skipped")
        return None
    try:
        return ours(df, args, method="laplace")
    except Exception as err:  # noqa: BLE001 (a benchmark reports a failing method instead of hiding the other rows)
        return _row(f"lmm-bayes laplace: FAILED ({type(err).__name__}: {err})", float("nan"), float("nan"),
                    float("nan"), 0, float("nan"), {})


def bambi_fit(df: pd.DataFrame, draws: int, tune: int, chains: int) -> dict:
    """bambi's default model for the formula, nutpie; runs wherever bambi imports."""
    import arviz as az
    import bambi as bmb

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(FORMULA, df, family="poisson")
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=1, inference_method="nutpie",
                          progressbar=False)  # bambi >= 0.14 picks nutpie by inference_method (pm.sample's nuts_sampler)
    wall = time.perf_counter() - t
    post = idata.posterior
    post = post.to_dataset() if hasattr(post, "to_dataset") else post  # bambi 0.21 returns a DataTree
    names = [v for v in post.data_vars if set(post[v].dims) <= {"chain", "draw"}]  # β and the SDs
    ess = az.ess(post[names])
    rhat = az.rhat(post[names])
    min_ess = float(min(float(ess[v].min()) for v in ess.data_vars))
    return _row(f"bambi {bmb.__version__} (nutpie)", wall, min_ess, min_ess,
                int(idata.sample_stats["diverging"].sum()), float(max(float(rhat[v].max()) for v in rhat.data_vars)),
                {v: round(float(post[v].mean()), 3) for v in ("Intercept", "x") if v in post},
                {"parameters": names, "python": platform.python_version(),
                 "versions": {m.__name__: m.__version__ for m in (az, bmb, __import__("pymc"), __import__("nutpie"))}})


def bambi(df: pd.DataFrame, args) -> dict | None:
    if importlib.util.find_spec("bambi") is not None:
        return bambi_fit(df, args.draws, args.tune, args.chains)
    if not args.bambi_python:
        print("bambi is not importable here and --bambi-python was not given: its row is skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        df.to_csv(csv, index=False)
        cmd = [args.bambi_python, __file__, "--bambi-worker", str(csv), "--draws", str(args.draws),
               "--tune", str(args.tune), "--chains", str(args.chains)]
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f"bambi failed ({shlex.join(cmd)}):\n{out.stderr[-3000:]}")
        return _row("bambi: FAILED (see the script's output)", float("nan"), float("nan"), float("nan"), 0,
                    float("nan"), {})
    return json.loads(out.stdout.strip().splitlines()[-1])


def glmer(df: pd.DataFrame) -> dict | None:
    if shutil.which("Rscript") is None:
        print("Rscript is not on the path: glmer's row is skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        df.to_csv(csv, index=False)
        script = (f'suppressMessages(library(lme4)); d <- read.csv("{csv}"); '
                  f't <- system.time(m <- glmer({FORMULA}, data = d, family = poisson))[["elapsed"]]; '
                  'cat(t, fixef(m), "\\n")')
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
    if out.returncode:
        print(f"glmer failed:\n{out.stderr[-2000:]}")
        return None
    t, *beta = map(float, out.stdout.split())
    return _row("lme4 glmer (Laplace ML)", t, float("nan"), float("nan"), 0, float("nan"),
                {"Intercept": round(beta[0], 3), "x": round(beta[1], 3)})


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("lmm-bayes", "pymc", "pytensor", "nutpie", "numba", "arviz"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


# ---------------------------------------------------------------------------- --centering: which default for `centered`


def _binary(clusters: int, trials: int, sd: float, seed: int) -> pd.DataFrame:
    """Bernoulli choices: logit p = 0.5 x + b_g, b ~ N(0, sd²), ``trials`` rows per cluster."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(clusters), trials)
    x = rng.standard_normal(g.size)
    eta = 0.5 * x + rng.normal(0, sd, clusters)[g]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": [f"g{i}" for i in g]})


def _counts(clusters: int, trials: int, sd: float, log_rate: float, seed: int) -> pd.DataFrame:
    """Poisson counts: log rate = log_rate + 0.3 x + b_g, b ~ N(0, sd²)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(clusters), trials)
    x = rng.standard_normal(g.size)
    eta = log_rate + 0.3 * x + rng.normal(0, sd, clusters)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": [f"g{i}" for i in g]})


def _pooled_weights(design, family: str) -> np.ndarray:
    """IRLS weights of the fixed-effects-only GLM (no random effects): μ (Poisson), n p (1 - p) (binomial)."""
    X, y = design.X, np.asarray(design.y, float)
    n = np.asarray(design.trials, float) if design.trials is not None else np.ones_like(y)
    off = design.offset if design.offset is not None else 0.0
    beta = np.zeros(X.shape[1])
    for _ in range(50):
        eta = X @ beta + off
        if family == "poisson":
            mu = np.exp(eta)
            w, z = mu, eta - off + (y - mu) / mu
        else:
            p = 1 / (1 + np.exp(-eta))
            w = n * p * (1 - p)
            z = eta - off + (y - n * p) / w
        beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * z))
    return w


def _information(fit, family: str) -> tuple[dict, dict]:
    """Per factor: quantiles (50%, 10%, 90%) over clusters of κ_j = τ² I_j, τ = the posterior median SD, I_j = Σ_rows w.

    I_j is the cluster's Fisher information about its intercept, with the rows' weights w = μ
    (Poisson) or n p (1 - p) (binomial) taken twice: at the fixed-effects-only GLM (pooled:
    known before any fit) and at the posterior mean of each row's mean (fitted: the cluster's
    own rate, which a pilot such as a Laplace fit would give). κ_j / (1 + κ_j) is the share
    of a cluster's intercept the data decide (1 - its shrinkage factor)."""
    d = fit.design
    mean = fit.predict(kind="mean").mean(("chain", "draw")).values
    if family == "poisson":
        fitted = mean
    else:
        n = np.asarray(d.trials, float) if d.trials is not None else 1.0
        fitted = n * mean * (1 - mean)
    out: tuple[dict, dict] = ({}, {})
    for weights, kappa in zip((_pooled_weights(d, family), fitted), out):
        for g in d.groups:
            info = np.bincount(g.codes, weights=weights * g.Z[:, 0] ** 2, minlength=len(g.levels))
            tau = float(fit.posterior[f"{g.name}_sd"].isel({f"{g.name}_effect": 0}).median())
            kappa[g.name] = np.quantile(tau**2 * info, [0.5, 0.1, 0.9])
    return out


def centering_study(args) -> str:
    """Non-centered b (the default) against hierarchical centering on small- and large-cluster data."""
    import lmm_bayes as lb

    data = HERE.parent / "tests" / "data"
    cbpp = pd.read_csv(data / "cbpp.csv")
    ticks = pd.read_csv(data / "grouseticks.csv")
    verbagg = pd.read_csv(data / "verbagg.csv")
    verbagg = verbagg[verbagg["id"] % 4 == 1]
    verbagg = verbagg.assign(r2=(verbagg["r2"] == "Y").astype(int), id=verbagg["id"].astype(str))  # glmer's success
    cases = [
        ("bernoulli, 100 clusters x 5 trials, SD 1", "y ~ x + (1 | g)", _binary(100, 5, 1.0, 1), "bernoulli"),
        ("bernoulli, 100 clusters x 20 trials, SD 1", "y ~ x + (1 | g)", _binary(100, 20, 1.0, 2), "bernoulli"),
        ("bernoulli, 100 clusters x 10 trials, SD 1", "y ~ x + (1 | g)", _binary(100, 10, 1.0, 7), "bernoulli"),
        ("bernoulli, 100 clusters x 5 trials, SD 2", "y ~ x + (1 | g)", _binary(100, 5, 2.0, 8), "bernoulli"),
        ("bernoulli, 100 clusters x 100 trials, SD 1", "y ~ x + (1 | g)", _binary(100, 100, 1.0, 3), "bernoulli"),
        ("bernoulli, 30 clusters x 5 trials, SD 0.3", "y ~ x + (1 | g)", _binary(30, 5, 0.3, 4), "bernoulli"),
        ("Poisson, 100 clusters x 5 trials, rate 1, SD 0.5", "y ~ x + (1 | g)", _counts(100, 5, 0.5, 0.0, 5), "poisson"),
        ("Poisson, 100 clusters x 20 trials, rate 4.5, SD 0.5", "y ~ x + (1 | g)", _counts(100, 20, 0.5, 1.5, 6),
         "poisson"),
        ("cbpp (lme4), binomial", "cbind(incidence, size - incidence) ~ C(period) + (1 | herd)", cbpp, "binomial"),
        ("grouseticks (lme4), Poisson", "TICKS ~ C(YEAR) + center(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", ticks,
         "poisson"),
        ("grouseticks, BROOD written nested in LOCATION", "TICKS ~ C(YEAR) + center(HEIGHT) + (1 | LOCATION) + "
         "(1 | LOCATION:BROOD)", ticks, "poisson"),
        ("VerbAgg (lme4), ids 1 mod 4, crossed with items", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
         verbagg, "bernoulli"),
    ]
    if args.cases:
        cases = [c for c in cases if any(k in c[0] for k in args.cases)]
    lines = [
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), nutpie, seed {args.seed}; seconds include the "
        "compile (each graph is new to the process).",
        "",
        "| data | rows | κ per factor: median pooled / median fitted (fitted 10%-90%) | parameterization | seconds | min ESS (β, SDs) | min ESS / s "
        "| divergences | max R-hat | min BFMI |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, formula, df, family in cases:
        model = lb.GLMM(formula, df, family=family)
        kappa = None
        for centered in (False, True):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = model.fit(method="full", centered=centered, draws=args.draws, tune=args.tune,
                                chains=args.chains, seed=args.seed, progressbar=False, log_likelihood=False)
            wall = time.perf_counter() - t
            d = fit.diagnostics()
            if kappa is None:
                pooled, fitted = _information(fit, family)
                kappa = ", ".join(f"{k} {pooled[k][0]:.2g} / {v[0]:.2g} ({v[1]:.2g}-{v[2]:.2g})"
                                  for k, v in fitted.items())
            ess = _ours_common_ess(fit)
            lines.append(f"| {label} | {len(df):,} | {kappa} | {'centered=True' if centered else 'non-centered'} | "
                         f"{wall:.1f} | {ess:.0f} | {ess / wall:.1f} | {d['divergences']} | {d['max_r_hat']:.3f} | "
                         f"{d['min_bfmi']:.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 4 subjects x 5 neurons x 20 trials, 2 chains x (100 + 100) draws")
    p.add_argument("--bambi-python", default=None,
                   help="the Python of a virtual environment with bambi (used when bambi does not import here)")
    p.add_argument("--out", default=None, help="write the Markdown table to this file as well as to stdout")
    p.add_argument("--centering", action="store_true",
                   help="instead: non-centered b against centered=True on small- and large-cluster data")
    p.add_argument("--cases", nargs="*", default=None, help="--centering: only the data sets whose label has one of these")
    p.add_argument("--seed", type=int, default=1, help="--centering: the fits' seed")
    p.add_argument("--bambi-worker", default=None, help=argparse.SUPPRESS)  # internal: fit bambi on this CSV
    args = p.parse_args()
    if args.bambi_worker:
        print(json.dumps(bambi_fit(pd.read_csv(args.bambi_worker), args.draws, args.tune, args.chains)))
        return
    if args.centering:
        load0, started = os.getloadavg(), datetime.now()
        text = centering_study(args)
        load1 = os.getloadavg()
        text = (f"Written by `python benchmarks/glmm_full.py {shlex.join(sys.argv[1:])}` on {started:%Y-%m-%d %H:%M}; "
                f"load average at start {' '.join(f'{x:.1f}' for x in load0)}, at end "
                f"{' '.join(f'{x:.1f}' for x in load1)}.\n\n" + text)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return
    if args.quick:
        args.draws, args.tune, args.chains = 100, 100, 2
        df = simulate(subjects=4, neurons=5, trials=20)
    else:
        df = simulate()
    command = "python benchmarks/glmm_full.py " + shlex.join(sys.argv[1:])
    load0, started = os.getloadavg(), datetime.now()
    rows = [ours(df, args), ours(df, args, centered=True), laplace(df, args), bambi(df, args), glmer(df)]
    rows = [r for r in rows if r is not None]
    load1 = os.getloadavg()
    lines = [
        f"# GLMM, full method ({len(df):,} rows, `{FORMULA}`, Poisson)",
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M}.",
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), nutpie, seed 1.",
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}. Load average (1, 5, 15 min) at start "
        f"{' '.join(f'{x:.1f}' for x in load0)}, at end {' '.join(f'{x:.1f}' for x in load1)}.",
        f"Versions: {_versions()}.",
        "",
        "| tool | seconds | min bulk ESS | min ESS (β, SDs) | min ESS (β, SDs) / s | divergences | max R-hat | β |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        rate = r["min_ess_common"] / r["seconds"]
        lines.append(f"| {r['tool']} | {r['seconds']:.1f} | {r['min_ess']:.0f} | {r['min_ess_common']:.0f} | {rate:.2f} | "
                     f"{r['divergences']} | {r['max_r_hat']:.3f} | {r['beta']} |")
    lines += [""] + [f"- {r['tool']}: {r['extra']}" for r in rows if r["extra"]]
    base = next((r for r in rows if r["tool"].startswith("bambi") and r["seconds"] == r["seconds"]), None)
    if base is not None and base["min_ess_common"] > 0:
        lines += ["", "Ratios of min ESS (β, SDs) per second to bambi's, this run:", ""]
        b_rate = base["min_ess_common"] / base["seconds"]
        for r in rows:
            if r is not base and r["min_ess_common"] == r["min_ess_common"]:
                lines.append(f"- {r['tool']}: {r['min_ess_common'] / r['seconds'] / b_rate:.2f}x")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

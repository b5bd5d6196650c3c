"""Benchmark: method="collapsed" against method="full" (and bambi when installed).

The data are the nested subject / neuron / trial data of BENCHMARK.md
(``y ~ x + (1 + x | subject) + (1 | subject:neuron)``, 20 subjects x 25 neurons,
4 / 100 / 1000 / 2000 trials per neuron = 2k / 50k / 500k / 1M rows), sampled with
4 chains x (1000 tuning + 1000 kept) draws by nutpie.

One command runs everything. Each (size, method) runs in a fresh child process, so
its peak memory (``ru_maxrss``) and its cold start (compile included) are its own;
for the collapsed method the child then fits the same model again, which reuses the
compiled model (fit.py's cache), the "warm" run. Results go to ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/collapsed_vs_full.py                         # all sizes
    python benchmarks/collapsed_vs_full.py --sizes 4 100           # trials per neuron
    python benchmarks/collapsed_vs_full.py --full-max-rows 2000    # full only at 2k rows
    python benchmarks/collapsed_vs_full.py --empty-cache           # also a first-ever compile

"Cold" means a new process with PyTensor's numba cache (``~/.pytensor``) as it is,
i.e. populated after the package's first use on the machine; ``--empty-cache`` adds
one collapsed run at 2k rows with an empty cache directory (a first-ever compile).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
SIZES = (4, 100, 1000, 2000)
DRAWS, TUNE, CHAINS = 1000, 1000, 4
HERE = Path(__file__).resolve().parent
#: bambi 0.21 numbers quoted in BENCHMARK.md (another 2-core machine): rows -> (sampler, seconds, min ESS)
QUOTED_BAMBI = {2_000: ("PyMC NUTS", 18.5, 578), 50_000: ("nutpie", 83.5, 67)}


def simulate(trials: int, *, subjects: int = 20, neurons: int = 25, seed: int = 0) -> pd.DataFrame:
    """The data of BENCHMARK.md: neuron labels n1..n25 repeat in every subject."""
    rng = np.random.default_rng(seed)
    n = subjects * neurons * trials
    s = np.repeat(np.arange(subjects), neurons * trials)
    nn = np.tile(np.repeat(np.arange(neurons), trials), subjects)
    x = rng.standard_normal(n)
    sd, corr = np.array([1.0, 0.5]), -0.4
    G = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b_subject = rng.multivariate_normal(np.zeros(2), G, size=subjects)
    b_neuron = rng.normal(0.0, 0.7, size=(subjects, neurons))
    y = 5.0 + 1.5 * x + b_subject[s, 0] + b_subject[s, 1] * x + b_neuron[s, nn] + rng.normal(0.0, 2.0, n)
    subject_labels = np.array([f"s{i + 1}" for i in range(subjects)])
    neuron_labels = np.array([f"n{j + 1}" for j in range(neurons)])
    return pd.DataFrame({"y": y, "x": x, "subject": subject_labels[s], "neuron": neuron_labels[nn]})


def lme4_reml_seconds(df: pd.DataFrame, formula: str) -> dict:
    """``lmer(formula, REML = TRUE)`` on ``df`` written to CSV, timed inside R (fit only).

    ``{"fit_s": seconds}``, ``{"error": ...}`` when R fails, or ``{}`` without ``Rscript``
    (lme4 from Debian: ``apt-get install r-cran-lme4``).
    """
    if shutil.which("Rscript") is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        df.to_csv(csv, index=False)
        script = ("suppressMessages(library(lme4)); d <- read.csv(commandArgs(TRUE)[1]); "
                  f"t <- system.time(m <- lmer({formula}, data = d, REML = TRUE))[['elapsed']]; cat(t, '\\n')")
        proc = subprocess.run(["Rscript", "-e", script, str(csv)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-200:]}
    return {"fit_s": float(proc.stdout.split()[-1])}


# ---------------------------------------------------------------------------- child: one run


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed_compile():
    """Wrap nutpie's compile to measure it; returns a list the durations go to."""
    import nutpie

    spent: list[float] = []
    original = nutpie.compile_pymc_model

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    nutpie.compile_pymc_model = wrapper
    return spent


def _lmm_run(df: pd.DataFrame, method: str, seed: int, compiled: list[float]) -> dict:
    import lmm_bayes as lb

    before = len(compiled)
    t0 = time.perf_counter()
    model = lb.LMM(FORMULA, df)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(method=method, draws=DRAWS, tune=TUNE, chains=CHAINS, seed=seed, progressbar=False)
    t2 = time.perf_counter()
    d = fit.diagnostics()
    compile_s = sum(compiled[before:])
    return {
        "design_s": t1 - t0,
        "total_s": t2 - t0,
        "compile_s": compile_s,
        "no_compile_s": t2 - t0 - compile_s,
        "min_ess_bulk": d["min_ess_bulk"],
        "divergences": d["divergences"],
        "max_r_hat": d["max_r_hat"],
        "reused": int(fit.idata.attrs.get("compiled_model_reused", 0)),
        "means": {k: np.asarray(fit.posterior[k].mean(("chain", "draw"))).round(3).tolist()
                  for k in ("beta", "sigma", "subject_sd", "subject:neuron_sd")},
    }


def _bambi_run(df: pd.DataFrame, seed: int, sampler: str) -> dict:
    import arviz as az
    import bambi as bmb

    t0 = time.perf_counter()
    model = bmb.Model(FORMULA, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = model.fit(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=seed, inference_method=sampler)
    total = time.perf_counter() - t0
    post = idata.posterior
    hyper = [v for v, da in post.data_vars.items()
             if not v.endswith("_offset") and not any("__factor_dim" in d for d in da.dims)]
    ess = min(float(np.nanmin(np.asarray(az.ess(post[v], method="bulk")))) for v in hyper)
    rhat = max(float(np.nanmax(np.asarray(az.rhat(post[v])))) for v in hyper)
    div = int(idata.sample_stats["diverging"].sum())
    return {"design_s": float("nan"), "total_s": total, "compile_s": float("nan"), "no_compile_s": float("nan"),
            "min_ess_bulk": ess, "divergences": div, "max_r_hat": rhat, "reused": 0, "means": {}}


def child(spec: dict) -> dict:
    baseline = _rss_mb()
    t = time.perf_counter()
    # timed apart: a user pays the imports once per session, outside "total"
    importlib.import_module("lmm_bayes")
    importlib.import_module("nutpie")
    import_s = time.perf_counter() - t
    t = time.perf_counter()
    df = simulate(spec["trials"], seed=spec["seed"])
    out = {"rows": len(df), "simulate_s": time.perf_counter() - t, "baseline_rss_mb": baseline, "import_s": import_s}
    if spec["method"] == "bambi":
        out["cold"] = _bambi_run(df, spec["seed"], spec["bambi_sampler"])
    else:
        compiled = _timed_compile()
        out["cold"] = _lmm_run(df, spec["method"], spec["seed"], compiled)
        if spec.get("warm"):
            out["warm"] = _lmm_run(df, spec["method"], spec["seed"] + 1, compiled)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# ---------------------------------------------------------------------------- parent: all runs


def run_child(spec: dict, *, timeout: float, env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    label = f"{spec['method']} trials={spec['trials']}"
    print(f"running {label} ...", flush=True)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {label}: {result['cold']['total_s']:.1f} s, min ESS {result['cold']['min_ess_bulk']:.0f}", flush=True)
    return result


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("lmm-bayes", "pymc", "pytensor", "nutpie", "numba", "arviz", "bambi"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} not installed")
    return ", ".join(parts)


def _fmt(x, spec: str = ".1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _row(rows: int, method: str, run: dict) -> str:
    ess_s = run["min_ess_bulk"] / run["total_s"]
    ess_s_nc = run["min_ess_bulk"] / run["no_compile_s"] if np.isfinite(run["no_compile_s"]) else float("nan")
    return (f"| {rows:,} | {method} | {_fmt(run['total_s'])} | {_fmt(run['compile_s'])} | "
            f"{_fmt(run['no_compile_s'])} | {run['min_ess_bulk']:.0f} | {ess_s:.1f} | {_fmt(ess_s_nc)} | "
            f"{run['divergences']} | {run['max_r_hat']:.3f} |")


def _targets(results: dict) -> list[str]:
    """Issue 6's targets, checked against this run."""
    out = ["", "## Targets of issue 6", ""]
    mid = results.get(50_000, {})
    if "cold" in mid.get("collapsed", {}) and "cold" in mid.get("full", {}):
        c, f = mid["collapsed"]["cold"], mid["full"]["cold"]
        r = (c["min_ess_bulk"] / c["total_s"]) / (f["min_ess_bulk"] / f["total_s"])
        out.append(f"- 50k rows, min-ESS/s collapsed >= 50x full (compile counted): {r:.0f}x, "
                   f"{'met' if r >= 50 else 'NOT met'}")
    if "cold" in mid.get("collapsed", {}):
        c = mid["collapsed"]["cold"]
        if "cold" in mid.get("bambi", {}):
            b = mid["bambi"]["cold"]
            secs, ess, where = b["total_s"], b["min_ess_bulk"], "measured here"
        else:
            _, secs, ess = QUOTED_BAMBI[50_000]
            where = "bambi + nutpie as quoted in BENCHMARK.md, another machine"
        r = (c["min_ess_bulk"] / c["total_s"]) / (ess / secs)
        out.append(f"- 50k rows, min-ESS/s collapsed >= 50x bambi ({where}): {r:.0f}x, {'met' if r >= 50 else 'NOT met'}")
    big = results.get(1_000_000, {}).get("collapsed", {})
    if "cold" in big:
        c, w = big["cold"], big.get("warm", {})
        div = c["divergences"] + w.get("divergences", 0)
        rhat = max(c["max_r_hat"], w.get("max_r_hat", 0.0))
        warm_s = w.get("total_s", float("nan"))
        checks = [
            ("whole run cold < 30 s", f"{c['total_s']:.1f} s", c["total_s"] < 30),
            ("whole run warm < 10 s", f"{warm_s:.1f} s", warm_s < 10),
            ("peak memory < 1.5 GB", f"{big['peak_rss_mb']:.0f} MB", big["peak_rss_mb"] < 1536),
            ("zero divergences (cold and warm)", str(div), div == 0),
            ("max R-hat < 1.01", f"{rhat:.3f}", rhat < 1.01),
        ]
        out += [f"- 1M rows, {name}: {value}, {'met' if ok else 'NOT met'}" for name, value, ok in checks]
        out.append(f"- (not counted above: importing lmm_bayes and nutpie, {big['import_s']:.1f} s in that process, "
                   f"and simulating the data, {big['simulate_s']:.1f} s)")
    if len(out) == 3:
        out.append("- not measured in this run (needs 50k rows with both methods, or 1M rows)")
    return out


def write_results(results: dict, path: Path, *, notes: list[str], load: tuple[str, str]) -> None:
    lines = [
        "# collapsed vs full: results",
        "",
        f"Written by `benchmarks/collapsed_vs_full.py` on {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Data: BENCHMARK.md (`{FORMULA}`, seed 0); {CHAINS} chains x ({TUNE} tune + {DRAWS} draws), nutpie.",
        f"Machine: {_machine()}. Load average (1, 5, 15 min) at start {load[0]}, at end {load[1]}:",
        "the machine is shared with other work, so wall times are noisy (up to ~2x under load).",
        f"Versions: {_versions()}.",
        "",
        "Times in seconds. *total* runs from the data frame (design, priors, sufficient statistics)",
        "to the finished fit (compile, sampling, exact draws of b, diagnostics); *compile* is nutpie's",
        "compile of the PyMC model; min ESS is the minimum bulk ESS over beta, sigma, the SDs and",
        "the correlation; ESS/s divides it by *total* (compile counted) or by *no compile*.",
        "Peak memory is the child process's maximum resident set size (Python, libraries and numba's",
        "compile included). Up to 4e7 chains x draws x rows, fit.py also stores the pointwise",
        "log-likelihood, whose temporaries set the peak of the small runs (about 1 GB at 2k rows).",
        "",
        "| rows | method | total | compile | no compile | min ESS | ESS/s | ESS/s no compile | divergences | max R-hat |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    memory = ["", "| rows | method | peak memory MB | of which before data MB |", "|---:|---|---:|---:|"]
    ratios = ["", "## Ratios (min-ESS per second, compile counted)", ""]
    warm = ["", "## Cold and warm collapsed runs", "",
            "Warm: the same model fitted again in the same process (compiled model reused, data swapped in).", "",
            "| rows | cold total | warm total | warm ESS | warm divergences | warm max R-hat |",
            "|---:|---:|---:|---:|---:|---:|"]
    for rows, by_method in results.items():
        for method, res in by_method.items():
            if "error" in res:
                lines.append(f"| {rows:,} | {method} | {res['error']} | | | | | | | |")
                continue
            lines.append(_row(rows, method, res["cold"]))
            memory.append(f"| {rows:,} | {method} | {res['peak_rss_mb']:.0f} | {res['baseline_rss_mb']:.0f} |")
            if "warm" in res:
                w = res["warm"]
                warm.append(f"| {rows:,} | {res['cold']['total_s']:.1f} | {w['total_s']:.1f} | "
                            f"{w['min_ess_bulk']:.0f} | {w['divergences']} | {w['max_r_hat']:.3f} |")
        col = by_method.get("collapsed", {}).get("cold")
        for other in ("full", "bambi"):
            ref = by_method.get(other, {}).get("cold")
            if col and ref:
                r = (col["min_ess_bulk"] / col["total_s"]) / (ref["min_ess_bulk"] / ref["total_s"])
                ratios.append(f"- {rows:,} rows: collapsed / {other} = {r:.0f}x "
                              f"({col['total_s']:.1f} s vs {ref['total_s']:.1f} s wall, "
                              f"min ESS {col['min_ess_bulk']:.0f} vs {ref['min_ess_bulk']:.0f})")
        if col and "bambi" not in by_method and rows in QUOTED_BAMBI:
            sampler, secs, ess = QUOTED_BAMBI[rows]
            r = (col["min_ess_bulk"] / col["total_s"]) / (ess / secs)
            ratios.append(f"- {rows:,} rows: collapsed / bambi ({sampler}, as quoted in BENCHMARK.md from another "
                          f"machine) = {r:.0f}x ({secs} s, min ESS {ess})")
    if len(ratios) == 3:
        ratios.append("- no size had both methods")
    lines += memory + ratios + warm + _targets(results) + ["", "## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="trials per neuron")
    parser.add_argument("--full-max-rows", type=int, default=50_000,
                        help="run method='full' only up to this many rows (default 50000)")
    parser.add_argument("--bambi-max-rows", type=int, default=2_000)
    parser.add_argument("--bambi-sampler", default="pymc", help="bambi's inference_method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--empty-cache", action="store_true", help="also time a first-ever compile (2k rows)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    has_bambi = importlib.util.find_spec("bambi") is not None
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    notes = []
    results: dict[int, dict] = {}
    for trials in args.sizes:
        rows = 20 * 25 * trials
        base = {"trials": trials, "seed": args.seed, "bambi_sampler": args.bambi_sampler}
        by_method: dict[str, dict] = {}
        if rows <= args.full_max_rows:
            by_method["full"] = run_child({**base, "method": "full"}, timeout=args.timeout)
        else:
            notes.append(f"{rows:,} rows: method='full' skipped (above --full-max-rows {args.full_max_rows:,}; "
                         "its cost per gradient grows with the rows)")
        by_method["collapsed"] = run_child({**base, "method": "collapsed", "warm": True}, timeout=args.timeout)
        if has_bambi and rows <= args.bambi_max_rows:
            by_method["bambi"] = run_child({**base, "method": "bambi"}, timeout=args.timeout)
        results[rows] = by_method
    if not has_bambi:
        notes.append("bambi is not installed here, so no bambi runs; BENCHMARK.md quotes bambi 0.21 measured "
                     "elsewhere on a similar 2-core machine: 18.5 s at 2k rows (min ESS 578, 6 divergences), "
                     "with nutpie 83.5 s at 50k (min ESS 67, R-hat 1.05); brms 2214 s at 50k (ESS 253).")
    if args.empty_cache:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp}"}
            res = run_child({"trials": 4, "seed": args.seed, "method": "collapsed"}, timeout=args.timeout, env=env)
        if "error" not in res:
            c = res["cold"]
            notes.append(f"first-ever compile (empty PyTensor cache), collapsed at 2k rows: total {c['total_s']:.1f} s, "
                         f"of which compile {c['compile_s']:.1f} s (numba compiles PyTensor's base operations once "
                         "per machine; later processes load them from the cache)")
    load_end = " ".join(f"{x:.1f}" for x in os.getloadavg())
    write_results(results, args.out, notes=notes, load=(load_start, load_end))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark: a formula never fitted before, in a fresh process (issue "instant fits").

Each run is a new Python process that imports lmm-bayes, builds ``LMM(...)`` and fits it
with 4 chains x (1000 tuning + 1000 kept) draws; *fit* is ``LMM()`` to ``Fit`` (design,
priors, statistics, sampling, exact b draws, pointwise log-likelihood, diagnostics), the
imports timed apart. Side by side, in the same script:

* ``kernel``: the default, the collapsed kernel compiled once per machine;
* ``graph``: the same collapsed model as a PyMC graph compiled by nutpie for this model
  (``sampling.USE_KERNEL = False``, the path before the kernel);
* ``lme4``: ``lmer(..., REML = TRUE)`` on the same CSV with ``Rscript``, when installed.

Data: sleepstudy (``Reaction ~ Days + (Days | Subject)``) and the nested data of
``collapsed_vs_full.py`` at 50k and 1M rows (``y ~ x + (1 + x | subject) + (1 | subject:neuron)``).
Also measured: the one-time warm-up with an empty numba cache (``NUMBA_CACHE_DIR`` pointed
at a new folder) and ``bash run.sh demo``. Results go to ``benchmarks/RESULTS_instant.md``.

Usage::

    python benchmarks/instant_fits.py              # everything
    python benchmarks/instant_fits.py --quick      # sleepstudy and 50k only, no graph at 1M
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from collapsed_vs_full import _machine, _versions, lme4_reml_seconds, simulate

NESTED = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def _data(case: str):
    import lmm_bayes as lb

    if case == "sleepstudy":
        return SLEEP, lb.datasets.load("sleepstudy")
    trials = {"50k": 100, "1M": 2000}[case]
    return NESTED, simulate(trials, seed=0)


def child(spec: dict) -> dict:
    t = time.perf_counter()
    import lmm_bayes as lb
    from lmm_bayes.inference import sampling

    import_s = time.perf_counter() - t
    sampling.USE_KERNEL = spec["engine"] == "kernel"
    formula, df = _data(spec["case"])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.LMM(formula, df).fit(seed=1, progressbar=False)
    fit_s = time.perf_counter() - t0
    d = fit.diagnostics()
    return {
        "rows": len(df), "import_s": import_s, "fit_s": fit_s, "min_ess_bulk": d["min_ess_bulk"],
        "divergences": d["divergences"], "max_r_hat": d["max_r_hat"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(spec: dict, env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    print(f"running {spec} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  fit {out['fit_s']:.1f} s, min ESS {out['min_ess_bulk']:.0f}", flush=True)
    return out


def lme4(case: str) -> dict:
    """lme4 REML on the same data (see :func:`collapsed_vs_full.lme4_reml_seconds`)."""
    return lme4_reml_seconds(*reversed(_data(case)))


def warm_up_cold() -> float:
    """The one-time compile: a new process with an empty numba cache folder."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NUMBA_CACHE_DIR": tmp}
        code = "from lmm_bayes.inference.methods import kernel_loader as k; print(k.warm_up())"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        return float(proc.stdout.split()[-1])


def demo_seconds() -> float:
    """``bash run.sh demo`` on a set-up machine: run once (which sets up if pyproject changed), then timed."""
    subprocess.run(["bash", "run.sh", "demo"], cwd=ROOT, capture_output=True, check=True)
    t = time.perf_counter()
    subprocess.run(["bash", "run.sh", "demo"], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    cases = ["sleepstudy", "50k"] + ([] if args.quick else ["1M"])
    load_start = os.getloadavg()
    warm = warm_up_cold()
    print(f"one-time warm-up: {warm:.1f} s", flush=True)
    rows = []
    for case in cases:
        for engine in ("kernel", "graph"):
            rows.append((case, engine, run_child({"case": case, "engine": engine})))
        rows.append((case, "lme4 REML", lme4(case)))
    demo = None if args.quick else demo_seconds()
    write(rows, warm, demo, load_start, os.getloadavg())


def write(rows, warm: float, demo: float | None, load_start, load_end) -> None:
    lines = [
        "# Instant fits: results",
        "",
        f"Written by `benchmarks/instant_fits.py` on {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Machine: {_machine()}. Load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}.",
        f"Versions: {_versions()}.",
        "",
        "Each lmm-bayes row is a fresh process fitting a formula it never fitted (4 chains x 1000 + 1000",
        "draws, nutpie); *fit* is `LMM()` to `Fit`, the imports apart. *kernel* is the default (collapsed",
        "kernel compiled once per machine, loaded from numba's cache); *graph* compiles the same",
        "collapsed model as a PyMC graph for this model (the path before). lme4: `lmer(REML = TRUE)`",
        "timed inside R on the same data.",
        "",
        "| data | rows | engine | import s | fit s | min bulk ESS | divergences | max R-hat | peak MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, engine, r in rows:
        if not r:
            lines.append(f"| {case} | | {engine} | | not installed | | | | |")
        elif "error" in r:
            lines.append(f"| {case} | | {engine} | | error: {r['error']} | | | | |")
        elif engine == "lme4 REML":
            lines.append(f"| {case} | | {engine} | | {r['fit_s']:.2f} | | | | |")
        else:
            lines.append(
                f"| {case} | {r['rows']:,} | {engine} | {r['import_s']:.1f} | {r['fit_s']:.2f} | "
                f"{r['min_ess_bulk']:.0f} | {r['divergences']} | {r['max_r_hat']:.3f} | {r['peak_rss_mb']:.0f} |"
            )
    by = {(c, e): r for c, e, r in rows}
    lines += ["", "## Ratios and targets", ""]
    for case in dict.fromkeys(c for c, _, _ in rows):
        k, g = by.get((case, "kernel"), {}), by.get((case, "graph"), {})
        if "fit_s" in k and "fit_s" in g:
            lines.append(f"- {case}: graph / kernel fit time = {g['fit_s'] / k['fit_s']:.1f}x")
        lm = by.get((case, "lme4 REML"), {})
        if "fit_s" in k and "fit_s" in lm:
            lines.append(f"- {case}: kernel / lme4 REML fit time = {k['fit_s'] / lm['fit_s']:.2f}x")
    lines.append(f"- one-time warm-up (empty numba cache, new process): {warm:.1f} s (target < 60 s)")
    if demo is not None:
        lines.append(f"- `bash run.sh demo` on a set-up machine: {demo:.1f} s (target < 10 s)")
    targets = {"sleepstudy": 2.0, "50k": 4.0, "1M": 10.0}
    for case, limit in targets.items():
        r = by.get((case, "kernel"), {})
        if "fit_s" in r:
            met = "met" if r["fit_s"] < limit else "NOT met"
            lines.append(f"- {case}: kernel fit {r['fit_s']:.2f} s (target < {limit:g} s): {met}")
    (HERE / "RESULTS_instant.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmark: many clusters (issue "many clusters"), side by side with lme4 when R is installed.

Nested data of ``collapsed_vs_full.py`` (``y ~ x + (1 + x | subject) + (1 | subject:neuron)``),
4 chains x (1000 tuning + 1000 kept) draws, every run in a fresh process:

* fixed rows: 10^6 rows with 500, 5,000, 20,000 and 100,000 neurons (the finest clusters);
* fixed trials per neuron (50): 500, 5,000, 20,000 and 100,000 neurons;
* 10^7 rows, 100,000 neurons in 1,000 subjects, b kept as float32 (``keep_b="float32"``).

Per run: ``LMM()`` (design), the fit in the new process (*cold*: the kernel loaded from
numba's cache, sampling, exact b draws) and again in the same process (*warm*), the time
of one gradient, min bulk ESS, divergences, max R-hat and the process's peak memory.
lme4: ``lmer(REML = TRUE)`` timed inside R on the same data written to CSV.
Results go to ``benchmarks/RESULTS_many_clusters.md``.

Usage::

    python benchmarks/many_clusters.py            # everything (about 20 minutes on 2 cores)
    python benchmarks/many_clusters.py --quick    # the 10^6-row runs only, no lme4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collapsed_vs_full import _machine, _versions, lme4_reml_seconds, simulate

FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
#: (subjects, neurons per subject, trials per neuron)
FIXED_ROWS = [(20, 25, 2000), (50, 100, 200), (200, 100, 50), (1000, 100, 10)]
FIXED_TRIALS = [(20, 25, 50), (50, 100, 50), (200, 100, 50), (1000, 100, 50)]
TEN_MILLION = (1000, 100, 100)


def _gradient_ms(model) -> float:
    from lmm_bayes.inference.methods.registry import resolve_method

    method, _ = resolve_method(model.design, "collapsed")
    packed = method.kernel_model(model.priors)
    x = packed.start + 0.1
    packed.log_density(x)
    n, t = 200, time.perf_counter()
    for _ in range(n):
        packed.log_density(x)
    return (time.perf_counter() - t) / n * 1e3


def child(spec: dict) -> dict:
    import lmm_bayes as lb

    df = simulate(spec["trials"], subjects=spec["subjects"], neurons=spec["neurons"], seed=0)
    t = time.perf_counter()
    model = lb.LMM(FORMULA, df)
    out = {"rows": len(df), "clusters": spec["subjects"] * spec["neurons"], "design_s": time.perf_counter() - t}
    out["gradient_ms"] = _gradient_ms(model)
    for run in ("cold", "warm")[: 1 + spec.get("warm", True)]:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(seed=1, progressbar=False, keep_b=spec.get("keep_b", "all"))
        d = fit.diagnostics()
        out[run] = {"fit_s": time.perf_counter() - t, "min_ess_bulk": d["min_ess_bulk"],
                    "divergences": d["divergences"], "max_r_hat": d["max_r_hat"]}
        del fit
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(spec: dict) -> dict:
    print(f"running {spec} ...", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  cold {out['cold']['fit_s']:.1f} s, peak {out['peak_rss_mb']:.0f} MB", flush=True)
    return out


def lme4(spec: dict) -> float | None:
    """lme4 REML fit time on the same data, or None without R (or when R fails)."""
    df = simulate(spec["trials"], subjects=spec["subjects"], neurons=spec["neurons"], seed=0)
    return lme4_reml_seconds(df, FORMULA).get("fit_s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    load_start = os.getloadavg()
    sections = [("10^6 rows", FIXED_ROWS)] + ([] if args.quick else [("50 trials per neuron", FIXED_TRIALS)])
    results = []
    for title, sizes in sections:
        for subjects, neurons, trials in sizes:
            spec = {"subjects": subjects, "neurons": neurons, "trials": trials}
            r = run_child(spec)
            # lme4 on the fixed-rows runs (the comparison the issue asks for); the others would add ~10 min
            r["lme4_s"] = None if args.quick or title != "10^6 rows" else lme4(spec)
            results.append((title, spec, r))
    if not args.quick:
        s, n, t = TEN_MILLION
        spec = {"subjects": s, "neurons": n, "trials": t, "keep_b": "float32", "warm": False}
        results.append(("10^7 rows, b as float32", spec, run_child(spec)))
    write(results, load_start, os.getloadavg())


def write(results, load_start, load_end) -> None:
    lines = [
        "# Many clusters: results",
        "",
        f"Written by `benchmarks/many_clusters.py` on {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Machine: {_machine()}. Load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}.",
        f"Versions: {_versions()}.",
        "",
        f"`{FORMULA}`, 4 chains x (1000 + 1000) draws, nutpie, every run a fresh process. *cold*: the",
        "first fit in the process (kernel loaded from numba's cache); *warm*: the same model again.",
        "Fit times run from `LMM.fit` to the finished `Fit` (sampling, exact b draws, diagnostics);",
        "*design* is `LMM()`. Peak memory is the process's maximum resident set size.",
        "",
        ("| runs | rows | neurons | design s | gradient ms | cold fit s | warm fit s | lme4 REML s "
         "| min ESS | div. | max R-hat | peak MB |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for title, spec, r in results:
        if "error" in r:
            lines.append(f"| {title} | | {spec['subjects'] * spec['neurons']:,} | error: {r['error']} |" + " |" * 8)
            continue
        warm = r.get("warm", {})
        lme = r.get("lme4_s")
        lines.append(
            f"| {title} | {r['rows']:,} | {r['clusters']:,} | {r['design_s']:.1f} | {r['gradient_ms']:.3f} | "
            f"{r['cold']['fit_s']:.1f} | {warm.get('fit_s', float('nan')):.1f} | "
            f"{'' if lme is None else f'{lme:.1f}'} | {r['cold']['min_ess_bulk']:.0f} | {r['cold']['divergences']} | "
            f"{r['cold']['max_r_hat']:.3f} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "## Targets", ""]
    for title, spec, r in results:
        if "error" in r:
            continue
        if title == "10^6 rows" and r["clusters"] == 20_000:
            warm = r["warm"]["fit_s"]
            lines.append(f"- 10^6 rows, 20,200 clusters: warm fit {warm:.1f} s (target <= 10 s), peak "
                         f"{r['peak_rss_mb']:.0f} MB with all b kept (target <= 1,500 MB)")
        if title.startswith("10^7"):
            whole = r["design_s"] + r["cold"]["fit_s"]
            lines.append(f"- 10^7 rows, 100,000 neurons: LMM() + fit {whole:.0f} s (target <= 120 s), peak "
                         f"{r['peak_rss_mb']:.0f} MB with b as float32 (target <= 6,000 MB)")
    (HERE / "RESULTS_many_clusters.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

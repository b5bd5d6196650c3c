"""Benchmark: data beyond memory (issue 17) — the nested benchmark from partitioned Parquet through Dask.

The data of ``BENCHMARK.md`` (``y ~ x + (1 + x | subject) + (1 | subject:neuron)``, 20 subjects
x 25 neurons, the same parameters) with ``rows / 500`` trials per neuron, generated straight
into Parquet files of at most 10^6 rows each (one file at a time, in a child process, so no
process ever holds the data), then:

* **Dask**: a ``LocalCluster`` of 2 single-threaded worker processes; ``lb.LMM.from_parquet``
  (levels, then the sufficient statistics: "time to statistics"), then ``fit`` (4 chains x
  (1000 tuning + 1000 kept), nutpie, seed 1). Peak memory of the client process and of each
  worker (``ru_maxrss``, read on each worker with ``client.run``).
* **in memory** (up to ``--memory-max-rows``, 10^6 by default): the same files read with
  pandas, ``lb.LMM`` and the same fit in a child process, its peak memory; the sufficient
  statistics compared with Dask's (largest relative difference) and the hyperparameter means
  (largest |difference| in combined MCSE).

Results go to ``benchmarks/beyond_memory.json`` (one entry per row count, kept across runs)
and to the marked section of ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/beyond_memory.py --rows 1000000
    python benchmarks/beyond_memory.py --rows 10000000
    python benchmarks/beyond_memory.py --rows 100000000 --data /big/disk/lmm   # 10^8: ~10 GB of Parquet
"""

from __future__ import annotations

import argparse
import json
import os
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collapsed_vs_full import _machine, _versions  # noqa: E402

FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
SUBJECTS, NEURONS = 20, 25
FILE_ROWS = 1_000_000
START, END = "<!-- beyond memory: start (benchmarks/beyond_memory.py) -->", "<!-- beyond memory: end -->"
JSON = HERE / "beyond_memory.json"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------- data


def generate(folder: Path, rows: int, seed: int = 0) -> dict:
    """The nested benchmark data written file by file (rows in subject, neuron, trial order).

    The random effects are drawn once from ``seed``; each file's x and noise from (seed, file).
    """
    trials = rows // (SUBJECTS * NEURONS)
    if trials * SUBJECTS * NEURONS != rows:
        raise SystemExit(f"--rows must be a multiple of {SUBJECTS * NEURONS}")
    rng = np.random.default_rng(seed)
    sd, corr = np.array([1.0, 0.5]), -0.4
    G = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b_subject = rng.multivariate_normal(np.zeros(2), G, size=SUBJECTS)
    b_neuron = rng.normal(0.0, 0.7, size=(SUBJECTS, NEURONS))
    subject_labels = np.array([f"s{i + 1}" for i in range(SUBJECTS)])
    neuron_labels = np.array([f"n{j + 1}" for j in range(NEURONS)])
    per_file = min(FILE_ROWS, max(rows // 4, 1))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    n_files = 0
    for k, start in enumerate(range(0, rows, per_file)):
        r = np.arange(start, min(start + per_file, rows))
        s, nn = r // (NEURONS * trials), (r // trials) % NEURONS
        frng = np.random.default_rng([seed, k])
        x = frng.standard_normal(r.size)
        y = 5.0 + 1.5 * x + b_subject[s, 0] + b_subject[s, 1] * x + b_neuron[s, nn] + frng.normal(0.0, 2.0, r.size)
        pd.DataFrame({"y": y, "x": x, "subject": subject_labels[s], "neuron": neuron_labels[nn]}).to_parquet(
            folder / f"part-{k:05d}.parquet", index=False)
        n_files += 1
    return {"generate_s": time.perf_counter() - t, "files": n_files, "peak_mb": _peak_mb()}


# ---------------------------------------------------------------------------- runs


def _fit_summary(fit, t: float) -> dict:
    import arviz as az

    from lmm_bayes.inference.layout import hyperparameter_draws, hyperparameters

    draws = hyperparameter_draws(fit.posterior, hyperparameters(fit.design))
    d = fit.diagnostics()
    return {"fit_s": time.perf_counter() - t, "divergences": int(d["divergences"]),
            "max_r_hat": float(d["max_r_hat"]), "min_ess_bulk": float(d["min_ess_bulk"]),
            "means": draws.mean(("chain", "draw")).values.tolist(),
            "mcse": az.mcse(draws).values.tolist()}


def _stats_arrays(model) -> dict:
    from lmm_bayes.inference.methods.collapsed.sufficient import sufficient_statistics

    s = sufficient_statistics(model.design)
    out = {"XtX": s.XtX, "Xty": s.Xty, "yty": np.array([s.yty])}
    for k, lev in enumerate(s.levels):
        for name in ("ZtZ", "ZtA", "ZtX", "Zty"):
            out[f"{k}_{name}"] = getattr(lev, name)
    return out


def run_dask(folder: Path, draws: int, tune: int, stats_out: Path) -> dict:
    from dask.distributed import Client, LocalCluster

    import lmm_bayes as lb

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="4GiB") as cluster, Client(cluster) as client:
        t = time.perf_counter()
        model = lb.LMM.from_parquet(folder / "*.parquet", FORMULA, progress=False)
        out = {"stats_s": time.perf_counter() - t}
        workers = client.run(_peak_mb)
    np.savez(stats_out, **_stats_arrays(model))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=draws, tune=tune, seed=1, progressbar=False)
    out.update(_fit_summary(fit, t))
    out["sample_rows"] = fit.design.n
    out["client_peak_mb"] = _peak_mb()
    out["worker_peak_mb"] = sorted(workers.values())
    return out


def run_memory(folder: Path, draws: int, tune: int, stats_out: Path) -> dict:
    import lmm_bayes as lb

    t = time.perf_counter()
    df = pd.read_parquet(folder)
    model = lb.LMM(FORMULA, df)
    out = {"design_s": time.perf_counter() - t}
    del df
    np.savez(stats_out, **_stats_arrays(model))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=draws, tune=tune, seed=1, progressbar=False)
    out.update(_fit_summary(fit, t))
    out["peak_mb"] = _peak_mb()
    return out


def _child(kind: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(dask_run: dict, memory_run: dict, a: Path, b: Path) -> dict:
    sa, sb = np.load(a), np.load(b)
    rel = max(float(np.max(np.abs(sa[k] - sb[k])) / max(np.max(np.abs(sa[k])), 1e-300)) for k in sa.files if sa[k].size)
    m1, m2 = np.array(dask_run["means"]), np.array(memory_run["means"])
    se = np.sqrt(np.array(dask_run["mcse"]) ** 2 + np.array(memory_run["mcse"]) ** 2)
    return {"stats_max_rel_diff": rel, "max_mean_diff_in_mcse": float(np.max(np.abs(m1 - m2) / se))}


# ---------------------------------------------------------------------------- report


def _row(rows: int, r: dict) -> str:
    d, m, c = r["dask"], r.get("memory"), r.get("compare", {})
    mem = (f"{m['design_s']:.1f} + {m['fit_s']:.1f} s, {m['peak_mb']:,.0f} MB" if m else "not run")
    cmp = (f"{c['stats_max_rel_diff']:.1e} / {c['max_mean_diff_in_mcse']:.2f}" if c else "—")
    return (f"| {rows:,} | {r['data']['files']} | {r['data']['generate_s']:.0f} | {d['stats_s']:.1f} | "
            f"{d['fit_s']:.1f} | {d['stats_s'] + d['fit_s']:.1f} | {d['client_peak_mb']:,.0f} | "
            f"{' / '.join(f'{w:,.0f}' for w in d['worker_peak_mb'])} | {d['divergences']} | {d['max_r_hat']:.3f} | "
            f"{d['min_ess_bulk']:.0f} | {mem} | {cmp} | {r['load']} |")


def write(results: dict, path: Path = HERE / "RESULTS.md") -> None:
    lines = [START, "", "## Data beyond memory (`python benchmarks/beyond_memory.py --rows N`)", "",
             f"Machine: {_machine()}.", f"Versions: {_versions()}.",
             f"`{FORMULA}`, {SUBJECTS} subjects x {NEURONS} neurons, Parquet files of at most "
             f"{FILE_ROWS:,} rows; Dask: `LocalCluster(n_workers=2, threads_per_worker=1)`, "
             "`lb.LMM.from_parquet` then `fit(seed=1)` (4 chains x 1000 + 1000, nutpie). "
             "Statistics = both passes over the files (levels, sums); peak memory = `ru_maxrss` "
             "(client: the whole process, fit included). In memory: `pd.read_parquet` + `lb.LMM` + the same "
             "fit in a fresh process. Agreement: largest relative difference of the sufficient statistics "
             "/ largest hyperparameter-mean difference in combined MCSE (issue 17: < 1e-9 and < 4).", "",
             "| rows | files | generate s | statistics s | fit s | total s | client MB | worker MB | div | "
             "max R-hat | min ESS | in memory (design + fit, peak) | stats rel diff / means in MCSE | load 1 min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(int(k), results[k]) for k in sorted(results, key=int)]
    lines += ["", END]
    text = path.read_text() if path.exists() else ""
    block = "\n".join(lines)
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="a multiple of 500 (10^6, 10^7, 10^8)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--memory-max-rows", type=int, default=1_000_000,
                    help="also fit in memory up to this many rows (10^7 rows need about 12 GB)")
    ap.add_argument("--data", type=Path, default=None, help="folder for the Parquet files (default: a temporary one)")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "generate":
            out = generate(Path(rest[0]), int(rest[1]))
        else:
            run = run_dask if kind == "dask" else run_memory
            out = run(Path(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]))
        print(json.dumps(out))
        return
    folder = args.data or Path(tempfile.mkdtemp(prefix="lmm_beyond_")) / "data"
    work = folder.parent
    try:
        load = f"{os.getloadavg()[0]:.1f}"
        result: dict = {"data": _child("generate", str(folder), str(args.rows))}
        print("generated", result["data"], flush=True)
        result["dask"] = _child("dask", str(folder), str(args.draws), str(args.tune), str(work / "dask.npz"))
        print("dask", {k: v for k, v in result["dask"].items() if k not in ("means", "mcse")}, flush=True)
        if args.rows <= args.memory_max_rows:
            result["memory"] = _child("memory", str(folder), str(args.draws), str(args.tune), str(work / "mem.npz"))
            print("memory", {k: v for k, v in result["memory"].items() if k not in ("means", "mcse")}, flush=True)
            result["compare"] = compare(result["dask"], result["memory"], work / "dask.npz", work / "mem.npz")
            print("compare", result["compare"], flush=True)
        result["load"] = f"{load} → {os.getloadavg()[0]:.1f}"
    finally:
        if not args.keep_data:
            shutil.rmtree(folder, ignore_errors=True)
            for f in ("dask.npz", "mem.npz"):
                (work / f).unlink(missing_ok=True)
    results = json.loads(JSON.read_text()) if JSON.exists() else {}
    results[str(args.rows)] = result
    JSON.write_text(json.dumps(results, indent=1))
    write(results)


if __name__ == "__main__":
    main()

"""Benchmark: crossed designs, the collapsed method (blocked Cholesky) and the Gibbs sampler against the full method.

Two designs, each fitted with 4 chains x (1000 tuning + 1000 kept) draws by nutpie, in a
fresh child process per (design, method) so that time (the full method's compile included)
and peak memory are each run's own:

* (a) 60 subjects x 40 items, a 2 x 2 design within subject and within item (every subject
  sees every item in all four conditions, 9,600 rows), the maximal model
  ``y ~ a * b + (1 + a * b | subject) + (1 + a * b | item)``;
* (b) 3,000 students x 1,100 lecturers x 14 departments, crossed random intercepts, 75,000
  rows (the shape of lme4's InstEval): ``y ~ 1 + (1 | student) + (1 | lecturer) + (1 | dept)``.

Design (b) also runs ``method="gibbs"`` (:mod:`lmm_bayes.inference.methods.gibbs.sampler`, the collapsed Gibbs
sampler for random intercepts, what ``method="auto"`` picks there). A method named in ``--short``
runs at ``--short-draws`` draws and tuning instead (the collapsed HMC on (b) takes ~40 minutes at
1000 + 1000); the table gives each run's own draws. bambi runs too when it is installed, and lme4's
REML fit when ``Rscript`` with lme4 is.
The results table goes into ``benchmarks/RESULTS.md``, between the crossed-design markers
(the rest of that file is ``collapsed_vs_full.py``'s).

Usage::

    python benchmarks/crossed.py                      # both designs, both methods
    python benchmarks/crossed.py --designs a          # one design
    python benchmarks/crossed.py --draws 200          # a quicker smoke run (not for the table)
    python benchmarks/crossed.py --designs b --methods gibbs full collapsed --short collapsed
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from collapsed_vs_full import _machine, _versions, lme4_reml_seconds  # noqa: E402

FORMULAS = {
    "a": "y ~ a * b + (1 + a * b | subject) + (1 + a * b | item)",
    "b": "y ~ 1 + (1 | student) + (1 | lecturer) + (1 | dept)",
}
TITLES = {"a": "(a) 60 subjects x 40 items, 2x2 within both, maximal slopes",
          "b": "(b) 3,000 x 1,100 x 14 crossed intercepts (InstEval's shape)"}
START, END = "<!-- crossed designs: start (benchmarks/crossed.py) -->", "<!-- crossed designs: end -->"


def simulate_a(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    S, I = 60, 40
    s, i, a, b = (x.ravel() for x in np.meshgrid(np.arange(S), np.arange(I), [-0.5, 0.5], [-0.5, 0.5], indexing="ij"))
    Zrow = np.column_stack([np.ones_like(a), a, b, a * b])

    def effects(sd, n):
        R = np.full((4, 4), 0.2) + 0.8 * np.eye(4)
        return rng.multivariate_normal(np.zeros(4), np.outer(sd, sd) * R, size=n)

    bs, bi = effects([1.0, 0.4, 0.3, 0.2], S), effects([0.6, 0.3, 0.2, 0.1], I)
    y = Zrow @ np.array([0.0, 0.5, 0.3, 0.2]) + (Zrow * bs[s]).sum(1) + (Zrow * bi[i]).sum(1) + rng.normal(0, 1.0, s.size)
    return pd.DataFrame({"y": y, "a": a, "b": b, "subject": [f"s{k}" for k in s], "item": [f"i{k}" for k in i]})


def simulate_b(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, S, D, P = 75_000, 3000, 1100, 14
    student, lecturer = rng.integers(0, S, n), rng.integers(0, D, n)
    home = rng.integers(0, P, D)  # a lecturer teaches mostly in one department
    dept = np.where(rng.random(n) < 0.8, home[lecturer], rng.integers(0, P, n))
    y = (3.2 + rng.normal(0, 0.32, S)[student] + rng.normal(0, 0.52, D)[lecturer] + rng.normal(0, 0.1, P)[dept]
         + rng.normal(0, 1.18, n))
    return pd.DataFrame({"y": y, "student": [f"s{k}" for k in student], "lecturer": [f"d{k}" for k in lecturer],
                         "dept": [f"p{k}" for k in dept]})


SIMULATE = {"a": simulate_a, "b": simulate_b}


# ---------------------------------------------------------------------------- child: one run


def _lmm(df: pd.DataFrame, formula: str, method: str, draws: int, tune: int, seed: int) -> dict:
    import lmm_bayes as lb

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.LMM(formula, df).fit(method=method, draws=draws, tune=tune, chains=4, seed=seed, progressbar=False)
    total = time.perf_counter() - t0
    d = fit.diagnostics()
    hyper = [v for v in fit.posterior.data_vars if not v.endswith("_b")]
    return {"total_s": total, "min_ess_bulk": d["min_ess_bulk"], "divergences": d["divergences"],
            "max_r_hat": d["max_r_hat"], "method": fit.method,
            "means": {v: np.asarray(fit.posterior[v].mean(("chain", "draw"))).round(3).ravel().tolist()[:4]
                      for v in hyper}}


def _bambi(df: pd.DataFrame, formula: str, draws: int, tune: int, seed: int) -> dict:
    import arviz as az
    import bambi as bmb

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = bmb.Model(formula, df).fit(draws=draws, tune=tune, chains=4, random_seed=seed,
                                           inference_method="nutpie")
    post = idata.posterior
    hyper = [v for v, da in post.data_vars.items()
             if not v.endswith("_offset") and not any("__factor_dim" in dim for dim in da.dims)]
    return {"total_s": time.perf_counter() - t0,
            "min_ess_bulk": min(float(np.nanmin(np.asarray(az.ess(post[v], method="bulk")))) for v in hyper),
            "divergences": int(idata.sample_stats["diverging"].sum()),
            "max_r_hat": max(float(np.nanmax(np.asarray(az.rhat(post[v])))) for v in hyper), "method": "bambi"}


def child(spec: dict) -> dict:
    df = SIMULATE[spec["design"]](spec["seed"])
    formula = FORMULAS[spec["design"]]
    if spec["method"] == "bambi":
        out = _bambi(df, formula, spec["draws"], spec["tune"], spec["seed"])
    else:
        out = _lmm(df, formula, spec["method"], spec["draws"], spec["tune"], spec["seed"])
    out["rows"] = len(df)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


# ---------------------------------------------------------------------------- parent


def run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    print(f"running design {spec['design']} / {spec['method']} ...", flush=True)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {out['total_s']:.1f} s, min ESS {out['min_ess_bulk']:.0f}", flush=True)
    return out


def _section(design: str, runs: dict, draws: int, tune: int) -> list[str]:
    lines = [f"### {TITLES[design]}", "", f"`{FORMULAS[design]}`, 4 chains x {draws} draws ({tune} tuning) "
             "unless a row says otherwise.", "",
             "| method | draws (tuning) per chain | seconds | min bulk ESS | ESS / s | divergences | max R-hat "
             "| peak MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, r in runs.items():
        if method in ("lme4", "load"):
            continue
        if "error" in r:
            lines.append(f"| {method} | | {r['error']} | | | | | |")
            continue
        lines.append(f"| {method} | {r.get('draws', draws)} ({r.get('tune', tune)}) | {r['total_s']:.1f} | "
                     f"{r['min_ess_bulk']:.0f} | "
                     f"{r['min_ess_bulk'] / r['total_s']:.2f} | {r['divergences']} | {r['max_r_hat']:.3f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    f = runs.get("full", {})
    for method in ("collapsed", "gibbs"):
        c = runs.get(method, {})
        if "total_s" in c and "total_s" in f:
            ratio = (c["min_ess_bulk"] / c["total_s"]) / (f["min_ess_bulk"] / f["total_s"])
            lines += ["", f"{method.capitalize()} / full, min-ESS per second: **{ratio:.1f}x**."]
    if runs.get("load"):
        lines += ["", f"Load average (1, 5, 15 min) when this design started: {runs['load']} on a shared machine."]
    if runs.get("lme4", {}).get("fit_s") is not None:
        lines += ["", f"lme4 REML point estimates (no posterior): {runs['lme4']['fit_s']:.1f} s."]
    return [*lines, ""]


def write(results: dict, draws: int, tune: int, path: Path = HERE / "RESULTS.md") -> None:
    """Replace the sections of the designs run now; keep the others' from the last run."""
    text = path.read_text() if path.exists() else ""
    sections: dict[str, str] = {}
    if START in text and END in text:
        old = text[text.index(START) : text.index(END)]
        for part in old.split("### ")[1:]:
            sections[part[1]] = "### " + part.rstrip() + "\n"  # "(a) ..." -> "a"
    for design, runs in results.items():
        sections[design] = "\n".join(_section(design, runs, draws, tune))
    head = [START, "", "## Crossed designs (`python benchmarks/crossed.py`)", "",
            f"Machine: {_machine()}.", f"Versions: {_versions()}.",
            "nutpie (gibbs: its own compiled sweeps, chains in threads); time from `LMM()` to `Fit` in a fresh "
            "process (the full method's compile included; the collapsed and Gibbs kernels loaded from numba's "
            "cache, compiled once per machine; b drawn); min bulk ESS over the hyperparameters "
            "(beta, sigma, SDs, correlations).", ""]
    block = "\n".join(head) + "\n" + "\n".join(sections[k] for k in sorted(sections)) + "\n" + END
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--designs", nargs="+", default=["a", "b"], choices=["a", "b"])
    ap.add_argument("--methods", nargs="+", default=["collapsed", "full", "gibbs"],
                    choices=["collapsed", "full", "gibbs"], help="gibbs runs on design (b) only (intercepts)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--short", nargs="*", default=[], choices=["collapsed", "full", "gibbs"],
                    help="methods run at --short-draws draws and tuning")
    ap.add_argument("--short-draws", type=int, default=250)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-write", action="store_true", help="print only (smoke runs)")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    results: dict = {}
    for design in args.designs:
        runs = results.setdefault(design, {})
        runs["load"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        methods = [m for m in args.methods if m != "gibbs" or design == "b"]
        methods += ["bambi"] if importlib.util.find_spec("bambi") else []
        for method in methods:
            short = method in args.short
            draws, tune = (args.short_draws, args.short_draws) if short else (args.draws, args.tune)
            runs[method] = run_child({"design": design, "method": method, "seed": 1, "draws": draws, "tune": tune},
                                     args.timeout)
            runs[method].update(draws=draws, tune=tune)
        runs["lme4"] = lme4_reml_seconds(SIMULATE[design](1), FORMULAS[design])
    print(json.dumps(results, indent=1))
    if not args.no_write:
        write(results, args.draws, args.tune)


if __name__ == "__main__":
    main()

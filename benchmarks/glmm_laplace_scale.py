"""Benchmark: how the GLMM Laplace method scales with rows (issue 20's 10^6-row target).

The data of ``benchmarks/glmm_full.py`` (nested spike counts, ``spikes ~ x + (1 + x | subject) +
(1 | subject:neuron)``, Poisson, x continuous per trial) at growing sizes. Per size:

* the model and the Laplace layout, built once (seconds);
* one gradient of the Laplace marginal from zero modes (cold) and from the modes of nearby
  parameters (warm, as inside a chain), mean of five;
* one draw of b after sampling (4 proposals per block) for 40 draws spread like a posterior,
  the Newton iterations started from zero and from the modes at the draws' mean;
* with ``--fit``: a whole ``method="laplace"`` fit (``--chains`` x (``--tune`` + ``--draws``)),
  wall seconds, gradient evaluations, min bulk ESS, the check's Pareto k.

With ``--conditions K`` x takes K evenly spaced values (trial conditions, e.g. a stimulus off
and on) instead of a continuous value per trial: a neuron's trials under one condition share
their linear predictor and the Laplace method pools them into one row (``laplace._pooled``).

Usage::

    python benchmarks/glmm_laplace_scale.py                       # gradients at 2e4, 1e5, 1e6 rows
    python benchmarks/glmm_laplace_scale.py --fit --sizes 20000 1000000 --draws 300 --tune 300
    python benchmarks/glmm_laplace_scale.py --fit --conditions 2 --sizes 1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from glmm_full import FORMULA, simulate

HERE = Path(__file__).resolve().parent
# (subjects, neurons per subject, trials per neuron) per size
SHAPES = {20_000: (20, 25, 40), 100_000: (40, 50, 50), 1_000_000: (100, 100, 100)}


def gradients(model) -> dict:
    from lmm_bayes.inference.methods.laplace.system import LaplaceSystem

    t = time.perf_counter()
    system = LaplaceSystem.from_design(model.design)
    layout = time.perf_counter() - t
    G = np.array([[0.25, -0.03], [-0.03, 0.04]])
    Ginv = np.zeros((2, 2, 2))
    Ginv[0], Ginv[1, 0, 0] = np.linalg.inv(G), 1 / 0.09
    logdet = np.array([np.linalg.slogdet(G)[1], np.log(0.09)])
    beta = np.array([1.5, 0.3])
    system.marginal(beta, 1.0, Ginv, logdet)  # loads the compiled loops
    t = time.perf_counter()
    system.marginal(beta, 1.0, Ginv, logdet)
    cold = time.perf_counter() - t
    near = system.modes(beta * 1.02, Ginv * 1.05)
    t = time.perf_counter()
    for _ in range(5):
        system.marginal(beta, 1.0, Ginv, logdet, start=near.copy())
    warm = (time.perf_counter() - t) / 5
    draw_zero, draw_mean = draw_times(system, beta, Ginv)
    return {"layout_s": layout, "cold_ms": cold * 1e3, "warm_ms": warm * 1e3,
            "draw_ms_from_zero": draw_zero, "draw_ms": draw_mean,
            "largest_block": int(np.diff(system.arrays[7]).max()), "rows_in_loops": int(system.arrays[1].size)}


def draw_times(system, beta, Ginv, n_draws: int = 40) -> tuple[float, float]:
    """Milliseconds per draw of b after sampling (``laplace.kernel.draw_effects``, 4 proposals per
    block, 2 threads) for draws spread like a posterior, with every draw's Newton iterations
    started from zero and from the modes at the draws' mean (what ``draw_laplace_effects`` does)."""
    from lmm_bayes.inference.methods.laplace import kernel as lk

    rng = np.random.default_rng(0)
    betas = beta + 0.02 * rng.standard_normal((n_draws, beta.size))
    Ginvs = Ginv * np.exp(0.1 * rng.standard_normal((n_draws, 1, 1, 1)))
    out, alphas = np.empty((n_draws, system.n_effects)), np.ones(n_draws)
    starts = (np.zeros(system.n_effects), system.modes(betas.mean(axis=0), Ginvs.mean(axis=0)))
    lk.draw_effects(betas[:2], Ginvs[:2], alphas[:2], system.fam, *system.arrays, starts[0], 4, 1, out[:2])
    times = []
    for start in starts:
        t = time.perf_counter()
        lk.draw_effects(betas, Ginvs, alphas, system.fam, *system.arrays, start, 4, 1, out)
        times.append((time.perf_counter() - t) / n_draws * 1e3)
    return times[0], times[1]


def fit(model, args) -> dict:
    from lmm_bayes.inference.methods.laplace import system as laplace

    calls = [0]
    marginal = laplace.LaplaceSystem.marginal

    def counted(self, *a, **k):
        calls[0] += 1
        return marginal(self, *a, **k)

    laplace.LaplaceSystem.marginal = counted
    try:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = model.fit(method="laplace", draws=args.draws, tune=args.tune, chains=args.chains, seed=1,
                          progressbar=False, log_likelihood=False)
        wall = time.perf_counter() - t
    finally:
        laplace.LaplaceSystem.marginal = marginal
    d = f.diagnostics()
    return {"fit_s": wall, "gradients": calls[0], "min_ess": d["min_ess_bulk"], "divergences": d["divergences"],
            "pareto_k": f.idata.attrs["laplace_pareto_k"], "passed": f.idata.attrs["laplace_check_passed"]}


def main() -> None:
    import lmm_bayes as lb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(SHAPES))
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--conditions", type=int, default=0, help="x with this many values (0: continuous)")
    ap.add_argument("--out", default=str(HERE / "RESULTS_glmm_scale.md"))
    args = ap.parse_args()
    rows = []
    load0 = os.getloadavg()
    for size in args.sizes:
        s, n, t = SHAPES[size]
        df = simulate(subjects=s, neurons=n, trials=t, conditions=args.conditions)
        t0 = time.perf_counter()
        model = lb.GLMM(FORMULA, df, family="poisson")
        row = {"rows": len(df), "model_s": time.perf_counter() - t0, **gradients(model)}
        if args.fit:
            row.update(fit(model, args))
        print(row, flush=True)
        rows.append(row)
    keys = list(rows[0])
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines = [
        "# GLMM Laplace method: scaling with rows",
        "",
        f"`python benchmarks/glmm_laplace_scale.py {' '.join(os.sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average at start {load0[0]:.1f}, at end {os.getloadavg()[0]:.1f}.",
        f"Fits: {args.chains} chains x ({args.tune} + {args.draws}) draws, nutpie." if args.fit else "",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for r in rows:
        lines.append("| " + " | ".join(f"{r.get(k, ''):.3g}" if isinstance(r.get(k), float) else str(r.get(k, ''))
                                       for k in keys) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

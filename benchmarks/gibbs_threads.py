"""Benchmark: the Gibbs sampler's chains in parallel threads against one after another.

Design (b) of ``benchmarks/crossed.py`` (3,000 x 1,100 x 14 crossed intercepts, 75,000 rows),
4 chains x (``--tune`` + ``--draws``) sweeps, b not kept, each setting run ``--repeats`` times
alternately in this one process (the compiled sweeps loaded once before timing). Prints the
median seconds of each and their ratio; the machine's load average is printed alongside, as
the ratio depends on free cores.

Usage::

    python benchmarks/gibbs_threads.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from crossed import FORMULAS, simulate_b  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import lmm_bayes as lb
    from lmm_bayes.inference.methods.gibbs.sampler import GibbsSystem, sample_gibbs

    model = lb.LMM(FORMULAS["b"], simulate_b(1))
    system = GibbsSystem.from_design(model.design)
    sample_gibbs(model.design, model.priors, draws=5, tune=5, chains=1, seed=0, keep_b="none", system=system)
    times: dict[int, list[float]] = {1: [], os.cpu_count() or 1: []}
    for _ in range(args.repeats):
        for workers in times:
            t0 = time.perf_counter()
            sample_gibbs(model.design, model.priors, draws=args.draws, tune=args.tune, chains=4, seed=1,
                         keep_b="none", workers=workers, system=system)
            times[workers].append(time.perf_counter() - t0)
    med = {w: statistics.median(t) for w, t in times.items()}
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    for w, t in med.items():
        print(f"{w} thread(s): median {t:.1f} s over {args.repeats} runs {[round(x, 1) for x in times[w]]}")
    one, many = med[1], med[max(med)]
    print(f"sequential / threaded time: {one / many:.2f}x")


if __name__ == "__main__":
    main()

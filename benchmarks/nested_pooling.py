"""Benchmark: ``compare_pooling`` at the neuron level of the seed's three-level data (issue 33).

Data: ``simulate_hierarchy(20, 25, 100, ...)`` (20 subjects x 25 neurons x 100 trials = 50,000
rows; random intercept and slope by subject, intercept by neuron), the model
``y ~ x + (1 + x | subject) + (1 | subject:neuron)``, compared at ``group="subject:neuron"``
(four fits: partial, within, no and complete pooling; PSIS-LOO sub-sampled above 10,000 rows).
One process, the four fits timed apart as the comparison prints them, then the whole call
again (the compiled models reused). Also checked: the per-neuron partial-pooling means equal
the hierarchy fit's ``coef(..., include_parents=True)``.

Usage::

    python benchmarks/nested_pooling.py                 # defaults: 4 chains x 1000 draws
    python benchmarks/nested_pooling.py --draws 500 --chains 2
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()

    import lmm_bayes as lb
    from lmm_bayes.calibration.simulate import simulate_hierarchy

    df = simulate_hierarchy(20, 25, 100, beta=[1.0, 0.5], G=[[0.25, 0.0], [0.0, 0.09]], sigma_neuron=0.4,
                            sigma=1.0, seed=1).data
    formula = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "seed": 1}
    times = []
    for run in ("first (compiles)", "second (compiled)"):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmp = lb.compare_pooling(formula, df, group="subject:neuron", **settings)
        times.append(time.perf_counter() - start)
        print(f"{run}: {times[-1]:.1f} s", flush=True)
    coef = cmp.fits["partial_pooling"].coef("subject:neuron", include_parents=True)["mean"].to_numpy()
    gap = float(np.max(np.abs(coef - cmp.estimates["partial_pooling"].to_numpy())))  # 0: the same table
    print(cmp)
    print(f"\n{len(df):,} rows, {platform.processor() or platform.machine()}, "
          f"{args.chains} chains x {args.draws} draws (+{args.tune} tuning)")
    print(f"compare_pooling: {times[0]:.1f} s first, {times[1]:.1f} s with the models compiled")
    print(f"largest |partial-pooling mean - coef(include_parents=True)|: {gap:.3g}")


if __name__ == "__main__":
    main()

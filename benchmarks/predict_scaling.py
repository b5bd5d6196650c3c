"""Benchmark: ``fit.predict`` on a few new rows, for fits of 10^4, 10^5 and 10^6 rows.

The data are the nested subject / neuron / trial data of ``collapsed_vs_full.py``
(``y ~ x + (1 + x | subject) + (1 | subject:neuron)``, 20 subjects x 25 neurons, the
trials per neuron set by the size). Each size gets a short collapsed fit (2 chains x
(200 tuning + 200 kept) draws): only prediction is timed, and it should not grow with
the fitted rows, since new rows are coded with what the design kept from fitting
(formulae's codings and stateful transforms, one fitted row per category) and never
with the fitted rows themselves.

Timed, on 10 new rows (seen clusters, a new neuron in a seen subject, a new subject):

* ``design.evaluate``: coding the new rows (X, Z, level codes);
* ``predict existing``: ``fit.predict(rows_of_seen_clusters)``;
* ``predict new``: ``fit.predict(rows, levels="new", seed=...)``, new clusters drawn from N(0, G).

Each is the median of ``--repeats`` calls after one warm-up call (the first call also
builds the per-factor level index once); the first ``predict new`` call is reported too.
``--categorical`` adds a fixed effect ``C(cond, levels=['b', 'a'])`` (``cond`` alternates
by trial), the case where new rows need the fitted categories.

Usage::

    python benchmarks/predict_scaling.py                          # 10^4, 10^5, 10^6 rows
    python benchmarks/predict_scaling.py --rows 10000 100000      # other sizes
    python benchmarks/predict_scaling.py --repeats 21 --new 100   # more calls, more new rows
    python benchmarks/predict_scaling.py --categorical            # with a categorical fixed effect
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
CATEGORICAL = "y ~ x + C(cond, levels=['b', 'a']) + (1 + x | subject) + (1 | subject:neuron)"
SUBJECTS, NEURONS = 20, 25


def _simulate():
    """``simulate`` of collapsed_vs_full.py (the data of BENCHMARK.md)."""
    spec = importlib.util.spec_from_file_location("collapsed_vs_full", HERE / "collapsed_vs_full.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate


def new_rows(n: int, seed: int = 1) -> pd.DataFrame:
    """``n`` rows: seen subject and neuron, a new neuron in a seen subject, a new subject (cycled)."""
    rng = np.random.default_rng(seed)
    kinds = [("s3", "n7"), ("s11", "n25"), ("s5", "n_new"), ("s_new", "n1")]
    subject, neuron = zip(*(kinds[i % len(kinds)] for i in range(n)))
    return pd.DataFrame({"x": rng.standard_normal(n), "cond": ["a"] * n, "subject": subject, "neuron": neuron},
                        index=pd.RangeIndex(n, name="row"))


def _median_ms(call, repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` later calls), in milliseconds."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1e3 * first, 1e3 * statistics.median(times)


def run(rows: int, *, repeats: int, n_new: int, formula: str = FORMULA, seed: int = 0) -> dict:
    import lmm_bayes as lb

    trials = max(1, rows // (SUBJECTS * NEURONS))
    data = _simulate()(trials, subjects=SUBJECTS, neurons=NEURONS, seed=seed)
    data["cond"] = np.where(np.arange(len(data)) % 2 == 0, "a", "b")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.LMM(formula, data).fit(method="collapsed", chains=2, draws=200, tune=200, seed=seed,
                                       progressbar=False)
    fit_s = time.perf_counter() - t0
    new = new_rows(n_new)
    seen = new[~new["subject"].str.endswith("_new") & ~new["neuron"].str.endswith("_new")]
    _, evaluate = _median_ms(lambda: fit.design.evaluate(new), repeats)
    _, existing = _median_ms(lambda: fit.predict(seen), repeats)
    first_new, fresh = _median_ms(lambda: fit.predict(new, levels="new", seed=1), repeats)
    return {
        "rows": len(data), "fit (s)": fit_s, "evaluate (ms)": evaluate,
        "predict existing (ms)": existing, "predict new (ms)": fresh,
        "first predict new (ms)": first_new,
    }


def table(results: list[dict]) -> str:
    cols = list(results[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cells = [f"{r[c]:,}" if c == "rows" else f"{r[c]:.1f}" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="fitted rows (rounded down to a multiple of 500)")
    parser.add_argument("--repeats", type=int, default=11, help="timed calls per measure (median)")
    parser.add_argument("--new", type=int, default=10, help="new rows predicted per call")
    parser.add_argument("--categorical", action="store_true", help=f"fit {CATEGORICAL!r} instead")
    args = parser.parse_args(argv)
    formula = CATEGORICAL if args.categorical else FORMULA
    results = []
    for rows in args.rows:
        results.append(run(rows, repeats=args.repeats, n_new=args.new, formula=formula))
        print(f"done: {results[-1]['rows']:,} rows", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"{args.new} new rows, median of {args.repeats} calls; load average {load[0]:.1f} "
          f"on {os.cpu_count()} cores; {formula}\n")
    print(table(results))


if __name__ == "__main__":
    main()

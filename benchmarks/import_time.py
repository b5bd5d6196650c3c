"""Benchmark: ``import lmm_bayes`` and the sleepstudy fit in a new process, imports included (issue 32).

Each measurement is a fresh Python process (the numba cache warm, as on any machine after
``bash run.sh``); the script prints the median of ``--repeats`` runs and which heavy
libraries each process ended up importing (a lazy_loader proxy not yet used does not count).
Side by side in one script:

* ``import``: ``import lmm_bayes`` alone;
* ``fit``: ``import lmm_bayes``, then ``LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit(seed=1)``
  with the defaults (4 chains x 1000 tuning + 1000 kept draws, the collapsed kernel), then
  ``fit.fixef()``, all timed from the process start;
* ``numpy+pandas+xarray``: the floor, the libraries every use of the package needs.

Usage::

    python benchmarks/import_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HEAVY = ("pymc", "pytensor", "numba", "nutpie", "arviz", "arviz_stats", "arviz_plots", "matplotlib", "dask",
         "scipy.stats")

SCRIPTS = {
    "numpy+pandas+xarray": "import numpy, pandas, xarray",
    "import": "import lmm_bayes",
    "fit": ("import lmm_bayes as lb\n"
            "fit = lb.LMM('Reaction ~ Days + (Days | Subject)', lb.datasets.load('sleepstudy')).fit(\n"
            "    seed=1, progressbar=False)\n"
            "fit.fixef()"),
}

RUNNER = """
import json, sys, time
t0 = time.perf_counter()
exec(compile({script!r}, "<benchmark>", "exec"))
seconds = time.perf_counter() - t0
loaded = [m for m in {heavy!r} if m in sys.modules and type(sys.modules[m]).__name__ != "_LazyModule"]
print(json.dumps({{"seconds": seconds, "loaded": loaded}}))
"""


def run(script: str) -> dict:
    code = RUNNER.format(script=script, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    run(SCRIPTS["fit"])  # a first fit warms the numba cache and the OS's file cache
    print(f"{'what':<22} {'median s':>9} {'min s':>7}  heavy libraries loaded")
    for name, script in SCRIPTS.items():
        runs = [run(script) for _ in range(args.repeats)]
        times = [r["seconds"] for r in runs]
        print(f"{name:<22} {statistics.median(times):>9.2f} {min(times):>7.2f}  {', '.join(runs[-1]['loaded']) or '-'}")


if __name__ == "__main__":
    main()

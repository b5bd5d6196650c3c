"""Benchmark: a design analysis of a nested study, 12 design points x 200 simulations on 2 worker processes.

The model (issue 36's target): trials in neurons in subjects, the condition alternating over each
neuron's trials, a random slope by subject and an intercept by neuron,
``y ~ condition + (1 + condition | subject) + (1 | subject:neuron)``, with the truth
beta_condition = 0.25, subject SDs (0.5, 0.2) correlated 0.3, neuron SD 0.3, sigma = 1. The grid:
subjects in (6, 9, 12, 16) x trials per neuron in (10, 20, 40), 5 neurons per subject; each fit
``method="auto"`` (the collapsed kernel), 2 chains x 1000 draws after 500 tuning steps (the
defaults of ``lb.plan_study``).

It prints the wall time (worker start-up included), the fits' own summed time, the power table
and the worst Monte Carlo SE of power, as the Markdown that ``RESULTS_design.md`` records.

Usage::

    python benchmarks/design_power.py                       # the full run (2,400 fits)
    python benchmarks/design_power.py --sims 40 --subjects 6 12   # a smaller grid
    python benchmarks/design_power.py --folder runs/design  # keep the points; a rerun skips them
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import tempfile
import time

import lmm_bayes as lb

FORMULA = "y ~ condition + (1 + condition | subject) + (1 | subject:neuron)"
TRUTH = {"beta": {"Intercept": 0.0, "condition": 0.25},
         "G": {"subject": {"sd": [0.5, 0.2], "corr": 0.3}, "subject:neuron": 0.3**2}, "sigma": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subjects", type=int, nargs="+", default=[6, 9, 12, 16])
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--neurons", type=int, default=5)
    parser.add_argument("--folder", default=None, help="keep the design points here (default: a fresh temporary folder)")
    args = parser.parse_args()
    folder = args.folder or tempfile.mkdtemp(prefix="design_power-")
    grid = {"subjects": args.subjects, "trials": args.trials}
    start = time.perf_counter()
    load_before = os.getloadavg()
    with cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        plan = lb.plan_study(FORMULA, {"subjects": args.subjects[0], "neurons": args.neurons, "trials": args.trials[0]},
                             truth=TRUTH, grid=grid, n_sims=args.sims, seed=2026, executor=pool, folder=folder)
    wall = time.perf_counter() - start
    table = plan.table().reset_index()
    n_points = len(table)
    fits = n_points * args.sims
    print(f"## {n_points} design points x {args.sims} simulations = {fits:,} fits, {args.workers} worker processes\n")
    print(f"- wall time {wall:.0f} s ({wall / 60:.1f} min; {len(plan.skipped)} points read from {folder}), "
          f"the fits' own time {plan.seconds():.0f} s ({plan.seconds() / fits:.3f} s a fit)")
    print(f"- load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (the machine is shared)")
    print(f"- worst MCSE of power {table['power_mcse'].max():.4f}; failed fits {int(table['n_failed'].sum())}, "
          f"unconverged {int(table['n_unconverged'].sum())}\n")
    cols = ["subjects", "trials", "power", "power_mcse", "width", "width_mcse", "type_m", "type_s", "n_failed",
            "n_unconverged"]
    print(table[cols].round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()

"""``lmm-bayes design plan.toml``: a design analysis from a TOML file, its table and curves written to a folder.

A plan file holds the arguments of :func:`lmm_bayes.plan_study` in four sections::

    [plan]
    formula = "y ~ condition + (1 + condition | subject) + (1 | subject:neuron)"
    sizes = { subjects = 12, neurons = 5, trials = 20 }
    grid = { subjects = [6, 9, 12, 16] }
    condition = "within"            # or "between", or "none"
    quantities = ["condition"]      # optional
    n_sims = 200
    seed = 1

    [truth]                         # as lb.simulate's params; G by factor: a number, a matrix, or sd/corr
    beta = { Intercept = 0.0, condition = 0.25 }
    sigma = 1.0
    [truth.G]
    subject = { sd = [0.5, 0.2], corr = 0.3 }
    "subject:neuron" = 0.09

    [fit]                           # optional: draws, tune, chains, method, ci, prob
    [costs]                         # optional: per subject / neuron / item / trial, with target
    subject = 2000
    trial = 1
    target = 0.8                    # the power to reach (and budget = ..., optional)

The output folder keeps every design point (a rerun resumes), ``table.csv`` (the plan's
table), ``power.png`` (its curves, when the grid varies an axis) and, with ``[costs]``,
``costs.csv``. Errors in the file are ``ModelFileError`` naming the file, section and key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from lmm_bayes.errors import ModelFileError

__all__ = ["SECTIONS", "load_plan_file", "run_plan_file"]

#: Each section's keys (None: the keys are the user's: parameter or factor names).
SECTIONS: dict[str, tuple[str, ...] | None] = {
    "plan": ("formula", "sizes", "grid", "condition", "quantities", "n_sims", "seed"),
    "truth": ("beta", "G", "sigma"),
    "fit": ("draws", "tune", "chains", "method", "ci", "prob"),
    "costs": ("subject", "neuron", "item", "trial", "target", "budget"),
}


def load_plan_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The keyword arguments of :func:`~lmm_bayes.plan_study`, and the ``[costs]`` section (or None).

    Raises
    ------
    FileNotFoundError
    ModelFileError
        Bad TOML, an unknown section or key, a missing required key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no plan file {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ModelFileError(f"{path}: not valid TOML: {err}") from None
    for section, value in raw.items():
        if section not in SECTIONS:
            raise ModelFileError(f"{path}: unknown section [{section}]; a plan file has {['[' + s + ']' for s in SECTIONS]}")
        if not isinstance(value, dict):
            raise ModelFileError(f"{path}: [{section}] must be a table of keys")
        for key in value:
            if key not in SECTIONS[section]:
                raise ModelFileError(f"{path}: [{section}] has no key {key!r}; its keys are {list(SECTIONS[section])}")
    plan = raw.get("plan", {})
    missing = [k for k in ("formula", "sizes", "seed") if k not in plan] + (["[truth]"] if "truth" not in raw else [])
    if missing:
        raise ModelFileError(f"{path}: missing {missing} (formula, sizes and seed under [plan]; the [truth] section)")
    kwargs = dict(plan)
    if kwargs.get("condition") == "none":
        kwargs["condition"] = None
    kwargs["truth"] = raw["truth"]
    kwargs.update(raw.get("fit", {}))
    costs = raw.get("costs")
    if costs is not None and "target" not in costs:
        raise ModelFileError(f"{path}: [costs] needs target = <power to reach>, e.g. target = 0.8")
    return kwargs, costs


def run_plan_file(path: str | Path, out: str | Path, *, workers: int = 1, progressbar: bool = True) -> dict[str, Path]:
    """Run a plan file (on ``workers`` local processes) and write its results into ``out``; returns the files."""
    import concurrent.futures as cf
    import multiprocessing

    from lmm_bayes.api.planning import plan_study

    kwargs, costs = load_plan_file(path)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder name")
    written: dict[str, Path] = {}
    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        plan = plan_study(**kwargs, executor=pool, folder=out / "points", progressbar=progressbar)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    table = plan.table()
    table.to_csv(written.setdefault("table", out / "table.csv"))
    print(table[["truth", "n_sims", "n_failed", "n_unconverged", "power", "power_mcse", "width", "type_s",
                 "type_m"]].round(4).to_string())
    if plan.varied:
        import matplotlib.pyplot as plt

        fig = plan.plot()
        fig.savefig(written.setdefault("plot", out / "power.png"), dpi=120)
        plt.close(fig)
    if costs is not None:
        units = {k: v for k, v in costs.items() if k not in ("target", "budget")}
        trade = plan.costs(units, power=costs["target"], budget=costs.get("budget"))
        trade.to_csv(written.setdefault("costs", out / "costs.csv"), index=False)
        try:
            best = plan.cheapest(units, power=costs["target"], budget=costs.get("budget"))
            print("\ncheapest design reaching power", costs["target"], ":",
                  ", ".join(f"{a}={int(best[a])}" for a in plan.axes), f"(cost {best['cost']:g}, power {best['power']:.3f})")
        except ValueError as err:
            print(f"\n{err}")
    return written

"""The ``lmm-bayes`` command: run a model file, write a report.

    lmm-bayes fit models/sleepstudy_random_slopes.toml --out results/
    lmm-bayes demo
    lmm-bayes design plan.toml --out plan/ --workers 2

Every error a user can cause (model file, data, formula, priors, sampler settings,
report settings, the output folder, draws and chains beyond their limits) is found before
sampling starts and printed as one line on stderr, with exit status 2 and no traceback. An
existing, non-empty output folder is refused unless ``--force`` is given. A new output folder
is made only once the fit is done, and removed again if writing the report fails, so no run
that fails (even one the sampler ends outright) leaves a folder behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

from lmm_bayes.inference.methods.registry import METHODS

__all__ = ["main", "build_parser"]

DEMO_FILE = "sleepstudy_random_slopes.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmm-bayes",
        description="Bayesian linear mixed-effects models for hierarchical data (PyMC + ArviZ).",
        epilog="Model files are TOML: [data], [model], [priors], [fit], [report]; see models/ for examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fit = sub.add_parser(
        "fit",
        help="fit a model file and write fit.nc, summary.txt and report.html",
        description="Fit the model a TOML model file describes; write DIR/fit.nc (load it with "
        "lmm_bayes.load), DIR/summary.txt and DIR/report.html (readable offline).",
    )
    fit.add_argument("model_file", metavar="MODEL.toml", help="the model file")
    fit.add_argument("--out", metavar="DIR", default="results", help="output folder (default: results)")
    fit.add_argument("--force", action="store_true", help="write into --out even if it already holds files")
    _fit_options(fit)
    demo = sub.add_parser(
        "demo",
        help="fit the bundled sleepstudy random-slopes model and print its summary",
        description=f"Fit models/{DEMO_FILE} (sleepstudy, random intercepts and slopes) and print the summary; "
        "with --out, also write the report.",
    )
    demo.add_argument("--out", metavar="DIR", default=None, help="also write fit.nc, summary.txt, report.html here")
    demo.add_argument("--force", action="store_true", help="write into --out even if it already holds files")
    _fit_options(demo)
    design = sub.add_parser(
        "design",
        help="run a design analysis (power by simulation) from a plan file",
        description="Run the design analysis a TOML plan file describes (lmm_bayes.plan_study); keep each design "
        "point in DIR/points (a rerun resumes) and write DIR/table.csv, DIR/power.png and, with [costs], DIR/costs.csv.",
    )
    design.add_argument("plan_file", metavar="PLAN.toml", help="the plan file")
    design.add_argument("--out", metavar="DIR", default="plan", help="output folder (default: plan)")
    design.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1, in this process)")
    design.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain (default: the model file's, else 1000)")
    p.add_argument("--tune", type=int, help="tuning steps per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--method", choices=list(METHODS), help="sampling method")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _overrides(args: argparse.Namespace) -> dict:
    out = {k: getattr(args, k) for k in ("draws", "tune", "chains", "seed", "method") if getattr(args, k) is not None}
    if args.no_progress:
        out["progressbar"] = False
    return out


def _demo_file() -> Path:
    # models/ sits beside the package in a clone: lmm_bayes/app/cli.py -> repository root
    path = Path(__file__).resolve().parents[2] / "models" / DEMO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the demo model file {path} is missing; run from a clone of the repository")
    return path


def _topmost_missing(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist (None if ``folder`` exists)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    return missing[-1] if missing else None


def _prepare_out(out: str, *, force: bool) -> tuple[Path, bool]:
    """Check the output folder before any sampling; returns it and whether it is to be made.

    A folder that does not exist yet is made to try writing into it, then removed again:
    ``_run`` makes it once the fit is done, so that a run the sampler ends
    outright (an abort runs no cleanup) leaves nothing behind.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder name")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ValueError(f"--out {out} already holds files; pass --force to overwrite them, or choose another folder")
    made = _topmost_missing(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".lmm-bayes-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to --out {out}: {err.strerror or err}") from None
    finally:
        if made is not None and made.is_dir():
            shutil.rmtree(made, ignore_errors=True)
    return folder, made is not None


def _run(args: argparse.Namespace) -> int:
    from lmm_bayes.app.modelfile import load_model_file
    from lmm_bayes.app.report import write_report
    from lmm_bayes.spec import validate

    if args.command == "design":
        from lmm_bayes.app.planfile import run_plan_file

        for name, p in run_plan_file(args.plan_file, args.out, workers=args.workers,
                                     progressbar=not args.no_progress).items():
            print(f"wrote {name:<8} {p}")
        return 0
    path = _demo_file() if args.command == "demo" else Path(args.model_file)
    mf = load_model_file(path)
    out, _ = _prepare_out(args.out, force=args.force) if args.out is not None else (None, False)
    made = None
    try:
        model = mf.model()
        group = mf.report.get("group")
        if group is not None:
            try:
                validate.check_group(model.design, group)
            except ValueError as err:
                raise ValueError(f"{path}: [report] group: {err}") from None
        print(model)
        print(model.priors)
        fit = model.fit(**{**mf.fit_options, **_overrides(args)})
        print()
        print(fit.summary())
        if out is not None:
            made = _topmost_missing(out)
            out.mkdir(parents=True, exist_ok=True)
            written = write_report(fit, out, group=group, title=mf.report.get("title"))
            print()
            for name, p in written.items():
                print(f"wrote {name:<8} {p}")
    except BaseException:
        if made is not None and made.is_dir():
            shutil.rmtree(made, ignore_errors=True)  # this run made it: leave nothing behind for a run that failed
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmm-bayes`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    # PyTensor's C backend warns that it found no BLAS; nutpie's numba backend does not use it
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, KeyError) as err:
        message = str(err).strip().replace("\n", " | ") if not isinstance(err, KeyError) else repr(err)
        print(f"lmm-bayes: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmm-bayes: interrupted", file=sys.stderr)
        return 130
    except BaseException as err:
        if type(err).__name__ != "PanicException":  # the Rust sampler's panic: say it in one line
            raise
        print(f"lmm-bayes: error: the sampler stopped: {str(err).splitlines()[0] if str(err) else err!r}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

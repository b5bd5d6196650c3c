"""The ``lmm-bayes`` command: run a model file, write a report.

    lmm-bayes fit models/sleepstudy_random_slopes.toml --out results/
    lmm-bayes demo
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

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
    _fit_options(fit)
    demo = sub.add_parser(
        "demo",
        help="fit the bundled sleepstudy random-slopes model and print its summary",
        description=f"Fit models/{DEMO_FILE} (sleepstudy, random intercepts and slopes) and print the summary; "
        "with --out, also write the report.",
    )
    demo.add_argument("--out", metavar="DIR", default=None, help="also write fit.nc, summary.txt, report.html here")
    _fit_options(demo)
    return parser


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--draws", type=int, help="draws per chain (default: the model file's, else 1000)")
    p.add_argument("--tune", type=int, help="tuning steps per chain")
    p.add_argument("--chains", type=int, help="number of chains")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--method", choices=["auto", "full", "collapsed"], help="sampling method")
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


def _run(args: argparse.Namespace) -> int:
    from lmm_bayes.app.modelfile import load_model_file
    from lmm_bayes.app.report import write_report

    path = _demo_file() if args.command == "demo" else Path(args.model_file)
    mf = load_model_file(path)
    model = mf.model()
    print(model)
    print(model.priors)
    fit = mf.fit(**_overrides(args))
    print()
    print(fit.summary())
    if args.out is not None:
        written = write_report(fit, args.out, group=mf.report.get("group"), title=mf.report.get("title"))
        print()
        for name, p in written.items():
            print(f"wrote {name:<8} {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmm-bayes`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    # PyTensor's C backend warns that it found no BLAS; nutpie's numba backend does not use it
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    try:
        return _run(args)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
        message = str(err).strip().replace("\n", " | ") if not isinstance(err, KeyError) else repr(err)
        print(f"lmm-bayes: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

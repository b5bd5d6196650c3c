"""The ``lmm-bayes`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmm-bayes", description="Bayesian linear mixed-effects models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="parse the bundled sleepstudy model and show its design")
    args = parser.parse_args(argv)
    if args.command == "demo":
        import lmm_bayes as lb

        model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
        print(model)
        print(model.priors)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

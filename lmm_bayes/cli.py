"""The ``lmm-bayes`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmm-bayes", description="Bayesian linear mixed-effects models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fit the bundled sleepstudy random-slopes model and print its summary")
    args = parser.parse_args(argv)
    if args.command == "demo":
        import lmm_bayes as lb

        model = lb.LMM("Reaction ~ Days + (Days | Subject)", lb.datasets.load("sleepstudy"))
        print(model)
        print(model.priors)
        print()
        fit = model.fit(seed=1)
        print(fit.summary())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Regenerate the pictures in docs/ (run: .venv/bin/python docs/make_figures.py)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import lmm_bayes as lb  # noqa: E402

HERE = Path(__file__).parent


def shrinkage_radon() -> None:
    radon = lb.datasets.load("radon")
    cmp = lb.compare_pooling("log_radon ~ floor + (1 | county)", radon, group="county",
                             draws=1000, tune=1000, chains=4, seed=1, progressbar=False)
    fig = cmp.plot(kind="shrinkage")
    fig.savefig(HERE / "shrinkage_radon.png", dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    shrinkage_radon()

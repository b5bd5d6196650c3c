"""Write ``crossed_sim.csv``: subjects x items with random slopes on both, unbalanced, empty cells.

30 subjects x 24 items, a within-subject and within-item condition (``cond`` 0/1); each
subject misses a random 25% of the items and sees each remaining item in one or both
conditions. Truth: beta = (2, 0.5); subject SDs (1.0, 0.4), corr 0.3; item SDs (0.6, 0.3),
corr -0.4; sigma = 0.8. Run from the repository root: ``python tests/data/make_crossed_sim.py``.
"""

from pathlib import Path

import numpy as np
import pandas as pd


def simulate() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The data, and the true b of subjects (30, 2) and items (24, 2)."""
    rng = np.random.default_rng(20261202)
    S, I = 30, 24

    def effects(sd, corr, n):
        G = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
        return rng.multivariate_normal(np.zeros(2), G, size=n)

    bs, bi = effects([1.0, 0.4], 0.3, S), effects([0.6, 0.3], -0.4, I)
    rows = []
    for s in range(S):
        for i in range(I):
            if rng.random() < 0.25:
                continue
            for cond in (0, 1) if rng.random() < 0.6 else (int(rng.integers(2)),):
                mu = 2.0 + 0.5 * cond + bs[s, 0] + bs[s, 1] * cond + bi[i, 0] + bi[i, 1] * cond
                rows.append((f"s{s + 1}", f"i{i + 1}", cond, round(mu + rng.normal(0.0, 0.8), 6)))
    return pd.DataFrame(rows, columns=["subject", "item", "cond", "y"]), bs, bi


def main() -> None:
    simulate()[0].to_csv(Path(__file__).with_name("crossed_sim.csv"), index=False)


if __name__ == "__main__":
    main()

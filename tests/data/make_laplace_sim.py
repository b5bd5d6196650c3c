"""Write tests/data/laplace_sim.csv: nested counts and choices for the Laplace method's references.

6 subjects x 4 neurons x 10 trials; ``spikes`` Poisson and ``nb`` negative binomial (alpha 2)
with log rate 1 + 0.3 x + subject intercept and slope + neuron intercept; ``k`` of 5 trials
correct (logit of the same linear predictor minus 1.5). Run from the repository root:
``python tests/data/make_laplace_sim.py`` (numpy's default_rng(0), so the file is reproducible).
"""

import numpy as np
import pandas as pd

rng = np.random.default_rng(0)
S, N, T = 6, 4, 10
n = S * N * T
s = np.repeat(np.arange(S), N * T)
nn = np.repeat(np.arange(S * N), T)
x = np.round(rng.standard_normal(n), 4)
eta = 1.0 + 0.3 * x + rng.normal(0, 0.5, S)[s] + rng.normal(0, 0.2, S)[s] * x + rng.normal(0, 0.3, S * N)[nn]
pd.DataFrame({
    "spikes": rng.poisson(np.exp(eta)),
    "nb": rng.poisson(rng.gamma(2.0, np.exp(eta) / 2.0)),
    "k": rng.binomial(5, 1 / (1 + np.exp(-(eta - 1.5)))),
    "x": x,
    "s": [f"s{i}" for i in s],
    "n": [f"n{i % N}" for i in nn],
}).to_csv("tests/data/laplace_sim.csv", index=False)

"""The balanced mislabelled design (issue 33): neurons n1..n5 in every subject, fitted as crossed.

The labels alone cannot tell it from subjects x items fully crossed; the data can: a mislabelled
neuron label carries no effect shared across subjects, while an item's label does
(:func:`lmm_bayes.spec.validate.labels_without_shared_effect`). Rates are measured over seeds,
so a rule that warns on every crossed design, or never, fails here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.errors import ImplicitNestingWarning
from lmm_bayes.spec.validate import labels_without_shared_effect


def _rows(seed: int, *, nested: bool, subjects: int = 6, labels: int = 5, trials: int = 20, sd: float = 1.0,
          interaction: float = 0.0):
    """(label, subject, y): every subject has labels 0..labels-1; their effects are each subject's own
    (``nested``) or shared by every subject (crossed items, with a subject x item interaction of SD
    ``interaction``), plus a subject effect and unit noise."""
    rng = np.random.default_rng(seed)
    s = np.repeat(np.arange(subjects), labels * trials)
    n = np.tile(np.repeat(np.arange(labels), trials), subjects)
    effect = rng.normal(0, sd, (subjects, labels))[s, n] if nested else rng.normal(0, sd, labels)[n]
    effect = effect + rng.normal(0, interaction, (subjects, labels))[s, n]
    return n, s, rng.normal(0, 1, subjects)[s] + effect + rng.normal(size=len(s))


def test_the_seeds_mislabelled_neurons_warn_and_the_intended_model_does_not():
    n, s, y = _rows(1, nested=True)
    stim = np.tile([0.0, 1.0], len(y) // 2)
    df = pd.DataFrame({"subject": [f"S{k}" for k in s], "neuron": [f"n{k + 1}" for k in n], "stim": stim,
                       "y": y + 0.5 * stim})
    with pytest.warns(ImplicitNestingWarning, match=r"'neuron' restart inside each level of 'subject'.*"
                                                   r"same neuron labels.*\(1 \| subject:neuron\).*subject/neuron"):
        lb.LMM("y ~ stim + (1 | subject) + (1 + stim | neuron)", df)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplicitNestingWarning)
        lb.LMM("y ~ stim + (1 | subject) + (1 + stim | subject:neuron)", df)


def test_mislabelled_labels_are_found_and_crossed_items_are_left_alone():
    """Over 100 seeds each: the mislabelled design (neuron SD = noise SD, 20 trials) warns in at least 90
    (measured 96.5% over 200); crossed items with effects of their own (item SD = noise SD), and factors
    without any effect, never (measured 0 of 200 each); crossed items with a subject x item interaction
    of half their SD rarely (measured 5%: the labels still mean one thing across subjects). A rule that
    looked at the interaction alone would warn on nearly all of those."""
    found = sum(labels_without_shared_effect(*_rows(k, nested=True)) for k in range(100))
    crossed = sum(labels_without_shared_effect(*_rows(k, nested=False)) for k in range(100))
    empty = sum(labels_without_shared_effect(*_rows(k, nested=False, sd=0.0)) for k in range(100))
    mixed = sum(labels_without_shared_effect(*_rows(k, nested=False, interaction=0.5)) for k in range(100))
    assert found >= 90 and crossed == 0 and empty == 0 and mixed <= 15, (found, crossed, empty, mixed)


def test_without_repeated_rows_or_shared_labels_nothing_is_claimed():
    """One row per cell (psycholinguistic crossed designs) leaves no noise estimate: no claim."""
    n, s, y = _rows(2, nested=True, trials=1)
    assert not labels_without_shared_effect(n, s, y)
    assert not labels_without_shared_effect(s * 10 + n, s, y)  # every label in one subject only: nested

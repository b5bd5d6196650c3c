"""``lmm-bayes design plan.toml``: a plan file run end to end, resumed, and its errors in one line."""

from __future__ import annotations

import pandas as pd
import pytest

from lmm_bayes.app.cli import main
from lmm_bayes.app.planfile import load_plan_file

PLAN = """
[plan]
formula = "y ~ condition + (1 | subject)"
sizes = { subjects = 6, neurons = 1, trials = 6 }
grid = { subjects = [6, 8] }
condition = "between"
n_sims = 2
seed = 3

[truth]
beta = { Intercept = 0.0, condition = 2.0 }
sigma = 1.0
G = { subject = 0.25 }

[fit]
draws = 500
tune = 300

[costs]
subject = 100
trial = 1
target = 0.01
"""


def test_a_plan_file_runs_writes_its_table_and_resumes(tmp_path, capsys):
    (tmp_path / "plan.toml").write_text(PLAN)
    args = ["design", str(tmp_path / "plan.toml"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 0
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table["subjects"].tolist() == [6, 8] and table["n_sims"].tolist() == [2, 2]
    costs = pd.read_csv(tmp_path / "out" / "costs.csv")
    assert costs["cost"].tolist() == [6 * 100 + 36, 8 * 100 + 48]  # subjects x 100 + rows x 1
    assert (tmp_path / "out" / "power.png").stat().st_size > 0
    first = capsys.readouterr()
    assert "wrote table" in first.out and "cheapest design" in first.out
    assert main(args) == 0
    assert "2 of 2 design points already done" in capsys.readouterr().err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "table.csv"), table)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("[fit]", "[fitting]"), r"unknown section \[fitting\]"),
    (lambda t: t.replace("n_sims = 2", "nsims = 2"), r"\[plan\] has no key 'nsims'"),
    (lambda t: t.replace("seed = 3", ""), r"missing \['seed'\]"),
    (lambda t: t.replace("target = 0.01", ""), r"\[costs\] needs target"),
    (lambda t: t.replace("n_sims = 2", "n_sims = 1"), "n_sims must be at least 2"),
])
def test_plan_file_errors_are_one_line_with_exit_2(tmp_path, capsys, edit, match):
    (tmp_path / "plan.toml").write_text(edit(PLAN))
    assert main(["design", str(tmp_path / "plan.toml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmm-bayes: error: ") and err.count("\n") == 1
    import re

    assert re.search(match, err)


def test_the_bundled_plan_file_reads():
    kwargs, costs = load_plan_file("models/plans/condition_nested.toml")
    assert kwargs["grid"] == {"subjects": [6, 9, 12, 16], "trials": [10, 20, 40]} and costs["target"] == 0.8

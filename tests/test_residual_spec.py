"""sigma= and ar=: what is read, what is refused (each message names the problem and the fix)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmm_bayes as lb
from lmm_bayes.inference.methods.registry import resolve_method


def _df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"y": rng.normal(size=12), "x": rng.normal(size=12), "g": list("aaaabbbbcccc"),
                         "s": list("ppqqppqqppqq"), "trial": [1, 2, 3, 4, 4, 3, 2, 1, 1, 3, 5, 6]})


def test_reads_both_and_orders_rows():
    m = lb.LMM("y ~ x + (1 | g)", _df(), sigma="~ (1 | g)", ar="trial | g")
    r = m.design.residual
    assert r.sigma_by and r.ar and r.group == "g"
    assert r.order.tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert r.gap.tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1]
    assert r.gap_values.tolist() == [1, 2]
    assert "trial" in m.design.data.columns
    assert "residuals:     sigma='~ (1 | g)', ar='trial | g'" in repr(m)
    assert m.design.residual is not None and lb.LMM("y ~ x + (1 | g)", _df()).design.residual is None


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma": "~ x + s"}, r"sigma='~ x \+ s' is not a form this version fits"),
    ({"sigma": "~ x"}, "column 'x' has 12 categories; a residual SD per category needs 2 to 10"),
    ({"sigma": "~ cond"}, "names column 'cond', which the data lack"),
    ({"sigma": "~ (1 | s) + (1 | g)"}, "not a form this version fits"),
    ({"ar": "trial"}, r"write 'time \| group'"),
    ({"sigma": "~ (1 | g)", "ar": "trial | s"}, "only by the same factor"),
    ({"ar": "trial | s"}, r"residual structure by 's', but the formula's grouping factors are \['g'\]"),
    ({"ar": "when | g"}, "orders rows by column 'when', which the data lack"),
])
def test_refused_forms(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lb.LMM("y ~ x + (1 | g)", _df(), **kwargs)


def test_refused_types_and_data():
    with pytest.raises(TypeError, match="sigma must be a string"):
        lb.LMM("y ~ x + (1 | g)", _df(), sigma=1)
    with pytest.raises(ValueError, match=r"grouping factors are \['g', 's'\]"):
        lb.LMM("y ~ x + (1 | g) + (1 | s)", _df(), ar="trial | g")
    with pytest.raises(ValueError, match=r"must hold whole numbers.*first rows: \[2\]"):
        lb.LMM("y ~ x + (1 | g)", _df().assign(trial=[1, 2, 2.5, 4, 4, 3, 2, 1, 1, 3, 5, 6]), ar="trial | g")
    with pytest.raises(ValueError, match=r"rows \[\d+, \d+\] have the same 'trial' \(1\) within one level of 'g'"):
        lb.LMM("y ~ x + (1 | g)", _df().assign(trial=[1, 1, 3, 4, 4, 3, 2, 1, 1, 3, 5, 6]), ar="trial | g")
    many = _df().assign(g=list("aaaaaaaaaabb"), trial=np.cumsum(np.arange(1, 13)))  # nine gaps in a, one in b
    with pytest.raises(ValueError, match="at most 8 distinct gaps"):
        lb.LMM("y ~ x + (1 | g)", many, ar="trial | g")
    with pytest.raises(ValueError, match="clashes with the posterior's residual parameters"):
        lb.LMM("y ~ x + (1 | rho)", _df().rename(columns={"g": "rho"}), ar="trial | rho")


def test_only_the_structured_method_takes_it():
    d = lb.LMM("y ~ x + (1 | g)", _df(), ar="trial | g").design
    method, note = resolve_method(d, "auto")
    assert type(method).__name__ == "Structured" and method.name == "collapsed" and note == ""
    assert type(resolve_method(d, "collapsed")[0]).__name__ == "Structured"
    for other in ("full", "gibbs", "laplace"):
        with pytest.raises(ValueError, match=f"method={other!r} cannot fit sigma= or ar="):
            resolve_method(d, other)
    with pytest.raises(ValueError, match="centered=True applies to method='full'"):
        resolve_method(d, "auto", centered=True)
    with pytest.raises(ValueError, match="log_likelihood=True: a model with ar= has no pointwise log-likelihood"):
        lb.LMM("y ~ x + (1 | g)", _df(), ar="trial | g").fit(log_likelihood=True)


def test_graph_users_refuse_or_take_the_structured_graph():
    model = lb.LMM("y ~ x + (1 | g)", _df(), sigma="~ (1 | g)", ar="trial | g")
    with pytest.raises(ValueError, match="prior_predictive .* assumes one residual SD and independent rows"):
        model.prior_predictive(draws=10, seed=1)
    with pytest.raises(ValueError, match="SBC of a model with sigma= or ar= is not available yet"):
        lb.sbc(model, n_sims=2, draws=10, seed=1)
    with pytest.raises(ValueError, match="method='full' cannot fit sigma= or ar="):
        model.pymc_model()
    graph = model.pymc_model(method="collapsed")
    assert {"rho", "sigma_log", "sigma_sd"} <= {v.name for v in graph.free_RVs}

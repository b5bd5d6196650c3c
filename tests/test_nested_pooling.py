"""Pooling on the hierarchy (issue 33): shrinkage toward the parent's line and the four-way comparison.

Every number is checked against a computation of its own from the posterior arrays or the data
(numpy), not against the package's functions.
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest

import lmm_bayes as lb
from lmm_bayes.calibration.simulate import simulate_hierarchy

matplotlib.use("Agg")

FORMULA = "y ~ x + (1 + x | subject) + (1 | subject:neuron)"
NEURON = "subject:neuron"


@pytest.fixture(scope="module")
def data():
    return simulate_hierarchy(6, 5, (4, 30), beta=[1.0, 0.5], G=[[0.25, 0.0], [0.0, 0.09]], sigma_neuron=0.4,
                              sigma=1.0, seed=2).data


@pytest.fixture(scope="module")
def cmp(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.compare_pooling(FORMULA, data, group=NEURON, draws=300, tune=300, chains=2, seed=3,
                                  progressbar=False)


def _post(fit, name):
    return fit.posterior[name].transpose("chain", "draw", ...).values.reshape(-1, *fit.posterior[name].shape[2:])


def _parent_codes(data):
    neurons = data.groupby(["subject", "neuron"], sort=True, observed=True).size().index
    subjects = sorted(data["subject"].unique())
    return np.array([subjects.index(s) for s, _ in neurons])


def test_partial_pooling_is_each_neurons_whole_line(cmp, data):
    """β + its subject's b + its own b, from the posterior arrays; equal to coef(include_parents=True)."""
    fit = cmp.fits["partial_pooling"]
    beta, bs, bn = _post(fit, "beta"), _post(fit, "subject_b"), _post(fit, f"{NEURON}_b")
    up = _parent_codes(data)
    intercept = beta[:, [0]] + bs[:, up, 0] + bn[:, :, 0]
    slope = beta[:, [1]] + bs[:, up, 1]
    e = cmp.estimates
    np.testing.assert_allclose(e.xs("Intercept", level="effect")["partial_pooling"], intercept.mean(0), rtol=1e-10)
    np.testing.assert_allclose(e.xs("x", level="effect")["partial_pooling"], slope.mean(0), rtol=1e-10)
    coef = fit.coef(NEURON, include_parents=True)
    np.testing.assert_array_equal(coef["mean"].to_numpy(), e["partial_pooling"].to_numpy())  # to the last digit
    np.testing.assert_array_equal(coef["hdi_low"].to_numpy(), e["partial_pooling_low"].to_numpy())
    # the target is the subject's line (β + its b), not the population's
    target = (beta[:, None, :] + bs[:, up, :]).mean(0)
    np.testing.assert_allclose(e["target"].to_numpy(), target.ravel(), rtol=1e-10)
    np.testing.assert_allclose(e["population"].to_numpy(), np.tile(beta.mean(0), len(up)), rtol=1e-10)
    assert not np.allclose(e["target"], e["population"])  # the subjects differ: the targets must too


def test_no_pooling_is_each_neurons_own_regression(cmp, data):
    """Wide priors: every neuron's posterior mean within 0.3 posterior SD of its own least squares line."""
    own = cmp.fits["no_pooling"].coef_draws(NEURON)
    mean, sd = own.mean(("chain", "draw")).values, own.std(("chain", "draw")).values
    for j, (_, rows) in enumerate(data.groupby(["subject", "neuron"], sort=True, observed=True)):
        X = np.column_stack([np.ones(len(rows)), rows["x"]])
        ols = np.linalg.lstsq(X, rows["y"].to_numpy(), rcond=None)[0]
        assert np.all(np.abs(mean[j] - ols) < 0.3 * sd[j]), (j, mean[j], ols, sd[j])
    e = cmp.estimates
    np.testing.assert_allclose(e["no_pooling"].to_numpy(), mean.ravel(), rtol=1e-12)


def test_within_pooling_keeps_the_subjects_apart(cmp, data):
    """Each neuron's line is its subject's own line plus its own intercept: exact, draw by draw."""
    fit = cmp.fits["within_pooling"]
    lines, subj, b = _post(fit, f"{NEURON}_coef"), _post(fit, "subject_coef"), _post(fit, f"{NEURON}_b")
    up = _parent_codes(data)
    np.testing.assert_allclose(lines[:, :, 1], subj[:, up, 1], rtol=1e-12)
    np.testing.assert_allclose(lines[:, :, 0], subj[:, up, 0] + b[:, :, 0], rtol=1e-12)
    # subjects unpooled: each subject's own line is near its own least squares (the neurons average out)
    for s, (_, rows) in enumerate(data.groupby("subject", sort=True)):
        X = np.column_stack([np.ones(len(rows)), rows["x"]])
        ols = np.linalg.lstsq(X, rows["y"].to_numpy(), rcond=None)[0]
        assert abs(subj[:, s, 1].mean() - ols[1]) < 3 * subj[:, s, 1].std()


def test_fraction_moved_lies_in_zero_one_or_says_why(cmp):
    e = cmp.estimates
    moved = e["fraction_moved"]
    inside = moved.dropna()
    assert ((inside >= 0) & (inside <= 1)).all()
    assert e.loc[moved.isna() & e["no_pooling"].notna(), "note"].str.contains("fraction_moved undefined").all()
    # a neuron has no slope of its own: it takes its subject's, pulled all the way (shrinkage 1, moved 1)
    slope = e.xs("x", level="effect")
    assert (slope["shrinkage"] == 1).all() and np.allclose(slope["fraction_moved"].dropna(), 1)


def test_model_shrinkage_at_every_level_is_the_closed_form(cmp, data):
    """A random intercept per neuron: B_j = σ² / (σ² + n_j τ²), averaged over the draws."""
    fit = cmp.fits["partial_pooling"]
    sigma = _post(fit, "sigma")
    tau = _post(fit, f"{NEURON}_sd")[:, 0]
    n = data.groupby(["subject", "neuron"], sort=True, observed=True).size().to_numpy()
    keep = np.unique(np.linspace(0, len(sigma) - 1, min(len(sigma), 1000)).round().astype(int))
    B = (sigma[keep, None] ** 2 / (sigma[keep, None] ** 2 + n[None, :] * tau[keep, None] ** 2)).mean(0)
    np.testing.assert_allclose(cmp.estimates.xs("Intercept", level="effect")["shrinkage"], B, rtol=1e-10)
    levels = cmp.shrinkage_by_level
    assert list(levels.index) == [(NEURON, "Intercept"), ("subject", "Intercept"), ("subject", "x")]
    assert levels.loc[(NEURON, "Intercept"), "mean"] == pytest.approx(B.mean(), rel=1e-10)
    assert levels.loc[(NEURON, "Intercept"), "clusters"] == 30


def test_loo_compares_the_four_poolings(cmp):
    loo = cmp.loo
    assert sorted(loo.index) == ["complete_pooling", "no_pooling", "partial_pooling", "within_pooling"]
    assert loo.loc["partial_pooling", "elpd"] > loo.loc["complete_pooling", "elpd"]
    assert "NestedPoolingComparison" in repr(cmp) and "B_j by level" in repr(cmp)


def test_arrows_are_drawn_level_by_level(cmp):
    import matplotlib.pyplot as plt

    fig = cmp.plot()
    left, right = fig.axes
    assert left.get_title() == "clusters toward their parent line"
    assert right.get_title() == "parents toward the population"
    # the parents' arrows start at the within-pooling subject lines
    own = cmp.fits["within_pooling"].posterior["subject_coef"].sel({"subject_effect": "Intercept"})
    starts = right.collections[0].get_offsets()[:, 1]
    np.testing.assert_allclose(np.sort(starts), np.sort(own.mean(("chain", "draw")).values), rtol=1e-12)
    with pytest.raises(ValueError, match="effect 'z' is not in the table"):
        cmp.plot(effect="z")
    plt.close("all")


def test_shrinkage_of_a_nested_fit_targets_the_parent_line(cmp, data):
    fit = cmp.fits["partial_pooling"]
    table = fit.shrinkage(NEURON)
    assert set(table["target"]) == {"subject line"}
    assert set(fit.shrinkage("subject")["target"]) == {"population"}
    np.testing.assert_allclose(table["population"].to_numpy(), cmp.estimates["target"].to_numpy(), rtol=1e-10)
    # no pooling: the neuron's own least squares of its whole line (nothing else in the model to hold)
    for j, (_, rows) in enumerate(data.groupby(["subject", "neuron"], sort=True, observed=True)):
        X = np.column_stack([np.ones(len(rows)), rows["x"]])
        ols = np.linalg.lstsq(X, rows["y"].to_numpy(), rcond=None)[0]
        np.testing.assert_allclose(table["no_pooling"].to_numpy().reshape(-1, 2)[j], ols, rtol=1e-8, atol=1e-10)
    inside = table["fraction_moved"].dropna()
    assert ((inside >= 0) & (inside <= 1)).all() and len(inside) > 0.8 * len(table)


def test_pooling_fits_save_and_load(cmp, tmp_path):
    for name in ("within_pooling", "no_pooling"):
        fit = cmp.fits[name]
        fit.save(tmp_path / f"{name}.nc")
        back = lb.load(tmp_path / f"{name}.nc")
        assert back.pooling == name and back.beta_columns == fit.beta_columns == []
        np.testing.assert_array_equal(back.coef_draws(NEURON).values, fit.coef_draws(NEURON).values)
    with pytest.raises(ValueError, match="include_parents=True is for a mixed model's fit"):
        cmp.fits["no_pooling"].coef(NEURON, include_parents=True)


def test_progress_line_per_fit(data, capsys):
    with warnings.catch_warnings():  # the fixture's data: its compiled graphs are reused
        warnings.simplefilter("ignore")
        lb.compare_pooling(FORMULA, data, group=NEURON, draws=50, tune=50, chains=1, seed=1)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("compare_pooling: fit")]
    assert [ln.split(",")[0] for ln in lines] == [f"compare_pooling: fit {k} of 4" for k in range(1, 5)]
    assert "within each subject" in lines[1]


@pytest.mark.parametrize(
    "formula, group, message",
    [
        (FORMULA, "subject", r"'subject:neuron' lies in 'subject', not the other way round: give group='subject:neuron'"),
        ("y ~ x + (1 | subject) + (1 | neuron)", "subject", r"\['neuron'\] is not nested around 'subject'"),
    ],
)
def test_what_a_nested_comparison_refuses(data, formula, group, message):
    with pytest.raises(ValueError, match=message):
        lb.compare_pooling(formula, data, group=group, draws=100, tune=100, chains=1, progressbar=False)


def test_large_data_loo_is_subsampled_and_agrees_with_the_full_loo(cmp, monkeypatch):
    """The sub-sampled estimate of each pooling's elpd lies within 4 sub-sampling SEs of the full PSIS-LOO."""
    import arviz_stats as azs

    from lmm_bayes.teaching import nested_pooling

    n = cmp.fits["partial_pooling"].design.n
    monkeypatch.setattr(nested_pooling, "LOO_SUBSAMPLE_ROWS", 100)
    monkeypatch.setattr(nested_pooling, "LOO_SUBSAMPLE_SIZE", 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub = nested_pooling.loo_table(cmp.fits, n_obs=n, seed=1)
        for name, fit in cmp.fits.items():
            full = azs.loo(fit.idata)
            one = azs.loo_subsample(fit.idata, observations=200, seed=1)
            assert abs(sub.loc[name, "elpd"] - full.elpd) < 4 * max(one.subsampling_se, 1e-9), name
    assert sub["weight"].isna().all() and "subsampling_dse" in sub
    assert sub.attrs["loo"] == f"PSIS-LOO on 200 of {n:,} observations (loo_subsample)"


def test_a_fit_too_large_for_every_draw_gets_its_log_likelihood_on_thinned_draws(data, monkeypatch):
    from scipy import stats

    from lmm_bayes.inference import sampling
    from lmm_bayes.teaching.nested_pooling import partial_pooling_fit

    model = lb.LMM(FORMULA, data)
    monkeypatch.setattr(sampling, "MAX_LOGLIK_VALUES", 2 * 100 * model.design.n // 4)  # a quarter of the draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = partial_pooling_fit(model, {"draws": 100, "tune": 100, "chains": 2, "seed": 1, "progressbar": False})
    ll = fit.idata["log_likelihood"]["y"]
    assert ll.sizes["draw"] == 25 and ll["draw"].values.tolist() == list(range(0, 100, 4))
    # by hand: y ~ N(Xβ + subject's b + neuron's b, σ) at draw 8 of chain 1
    post = fit.posterior.isel(chain=1, draw=8)
    d = fit.design
    mu = d.X @ post["beta"].values
    for g in d.groups:
        mu = mu + (g.Z * post[f"{g.name}_b"].transpose(g.name, ...).values[g.codes]).sum(1)
    expected = stats.norm.logpdf(d.y, mu, float(post["sigma"]))
    np.testing.assert_allclose(ll.isel(chain=1).sel(draw=8).values, expected, rtol=1e-10)


def test_a_glmm_hierarchy_is_compared_on_the_link_scale():
    """Poisson spikes in neurons in subjects: the four fits keep the family; lines and targets on the log scale."""
    df = simulate_hierarchy(4, 4, 12, beta=[1.0, 0.3], G=[[0.2, 0.0], [0.0, 0.04]], sigma_neuron=0.3,
                            family="poisson", seed=4).data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = lb.compare_pooling("y ~ x + (1 + x | subject) + (1 | subject:neuron)", df, group=NEURON,
                                 family="poisson", draws=200, tune=200, chains=2, seed=1, progressbar=False)
    e = cmp.estimates
    assert e.attrs["scale"] == "link scale: log rate"
    fit = cmp.fits["partial_pooling"]
    beta, bs, bn = _post(fit, "beta"), _post(fit, "subject_b"), _post(fit, f"{NEURON}_b")
    up = _parent_codes(df)
    np.testing.assert_allclose(e.xs("Intercept", level="effect")["partial_pooling"],
                               (beta[:, [0]] + bs[:, up, 0] + bn[:, :, 0]).mean(0), rtol=1e-10)
    np.testing.assert_allclose(e.xs("Intercept", level="effect")["target"], (beta[:, [0]] + bs[:, up, 0]).mean(0),
                               rtol=1e-10)
    B = cmp.shrinkage_by_level
    assert ((B["min"] > 0) & (B["max"] < 1)).all()
    # no pooling: each neuron's own Poisson regression (wide priors): its posterior mean within one
    # posterior SD of the neuron's maximum likelihood line (scipy)
    from scipy.optimize import minimize

    draws = cmp.fits["no_pooling"].coef_draws(NEURON)
    own, sd = draws.mean(("chain", "draw")).values, draws.std(("chain", "draw")).values
    for j, (_, rows) in enumerate(df.groupby(["subject", "neuron"], sort=True, observed=True)):
        x, y = rows["x"].to_numpy(), rows["y"].to_numpy()
        mle = minimize(lambda t: np.sum(np.exp(t[0] + t[1] * x) - y * (t[0] + t[1] * x)), np.zeros(2)).x
        assert np.all(np.abs(own[j] - mle) < sd[j]), (j, own[j], mle, sd[j])
    assert sorted(cmp.loo.index) == ["complete_pooling", "no_pooling", "partial_pooling", "within_pooling"]

"""Tables that read (issue 38): fixef, varcorr, icc and shrinkage show the decimals their posterior SD
supports while holding every digit, the ICC says at which x it is taken, and fit.draws() is the
posterior as a tidy table.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmm_bayes as lb
from lmm_bayes.errors import RandomEffectsNotKept


def decimals(sd: float) -> int:
    """Two significant digits of the SD, 0 to 6 decimals (the summary's rule, written out again)."""
    return int(min(max(1 - math.floor(math.log10(abs(sd))), 0), 6))


def shown_lines(table) -> dict[str, list[str]]:
    """The printed table's lines, keyed by their last index label, as whitespace-separated tokens."""
    with pd.option_context("display.width", 1000, "display.max_columns", 100):
        text = repr(table)
    return {line.split()[0] if line.split() else "": line.split() for line in text.splitlines()}, text


def quietly_fit(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs: the tables are compared with the same draws
        return lb.LMM(formula, data).fit(draws=300, tune=300, chains=2, seed=2, progressbar=False, **kwargs)


@pytest.fixture(scope="module")
def slopes(sleepstudy):
    return quietly_fit("Reaction ~ Days + (Days | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def intercept(sleepstudy):
    return quietly_fit("Reaction ~ Days + (1 | Subject)", sleepstudy)


def test_fixef_shows_the_decimals_its_sd_supports_and_keeps_every_digit(slopes):
    table = slopes.fixef()
    beta = slopes.posterior["beta"].transpose("chain", "draw", ...).values
    np.testing.assert_allclose(table["mean"].to_numpy(), beta.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(table["sd"].to_numpy(), beta.reshape(-1, 2).std(axis=0, ddof=1), rtol=1e-3)
    lines, text = shown_lines(table)
    for coef, row in table.iterrows():
        d = decimals(row["sd"])
        expected = [f"{row[c]:.{d}f}" for c in ("mean", "sd", "hdi_low", "hdi_high")]
        assert lines[coef][1:5] == expected, (coef, lines[coef], expected)
        assert lines[coef][5] == f"{row['r_hat']:.3f}" and lines[coef][6] == f"{row['ess_bulk']:.0f}"
    assert text.splitlines()[-1] == "(94% HDI; rounded to the posterior SD, the data keep every digit)"
    assert f"{table.loc['Days', 'mean']:.6f}" not in text  # no six-decimal noise
    html = table._repr_html_()
    assert f"<td>{table.loc['Days', 'mean']:.{decimals(table.loc['Days', 'sd'])}f}</td>" in html
    assert "94% HDI" in html and f"{table.loc['Days', 'mean']:.6f}" not in html


def test_varcorr_rows_each_by_their_own_sd(slopes):
    table = slopes.varcorr()
    sd_draws = slopes.posterior["Subject_sd"].sel(Subject_effect="Days").values
    assert table.loc[("Subject", "sd(Days)"), "mean"] == pytest.approx(sd_draws.mean(), rel=1e-12)
    assert table.loc[("Subject", "sd(Days)"), "variance"] == pytest.approx((sd_draws**2).mean(), rel=1e-12)
    lines, _ = shown_lines(table)
    for (group, term), row in table.iterrows():
        tokens = lines[group] if term == "sd(Intercept)" or group == "Residual" else lines[term]
        tokens = tokens[tokens.index(term) + 1:]
        d = decimals(row["sd"])
        assert tokens[0] == f"{row['mean']:.{d}f}", (term, tokens)
        if term.startswith("corr("):
            assert tokens[1] == f"{row['sd']:.{d}f}"  # the empty variance is left blank
    # the rows differ in decimals (SDs about 7 and 0.3 here): one rule per row, not per column
    assert len({decimals(sd) for sd in table["sd"]}) > 1


def test_icc_says_at_which_x_it_is_taken(slopes, intercept):
    table = slopes.icc()
    _, text = shown_lines(table)
    assert "variance shares evaluated at Days=0; fit.icc(at={...}) for other values" in text.splitlines()[-1]
    assert "evaluated at Days=4" in repr(slopes.icc(at={"Days": 4})).splitlines()[-1]
    plain = intercept.icc()
    assert "evaluated at" not in repr(plain) and "evaluated at" not in plain._repr_html_()
    tau2 = intercept.posterior["Subject_sd"].values[..., 0] ** 2
    share = tau2 / (tau2 + intercept.posterior["sigma"].values ** 2)
    assert plain.loc["Subject", "mean"] == pytest.approx(share.mean(), rel=1e-10)
    lines, _ = shown_lines(plain)
    assert lines["Subject"][1] == f"{share.mean():.{decimals(plain.loc['Subject', 'sd'])}f}"


def test_shrinkage_rows_by_their_partial_pooling_sd(slopes):
    table = slopes.shrinkage("Subject")
    coef = slopes.coef_draws("Subject").transpose("chain", "draw", ...).values
    np.testing.assert_allclose(table["partial_pooling"].to_numpy(), coef.mean(axis=(0, 1)).reshape(-1), rtol=1e-12)
    z = stats.norm.ppf(0.97)
    with pd.option_context("display.width", 1000, "display.max_columns", 100):
        lines = repr(table).splitlines()
    row_lines = [line.split() for line in lines[2:2 + len(table)]]  # after the two header lines
    for tokens, ((level, effect), row) in zip(row_lines, table.iterrows(), strict=True):
        tokens = tokens[tokens.index(effect) + 1:]
        d = decimals((row["partial_pooling_high"] - row["partial_pooling_low"]) / (2 * z))
        assert tokens[0] == str(row["n_obs"])
        assert tokens[1:5] == [f"{row[c]:.{d}f}" for c in ("no_pooling", "no_pooling_low", "no_pooling_high",
                                                            "partial_pooling")], (level, effect, tokens)
    # a selection keeps the display; the plain frame and the CSV keep every digit
    with pd.option_context("display.width", 1000, "display.max_columns", 100):
        head = repr(table.head(2)).splitlines()
    assert [line.split() for line in head[2:4]] == row_lines[:2]
    assert type(pd.DataFrame(table)) is pd.DataFrame
    assert repr(float(table["no_pooling"].iloc[0])) in table.to_csv()


def test_draws_is_the_posterior_as_a_tidy_table(slopes):
    table = slopes.draws()
    post = slopes.posterior
    assert table.columns.tolist() == ["chain", "draw", "beta[Intercept]", "beta[Days]", "sigma",
                                      "Subject_sd[Intercept]", "Subject_sd[Days]", "Subject_corr[Intercept, Days]"]
    assert len(table) == 2 * 300 and not table.duplicated(["chain", "draw"]).any()
    chain, draw = table["chain"].to_numpy(), table["draw"].to_numpy()
    beta = post["beta"].transpose("chain", "draw", "coef").values
    np.testing.assert_array_equal(table["beta[Days]"].to_numpy(), beta[chain, draw, 1])
    np.testing.assert_array_equal(table["sigma"].to_numpy(), post["sigma"].values[chain, draw])
    corr = post["Subject_corr"].transpose("chain", "draw", ...).values[:, :, 0, 1]
    np.testing.assert_array_equal(table["Subject_corr[Intercept, Days]"].to_numpy(), corr[chain, draw])
    with_b = slopes.draws(b=True)
    assert with_b.shape == (600, 8 + 18 * 2)
    b = post["Subject_b"].sel(Subject="309", Subject_effect="Days").values
    np.testing.assert_array_equal(with_b["Subject_b[309, Days]"].to_numpy(), b[chain, draw])


def test_draws_without_b_kept_says_how_to_get_them(sleepstudy):
    light = quietly_fit("Reaction ~ Days + (1 | Subject)", sleepstudy, keep_b="none")
    assert light.draws().shape == (600, 6)
    with pytest.raises(RandomEffectsNotKept, match=r"fit.draws\(b=True\) needs the draws of the 'Subject'.*keep_b='all'"):
        light.draws(b=True)
    with pytest.raises(TypeError, match=r"^Fit.draws\(\) got an unexpected keyword argument 'ranef'"):
        light.draws(ranef=True)

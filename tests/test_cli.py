"""The lmm-bayes command end to end: fit a model file, write fit.nc, summary.txt, report.html."""

import html
import os
import re
import shutil
import subprocess
import sys

import pytest

import lmm_bayes as lb
from lmm_bayes.results.summary import format_table
from lmm_bayes.app.cli import build_parser, main

MODEL = """
[data]
dataset = "sleepstudy"
[model]
formula = "Reaction ~ Days + (Days | Subject)"
[fit]
draws = 300
tune = 300
chains = 2
seed = 8
progressbar = false
[report]
group = "Subject"
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "model.toml").write_text(MODEL)
    assert main(["fit", str(folder / "model.toml"), "--out", str(folder / "out")]) == 0
    return folder / "out"


def test_fit_writes_three_files(run_dir):
    for name in ["fit.nc", "summary.txt", "report.html"]:
        assert (run_dir / name).is_file()
    assert "Fixed effects" in (run_dir / "summary.txt").read_text()


def test_report_has_tables_and_images(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "<h2>Fixed effects</h2>" in html and "Intercept" in html and "Days" in html
    assert html.count("data:image/png;base64,") >= 4
    assert "http://" not in html and "https://" not in html  # readable offline


def test_saved_fit_loads_with_same_fixef(run_dir):
    fit = lb.load(run_dir / "fit.nc")
    text = (run_dir / "summary.txt").read_text()
    shown = format_table(fit.fixef())  # the summary prints fixed decimals
    for coef, row in shown.iterrows():
        assert f"{coef}  " in text and row["mean"] in text, coef


#: every section of the sleepstudy random-slopes report, in order (h2 and h3 headings)
SECTIONS = [
    "Fixed effects", "Variance components", "Variance partition (ICC)", "R²", "PSIS-LOO", "Diagnostics",
    "Model checks", "Rank plots of the hyperparameters", "Posterior predictive check",
    "Residuals vs fitted; QQ plots of the residuals and of every b", "LOO-PIT calibration", "Variance partition",
    "Grouping factor Subject",
    "Effects of Days by Subject: population line and band, every Subject's line, data",
    "Cluster effects by Subject (caterpillar)",
    "Partial pooling of Subject: arrows from each cluster's own estimate to the model's",
    "Pair plot of the Subject SDs and correlations",
    "Posterior predictive check per Subject (mean)", "Posterior predictive check per Subject (sd)",
    "Priors",
]
#: the headings above a figure
FIGURES = SECTIONS[7:12] + SECTIONS[13:19]

#: after loading, records each image's decoded size and the SD of its grey levels (0 for a blank image)
_PROBE = """<script>window.addEventListener('load', () => {
  for (const im of document.images) {
    const c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(im, 0, 0);
    let s = 0, s2 = 0, n = 0;
    try {
      const d = g.getImageData(0, 0, Math.max(c.width, 1), Math.max(c.height, 1)).data;
      for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 765; s += v; s2 += v * v; n++; }
      im.setAttribute('data-std', Math.sqrt(Math.max(s2 / n - (s / n) ** 2, 0)).toFixed(4));
    } catch (e) { im.setAttribute('data-std', 'error'); }
    im.setAttribute('data-size', im.naturalWidth + 'x' + im.naturalHeight);
  }
  document.body.setAttribute('data-probed', 'yes');
});</script>"""


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("LMM_BAYES_REQUIRE_CHROMIUM") == "1":  # set by .ci/run: CI must not skip this
            pytest.fail("chromium is not installed, but .ci/run promised it (LMM_BAYES_REQUIRE_CHROMIUM=1)")
        pytest.skip("Debian's chromium package is not installed here (.ci/run installs it)")
    return browser


def _chromium(browser: str, profile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_report_has_every_section_in_order(run_dir):
    text = (run_dir / "report.html").read_text()
    headings = [html.unescape(h) for h in re.findall(r"<h[23]>(.*?)</h[23]>", text)]
    assert headings == SECTIONS
    alts = [html.unescape(a) for a in re.findall(r"<img alt='([^']*)'", text)]
    assert alts == FIGURES
    # fixed decimals: R-hat to three places, ESS whole, no 4-significant-digit mix
    assert re.search(r"<td>1\.0\d\d</td>", text) and not re.search(r"<td>\d+\.\d+e", text)


def test_report_in_headless_chromium_shows_every_figure_non_blank(run_dir, tmp_path):
    browser = _browser()
    page = tmp_path / "probed.html"
    page.write_text((run_dir / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    proc = _chromium(browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    dom = proc.stdout
    assert 'data-probed="yes"' in dom, proc.stderr[-2000:]
    images = re.findall(r"<img ([^>]*)>", dom)
    assert len(images) == len(FIGURES)
    for attrs in images:
        alt = html.unescape(re.search(r'alt="([^"]*)"', attrs).group(1))
        width, height = map(int, re.search(r'data-size="(\d+)x(\d+)"', attrs).groups())
        assert width > 100 and height > 100, alt  # decoded by the browser
        assert float(re.search(r'data-std="([^"]*)"', attrs).group(1)) > 0.02, alt  # not blank
    rendered = [html.unescape(h) for h in re.findall(r"<h[23]>(.*?)</h[23]>", dom)]
    assert rendered == SECTIONS


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = _browser()
    shot = tmp_path / "report.png"
    proc = _chromium(browser, tmp_path / "profile", "--window-size=1200,1600", f"--screenshot={shot}",
                     (run_dir / "report.html").as_uri())
    console_errors = [l for l in proc.stderr.splitlines() if "CONSOLE" in l and ("ERROR" in l or "Uncaught" in l)]
    assert not console_errors
    assert shot.is_file()
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.std() > 0.01  # not blank


def test_help_is_complete(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "fit" in out and "demo" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["fit", "--help"])
    out = capsys.readouterr().out
    for flag in ["--out", "--draws", "--chains", "--seed", "--method", "MODEL.toml"]:
        assert flag in out


@pytest.mark.parametrize("text, message", [
    (None, "no model file"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\nbogus = 1\n', "unknown key \\[model\\] 'bogus'"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days +"\n', "term is missing"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Dayz + (1 | Subject)"\n', "did you mean 'Days'"),
])
def test_errors_are_one_line_without_traceback(tmp_path, text, message):
    path = tmp_path / "m.toml"
    if text is not None:
        path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "lmm_bayes.app.cli", "fit", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = [l for l in proc.stderr.strip().splitlines() if "BLAS" not in l and "warn" not in l.lower()
           and not l.startswith(" ")]
    assert len(err) == 1 and err[0].startswith("lmm-bayes: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    import re

    assert re.search(message, err[0])


GOOD = '[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n'


def _out_is_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    return ["--out", str(tmp_path / "taken")]


def _out_not_empty(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    return ["--out", str(tmp_path / "full")]


def _out_unwritable(tmp_path):
    (tmp_path / "plain").write_text("x")
    return ["--out", str(tmp_path / "plain" / "sub")]


@pytest.mark.parametrize("text, extra, message", [
    (GOOD, lambda t: ["--tune", "0"], r"tune must be at least 1, got 0"),
    (GOOD, lambda t: ["--seed", str(2**70)], r"seed must be at most"),
    (GOOD + '[report]\ngroup = "Subjct"\n', lambda t: [], r"\[report\] group: no grouping factor 'Subjct'"),
    (GOOD, _out_is_file, r"--out .*taken is a file"),
    (GOOD, _out_not_empty, r"already holds files; pass --force"),
    (GOOD, _out_unwritable, r"cannot write to --out"),
    ('[data]\npath = "../secret.csv"\n[model]\nformula = "y ~ x"\n', lambda t: [], r"outside the model file's folder"),
    ('[data]\npath = "/etc/passwd"\n[model]\nformula = "y ~ x"\n', lambda t: [], r"outside the model file's folder"),
    ('[data]\npath = "notes.txt"\n[model]\nformula = "y ~ x"\n', lambda t: [], r"must name a \.csv file"),
    ('[data]\npath = "bad.csv"\n[model]\nformula = "y ~ x + (1 | g)"\n', lambda t: [], r"cannot be read as CSV"),
])
def test_user_errors_are_found_before_sampling(tmp_path, capsys, monkeypatch, text, extra, message):
    """Each error a user can cause: one line on stderr, exit 2, and no sampling started."""
    import re

    from lmm_bayes.inference import sampling

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started before the error was found")

    monkeypatch.setattr(sampling, "run_sampler", no_sampling)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "bad.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x00")
    (tmp_path / "secret.csv").write_text("TOPSECRET,column\n1,2\n")
    path = tmp_path / "m" / "m.toml"
    path.write_text(text)
    args = extra(tmp_path)
    out = [] if "--out" in args else ["--out", str(tmp_path / "fresh")]
    code = main(["fit", str(path), *out, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lmm-bayes: error:"), err
    assert re.search(message, err[0]), err[0]
    assert "TOPSECRET" not in err[0]  # never echo another file's contents
    assert not (tmp_path / "fresh").exists()  # a failed run leaves no output folder behind


@pytest.mark.parametrize("text, extra, message", [
    (GOOD, lambda t: ["--draws", str(2**63)], r"draws=9223372036854775808 is more than 1,000,000 per chain"),
    (GOOD + "[fit]\ndraws = 1000000000000\n", lambda t: [], r"draws=1000000000000 is more than 1,000,000 per chain"),
    (GOOD, lambda t: ["--tune", str(10**7)], r"tune=10000000 is more than 1,000,000 per chain"),
    (GOOD, lambda t: ["--chains", "100000"], r"chains=100000 is more than 1,000, the most a fit takes"),
    (GOOD, lambda t: ["--chains", "100", "--draws", "200000"],
     r"chains x draws = 100 x 200000 = 20,000,000 draws is more than 10,000,000, the most a fit keeps"),
])
def test_size_limits_are_found_before_sampling(tmp_path, capsys, monkeypatch, text, extra, message):
    """Draws, tuning steps and chains beyond the limits: one line naming the limit, no sampling, no --out."""
    from lmm_bayes.results import fitting

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started before the error was found")

    monkeypatch.setattr(fitting, "sample_posterior", no_sampling)  # the kernel path does not reach run_sampler
    path = tmp_path / "m.toml"
    path.write_text(text)
    code = main(["fit", str(path), "--out", str(tmp_path / "fresh"), *extra(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("out", ["fresh", "new/nested/out"])
def test_no_output_folder_exists_while_sampling(tmp_path, capsys, monkeypatch, out):
    """A run the sampler kills (Rust's abort ends the process: no cleanup runs) leaves no --out behind,
    so the folder is made only once the fit is done; a failure after that removes what the run made."""
    from lmm_bayes.results import fitting

    seen = []

    def dies(*args, **kwargs):
        seen.append((tmp_path / out).exists() or (tmp_path / out.split("/")[0]).exists())
        raise MemoryError("stands for the sampler's abort")

    monkeypatch.setattr(fitting, "sample_posterior", dies)
    path = tmp_path / "m.toml"
    path.write_text(GOOD)
    with pytest.raises(MemoryError):
        main(["fit", str(path), "--out", str(tmp_path / out)])
    assert seen == [False]
    assert not (tmp_path / out.split("/")[0]).exists()


def test_force_writes_into_a_folder_that_holds_files(tmp_path):
    from lmm_bayes.app.cli import _prepare_out

    (tmp_path / "old.txt").write_text("x")
    folder, created = _prepare_out(str(tmp_path), force=True)
    assert folder == tmp_path and created is False
    assert (tmp_path / "old.txt").is_file()


def test_report_has_figures_for_every_grouping_factor(sleepstudy):
    import warnings

    import numpy as np

    from lmm_bayes.app.report import report_html

    halves = sleepstudy.assign(Half=np.where(sleepstudy["Days"] < 5, "early", "late"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.LMM("Reaction ~ Days + (1 | Subject/Half)", halves).fit(
            draws=200, tune=200, chains=2, seed=3, progressbar=False
        )
        text = report_html(fit, group="Subject:Half")
    headings = [html.unescape(h) for h in re.findall(r"<h[23]>(.*?)</h[23]>", text)]
    # the group asked for comes first, then the others; each with its own figures
    assert [h for h in headings if h.startswith("Grouping factor")] == [
        "Grouping factor Subject:Half", "Grouping factor Subject"]
    for name in ("Subject:Half", "Subject"):
        assert f"Cluster effects by {name} (caterpillar)" in headings
        assert f"Posterior predictive check per {name} (mean)" in headings
        # one effect per cluster: the shrinkage-vs-size panel, not the intercept-slope arrows
        assert f"Shrinkage of {name} estimates" in headings
        assert f"Effects of Days by {name}: population line and band, every {name}'s line, data" in headings


def test_report_of_one_chain_without_groups_shows_traces(sleepstudy):
    import warnings

    from lmm_bayes.app.report import report_html

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.LMM("Reaction ~ Days", sleepstudy).fit(draws=100, tune=100, chains=1, seed=1, progressbar=False)
        text = report_html(fit)
    headings = [html.unescape(h) for h in re.findall(r"<h[23]>(.*?)</h[23]>", text)]
    assert "Trace plots of the hyperparameters (one chain: no rank plots)" in headings
    assert not [h for h in headings if "Grouping factor" in h or "ICC" in h or h.startswith("Rank")]


def test_report_puts_the_pareto_k_advice_beneath_the_loo_table(run_dir):
    text = (run_dir / "report.html").read_text()
    loo = text.split("<h2>PSIS-LOO</h2>", 1)[1].split("<h2>", 1)[0]
    count = int(re.search(r"<th>Pareto k &gt; 0.7</th>\s*<td>(\d+)</td>", loo).group(1))
    # the advice is there exactly when some k is high (this 300-draw fit has a few outlying days)
    assert ("Their elpd estimates are unreliable" in loo) == (count > 0)

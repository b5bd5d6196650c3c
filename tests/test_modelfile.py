"""Model files: validation of every key, and the shipped files load."""

from pathlib import Path

import pytest

from lmm_bayes.app.modelfile import ModelFileError, load_model_file

MODELS = Path(__file__).parents[1] / "models"


def write(tmp_path, text):
    p = tmp_path / "m.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.toml")))
def test_shipped_model_files_load(name):
    mf = load_model_file(MODELS / name)
    model = mf.model()
    assert model.design.n > 100
    assert mf.report["group"] in [g.name for g in model.design.groups]


def test_csv_path_relative_to_file(tmp_path, sleepstudy):
    sleepstudy.to_csv(tmp_path / "sleep.csv", index=False)
    p = write(tmp_path, '[data]\npath = "sleep.csv"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n')
    assert load_model_file(p).model().design.groups[0].n_levels == 18


def test_priors_and_fit_options_are_kept(tmp_path):
    p = write(tmp_path, """
[data]
dataset = "sleepstudy"
[model]
formula = "Reaction ~ Days + (1 | Subject)"
[priors]
Days = { dist = "Normal", mu = 0, sigma = 5 }
[fit]
draws = 100
target_accept = 0.95
""")
    mf = load_model_file(p)
    assert mf.fit_options == {"draws": 100, "target_accept": 0.95}
    assert repr(mf.model().priors.fixed_by_name["Days"]) == "Normal(mu=0, sigma=5)"


ERRORS = [
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\n[fitt]\ndraws = 1\n',
     r"unknown key 'fitt' \(did you mean 'fit'\?\); known keys: data, model, priors, fit, report"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\n[fit]\ndraw = 1\n',
     r"unknown key \[fit\] 'draw' \(did you mean 'draws'\?\)"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\n[fit]\ndraws = "many"\n',
     r"\[fit\] draws must be int, got str"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\n[fit]\nprogressbar = 1\n',
     r"\[fit\] progressbar must be bool"),
    ('[model]\nformula = "Reaction ~ Days"\n', r"\[data\] needs exactly one of"),
    ('[data]\ndataset = "sleepstudy"\npath = "x.csv"\n[model]\nformula = "y ~ x"\n', "exactly one of"),
    ('[data]\ndataset = "sleepstudy"\n', r"\[model\] formula is required"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "Reaction ~ os.system(1)"\n', "attribute access"),
    ('[data]\ndataset = "sleepstudy"\n[model]\nformula = "y ~ x"\nna_action = "omit"\n', "na_action must be"),
    ('[data\n', "not valid TOML"),
    ('[data.simulate]\nn_subjects = 3\n[model]\nformula = "y ~ x"\n', r"\[data.simulate\] is missing"),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_model_file_errors(tmp_path, text, message):
    with pytest.raises(ModelFileError, match=message):
        load_model_file(write(tmp_path, text))


def test_simulated_data_needs_a_seed(tmp_path):
    """Without a seed every run would fit other rows: refused at load, saying what to add."""
    text = (MODELS / "spikes_nested.toml").read_text().replace("seed = 7\n", "", 1)
    assert "seed = 7" not in text
    with pytest.raises(ModelFileError, match=r"\[data.simulate\] is missing \['seed'\]; add seed = <int> under "
                                             r"\[data.simulate\] so that every run simulates the same data"):
        load_model_file(write(tmp_path, text))


def test_data_errors_at_load_time(tmp_path):
    p = write(tmp_path, '[data]\npath = "missing.csv"\n[model]\nformula = "y ~ x"\n')
    with pytest.raises(ModelFileError, match="no file"):
        load_model_file(p).data()
    p = write(tmp_path, '[data]\ndataset = "sleep"\n[model]\nformula = "y ~ x"\n')
    with pytest.raises(ModelFileError, match="did you mean 'sleepstudy'"):
        load_model_file(p).data()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model_file(tmp_path / "nope.toml")

#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash run.sh demo   set everything up, then fit the bundled sleepstudy model
#   bash run.sh test   set everything up, then run the whole test suite
#   bash run.sh docs   set everything up with the docs extra, then build the site into docs/_build/html
# All are idempotent: the virtual environment is reused while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv

find_python() {
    # Python >= 3.12: python3.13 / python3.12 on PATH, then pyenv's installs, then python3
    local candidates=(python3.13 python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        local root; root=$(pyenv root)
        for v in "$root"/versions/3.1[3-9]* "$root"/versions/3.12*; do
            [ -x "$v/bin/python" ] && candidates+=("$v/bin/python")
        done
    elif [ -d "$HOME/.pyenv/versions" ]; then
        for v in "$HOME"/.pyenv/versions/3.1[3-9]* "$HOME"/.pyenv/versions/3.12*; do
            [ -x "$v/bin/python" ] && candidates+=("$v/bin/python")
        done
    fi
    candidates+=(python3 python)
    for c in "${candidates[@]}"; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    return 1
}

setup() {
    # $1: the extras to install ("test" or "test,docs"); the stamp records pyproject.toml's
    # checksum and the extras installed, so "test" after "test,docs" installs nothing more
    local extras="${1:-test}"
    local stamp="$VENV/.lmm-bayes-installed"
    local want; want=$(cat pyproject.toml | cksum)
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(head -n 1 "$stamp")" = "$want" ]; then
        local have; have=$(sed -n 2p "$stamp"); have=${have:-test}
        local missing=0 e
        for e in ${extras//,/ }; do
            case ",$have," in *",$e,"*) ;; *) missing=1 ;; esac
        done
        if [ "$missing" -eq 0 ]; then return 0; fi
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        if ! py=$(find_python); then
            echo "error: lmm-bayes needs Python 3.12 or newer, and none was found." >&2
            echo "       Looked for python3.13, python3.12, pyenv's versions ($(command -v pyenv >/dev/null && pyenv root || echo 'no pyenv')) and python3." >&2
            echo "       Install one (e.g. 'pyenv install 3.12' or your OS package python3.12) and run this again." >&2
            exit 1
        fi
        echo "Using $py ($("$py" --version))"
        "$py" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[$extras]"
    # compile the collapsed sampler's kernel once for this machine (numba caches it on disk)
    "$VENV/bin/python" -c "from lmm_bayes.inference.methods.kernel_loader import warm_up; warm_up()"
    printf '%s\n%s\n' "$want" "$extras" > "$stamp"
}

case "${1:-}" in
    demo)
        setup
        "$VENV/bin/lmm-bayes" demo
        ;;
    test)
        setup
        shift
        "$VENV/bin/python" -m pytest "$@"
        ;;
    docs)
        setup "test,docs"
        # -W: a warning (a broken cross-reference, a docstring numpydoc cannot parse) fails the
        # build; --keep-going lists them all first. Offline: no intersphinx, notebooks not executed.
        rm -rf docs/_build docs/api   # generated pages of names since removed would linger
        "$VENV/bin/python" -m sphinx -b html -W --keep-going -q docs docs/_build/html
        echo "docs: open docs/_build/html/index.html"
        ;;
    *)
        echo "usage: bash run.sh demo | bash run.sh test [pytest args] | bash run.sh docs" >&2
        exit 2
        ;;
esac

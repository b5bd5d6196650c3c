#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash run.sh demo   set everything up, then fit the bundled sleepstudy model
#   bash run.sh test   set everything up, then run the whole test suite
# Both are idempotent: the virtual environment is reused while pyproject.toml is unchanged.
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
    local stamp="$VENV/.lmm-bayes-installed"
    local want; want=$(cat pyproject.toml | cksum)
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
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
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    # compile the collapsed sampler's kernel once for this machine (numba caches it on disk)
    "$VENV/bin/python" -c "from lmm_bayes.inference.kernel_loader import warm_up; warm_up()"
    echo "$want" > "$stamp"
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
    *)
        echo "usage: bash run.sh demo | bash run.sh test [pytest args]" >&2
        exit 2
        ;;
esac

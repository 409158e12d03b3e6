#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (sourced by scripts/train and scripts/test).
# torch is pinned to the CPU wheel 2.13.0 for development and CI; the package itself accepts torch>=2.2.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "eqprop needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately.
    echo "installing Debian's python3-venv ..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi
# Reinstall only when the dependencies changed.
STAMP="$VENV/.eqprop-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/scripts/setup.sh" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
  touch "$STAMP"
fi

# Fashion-MNIST from Debian's package (the offline default dataset): install it if it is missing.
ensure_fashion_mnist() {
  if [ -z "${EQPROP_DATA_DIR:-}" ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "installing Debian's dataset-fashion-mnist ..." >&2
    if ! { as_root apt-get update -qq && as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
      echo "could not install dataset-fashion-mnist: run 'sudo apt-get install dataset-fashion-mnist'," \
           "or set EQPROP_DATA_DIR to a folder holding the four Fashion-MNIST IDX files" >&2
      return 1
    fi
  fi
}

# A Debian package whose command the tests use, installed if it is missing: ensure_debian_tool COMMAND PACKAGE WHAT.
# Without apt or root the tests that need it skip and say why.
ensure_debian_tool() {
  command -v "$1" >/dev/null && return 0
  if ! command -v apt-get >/dev/null; then
    echo "$1 is not installed and apt-get is unavailable: $3 will skip" >&2
    return 1
  fi
  echo "installing Debian's $2 ..." >&2
  if ! { as_root apt-get update -qq && as_root apt-get install -y -qq "$2" >/dev/null; }; then
    echo "could not install $2: run 'sudo apt-get install $2'" >&2
    return 1
  fi
}

# ngspice for the SPICE cross-checks (eqprop spice-check, tests/physics/test_spice.py).
ensure_ngspice() { ensure_debian_tool ngspice ngspice "the SPICE checks"; }

# Chromium renders the run reports in the tests (tests/analysis/test_report.py).
ensure_chromium() { ensure_debian_tool chromium chromium "the report's browser check"; }

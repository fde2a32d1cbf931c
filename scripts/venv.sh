# Sourced by run_all.sh and tests/run_tests.sh: create or reuse ./.venv and install the kit with
# the given extras, skipping pip when nothing changed since the last install.
# Usage: . scripts/venv.sh EXTRAS     (e.g. "test" or "notebooks,offline")
set -euo pipefail
_extras="${1:-}"
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${MEDTL_VENV:-$_root/.venv}"
_python="${MEDTL_PYTHON:-python3}"
if [ ! -x "$_venv/bin/python" ]; then
  echo "[medtl] creating virtual environment $_venv"
  "$_python" -m venv "$_venv" || {
    echo "[medtl] could not create a venv with $_python (on Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  }
fi
# shellcheck disable=SC1091
. "$_venv/bin/activate"
_stamp="$_venv/.medtl-installed-$(cat "$_root/pyproject.toml" | sha1sum | cut -c1-12)-${_extras//,/_}"
if [ ! -f "$_stamp" ]; then
  echo "[medtl] installing medtl[${_extras}] into $_venv (first time: torch is a large download)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e "$_root[${_extras}]"
  # timm's model names, written once, so that a typo in --model is answered without importing timm
  python -c "from medtl_lib.models.names import timm_architectures; timm_architectures()" || true
  touch "$_stamp"
fi

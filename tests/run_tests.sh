#!/usr/bin/env bash
# The test command: creates/reuses ./.venv, installs what the tests need, runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh test
python -m pytest -q "$@"

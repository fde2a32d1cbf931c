#!/usr/bin/env bash
# The fast tier: lint and every test that neither starts another program (slow) nor trains a model
# (training); tests/conftest.py says how tests are marked. 2.5 minutes on a busy 2-core
# machine. The full suite, which CI runs, is bash tests/run_tests.sh. Arguments go to pytest.
set -euo pipefail
exec bash "$(dirname "$0")/run_tests.sh" -m "not slow and not training" "$@"

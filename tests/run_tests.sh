#!/usr/bin/env bash
# The test command: creates/reuses ./.venv, installs what the tests need, runs ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh test

# The browser tests (tests/test_browser.py) drive the distribution's Chromium through Playwright.
# Install it when it is missing and we may (root, or sudo without a password, with apt-get);
# otherwise those tests fail and say how to get it. MEDTL_CHROMIUM may name another executable.
if [ -z "${MEDTL_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ] \
   && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  _as=none
  if [ "$(id -u)" = 0 ]; then _as=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then _as="sudo -n"; fi
  if [ "$_as" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "[medtl] installing chromium for the browser tests (apt-get)"
    { $_as env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && $_as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         chromium fonts-liberation; } \
      || echo "[medtl] could not install chromium: the browser tests will fail and say why" >&2
  else
    echo "[medtl] no chromium here and no permission to install it: the browser tests will fail" \
         "(install chromium, or set MEDTL_CHROMIUM to a Chromium/Chrome executable)" >&2
  fi
fi

# Lint first (seconds): pyflakes errors, pycodestyle, import order, as pyproject's [tool.ruff].
# MEDTL_SKIP_LINT=1 skips it while iterating; CI never sets it.
if [ "${MEDTL_SKIP_LINT:-0}" != 1 ]; then
  echo "[medtl] ruff check medtl_lib tests scripts"
  python -m ruff check medtl_lib tests scripts \
    || { echo "[medtl] lint failed (python -m ruff check --fix medtl_lib tests scripts" \
              "fixes most)" >&2; exit 1; }
fi

# The whole suite; arguments go to pytest, e.g. -m "not slow and not training" (tests/run_fast.sh).
python -m pytest -q "$@"

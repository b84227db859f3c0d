#!/usr/bin/env bash
# The project's test command (README "Quick start"; .ci/run calls it on a clean clone).
# Creates .venv with Python 3.11, installs the agent and hw-sim with their test extras, installs the
# system tools the tests need when they are missing, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,plot]" -e ./hw-sim
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || echo "tests/run.sh: could not install ${missing[*]}; the tests that need them will fail" >&2
  else
    echo "tests/run.sh: please install: ${missing[*]}" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"

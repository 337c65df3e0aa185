#!/usr/bin/env bash
# Quick start: make .venv, install pingtree_leads with the example's extras, run examples/app.py.
#   bash examples/quickstart.sh
# Needs only Python 3.10+ with pip and venv. Env: PYTHON (default python3), PORT, MONGODB_URI, PINGTREE_DB,
# PINGTREE_INSTANCE. A busy port is reported with the fix (PORT=5001 bash examples/quickstart.sh).
# While it runs: .venv/bin/flask --app examples.app pingtree-leads list-sources (see examples/README.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..."
    "$PYTHON" -m venv "$VENV"
fi

# Install (editable) only when the packaging files changed since the last install,
# so later starts are quick and need no network.
stamp="$VENV/.pingtree-examples-installed"
wanted="$(cat setup.cfg pyproject.toml | "$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "Installing pingtree_leads with the [examples] extra into $VENV (first run takes a minute) ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[examples]'
    echo "$wanted" > "$stamp"
fi

exec "$VENV/bin/python" examples/app.py

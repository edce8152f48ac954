#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project and its dev tools,
# Apache Kafka's jars (for the local JVM broker) resolved by Maven into a cache outside the repo,
# and the ops tools the tests run for real (Prometheus, Alertmanager, docker-compose: Debian
# packages, scripts/setup_ops.sh). Re-running is cheap: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project and its dev tools into .venv (first run: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if command -v java >/dev/null && command -v mvn >/dev/null; then
    .venv/bin/kafka-local fetch >/dev/null
  else
    echo "setup: java/mvn not found: the local broker is unavailable (Docker or KAFKA_BOOTSTRAP_SERVERS still work)" >&2
  fi
fi
bash scripts/setup_ops.sh

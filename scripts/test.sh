#!/usr/bin/env bash
# The whole test suite: set-up, lint, format check, type check, compose check, and every
# pytest test (unit, integration against a real Kafka broker, slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
if command -v docker-compose >/dev/null; then
  echo "== docker-compose config" >&2
  docker-compose config -q
else
  echo "== docker-compose not installed: compose file not validated" >&2
fi
echo "== pytest" >&2
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"

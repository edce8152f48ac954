#!/usr/bin/env bash
# The whole test suite: set-up, lint, format check, type check, compose check, Prometheus and
# Alertmanager config and rule checks, and every pytest test (unit, integration against a real
# Kafka broker and the real Prometheus and Alertmanager, slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== docker-compose config" >&2
if ! command -v docker-compose >/dev/null; then
  # scripts/setup.sh installs it (Debian's package) where it can; elsewhere, say what to do.
  echo "test: docker-compose is needed to validate docker-compose.yml and is not installed;" \
    "install it (Debian/Ubuntu: sudo apt-get install docker-compose; elsewhere:" \
    "https://docs.docker.com/compose/install/) and run make test again" >&2
  exit 1
fi
docker-compose config -q
if command -v promtool >/dev/null; then
  echo "== promtool: Prometheus config, rules and rule unit tests (ops/prometheus)" >&2
  promtool check rules ops/prometheus/rules.yml
  promtool check config ops/prometheus/prometheus.yml >/dev/null
  promtool check config ops/prometheus/prometheus.local.yml >/dev/null
  promtool test rules ops/prometheus/rules_test.yml
else
  echo "== promtool not installed: Prometheus rules not checked" >&2
fi
if command -v amtool >/dev/null; then
  echo "== amtool: Alertmanager config (ops/alertmanager)" >&2
  amtool check-config ops/alertmanager/alertmanager.yml >/dev/null
else
  echo "== amtool not installed: Alertmanager config not checked" >&2
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

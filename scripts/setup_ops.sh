#!/usr/bin/env bash
# The ops tools the tests run for real: Prometheus (with promtool), Alertmanager (with amtool)
# and docker-compose (validates docker-compose.yml without an engine), from Debian's packages.
#
# Idempotent and quick when they are there (a few `command -v`). Otherwise installs the missing
# ones with apt-get as root (or passwordless sudo); on a fresh machine with no package lists it
# runs `apt-get update` first. About a minute on first install.
#
# Without apt-get (a Mac), without root, or with SKIP_OPS_TOOLS=1 it installs nothing and says
# so: the tests that need a binary then skip with the reason (they fail when CI is set, and so
# does this script if apt-get fails under CI).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ]; }

want=()
{ have prometheus && have promtool; } || want+=(prometheus)
have prometheus-alertmanager || have alertmanager || want+=(prometheus-alertmanager)
have docker-compose || want+=(docker-compose)
[ "${#want[@]}" -eq 0 ] && exit 0

skip() {
  echo "setup: $1: not installing ${want[*]}; the Prometheus/Alertmanager integration tests" \
    "and the promtool/amtool/compose checks are skipped until they are installed" >&2
  exit 0
}
[ -n "${SKIP_OPS_TOOLS:-}" ] && skip "SKIP_OPS_TOOLS is set"
command -v apt-get >/dev/null 2>&1 ||
  skip "apt-get not found (elsewhere install them yourself, e.g. brew install prometheus alertmanager)"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    skip "not root and no passwordless sudo (run: sudo apt-get install -y ${want[*]})"
  fi
fi

echo "setup: installing ${want[*]} with apt-get (first run only, about a minute)" >&2
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${want[@]}" >>"$log" 2>&1
}
if ! install; then
  # A fresh machine (a CI container) has no package lists yet.
  if ! { "${sudo[@]}" apt-get update -qq >>"$log" 2>&1 && install; }; then
    echo "setup: apt-get could not install ${want[*]}:" >&2
    tail -15 "$log" >&2
    [ -n "${CI:-}" ] && exit 1
    skip "apt-get failed"
  fi
fi
echo "setup: installed ${want[*]} in $(($(date +%s) - start)) s" >&2
if [ -d /run/systemd/system ]; then
  # Debian's packages start their own services; the tests never use them (free ports).
  echo "setup: note: systemd started the packages' own services (Prometheus :9090," \
    "Alertmanager :9093); 'systemctl disable --now prometheus prometheus-alertmanager'" \
    "if you do not want them" >&2
fi

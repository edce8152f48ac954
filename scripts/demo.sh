#!/usr/bin/env bash
# The offline demo: set up, start a broker (KAFKA_BOOTSTRAP_SERVERS, or the local JVM broker),
# train a demo model on simulated beats if none exists, stream simulated ECG windows with
# injected anomalies, run the detector and print its alerts live. Ctrl-C ends it cleanly.
# DEMO_DURATION=seconds (default 60) bounds the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"

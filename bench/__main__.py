"""``python -m bench --quick|--full``: benchmarks and end-to-end evaluation on real Kafka.

Starts a local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), trains or reuses the model
bundles, runs every section, writes ``<out>/<mode>.json`` and regenerates the mode's section
of BENCHMARKS.md. Exit code 0 when every section ran (targets may still be missed: the
results say so), 1 when a section failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["main"]

_TF_ENV = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def _parser(sections: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks and evaluation on a real Kafka broker."
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_const", const="quick", dest="mode")
    mode.add_argument("--full", action="store_const", const="full", dest="mode")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    parser.add_argument(
        "--markdown", type=Path, default=Path("BENCHMARKS.md"), help="file whose section to update"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated sections ({','.join(sections)}); results go to "
        "<out>/<mode>-partial.json and BENCHMARKS.md is left alone",
    )
    parser.add_argument("--sim-bundle", type=Path, help="use this bundle for simulated ECG")
    parser.add_argument("--ecg-bundle", type=Path, help="use this bundle for the ECG5000 replay")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs of child processes")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="before each performance section, wait up to this long for other processes to "
        "use under 0.3 cores (default: 10 quick, 120 full; 0 = never)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point (``python -m bench quality ...`` is the detection-quality report)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["quality"]:
        for key, value in _TF_ENV.items():
            os.environ.setdefault(key, value)
        from bench.quality_report import main as quality

        return quality(argv[1:])
    for key, value in _TF_ENV.items():  # before TensorFlow is imported anywhere
        os.environ.setdefault(key, value)
    from bench.registry import names

    sections = names()
    args = _parser(sections).parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else sections
    unknown = [s for s in only if s not in sections]
    if unknown:
        print(f"bench: unknown section(s) {unknown}; choose from {sections}", file=sys.stderr)
        return 2
    if args.wait_quiet is None:
        args.wait_quiet = 10.0 if args.mode == "quick" else 120.0
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from bench.broker import BenchError
    from bench.runner import run

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        return run(args.mode, only, command, args, workdir)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep_workdir:
            print(f"bench: child logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

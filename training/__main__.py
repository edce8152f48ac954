"""Command line: ``training fit``, ``training evaluate``, ``training download-ecg5000``.

Settings come from ``TRAINING_*`` environment variables and ``.env`` (see
:mod:`training.settings`); flags override them. Progress goes to stderr as structlog lines
(``--quiet`` keeps only warnings); the summary goes to stdout. Bad input ends the run with
one ``training: error: ...`` line naming the file and row, and exit code 1 (2 for usage
and settings errors), never a traceback.

Examples::

    python -m training download-ecg5000 --out data/ecg5000.csv
    python -m training fit --data data/ecg5000.csv --out models/ecg --seed 0
    python -m training evaluate --model models/ecg --data data/ecg5000.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from detector.config_errors import describe_settings_error
from detector.datafile import TimePolicy, parse_row_range
from detector.errors import ConfigError, DataFileError, DetectorError
from detector.log import configure_logging
from training.calibrate import ThresholdMethod
from training.data import Format
from training.models import Arch

__all__ = ["build_parser", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _widths(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 512,256") from None


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="data file")
    p.add_argument("--format", choices=get_args(Format), help="default: auto (by suffix/content)")
    p.add_argument("--window", type=int, help="csv: window length in rows")
    p.add_argument("--stride", type=int, help="csv: rows between window starts (default window)")
    p.add_argument(
        "--label-column",
        help="csv: label column, 1 = anomalous (default: 'label' or 'is_anomaly' if present)",
    )
    p.add_argument(
        "--columns", help="csv: comma-separated channel columns (default: the numeric ones)"
    )
    p.add_argument("--time-column", help="csv: time column (default: by name, e.g. timestamp)")
    p.add_argument(
        "--source-column", help="csv: source id column; windows are cut within each source"
    )
    p.add_argument(
        "--rows",
        metavar="A:B",
        help="only data rows A to B-1 (0-based; either side optional, e.g. 0:400 or 400:)",
    )
    p.add_argument(
        "--time-policy",
        choices=get_args(TimePolicy),
        help="csv times that repeat or go back: clamp (default: previous time + 1 ms), "
        "drop the row, or error",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        help="share of windows held out for test (0.2; csv: the last ones); 0 = no test set, "
        "train on every window. Env: TRAINING_TEST_FRACTION",
    )


def _default(name: str) -> str:
    """A ``TrainingSettings`` field's default, for help texts."""
    from training.settings import TrainingSettings

    return str(TrainingSettings.model_fields[name].default)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train, calibrate, evaluate and write a model bundle")
    _data_flags(fit)
    fit.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    fit.add_argument(
        "--arch",
        choices=get_args(Arch),
        help=f"VAE architecture (default {_default('arch')})",
    )
    fit.add_argument("--latent", type=int, help=f"latent size (default {_default('latent')})")
    fit.add_argument("--widths", type=_widths, help="hidden widths, e.g. 512,256")
    fit.add_argument("--beta", type=float, help=f"KL weight (default {_default('beta')})")
    fit.add_argument(
        "--epochs", type=int, help=f"most training epochs (default {_default('epochs')})"
    )
    fit.add_argument("--batch-size", type=int, help=f"default {_default('batch_size')}")
    fit.add_argument(
        "--learning-rate", type=float, help=f"Adam's (default {_default('learning_rate')})"
    )
    fit.add_argument("--patience", type=int, help="early-stopping patience; 0 = off")
    fit.add_argument("--val-fraction", type=float, help="share held out for early stopping")
    fit.add_argument("--folds", type=int, help="K of the out-of-fold calibration")
    fit.add_argument("--target-far", type=float, help="false-alarm rate to promise (0.01)")
    fit.add_argument(
        "--threshold-method",
        choices=get_args(ThresholdMethod),
        help="how the threshold is calibrated on out-of-fold normal scores "
        f"(default {_default('threshold_method')})",
    )
    fit.add_argument("--smoothing", type=int, help="odd residual smoothing length (1 = none)")
    fit.add_argument("--seed", type=int, help=f"random seed (default {_default('seed')})")
    fit.add_argument(
        "--no-ensemble",
        dest="ensemble",
        action="store_const",
        const=False,
        help="score with one model fitted on all normal windows, not the K fold models",
    )
    fit.add_argument(
        "--centre-windows",
        dest="centre_windows",
        action="store_const",
        const=True,
        help="subtract each window's own per-channel mean before normalising: scores ignore "
        "slow level drift (a level shifted for longer than a window shows only at its edges)",
    )
    fit.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_const",
        const=False,
        help="skip the tutorial's plain autoencoder baseline (default: fit it too)",
    )
    fit.add_argument(
        "--no-plots",
        dest="plots",
        action="store_const",
        const=False,
        help="write no plots/ (default: write them)",
    )
    fit.add_argument("--model-name", help="name in the manifest (default: from arch and data)")
    fit.add_argument("--model-version", help="version in the manifest (default: a timestamp)")
    fit.add_argument("--threads", type=int, help="TensorFlow threads (2)")
    fit.add_argument("--quiet", action="store_const", const=True, help="no progress output")
    fit.add_argument("--log-level", help=f"default {_default('log_level')}")
    fit.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="auto: console on a terminal, JSON lines otherwise (default auto)",
    )

    ev = sub.add_parser("evaluate", help="score a data set with a bundle (the detector's loader)")
    ev.add_argument("--model", type=Path, required=True, help="bundle folder")
    _data_flags(ev)
    ev.add_argument(
        "--part",
        choices=["test", "all"],
        default="test",
        help="the split fit held out (default) or every window",
    )
    ev.add_argument("--output", type=Path, help="also write the result as JSON here")
    ev.add_argument("--quiet", action="store_const", const=True, help="no progress output")

    dl = sub.add_parser("download-ecg5000", help="fetch ECG5000 and verify its sha256")
    dl.add_argument("--url", help="source (https://, file:// or a local path)")
    dl.add_argument(
        "--out",
        type=Path,
        default=Path("data/ecg5000/ecg5000.csv"),
        help="where to write it (default %(default)s)",
    )
    dl.add_argument("--sha256", help="expected sha256 (default: the tutorial file's)")
    return parser


def _settings(args: argparse.Namespace) -> Any:
    from training.settings import TrainingSettings

    flags = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k not in {"command", "data", "out", "model", "part", "output"}
    }
    try:
        return TrainingSettings(**flags)
    except (ValidationError, ValueError) as exc:  # SettingsError (env) is a ValueError
        problems = describe_settings_error(exc, TrainingSettings)  # names fields, no values
        raise ConfigError(f"invalid settings: {problems}") from None


def _fit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging("WARNING" if settings.quiet else settings.log_level, settings.log_format)
    from training.fit import fit_bundle
    from training.report import summary_lines

    report = fit_bundle(settings, args.data, args.out)
    print("\n".join(summary_lines(report, str(args.out))))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    configure_logging("WARNING" if args.quiet else "INFO")
    from detector.bundle import read_manifest

    # The bundle and the data file first: a wrong path is said at once, not after the
    # seconds TensorFlow takes to import.
    read_manifest(args.model)
    if not args.data.is_file():
        raise DataFileError(args.data, "no such file")
    from training.evaluate import SUMMARY_HEADER, evaluate_bundle, summary_row
    from training.export import write_json
    from training.train import configure_tensorflow

    configure_tensorflow(threads=2, deterministic=False)

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    try:
        rows = parse_row_range(args.rows) if args.rows is not None else None
    except ValueError as exc:
        raise ConfigError(f"--rows: {exc}") from exc
    result = evaluate_bundle(
        args.model,
        args.data,
        args.format or "auto",
        args.window,
        args.stride,
        args.label_column,
        args.part,
        test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
        columns=columns,
        time_column=args.time_column,
        source_column=args.source_column,
        rows=rows,
        time_policy=args.time_policy or "clamp",
    )
    print(
        f"{result['model']} on {result['data']} ({result['part']}, {result['windows']} "
        f"windows), threshold {result['threshold']['value']:.6g}"
    )
    print(SUMMARY_HEADER)
    print(summary_row("bundle", result["metrics"]))
    if args.output is not None:
        write_json(args.output, result)
    return 0


def _download(args: argparse.Namespace) -> int:
    from training.download import ECG5000_SHA256, ECG5000_URL, download

    path = download(args.url or ECG5000_URL, args.out, args.sha256 or ECG5000_SHA256)
    print(f"{path}: sha256 verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    os.environ.setdefault(
        "TF_CPP_MIN_LOG_LEVEL", "3"
    )  # TensorFlow's C++ logs: errors surface in Python
    args = build_parser().parse_args(argv)
    commands = {"fit": _fit, "evaluate": _evaluate, "download-ecg5000": _download}
    try:
        return commands[args.command](args)
    except ValidationError as exc:
        print(f"training: error: invalid settings: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DetectorError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("training: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""The training CLI on bad input: one clear line, non-zero exit, no traceback; downloads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main
from training.download import download
from training.errors import DownloadError

# main() configures structlog on the stderr of the moment, a capture pytest closes after the
# test: reset it, or a later test logging through a cached logger writes to a closed file.
pytestmark = pytest.mark.usefixtures("fresh_structlog")

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_malformed_csv_exits_non_zero_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "beats.csv"
    bad.write_text("1,2,3,1\n1,2,3,1\n1,2,nan,1\n")
    done = _run("fit", "--data", str(bad), "--format", "ecg5000", "--out", str(tmp_path / "m"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"training: error: {bad}: line 3: column 3: 'nan' is not finite" in done.stderr
    assert not (tmp_path / "m").exists()


def test_bad_settings_and_out_dir_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "w.npz"
    np.savez(data, windows=np.zeros((10, 4)))
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "m"), "--smoothing", "4"]) == 2
    assert "invalid settings" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["fit", "--data", str(data), "--out", str(busy)]) == 2
    assert "holds more than a model bundle (notes.txt)" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text() == "mine"


def test_unknown_format_from_the_environment(tmp_path: Path) -> None:
    data = tmp_path / "w.npz"
    np.savez(data, windows=np.zeros((10, 4)))
    done = _run(
        "fit", "--data", str(data), "--out", str(tmp_path / "m"), env={"TRAINING_FORMAT": "xls"}
    )
    assert done.returncode == 2
    assert "format" in done.stderr and "Traceback" not in done.stderr


def test_no_normal_training_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "all_bad.npz"
    np.savez(data, windows=np.zeros((50, 4)), labels=np.ones(50, dtype=np.int8))
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "m")]) == 1
    assert "no normal windows in the training part" in capsys.readouterr().err


def test_series_shorter_than_a_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "short.csv"
    data.write_text("timestamp;a\n1;0,5\n2;0,7\n")
    assert main(["fit", "--data", str(data), "--window", "5", "--out", str(tmp_path / "m")]) == 1
    assert "shorter than one window of 5" in capsys.readouterr().err


def test_evaluate_refuses_a_bundle_of_another_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text('{"schema_version": 7}')
    data = tmp_path / "w.npz"
    np.savez(data, windows=np.zeros((10, 4)))
    assert main(["evaluate", "--model", str(bundle), "--data", str(data)]) == 1
    assert "schema version 7" in capsys.readouterr().err


def test_download_verifies_sha256(tmp_path: Path) -> None:
    src = tmp_path / "ecg.csv"
    src.write_bytes(b"1,2,3,1\n")
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    out = download(src.as_uri(), tmp_path / "dl" / "ecg.csv", good)
    assert out.read_bytes() == src.read_bytes()
    assert download(str(src), tmp_path / "plain.csv", good).is_file()
    with pytest.raises(DownloadError, match="does not match"):
        download(src.as_uri(), tmp_path / "bad.csv", "0" * 64)
    assert not (tmp_path / "bad.csv").exists()
    assert not list(tmp_path.glob(".bad.csv.part-*"))
    with pytest.raises(DownloadError, match="download failed"):
        download((tmp_path / "absent.csv").as_uri(), tmp_path / "x.csv", good)


def test_download_command_reports_mismatch(tmp_path: Path) -> None:
    src = tmp_path / "ecg.csv"
    src.write_bytes(b"not the tutorial file\n")
    done = _run("download-ecg5000", "--url", src.as_uri(), "--out", str(tmp_path / "e.csv"))
    assert done.returncode == 1
    assert "sha256" in done.stderr and "72ce7b04" in done.stderr
    assert "Traceback" not in done.stderr

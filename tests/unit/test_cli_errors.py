"""CLI errors that must be right (issue 14, item 6): an edited bundle refused with exit 2, no
settings value ever echoed, an invalid librdkafka option reported at once with exit 2."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from detector.__main__ import main as detector_main
from detector.bundle import CHECKSUM_FILE, MANIFEST_FILE, MODEL_FILE, file_sha256, write_checksums
from detector.errors import ConfigError
from tests.unit.helpers import make_manifest

pytestmark = pytest.mark.usefixtures("fresh_structlog")

SECRET = "supersecret123"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variables or .env file of the developer's leak into these tests."""
    for name in [k for k in os.environ if k.startswith(("DETECTOR_", "PRODUCER_", "TRAINING_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _bundle(out: Path) -> Path:
    """A bundle inspect can read: a real manifest and checksums over a stand-in model file
    (inspect and the refusal below never load the model)."""
    out.mkdir()
    (out / MODEL_FILE).write_bytes(b"stand-in for a keras archive")
    manifest = make_manifest().model_copy(update={"model_sha256": file_sha256(out / MODEL_FILE)})
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    write_checksums(out)
    return out


def _edit_threshold(bundle: Path) -> None:
    doc = json.loads((bundle / MANIFEST_FILE).read_text())
    doc["threshold"]["value"] = 1000.0
    (bundle / MANIFEST_FILE).write_text(json.dumps(doc, indent=2))


# -- D6: the manifest is covered by the checksum --------------------------------------------


def test_inspect_says_both_files_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert detector_main(["inspect", str(_bundle(tmp_path / "b"))]) == 0
    assert f"checksum   ok ({MANIFEST_FILE} and {MODEL_FILE}" in capsys.readouterr().out


def test_an_edited_manifest_exits_2_from_inspect_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(tmp_path / "b")
    _edit_threshold(bundle)
    assert detector_main(["inspect", str(bundle)]) == 2
    out, err = capsys.readouterr()
    assert "checksum   ok" not in out
    (line,) = err.strip().splitlines()  # one clear line, no traceback
    assert line.startswith("detector: error: ") and f"{MANIFEST_FILE}: sha256" in line
    assert "edited" in line
    code = detector_main(["run", "--bundle", str(bundle), "--bootstrap-servers", "127.0.0.1:9"])
    assert code == 2
    assert f"{MANIFEST_FILE}: sha256" in capsys.readouterr().err


def test_an_older_bundle_loads_but_inspect_says_the_manifest_is_unverified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(tmp_path / "b")
    (bundle / CHECKSUM_FILE).unlink()
    assert detector_main(["inspect", str(bundle)]) == 0
    out, err = capsys.readouterr()
    assert f"{MANIFEST_FILE} NOT verified" in out
    assert "bundle_manifest_unverified" in err  # the warning goes to stderr, not stdout


# -- D4: settings errors never echo a value --------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DETECTOR_KAFKA__SASL_PASWORD": SECRET}, "kafka.sasl_pasword: unknown setting"),
        ({"DETECTOR_KAFKA__SECURITY_PROTOCOL": SECRET}, "kafka.security_protocol"),
        ({"DETECTOR_MAX_BATCH": SECRET}, "max_batch"),
        ({"DETECTOR_KAFKA": "{" + SECRET}, 'field "kafka"'),
    ],
)
@pytest.mark.parametrize("command", [["run"], ["alerts", "--max", "1"]])
def test_a_settings_error_names_the_field_never_the_value(
    env: dict[str, str],
    named: str,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert detector_main(command) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("detector: error: invalid settings: ") and named in line


def test_a_mistyped_secret_suggests_the_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETECTOR_KAFKA__SASL_PASWORD", SECRET)
    assert detector_main(["run"]) == 2
    assert "did you mean sasl_password" in capsys.readouterr().err


def test_an_option_without_equals_does_not_echo_what_may_be_its_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert detector_main(["run", "-X", f"sasl.password:{SECRET}"]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and "'sasl.password' without '='" in err


def test_the_producer_never_echoes_a_settings_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from producer.__main__ import main as producer_main

    argv = ["simulate", "--count", "1", "--out", str(tmp_path / "x.npz")]
    for key, value in (
        ("PRODUCER_KAFKA__SASL_PASWORD", SECRET),
        ("PRODUCER_KAFKA__EXTRA", "{" + SECRET),
    ):
        monkeypatch.setenv(key, value)
        assert producer_main(argv) == 2
        out, err = capsys.readouterr()
        assert SECRET not in out + err and "Traceback" not in err
        assert "invalid settings" in err
        monkeypatch.delenv(key)


def test_training_never_echoes_a_settings_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import training.__main__ as training

    monkeypatch.setenv("TRAINING_EPOCHS", SECRET)
    argv = ["fit", "--data", str(tmp_path / "w.npz"), "--out", str(tmp_path / "m")]
    assert training.main(argv) == 2
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "epochs" in err


# -- D5: an invalid librdkafka option is a configuration error, at once ----------------------


def test_an_unknown_kafka_option_exits_2_at_once_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """It waited 46 s for a broker, then said none answered (exit 3)."""
    started = time.monotonic()
    argv = ["run", "-X", "no.such.option=1", "--bootstrap-servers", "127.0.0.1:9"]
    assert detector_main([*argv, "--bundle", str(_bundle(tmp_path / "b"))]) == 2
    assert time.monotonic() - started < 5
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "detector: error: invalid Kafka configuration: "
        'No such configuration property: "no.such.option"'
    )


def test_every_detector_client_reports_a_bad_option_as_configuration() -> None:
    from detector.kafka.io import KafkaIO
    from detector.settings import DetectorSettings

    settings = DetectorSettings(
        _env_file=None, kafka={"bootstrap_servers": "127.0.0.1:9", "extra": {"linger.ms": "x"}}
    )
    io = KafkaIO(settings)
    for client in (
        lambda: io.topics.admin,
        lambda: io.input.consumer,
        lambda: io.publisher.producer,
    ):
        with pytest.raises(ConfigError, match="invalid Kafka configuration: Invalid value"):
            client()


def test_the_producer_reports_a_bad_option_the_same_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from producer.__main__ import main as producer_main

    argv = ["simulate", "--count", "1", "-X", "no.such.option=1"]
    assert producer_main([*argv, "--bootstrap-servers", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert 'invalid Kafka configuration: No such configuration property: "no.such.option"' in err

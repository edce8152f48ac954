"""A new user's first hour (issue 15, items 1-11): what the CLIs say (help, errors, exit
codes, no TensorFlow chatter), the common ``KAFKA_BOOTSTRAP_SERVERS`` fallback, dead letters
said in the log, the demo's bundle check and report, the plots, and the files a fresh clone
relies on (README commands, Dockerfile, compose, .gitignore)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.__main__ import _parser as detector_parser
from detector.__main__ import main as detector_main
from detector.bundle import MANIFEST_FILE, MODEL_FILE, file_sha256, write_checksums
from detector.dead_letter_watch import DeadLetterWatch
from producer.__main__ import _parser as producer_parser
from tests.unit.helpers import make_manifest
from training.__main__ import build_parser as training_parser

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("fresh_structlog")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variables or .env file of the developer's leak into these tests."""
    for name in [
        k
        for k in os.environ
        if k.startswith(("DETECTOR_", "PRODUCER_", "TRAINING_")) or k == "KAFKA_BOOTSTRAP_SERVERS"
    ]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DETECTOR_", "PRODUCER_", "TRAINING_"))
        and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env["PYTHONPATH"] = str(REPO)
    return {**env, **extra}


def _bundle(out: Path, window: int = 8, channels: int = 1, **metrics: float) -> Path:
    """A bundle inspect can read (a stand-in model file: nothing here loads it)."""
    out.mkdir()
    (out / MODEL_FILE).write_bytes(b"stand-in for a keras archive")
    manifest = make_manifest(window, channels).model_copy(
        update={"model_sha256": file_sha256(out / MODEL_FILE), "metrics": metrics}
    )
    (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    write_checksums(out)
    return out


# -- 7: help on every option, defaults and exit codes ---------------------------------------


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize(
    "name,build",
    [("detector", detector_parser), ("producer", producer_parser), ("training", training_parser)],
)
def test_every_option_of_every_command_has_help(
    name: str, build: Callable[[], argparse.ArgumentParser]
) -> None:
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _walk(build(), name)
        if not a.help
    ]
    assert missing == []


def test_detector_run_help_gives_every_default_and_the_exit_codes() -> None:
    run = _subparsers(detector_parser())["run"]
    for action in run._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert "default" in (action.help or ""), action.option_strings
    text = run.format_help()
    assert "default 2048" in text and "default 0.01" in text and "default models/demo" in text
    for code in ("0  stopped cleanly", "1  crashed", "2  bad settings", "3  Kafka unreachable"):
        assert code in text


def test_every_detector_command_has_a_description() -> None:
    for name, sub in _subparsers(detector_parser()).items():
        assert sub.description, name
    alerts = _subparsers(detector_parser())["alerts"].format_help()
    assert "3  Kafka unreachable" in alerts


# -- 6: a bad value is one clean line, exit 2 ---------------------------------------------------


def test_an_out_of_range_target_far_is_one_clean_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert detector_main(["run", "--target-far", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("detector: error: invalid settings: threshold.target_far: ")
    assert "http" not in line and "pydantic" not in line and "input_value" not in line


# -- 3 and 4: no broker is one line and exit 3; KAFKA_BOOTSTRAP_SERVERS is the fallback -------


def test_alerts_without_a_broker_is_one_line_and_exit_3_at_the_common_address() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "alerts", "--follow", "--timeout", "2"],
        env=_env(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    (line,) = proc.stderr.strip().splitlines()  # no %3|...|FAIL| lines, no traceback
    assert line.startswith("detector: error: cannot reach Kafka at 127.0.0.1:9: ")
    assert "KAFKA_BOOTSTRAP_SERVERS" in line
    assert proc.stdout == ""
    assert time.monotonic() - started < 30


def test_kafka_bootstrap_servers_is_below_the_flag_and_the_prefixed_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detector.settings import DetectorSettings
    from producer.settings import ProducerSettings

    assert DetectorSettings().kafka.bootstrap_servers == "127.0.0.1:9092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "common:9092")
    assert DetectorSettings().kafka.bootstrap_servers == "common:9092"
    assert ProducerSettings().kafka.bootstrap_servers == "common:9092"
    monkeypatch.setenv("DETECTOR_KAFKA__SASL_USERNAME", "u")  # another field of the group
    assert DetectorSettings().kafka.bootstrap_servers == "common:9092"
    monkeypatch.setenv("DETECTOR_KAFKA__BOOTSTRAP_SERVERS", "prefixed:9092")
    monkeypatch.setenv("PRODUCER_KAFKA__BOOTSTRAP_SERVERS", "prefixed:9092")
    assert DetectorSettings().kafka.bootstrap_servers == "prefixed:9092"
    assert ProducerSettings().kafka.bootstrap_servers == "prefixed:9092"
    flag = {"kafka": {"bootstrap_servers": "flag:9092"}}
    assert DetectorSettings(**flag).kafka.bootstrap_servers == "flag:9092"
    assert ProducerSettings(**flag).kafka.bootstrap_servers == "flag:9092"


# -- 5: no TensorFlow chatter on a detector's stderr ---------------------------------------------


@pytest.mark.slow
def test_a_detector_that_loads_a_bundle_writes_only_json_lines(tmp_path: Path) -> None:
    from tests.bundle_factory import build_bundle

    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 16, dtype=np.float32)
    normal = (np.sin(t)[None, :] + 0.05 * rng.normal(size=(300, 16))).astype(np.float32)
    bundle = build_bundle(tmp_path / "bundle", normal[:, :, None], epochs=2)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "detector", "run", "--bundle", str(bundle)),
            *("--bootstrap-servers", "127.0.0.1:9", "--startup-timeout-s", "1", "--no-metrics"),
        ],
        env=_env(),  # TF_CPP_MIN_LOG_LEVEL unset: the detector silences TensorFlow itself
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    *logged, last = proc.stderr.strip().splitlines()
    assert last.startswith("detector: error: no Kafka broker answered at 127.0.0.1:9")
    events = [json.loads(line)["event"] for line in logged]  # every other line is JSON
    assert "model_warmed_up" in events
    for noise in ("cuInit", "oneDNN", "absl", "cuda", "I0000", "E0000", "W0000"):
        assert noise not in proc.stderr


# -- 11: start-up compiles only the batch sizes where a first call costs -----------------------


def test_warmup_compiles_the_small_batch_sizes_only() -> None:
    from detector.model import LoadedModel

    seen: list[int] = []
    model = object.__new__(LoadedModel)  # no TensorFlow: only the sizes matter here
    model._shape = (4, 1)
    model.score = lambda batch: seen.append(len(batch))  # type: ignore[method-assign,assignment,return-value]
    small = [1, 2, 4, 8, 16, 32, 64, 128]
    assert model.warmup(2048) == small == seen
    assert model.warmup(8) == small[:4]
    assert model.warmup(100) == small  # 100 windows are scored at 128
    every = model.warmup(2048, largest=None)
    assert len(every) == 23 and every[-1] == 2048


# -- 11: training evaluate fails before TensorFlow is imported ---------------------------------


def test_evaluate_of_a_missing_bundle_fails_at_once_without_importing_tensorflow(
    tmp_path: Path,
) -> None:
    code = (
        "import sys; from training.__main__ import main; "
        "rc = main(['evaluate', '--model', 'models/nope', '--data', 'x.csv']); "
        "print(rc, 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.split() == ["1", "False"]
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line
        == "training: error: models/nope/manifest.json: no manifest; is models/nope a model bundle?"
    )


# -- 8: inspect shows n/a, not a made-up precision of 0 ---------------------------------------


def test_inspect_shows_precision_as_na_when_the_test_split_has_no_anomaly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(
        tmp_path / "b", test_false_alarm_rate=0.006, test_precision=0.0, test_accuracy=0.99
    )
    assert detector_main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "test_precision = n/a (no anomalous test window)" in out
    assert "test_precision = 0" not in out
    assert "the test split held no anomalous window" in out


def test_precision_without_an_anomalous_window_is_none_not_zero() -> None:
    from training.evaluate import metrics

    scores = np.array([0.1, 0.5, 2.0, 3.0])
    none = metrics(scores, np.zeros(4, bool), threshold=1.0)
    assert none["precision"] is None and none["recall"] is None
    some = metrics(scores, np.array([False, False, True, False]), threshold=1.0)
    assert some["precision"] == 0.5 and some["recall"] == 1.0


# -- 1: dead letters said in the log, rate-limited ---------------------------------------------


def test_dead_letters_are_logged_once_per_reason_per_interval_with_counts() -> None:
    watch = DeadLetterWatch(interval_s=30.0, min_count=1000)
    shape = ("bad_shape", "shape (64, 4), the model expects (140, 1)")
    first = watch.observe([shape] * 3, scored=10, now=0.0)
    assert [(w.event, w.fields["count"], w.fields["total"]) for w in first] == [
        ("dead_letters", 3, 3)
    ]
    assert first[0].fields["detail"] == shape[1] and first[0].level == "warning"
    for second in range(1, 30):  # a flood within the interval: no line
        assert watch.observe([shape] * 100, scored=0, now=float(second)) == []
    assert watch.observe([("undecodable", "not JSON")], scored=0, now=29.5)[0].fields == {
        "reason": "undecodable",
        "count": 1,
        "total": 1,
        "detail": "not JSON",
        "scored_total": 10,
    }  # another reason is said at once
    (later,) = watch.observe([], scored=5, now=30.0)
    assert later.fields["reason"] == "bad_shape"
    assert later.fields["count"] == 2900 and later.fields["total"] == 2903
    assert watch.observe([], scored=5, now=100.0) == []  # nothing new, nothing said


def test_a_detector_whose_every_input_is_dead_lettered_says_so_loudly() -> None:
    watch = DeadLetterWatch(interval_s=30.0, min_count=100)
    shape = ("bad_shape", "shape (64, 4), the model expects (140, 1)")
    assert [w.event for w in watch.observe([shape] * 99, 0, now=0.0)] == ["dead_letters"]
    (loud,) = watch.observe([shape], 0, now=1.0)
    assert loud.level == "error" and loud.event == "all_input_dead_lettered"
    assert loud.fields["reasons"] == {"bad_shape": 100}
    assert "bundle" in loud.fields["hint"] and "(140, 1)" in loud.fields["detail"]
    assert watch.observe([shape], 0, now=2.0) == []  # at most once per interval
    assert [w.event for w in watch.observe([shape], 0, now=31.0)] == [
        "dead_letters",
        "all_input_dead_lettered",
    ]
    assert DeadLetterWatch(min_count=1).observe([shape], 1, now=0.0)[-1].event == "dead_letters"


# -- 1 and 8: the demo's bundle check and its report against the injected truth ---------------


def test_the_demo_refuses_a_bundle_that_does_not_fit_its_stream() -> None:
    from scripts.demo_report import bundle_mismatch

    assert bundle_mismatch("models/demo", 140, 1, "ecg", 140, 1) is None
    text = bundle_mismatch("models/demo", 64, 4, "vae-dense-normal", 140, 1)
    assert text is not None
    assert "64x4" in text and "140x1" in text and "mv models/demo" in text
    assert "make demo" in text and "dead-lettered" in text


def test_the_demo_compares_episodes_with_the_injected_incidents() -> None:
    from scripts.demo_report import episodes_from_alerts, incidents, match_episodes

    truth = {"a": [10, 11, 12, 50], "b": [7], "c": []}
    alerts = [
        ("e1", "a", "opened", 11),  # spans the first incident of a
        ("e1", "a", "resolved", 17),
        ("e2", "a", "opened", 30),  # a false alarm
        ("e2", "a", "resolved", 35),
        ("e3", "c", "opened", 3),  # a false alarm on a source without anomalies
        ("e4", "b", "opened", 5),  # still open at the end: spans 7
    ]
    episodes = episodes_from_alerts(alerts)
    assert [(e.episode_id, e.last_seq) for e in episodes] == [
        ("e3", None),
        ("e4", None),
        ("e1", 17),
        ("e2", 35),
    ]
    m = match_episodes(truth, episodes)
    assert incidents(truth["a"]) == [(10, 12), (50, 50)]
    assert (m.incidents, m.detected, m.episodes, m.right) == (3, 2, 4, 2)
    assert m.precision == 0.5 and m.recall == pytest.approx(2 / 3)
    empty = match_episodes({}, [])
    assert empty.precision is None and empty.recall is None


def test_the_alert_legend_states_the_severity_bands_of_the_code() -> None:
    from detector.alerts import CRITICAL_RATIO, MAJOR_RATIO, Severity, severity_for
    from detector.follow import alert_legend

    legend = alert_legend()
    assert f"below {MAJOR_RATIO:g}x" in legend and f"{CRITICAL_RATIO:g}x and above" in legend
    assert severity_for(MAJOR_RATIO, 1.0) is Severity.MAJOR
    assert severity_for(CRITICAL_RATIO, 1.0) is Severity.CRITICAL
    for state in ("OPENED", "ONGOING", "RESOLVED"):
        assert state in legend


# -- 9: plots say what they show --------------------------------------------------------------


def _figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure the plots close, kept for inspection."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    closed: list[Any] = []
    monkeypatch.setattr(plt, "close", closed.append)
    return closed


def test_loss_curves_have_a_unit_and_the_vae_scale_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.plots import Curve, plot_all

    figures = _figures(monkeypatch)
    epochs = np.arange(10)
    vae = Curve(
        "vae-dense", {"loss": list(-200.0 - 30 * epochs)}, "loss (nats per window)", "why <0"
    )
    written = plot_all(tmp_path, [vae], [], np.zeros(0, bool), *([np.zeros(0)] * 3), [])
    assert written == ["loss_curves.png"] and (tmp_path / "loss_curves.png").stat().st_size
    (fig,) = figures
    assert fig.axes[0].get_ylabel() == "loss (nats per window)"
    assert any("why <0" in text.get_text() for text in fig.texts)


def test_reconstructions_show_the_threshold_and_each_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.plots import ScoredSet, plot_all, verdict

    assert verdict(2.0, 1.0, False) == "flagged: false alarm"
    assert verdict(0.5, 1.0, True) == "not flagged: missed"
    figures = _figures(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 16, 1)).astype(np.float32)
    x_hat = (x * 0.8).astype(np.float32)
    errors = ((x - x_hat) ** 2)[..., 0]
    scores = errors.mean(axis=1)
    anomalous = np.arange(20) < 5
    plot_all(tmp_path, [], [ScoredSet("vae", scores, 0.05)], anomalous, x, x_hat, errors, ["ecg"])
    (recon,) = [f for f in figures if f.get_suptitle().startswith("Test windows")]
    titles = [ax.get_title() for ax in recon.axes if ax.get_title()]
    assert titles and all("threshold 0.05" in t for t in titles)
    assert all(re.search(r"flagged: (detected|missed|false alarm|correct)", t) for t in titles)


def test_fit_explains_the_vae_loss_and_labels_the_baseline_loss() -> None:
    from training.fit import _curve
    from training.models import ArchSpec

    class Run:
        def __init__(self, spec: ArchSpec, history: dict[str, list[float]]) -> None:
            self.spec = spec
            self.members = [type("M", (), {"history": history})()]

    vae = _curve(
        "vae", Run(ArchSpec("dense", 140, 1), {"loss": [-300.0], "reconstruction": [-350.0]})
    )  # type: ignore[arg-type]
    assert "nats" in vae.ylabel and "negative" in vae.note and "T·C = 140" in vae.note
    assert f"MSE ≈ {np.exp(-5):.2g}" in vae.note
    ae = _curve("ae", Run(ArchSpec("ae-baseline", 140, 1), {"loss": [0.1]}))  # type: ignore[arg-type]
    assert "absolute error" in ae.ylabel and ae.note == ""


# -- 2, 10, 11: the files a fresh clone relies on -------------------------------------------------


def _readme_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuations joined, comments cut)."""
    text = (REPO / "README.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", raw).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_every_readme_command_parses_and_never_overwrites_the_demo_bundle() -> None:
    parsers = {
        "detector": detector_parser,
        "producer": producer_parser,
        "training": training_parser,
    }
    commands = _readme_commands()
    assert any(c.startswith("source .venv/bin/activate") for c in commands)
    checked = 0
    for command in commands:
        words = shlex.split(command.rstrip("&").strip())
        name = words[0].removeprefix(".venv/bin/")
        if name not in parsers:
            continue
        try:
            args = parsers[name]().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"README command does not parse: {command}")
        checked += 1
        out = getattr(args, "out", None)
        assert out is None or Path(out) != Path("models/demo"), command
    assert checked >= 10


def test_readme_says_where_the_commands_are() -> None:
    text = (REPO / "README.md").read_text()
    assert "source .venv/bin/activate" in text and ".venv/bin/detector" in text
    assert "KAFKA_BOOTSTRAP_SERVERS" in text


def test_models_and_generated_windows_are_not_tracked() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "/models/" in ignored and "*.npz" in ignored


def test_the_image_gives_models_to_its_user_and_compose_checks_the_detector_health() -> None:
    docker = (REPO / "Dockerfile").read_text()
    assert "--uid 10001" in docker
    assert re.search(r"mkdir -p /models && chown 10001:10001 /models", docker)
    compose = (REPO / "docker-compose.yml").read_text()
    detector = compose.split("\n  detector:\n", 1)[1].split("\n\n", 1)[0]
    assert "healthcheck:" in detector and "/healthz" in detector


def test_make_test_validates_the_compose_file_instead_of_skipping() -> None:
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "docker-compose config -q" in script
    assert "not validated" not in script

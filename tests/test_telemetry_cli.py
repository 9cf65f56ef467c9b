"""The CLI's OpenTelemetry set-up: modes from flags and OTEL_* variables, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.otel import telemetry_from_env, trace_mode
from orchestrator.exceptions import UserError
from orchestrator.telemetry import configure_logging

OTEL_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "goal": "Explain queues",
                "tasks": [{"id": "define", "instruction": "Define a queue."}],
            }
        )
    )
    return plan


def test_mode_comes_from_the_flag_then_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trace_mode(None) == "off"  # nothing configured: nothing exported
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    assert trace_mode(None) == "otlp"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert trace_mode(None) == "console"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert trace_mode(None) == "off"
    assert trace_mode("otlp") == "otlp"  # the flag wins
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert trace_mode(None) == "off"


def test_unsupported_exporter_is_named(
    monkeypatch: pytest.MonkeyPatch, plan_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert main(["run", "--plan", str(plan_file), "--offline", "--json"]) == 2
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported" in capsys.readouterr().err


def test_grpc_without_its_exporter_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    try:  # the gRPC exporter is optional
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed here")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with (
        pytest.raises(UserError, match="opentelemetry-exporter-otlp-proto-grpc"),
        telemetry_from_env("otlp"),
    ):
        pass


def test_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(UserError, match="'http/json' is not supported"), telemetry_from_env("otlp"):
        pass


def test_console_spans_go_to_stderr_and_json_stays_clean(
    plan_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--plan", str(plan_file), "--offline", "--json", "--trace", "console"])
    assert code == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # stdout: the result only
    assert document["trace_id"] is not None
    assert '"name": "node define"' in captured.err
    assert document["trace_id"] in captured.err


def test_trace_off_flag_gives_a_null_trace_id(
    plan_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--plan", str(plan_file), "--offline", "--json", "--trace", "off"]) == 0
    assert json.loads(capsys.readouterr().out)["trace_id"] is None


def test_log_format_must_be_known() -> None:
    with pytest.raises(ValueError, match="log format must be auto, console or json"):
        configure_logging("xml")  # type: ignore[arg-type]


def test_ctrl_c_still_flushes_the_trace(tmp_path: Path, plan_file: Path) -> None:
    """A run interrupted with Ctrl-C exports its spans before the process exits."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from tests.test_telemetry import Receiver

    receiver = Receiver()
    server = threading.Thread(
        target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    server.start()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
    }
    command = [
        sys.executable, "-c", "import sys; from orchestrator.cli import main; sys.exit(main())",
        "run", "--plan", str(plan_file), "--offline", "--json", "--fault-rate", "1",
        "--log-format", "json", "--log-level", "info",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(90, process.kill)  # the test bounds its own run time
    watchdog.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if '"attempt started"' in line:
                break
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        watchdog.cancel()
        process.kill()
        receiver.server.shutdown()
        receiver.server.server_close()
    assert json.loads(out)["status"] == "cancelled"
    spans = receiver.spans()
    [root] = [span for span in spans if not span.parent_id]
    assert root.attributes["orchestrator.run.status"] == "cancelled"
    assert any(span.name.startswith("attempt ") for span in spans)

"""The simulator as a separate process, used like any Messages-API endpoint: the acceptance
path `orchestrator sim serve --port P` + `ANTHROPIC_BASE_URL=... orchestrator run ...`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PLAN = ROOT / "examples" / "plans" / "release_notes.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "sim", "serve", "--port", str(port),
         "--time-scale", "0", "--request-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:  # wait for the server to accept connections (bounded)
            try:
                request = urllib.request.Request(
                    f"{base_url}/v1/models", headers={"x-api-key": "k"}
                )
                urllib.request.urlopen(request, timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not start in 20 s"
                time.sleep(0.05)
        yield base_url, log
    finally:
        process.terminate()
        process.communicate(timeout=10)  # reaps it and closes the pipe


def _endpoint_env(base_url: str, tmp_path: Path) -> dict[str, str]:
    """What a user sets to use any Messages-API endpoint with the default ladder."""
    return {
        **os.environ,
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "anything",
        "ORCHESTRATOR_HOME": str(tmp_path / "home"),
    }


def _orchestrator(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_run_against_a_served_simulator_like_any_endpoint(
    sim_process: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, log = sim_process
    env = _endpoint_env(base_url, tmp_path)
    done = _orchestrator("run", "--plan", str(PLAN), "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "succeeded"
    assert document["simulated"] is True  # the server's header, not the CLI's say-so
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    models = {r["model"] for r in requests if r["path"] == "/v1/messages"}
    assert models <= {"claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"}
    attempts = sum(len(node["attempts"]) for node in document["nodes"])
    assert len([r for r in requests if r["path"] == "/v1/messages"]) >= attempts
    assert "anything" not in log.read_text()  # the key is never logged


def test_research_run_against_a_served_simulator(
    sim_process: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, _ = sim_process
    env = _endpoint_env(base_url, tmp_path)
    done = _orchestrator("run", "What does the with statement do in Python?", env=env)
    assert done.returncode == 0, done.stderr
    assert "## References" in done.stdout
    assert "SIMULATED" in done.stdout

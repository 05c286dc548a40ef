"""Every CLI command that reads Kafka or ClickHouse, with nothing listening: one line
on stderr and exit 4 (README: "4 Kafka or ClickHouse unreachable"), no traceback and
none of the client libraries' own log records. The checker's negative control is a
process that lets such an error escape."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli.demo import generate_campaign

REPO = Path(__file__).resolve().parents[3]


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connecting is refused


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What is wrong with how a command reported an unreachable service."""
    found = []
    lines = result.stderr.splitlines()
    if result.returncode != 4:
        found.append(f"exit {result.returncode}, not 4")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        found.append(f"stderr is not one 'error:' line: {lines[:8]}")
    if "Traceback" in result.stderr:
        found.append("a traceback")
    return found


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    port = str(refused_port())
    base = {"CA_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "CA_SQL_PORT": port,
            "CA_CLICKHOUSE_URL": "", "CA_DATA_DIR": str(tmp_path / "state"),
            "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=tmp_path,
                          env=os.environ | base | env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("command",
                         ["summary", "export", "export-server", "sql", "publish", "demo"])
def test_nothing_listening_is_one_line_and_exit_4(command: str, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in generate_campaign("c", 3, seed=1)))
    args, env = {
        "summary": (["summary", "c"], {}),
        "export": (["export", "c", "--output", str(tmp_path / "c.csv")], {}),
        "export-server": (["export", "c", "--output", str(tmp_path / "c.csv")],
                          {"CA_CLICKHOUSE_URL": f"http://u:pw@127.0.0.1:{refused_port()}"}),
        "sql": (["sql", "SELECT 1"], {}),
        "publish": (["publish", str(events)], {}),
        "demo": (["demo", "--messages", "5", "--once"], {}),
    }[command]

    result = run(args, tmp_path, **env)

    assert problems(result) == []
    service = "ClickHouse" if command.startswith(("export", "sql")) else "Kafka"
    assert service in result.stderr
    assert "pw" not in result.stderr  # a server URL's password is never shown
    assert not (tmp_path / "c.csv").exists()
    assert not (tmp_path / "state").exists()  # a reader opens and creates nothing


def test_negative_control_an_escaping_error_fails_the_checker(tmp_path: Path) -> None:
    code = "from aiokafka.errors import KafkaConnectionError; raise KafkaConnectionError('x')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert len(problems(result)) == 3

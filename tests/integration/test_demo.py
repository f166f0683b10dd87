"""`dtm demo` end to end: decisions agree with the simulator's truth; nothing is left running."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SHORT_DEMO = ["--exposures", "3", "--sensors", "4", "--speed", "20", "--wait-time", "5", "--late-time", "2",
              "--late-rate", "0.2", "--missing-rate", "0.1", "--resend-rate", "0.2", "--malformed-rate", "0.1",
              "--seed", "7"]


def demo_ports(output: str) -> set[int]:
    """The ports of the services and of /metrics, as the demo prints them."""
    return {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", output)}


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment mentions `text` (the demo's output folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def run_demo(output: Path, *extra: str, interrupt_after: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dtm.cli", "demo", *SHORT_DEMO, "--output", str(output), *extra]
    if interrupt_after is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=180)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # wait for the event, then press Ctrl-C
        lines.append(line)
        if interrupt_after in line:
            process.send_signal(signal.SIGINT)
            break
    rest, _ = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines) + rest, "")


def test_demo_agrees_with_truth_and_leaves_nothing_behind(tmp_path):
    result = run_demo(tmp_path / "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "decisions agreeing with the simulator's ground truth: 3/3" in result.stdout
    assert "DIFFERS" not in result.stdout
    truth = (tmp_path / "demo" / "truth.jsonl").read_text().splitlines()
    assert len(truth) == 3
    assert processes_mentioning(str(tmp_path / "demo")) == []
    ports = demo_ports(result.stdout)
    assert len(ports) == 4  # Redis, Kafka, S3, /metrics
    assert not ports & listening_ports()


def test_demo_with_avro_end_readouts(tmp_path):
    """The same pipeline decides exposures whose end readouts are Avro through a Schema Registry."""
    result = run_demo(tmp_path / "demo", "--avro")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Schema Registry http://127.0.0.1:" in result.stdout
    assert "decisions agreeing with the simulator's ground truth: 3/3" in result.stdout
    scheduler_log = (tmp_path / "demo" / "logs" / "scheduler.log").read_text()
    assert '"avro":true' in scheduler_log and "rejected" not in scheduler_log
    assert processes_mentioning(str(tmp_path / "demo")) == []


def test_ctrl_c_stops_every_process(tmp_path):
    result = run_demo(tmp_path / "demo", interrupt_after="simulating")
    assert result.returncode == 130, result.stdout
    assert "stopping every process" in result.stdout
    assert processes_mentioning(str(tmp_path / "demo")) == []
    ports = demo_ports(result.stdout)
    assert len(ports) == 4
    assert not ports & listening_ports()

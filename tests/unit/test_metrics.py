"""Day series created at 0, and process slots in the multiprocess directory."""
from __future__ import annotations

import os
import subprocess
import sys

from dtm.common import metrics
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

DAY, NEXT = "2031-02-28", "2031-03-01"  # used by no other test


def test_ensure_day_series_creates_today_and_tomorrow_at_zero():
    assert REGISTRY.get_sample_value("dtm_s3_late_or_missing_total", {"day": DAY}) is None
    metrics.ensure_day_series(DAY)
    for day in (DAY, NEXT):
        for kind in ("fits", "json"):
            assert REGISTRY.get_sample_value("dtm_file_messages_received_total", {"day": day, "kind": kind}) == 0
        assert REGISTRY.get_sample_value("dtm_s3_late_or_missing_total", {"day": day}) == 0
        assert REGISTRY.get_sample_value("dtm_clock_anomalies_total", {"day": day}) == 0
        assert REGISTRY.get_sample_value("dtm_s3_transfer_duration_seconds_count", {"day": day}) == 0
        assert REGISTRY.get_sample_value("dtm_s3_transfer_duration_seconds_bucket", {"day": day, "le": "60.0"}) == 0
        for status in ("complete", "incomplete", "no_files"):
            assert REGISTRY.get_sample_value("dtm_exposures_decided_total", {"day": day, "status": status}) == 0
    assert REGISTRY.get_sample_value("dtm_s3_late_or_missing_total", {"day": "2031-03-02"}) is None
    # Calling again changes nothing and keeps counted values.
    metrics.late_or_missing.labels(day=DAY).inc(2)
    metrics.ensure_day_series(DAY)
    assert REGISTRY.get_sample_value("dtm_s3_late_or_missing_total", {"day": DAY}) == 2


def test_transfer_buckets_are_the_contracts():
    assert metrics.TRANSFER_BUCKETS == (3, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 25, 30, 45, 60)


# A process that takes a slot, counts one late file, prints its slot and holds it until stdin closes.
HOLDER = """
import sys
from dtm.common import metrics
slot = metrics.use_process_slot(sys.argv[1], "worker")
metrics.late_or_missing.labels(day="2025-12-03").inc()
print(slot, flush=True)
sys.stdin.read()
"""


def _environ() -> dict:
    return {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}


def start_holder(directory) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_environ())


def run_holder(directory) -> str:
    done = subprocess.run([sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=_environ(), timeout=60, check=True)
    return done.stdout.strip()


def late_or_missing_total(directory) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry.get_sample_value("dtm_s3_late_or_missing_total", {"day": "2025-12-03"})


def test_concurrent_processes_get_different_slots_and_a_later_one_reuses_slot_0(tmp_path):
    first = start_holder(tmp_path)
    second = None
    try:
        assert first.stdout.readline().strip() == "worker-0"
        second = start_holder(tmp_path)
        assert second.stdout.readline().strip() == "worker-1"  # slot 0 is held by the first process
    finally:
        for process in (first, second):
            if process is not None:
                process.stdin.close()
                process.wait(timeout=60)
                process.stdout.close()
    assert (first.returncode, second.returncode) == (0, 0)
    assert run_holder(tmp_path) == "worker-0"
    assert late_or_missing_total(tmp_path) == 3


def test_sequential_processes_leave_files_of_slot_0_only(tmp_path):
    runs = 3
    for _ in range(runs):
        assert run_holder(tmp_path) == "worker-0"
    databases = sorted(path.name for path in tmp_path.glob("*.db"))
    assert databases, "no metric files written"
    assert all(name.endswith("_worker-0.db") for name in databases), databases
    # Each process continued its predecessor's counter: nothing lost, nothing went backwards.
    assert late_or_missing_total(tmp_path) == runs

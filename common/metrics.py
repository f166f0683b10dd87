"""Every Prometheus metric dtm exports, defined once.

The pipeline runs as several processes (and pods) writing to one prometheus-client multiprocess
directory per pod; `dtm exporter` sums them. Dashboards and alert rules query these names.

Each process writes its values into files named after its *process identity*. prometheus-client
names them after the pid, so a restarted or forked process leaves its files behind and the
directory grows. `use_process_slot()` replaces the pid by a slot held with a file lock
(`worker-0`, `worker-1`, ...): a restarted process takes over the files of the dead one (its
counters continue from their totals, never backwards) and the directory holds files for at most
as many processes as ever ran at once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from .time import next_day

TRANSFER_BUCKETS = (3, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 25, 30, 45, 60)
FILE_KINDS = ("fits", "json")

file_messages_received = Counter(
    "dtm_file_messages_received_total",
    "S3 file notifications received, duplicates included, by observing day of eventTime and file kind.",
    ["day", "kind"],
)
transfer_duration = Histogram(
    "dtm_s3_transfer_duration_seconds",
    "Per exposure: latest arrival of an expected file minus the end of readout.",
    ["day"],
    buckets=TRANSFER_BUCKETS,
)
late_or_missing = Counter(
    "dtm_s3_late_or_missing_total",
    "Expected files that arrived later than MAX_LATE_FILE_TIME after readout, or not within S3_WAIT_TIME.",
    ["day"],
)
exposures_decided = Counter(
    "dtm_exposures_decided_total",
    "Exposures decided, by status (complete, incomplete, no_files).",
    ["day", "status"],
)
clock_anomalies = Counter(
    "dtm_clock_anomalies_total",
    "Exposures whose latest file arrived before the end of readout (transfer time <= 0): not observed.",
    ["day"],
)
rejected_messages = Counter(
    "dtm_rejected_messages_total",
    "Kafka messages skipped because dtm cannot use them, by stream and reason.",
    ["stream", "reason"],
)
arrived_after_window = Counter(
    "dtm_s3_arrived_after_window_total",
    "Expected files missing at S3_WAIT_TIME that arrived by RECHECK_TIME.",
    ["day"],
)
missing_after_recheck = Counter(
    "dtm_s3_missing_after_recheck_total",
    "Expected files still missing at RECHECK_TIME.",
    ["day"],
)
orphaned_files = Counter(
    "dtm_orphaned_files_total",
    "Files of exposures whose end readout never came within ORPHAN_GRACE_TIME.",
    ["day"],
)
camera_disagreements = Counter(
    "dtm_camera_disagreements_total",
    "Exposures where the camera's fileTransferPerImageSummary and dtm's decision disagree.",
    ["day"],
)
consumer_lag = Gauge(
    "dtm_kafka_consumer_lag_messages",
    "Messages behind the end of each assigned partition.",
    ["topic", "partition"],
    multiprocess_mode="livemax",
)
last_message_time = Gauge(
    "dtm_last_message_timestamp_seconds",
    "Wall-clock time (unix seconds) of the last message handled on each stream.",
    ["stream"],
    multiprocess_mode="livemax",
)

_DAY_COUNTERS = (late_or_missing, clock_anomalies, arrived_after_window, missing_after_recheck, orphaned_files,
                 camera_disagreements)
_days_ready: set[str] = set()


def ensure_day_series(day_obs: str) -> None:
    """Create the day's series and the next day's at 0.

    A counter series that first appears already at 1 loses that increment in increase()/rate();
    creating tomorrow's series today means every series is scraped at 0 before it moves.
    """
    for day in (day_obs, next_day(day_obs)):
        if day in _days_ready:
            continue
        _days_ready.add(day)
        for kind in FILE_KINDS:
            file_messages_received.labels(day=day, kind=kind)
        transfer_duration.labels(day=day)
        for counter in _DAY_COUNTERS:
            counter.labels(day=day)
        for status in ("complete", "incomplete", "no_files"):
            exposures_decided.labels(day=day, status=status)


_slot_lock = None  # the open lock file: held (and the slot owned) for the life of the process


def use_process_slot(directory: str, component: str) -> str:
    """Write this process's metrics under a reusable slot name instead of its pid.

    Call before the first metric value is created. Returns the slot name.
    """
    global _slot_lock
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    index = 0
    while True:
        lock = open(path / f"slot-{component}-{index}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            lock.close()
            index += 1
    _slot_lock = lock
    # Underscores separate fields in prometheus-client's file names: keep them out of the slot.
    slot = f"{component.replace('_', '-')}-{index}"
    # Live gauges of the slot's previous (dead) owner must not be reported as ours.
    for stale in path.glob(f"gauge_live*_{slot}.db"):
        stale.unlink()
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: slot)
    return slot

"""The decision per exposure (contract section 4), as a pure function.

Given the end of readout T0, the expected files and every known arrival time, decide which
files arrived within S3_WAIT_TIME, which of them were late, which are missing, and the
transfer time. No I/O here: tests call `decide` directly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

from ..common import time as ttime

COMPLETE, INCOMPLETE, NO_FILES, PENDING = "complete", "incomplete", "no_files", "pending"


@dataclass(frozen=True)
class Decision:
    image_name: str
    instrument: str
    day_obs: str
    end_readout_utc: float
    status: str
    expected_files: int
    arrived_files: int
    late_files: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    transfer_time_seconds: float | None = None
    last_file: str | None = None
    expected_sensors_found: bool = True

    @property
    def clock_anomaly(self) -> bool:
        """The latest file is stamped at or before the end of readout: clocks disagree."""
        return self.transfer_time_seconds is not None and self.transfer_time_seconds <= 0

    @property
    def late_or_missing(self) -> int:
        return len(self.late_files) + len(self.missing_files)

    def to_record(self) -> dict:
        """The stored and printed form (`dtm inspect --json`): times as ISO 8601 UTC."""
        record = asdict(self)
        record["end_readout_utc"] = ttime.isoformat(self.end_readout_utc)
        return record

    @classmethod
    def from_record(cls, record: dict) -> "Decision":
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        fields["end_readout_utc"] = ttime.parse_iso_utc(record["end_readout_utc"])
        return cls(**fields)


def merge_arrivals(listed: Mapping[str, float], notified: Mapping[str, float]) -> dict[str, float]:
    """Arrival per key: S3 LastModified where S3 lists the key, else the notification eventTime."""
    arrivals = dict(notified)
    arrivals.update(listed)
    return arrivals


def decide(
    *,
    image_name: str,
    instrument: str,
    day_obs: str,
    end_readout_utc: float,
    expected_keys: Iterable[str] | None,
    arrivals: Mapping[str, float],
    wait_time: float,
    max_late_time: float,
) -> Decision:
    """Decide one exposure.

    `arrivals` holds data files only (never the expected-sensors object). Without expected keys
    (no expected-sensors object), every data file that arrived within the window is expected.
    """
    deadline = end_readout_utc + wait_time
    on_time = {key: at for key, at in arrivals.items() if at <= deadline}
    if expected_keys is None:
        expected = sorted(on_time)
    else:
        expected = sorted(set(expected_keys))
    arrived = {key: on_time[key] for key in expected if key in on_time}
    missing = [key for key in expected if key not in arrived]
    late = sorted(key for key, at in arrived.items() if at - end_readout_utc > max_late_time)
    if arrived:
        last_file = max(arrived, key=lambda key: (arrived[key], key))
        transfer_time = arrived[last_file] - end_readout_utc
        status = INCOMPLETE if missing else COMPLETE
    else:
        last_file, transfer_time, status = None, None, NO_FILES
    return Decision(
        image_name=image_name,
        instrument=instrument,
        day_obs=day_obs,
        end_readout_utc=end_readout_utc,
        status=status,
        expected_files=len(expected),
        arrived_files=len(arrived),
        late_files=late,
        missing_files=missing,
        transfer_time_seconds=None if transfer_time is None else round(transfer_time, 6),
        last_file=last_file,
        expected_sensors_found=expected_keys is not None,
    )

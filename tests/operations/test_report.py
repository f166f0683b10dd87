"""`dtm report`: exact figures of a hand-made night."""
from __future__ import annotations

import csv
import io

import orjson
import pytest
from dtm.common import keys

from dtm.report import histogram, nearest_rank, night_report

DAY = "2025-12-03"
PREFIX = "LSSTCam/20251203"


def key(image: str, sensor: str, ext: str = "fits") -> str:
    return f"{PREFIX}/{image}/{image}_{sensor}.{ext}"


def record(number: int, status: str, transfer: float | None, late=(), missing=()) -> dict:
    image = f"MC_O_20251203_{number:06d}"
    return {"image_name": image, "instrument": "LSSTCam", "day_obs": DAY,
            "end_readout_utc": f"2025-12-04T03:{number:02d}:00.000Z", "status": status, "expected_files": 6,
            "arrived_files": 6 - len(missing), "late_files": [key(image, s) for s in late],
            "missing_files": [key(image, s) for s in missing], "transfer_time_seconds": transfer,
            "last_file": None, "expected_sensors_found": True}


NIGHT = [
    record(1, "complete", 4.0),
    record(2, "complete", 2.5),
    record(3, "incomplete", 12.5, late=["R22_S11"], missing=["R00_SW0", "R00_SG0_guider"]),
    record(4, "complete", 7.25, late=["R44_SG1_guider", "R22_S12"]),
    record(5, "incomplete", 61.0, missing=["R22_S11", "R22_S12", "R10_S00"]),
    record(6, "complete", -0.5),  # clock anomaly: never a transfer time
    record(7, "no_files", None, missing=["R22_S11"]),
    record(8, "complete", 30.0),
]


def test_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 11)]
    assert [nearest_rank(values, p) for p in (50, 90, 98, 100)] == [5.0, 9.0, 10.0, 10.0]
    assert nearest_rank([3.2], 50) == nearest_rank([3.2], 98) == 3.2
    assert nearest_rank([], 50) is None
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0  # rank ceil(0.5 * 4) = 2, never interpolated
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 51) == 3.0


def test_histogram_uses_the_sla_buckets_inclusive_upper_bounds():
    counts = {b["le"]: b["count"] for b in histogram([3.0, 3.01, 60.0, 60.5, 0.1])}
    assert counts[3] == 2 and counts[5] == 1 and counts[60] == 1 and counts["+Inf"] == 1
    assert sum(counts.values()) == 5


def test_night_report_figures():
    rechecks = {"MC_O_20251203_000005": {"arrived_after_window": ["a", "b"], "still_missing": ["c"]}}
    night = night_report(DAY, NIGHT, pending=1, rechecks=rechecks, worst=3)
    assert night["exposures"] == 8 and night["pending"] == 1
    assert (night["complete"], night["incomplete"], night["no_files"]) == (5, 2, 1)
    assert (night["late_files"], night["missing_files"]) == (3, 6)
    assert night["clock_anomalies"] == 1
    # Observed: 2.5 4.0 7.25 12.5 30.0 61.0 (n = 6): ranks ceil(3) = 3, ceil(5.4) = 6, ceil(5.88) = 6.
    assert night["transfer_time_seconds"] == {"count": 6, "method": "nearest-rank", "p50": 7.25, "p90": 61.0,
                                              "p98": 61.0, "max": 61.0}
    assert night["by_sensor_kind"] == {"science": {"late": 2, "missing": 4}, "wavefront": {"late": 0, "missing": 1},
                                       "guider": {"late": 1, "missing": 1}}
    assert night["by_raft"] == {"R00": {"late": 0, "missing": 2}, "R10": {"late": 0, "missing": 1},
                                "R22": {"late": 2, "missing": 3}, "R44": {"late": 1, "missing": 0}}
    assert [w["image_name"][-1] for w in night["worst"]] == ["5", "3", "7"]
    assert night["recheck"] == {"rechecked": 1, "arrived_after_window": 2, "still_missing": 1}
    counts = {b["le"]: b["count"] for b in night["histogram"]}
    assert (counts[3], counts[5], counts[8], counts[14], counts[30], counts["+Inf"]) == (1, 1, 1, 1, 1, 1)


def test_empty_night():
    night = night_report(DAY, [])
    assert night["exposures"] == 0 and night["transfer_time_seconds"]["p50"] is None and night["worst"] == []


@pytest.fixture
def stored_night(world):
    for index, item in enumerate(NIGHT):
        world.connection.zadd(keys.day_index(DAY), {item["image_name"]: 1764817200.0 + index})
        world.connection.set(keys.decision(item["image_name"]), orjson.dumps(item))
    world.connection.zadd(keys.day_index(DAY), {"MC_O_20251203_000099": 1764817300.0})  # not decided yet
    return world


def test_report_command(stored_night):
    world = stored_night
    night = world.cli_json("report", "--day", DAY)
    assert night == night_report(DAY, NIGHT, pending=1)
    text = world.cli("report", "--day", DAY).output
    assert "p50 7.25 s" in text and "p98 61.00 s" in text and "> 60 s |" in text and "1 pending" in text
    rows = list(csv.DictReader(io.StringIO(world.cli("report", "--day", DAY, "--csv").output)))
    assert [row["image_name"][-1] for row in rows] == [str(n) for n in range(1, 9)]
    assert rows[4]["missing_files"] == "3" and rows[2]["late_files"] == "1"
    assert "No exposure stored" in world.cli("report", "--day", "2025-01-01").output

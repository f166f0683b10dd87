"""`decide()`: the per-exposure decision of contract section 4, on a table of cases."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from dtm.common.objectkey import data_file_keys, expected_file_keys, expected_sensors_key, is_data_file
from dtm.worker.decision import COMPLETE, INCOMPLETE, NO_FILES, Decision, decide, merge_arrivals

IMAGE = "MC_O_20251203_000123"
PREFIX = f"LSSTCam/20251203/{IMAGE}/"
T0 = 1764825149.0  # whole seconds: boundary cases below compare exactly
W = 30.0
L = 10.0

SCI_FITS, SCI_JSON = data_file_keys(PREFIX, IMAGE, "R22_S11", False)
WF_FITS, WF_JSON = data_file_keys(PREFIX, IMAGE, "R00_SW0", False)
GD_FITS, GD_JSON = data_file_keys(PREFIX, IMAGE, "R00_SG0", True)
EXPECTED = expected_file_keys(PREFIX, IMAGE, {"expectedSensors": {
    "R22_S11": "SCIENCE", "R00_SW0": "SCIENCE", "R00_SG0": "GUIDER"}})
SENSORS_OBJECT = expected_sensors_key(PREFIX, IMAGE, "expectedSensors.json")


def test_expected_keys_of_the_small_camera():
    assert sorted(EXPECTED) == sorted([SCI_FITS, SCI_JSON, WF_FITS, WF_JSON, GD_FITS, GD_JSON])
    assert GD_FITS.endswith("_R00_SG0_guider.fits") and GD_JSON.endswith("_R00_SG0_guider.json")


def all_at(offset: float) -> dict[str, float]:
    return {key: T0 + offset for key in EXPECTED}


@dataclass
class Case:
    arrivals: dict[str, float]
    status: str
    arrived: int
    late: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    transfer: float | None = None
    last_file: str | None = None
    expected_keys: list[str] | None = field(default_factory=lambda: list(EXPECTED))
    expected_files: int = len(EXPECTED)
    clock_anomaly: bool = False


CASES = {
    "all_on_time": Case(
        {**all_at(3.0), SCI_FITS: T0 + 7.5}, COMPLETE, 6, transfer=7.5, last_file=SCI_FITS),
    "one_late_within_window": Case(
        {**all_at(3.0), WF_JSON: T0 + 12.0}, COMPLETE, 6, late=[WF_JSON], transfer=12.0, last_file=WF_JSON),
    "one_missing": Case(
        {k: v for k, v in all_at(4.0).items() if k != SCI_JSON}, INCOMPLETE, 5, missing=[SCI_JSON],
        transfer=4.0, last_file=max(k for k in EXPECTED if k != SCI_JSON)),
    "resent_file_latest_listing_wins": Case(
        merge_arrivals(listed={**all_at(2.0), SCI_FITS: T0 + 15.0}, notified={SCI_FITS: T0 + 2.0}),
        COMPLETE, 6, late=[SCI_FITS], transfer=15.0, last_file=SCI_FITS),
    "arrival_after_window_is_missing_not_arrived": Case(
        {**all_at(3.0), GD_FITS: T0 + W + 0.001}, INCOMPLETE, 5, missing=[GD_FITS],
        transfer=3.0, last_file=max(k for k in EXPECTED if k != GD_FITS)),
    "no_expected_sensors_every_on_time_file_counts": Case(
        {SCI_FITS: T0 + 2.0, SCI_JSON: T0 + 11.0, WF_FITS: T0 + W + 5.0}, COMPLETE, 2, late=[SCI_JSON],
        transfer=11.0, last_file=SCI_JSON, expected_keys=None, expected_files=2),
    "negative_transfer_time_is_a_clock_anomaly": Case(
        all_at(-2.0), COMPLETE, 6, transfer=-2.0, last_file=max(EXPECTED), clock_anomaly=True),
    "zero_transfer_time_is_a_clock_anomaly": Case(
        all_at(0.0), COMPLETE, 6, transfer=0.0, last_file=max(EXPECTED), clock_anomaly=True),
    "guider_files_late_and_missing": Case(
        {SCI_FITS: T0 + 1, SCI_JSON: T0 + 1, WF_FITS: T0 + 1, WF_JSON: T0 + 1, GD_FITS: T0 + 20},
        INCOMPLETE, 5, late=[GD_FITS], missing=[GD_JSON], transfer=20.0, last_file=GD_FITS),
    "unexpected_data_file_ignored": Case(
        {**all_at(3.0), PREFIX + f"{IMAGE}_R44_S22.fits": T0 + 20.0}, COMPLETE, 6, transfer=3.0,
        last_file=max(EXPECTED)),
    "no_files_at_all": Case({}, NO_FILES, 0, missing=sorted(EXPECTED)),
    "no_files_and_no_expected_sensors": Case({}, NO_FILES, 0, expected_keys=None, expected_files=0),
    "only_files_after_window": Case(all_at(W + 1.0), NO_FILES, 0, missing=sorted(EXPECTED)),
    "boundary_arrival_at_deadline_arrives": Case(
        {**all_at(3.0), SCI_FITS: T0 + W}, COMPLETE, 6, late=[SCI_FITS], transfer=W, last_file=SCI_FITS),
    "boundary_arrival_at_max_late_is_not_late": Case(
        {**all_at(3.0), SCI_FITS: T0 + L}, COMPLETE, 6, transfer=L, last_file=SCI_FITS),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case):
    decision = decide(
        image_name=IMAGE, instrument="LSSTCam", day_obs="2025-12-03", end_readout_utc=T0,
        expected_keys=case.expected_keys, arrivals=case.arrivals, wait_time=W, max_late_time=L,
    )
    assert decision.status == case.status
    assert decision.expected_files == case.expected_files
    assert decision.arrived_files == case.arrived
    assert decision.late_files == sorted(case.late)
    assert decision.missing_files == sorted(case.missing)
    assert decision.transfer_time_seconds == case.transfer
    assert decision.last_file == case.last_file
    assert decision.clock_anomaly is case.clock_anomaly
    assert decision.late_or_missing == len(case.late) + len(case.missing)
    assert decision.expected_sensors_found is (case.expected_keys is not None)


def test_boundaries_on_an_inexact_end_of_readout():
    """T0 as the sample readout gives it (not a whole number): the boundaries still hold."""
    t0 = 1764825149.211875
    decision = decide(
        image_name=IMAGE, instrument="LSSTCam", day_obs="2025-12-03", end_readout_utc=t0,
        expected_keys=[SCI_FITS, SCI_JSON], arrivals={SCI_FITS: t0 + W, SCI_JSON: t0 + L},
        wait_time=W, max_late_time=L,
    )
    assert decision.arrived_files == 2
    assert decision.late_files == [SCI_FITS]


def test_merge_arrivals_prefers_listing_and_falls_back_to_notification():
    merged = merge_arrivals(listed={SCI_FITS: T0 + 5.0}, notified={SCI_FITS: T0 + 4.9, SCI_JSON: T0 + 6.0})
    assert merged == {SCI_FITS: T0 + 5.0, SCI_JSON: T0 + 6.0}


def test_expected_sensors_object_is_not_a_data_file():
    assert not is_data_file(SENSORS_OBJECT)
    assert not is_data_file(PREFIX + "README.txt")
    assert is_data_file(SCI_FITS)
    assert is_data_file(GD_JSON)


def test_record_round_trip():
    decision = decide(
        image_name=IMAGE, instrument="LSSTCam", day_obs="2025-12-03", end_readout_utc=1764825149.211875,
        expected_keys=EXPECTED, arrivals={SCI_FITS: 1764825152.5}, wait_time=W, max_late_time=L,
    )
    record = decision.to_record()
    assert record["end_readout_utc"] == "2025-12-04T05:12:29.211Z"
    for name in ("image_name", "instrument", "day_obs", "status", "expected_files", "arrived_files", "late_files",
                 "missing_files", "transfer_time_seconds", "last_file"):
        assert name in record
    back = Decision.from_record(record)
    assert back.missing_files == decision.missing_files
    assert back.end_readout_utc == pytest.approx(decision.end_readout_utc, abs=1e-3)

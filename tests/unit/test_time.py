"""TAI/UTC conversions, the leap second of 2016-12-31, the observing day, ISO 8601."""
from __future__ import annotations

import calendar
import datetime as dt

import pytest
from dtm.common import time as ttime

# 2017-01-01T00:00:00 UTC; the leap second 2016-12-31T23:59:60 was inserted just before it.
MIDNIGHT_2017 = calendar.timegm((2017, 1, 1, 0, 0, 0))


def test_tai_minus_utc_either_side_of_the_leap_second():
    assert ttime.tai_minus_utc(MIDNIGHT_2017 - 0.5) == 36.0
    assert ttime.tai_minus_utc(MIDNIGHT_2017) == 37.0
    assert ttime.tai_minus_utc(calendar.timegm((2012, 6, 30, 12, 0, 0))) == 34.0
    assert ttime.tai_minus_utc(calendar.timegm((2025, 12, 4, 5, 0, 0))) == 37.0


@pytest.mark.parametrize(
    ("tai", "utc"),
    [
        (MIDNIGHT_2017 + 36 - 1.0, MIDNIGHT_2017 - 1.0),  # 23:59:59 UTC
        (MIDNIGHT_2017 + 36 - 0.25, MIDNIGHT_2017 - 0.25),  # 23:59:59.75 UTC
        (MIDNIGHT_2017 + 36.0, MIDNIGHT_2017),  # 23:59:60.0: unix time cannot move
        (MIDNIGHT_2017 + 36.5, MIDNIGHT_2017),  # 23:59:60.5
        (MIDNIGHT_2017 + 37.0, MIDNIGHT_2017),  # 00:00:00 UTC
        (MIDNIGHT_2017 + 37.25, MIDNIGHT_2017 + 0.25),
        (MIDNIGHT_2017 + 38.0, MIDNIGHT_2017 + 1.0),
        (MIDNIGHT_2017 + 86400 + 37.0, MIDNIGHT_2017 + 86400),  # the next midnight: no leap second
    ],
)
def test_tai_to_utc_across_the_leap_second(tai, utc):
    assert ttime.tai_to_utc(tai) == pytest.approx(utc, abs=1e-9)


def test_tai_to_utc_is_monotonic_through_the_leap_second():
    start = MIDNIGHT_2017 + 30.0
    instants = [start + step * 0.125 for step in range(100)]  # 12.5 s across the inserted second
    converted = [ttime.tai_to_utc(t) for t in instants]
    assert all(a <= b for a, b in zip(converted, converted[1:]))
    # Before the leap second the offset is 36 s, after it 37 s.
    assert converted[0] == start - 36.0
    assert converted[-1] == instants[-1] - 37.0


def test_utc_to_tai_round_trip_away_from_leap_seconds():
    for utc in (MIDNIGHT_2017 - 3600.0, MIDNIGHT_2017 + 3600.0, 1764825149.211875):
        assert ttime.tai_to_utc(ttime.utc_to_tai(utc)) == pytest.approx(utc, abs=1e-6)


def test_sample_end_of_readout():
    assert ttime.tai_to_utc(1764825186.211875) == pytest.approx(1764825149.211875, abs=1e-6)
    assert ttime.isoformat(ttime.tai_to_utc(1764825186.211875)) == "2025-12-04T05:12:29.211Z"


NOON_TAI_2025_12_04 = calendar.timegm((2025, 12, 4, 12, 0, 0))  # as TAI unix seconds


def test_observing_day_either_side_of_noon_tai():
    assert ttime.observing_day_of_tai(NOON_TAI_2025_12_04 - 0.001) == "2025-12-03"
    assert ttime.observing_day_of_tai(NOON_TAI_2025_12_04) == "2025-12-04"
    assert ttime.observing_day_of_tai(NOON_TAI_2025_12_04 + 86399.999) == "2025-12-04"
    assert ttime.observing_day_of_tai(NOON_TAI_2025_12_04 + 86400) == "2025-12-05"
    assert ttime.observing_day_of_tai(1764825186.211875) == "2025-12-03"


def test_observing_day_of_utc_uses_tai():
    # Noon TAI is 11:59:23 UTC: 37 s of UTC before noon already belong to the next observing day.
    assert ttime.observing_day_of_utc(NOON_TAI_2025_12_04 - 37.0) == "2025-12-04"
    assert ttime.observing_day_of_utc(NOON_TAI_2025_12_04 - 37.001) == "2025-12-03"
    assert ttime.observing_day_of_utc(NOON_TAI_2025_12_04 - 36.0) == "2025-12-04"


def test_next_day():
    assert ttime.next_day("2025-12-31") == "2026-01-01"
    assert ttime.next_day("2028-02-28") == "2028-02-29"


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("2025-12-04T05:12:35.318204Z", 1764825155.318204),
        ("2025-12-04T05:12:35Z", 1764825155.0),
        ("2025-12-04T05:12:35.318+00:00", 1764825155.318),
        ("2025-12-04T07:12:35.5+02:00", 1764825155.5),
    ],
)
def test_parse_iso_utc(text, unix):
    assert ttime.parse_iso_utc(text) == pytest.approx(unix, abs=1e-6)


@pytest.mark.parametrize("text", ["2025-12-04T05:12:35", "2025-12-04 05:12", "05:12:35Z", "", "tomorrow"])
def test_parse_iso_utc_rejects(text):
    with pytest.raises(ValueError):
        ttime.parse_iso_utc(text)


def test_datetime_helpers():
    when = ttime.to_datetime(1764825155.318204)
    assert when.tzinfo is not None and when.utcoffset() == dt.timedelta(0)
    assert ttime.to_unix(when) == pytest.approx(1764825155.318204, abs=1e-6)
    with pytest.raises(ValueError):
        ttime.to_unix(dt.datetime(2025, 12, 4))
    assert ttime.isoformat(1764825155.318204) == "2025-12-04T05:12:35.318Z"

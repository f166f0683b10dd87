"""Time scales: TAI unix seconds (camera events) and UTC (S3), and the observing day.

The camera stamps events in TAI expressed as unix seconds; S3 stamps objects in UTC. TAI-UTC
changes with leap seconds, so the offset comes from the IAU SOFA table shipped with pyerfa
(`erfa.dat`), never from a constant.
"""
from __future__ import annotations

import datetime as dt
import functools
import warnings

import erfa

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_PER_DAY = 86400.0
_HALF_DAY = 43200.0


@functools.lru_cache(maxsize=4096)
def _tai_minus_utc_on(day: dt.date) -> float:
    """TAI-UTC in seconds during the UTC calendar day `day` (leap seconds end a day)."""
    with warnings.catch_warnings():
        # erfa warns "dubious year" for dates a few years past its release; the table is still right
        # until the next leap second is announced.
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        return float(erfa.dat(day.year, day.month, day.day, 0.0))


_UNIX_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def _date_of(unix_seconds: float) -> dt.date:
    return dt.date.fromordinal(_UNIX_EPOCH_ORDINAL + int(unix_seconds // _SECONDS_PER_DAY))


# Times outside this range are not observatory times but corrupt input (milliseconds sent as
# seconds, a zero date): parsers reject them rather than compute calendar dates from them.
PLAUSIBLE_UNIX_RANGE = (946684800.0, 4102444800.0)  # 2000-01-01 .. 2100-01-01


def is_plausible(unix_seconds: float) -> bool:
    return PLAUSIBLE_UNIX_RANGE[0] <= unix_seconds < PLAUSIBLE_UNIX_RANGE[1]


def tai_minus_utc(utc_unix: float) -> float:
    """TAI-UTC (seconds) at the UTC instant `utc_unix`."""
    return _tai_minus_utc_on(_date_of(utc_unix))


def utc_to_tai(utc_unix: float) -> float:
    return utc_unix + tai_minus_utc(utc_unix)


def tai_to_utc(tai_unix: float) -> float:
    """UTC unix seconds of a TAI unix timestamp.

    The offset depends on the UTC date, which is only known once the offset is subtracted: take
    the date of a first guess, then check whether the result has crossed into the next day.
    During an inserted leap second (23:59:60) unix time cannot move, so it stays at midnight.
    """
    guess = tai_unix - _tai_minus_utc_on(_date_of(tai_unix))
    day = _date_of(guess)
    utc = tai_unix - _tai_minus_utc_on(day)
    next_midnight = (day - dt.date(1970, 1, 1)).days * _SECONDS_PER_DAY + _SECONDS_PER_DAY
    if utc >= next_midnight:
        utc = max(tai_unix - _tai_minus_utc_on(day + dt.timedelta(days=1)), next_midnight)
    return utc


def observing_day_of_tai(tai_unix: float) -> str:
    """The observing day (`YYYY-MM-DD`): the TAI date of the instant 12 hours earlier."""
    return _date_of(tai_unix - _HALF_DAY).isoformat()


def observing_day_of_utc(utc_unix: float) -> str:
    return observing_day_of_tai(utc_to_tai(utc_unix))


def next_day(day_obs: str) -> str:
    return (dt.date.fromisoformat(day_obs) + dt.timedelta(days=1)).isoformat()


def to_datetime(utc_unix: float) -> dt.datetime:
    """A timezone-aware UTC datetime."""
    return _EPOCH + dt.timedelta(seconds=utc_unix)


def to_unix(when: dt.datetime) -> float:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: S3 and Kafka times must carry a timezone")
    return (when - _EPOCH).total_seconds()


def isoformat(utc_unix: float) -> str:
    """ISO 8601 with a `Z`, millisecond precision (Ceph's listing precision)."""
    return to_datetime(utc_unix).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_utc(text: str) -> float:
    """Unix seconds of an ISO 8601 instant such as S3's `2025-12-04T05:12:35.318204Z`."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return to_unix(when)

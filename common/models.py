"""The messages dtm reads, as plain records, and their parsers.

Parsers raise `Rejected(reason, detail)` for bad input; callers count the reason and skip the
message, so one bad message never stops a stream.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import asdict, dataclass

import orjson

from . import time as ttime
from .objectkey import INSTRUMENTS, BadObjectKey, ObjectKey, exposure_prefix, is_image_name, parse_object_key


class Rejected(ValueError):
    """A message dtm cannot use. `reason` is a short label value for the rejection counter."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FileArrival:
    """One S3 ObjectCreated notification."""

    object_key: ObjectKey
    event_time: float  # UTC unix seconds
    day_obs: str  # observing day of event_time

    @property
    def image_name(self) -> str:
        return self.object_key.image_name


def parse_file_notification(
    value: bytes | None,
    *,
    bucket: str,
    expected_sensors_filename: str,
    opaque_data: str | None = None,
) -> FileArrival:
    """A Ceph bucket notification (S3 event JSON, first record) -> FileArrival."""
    if not value:
        raise Rejected("malformed", "empty message")
    try:
        record = orjson.loads(value)["Records"][0]
        event_name = record["eventName"]
        event_time_text = record["eventTime"]
        s3 = record["s3"]
        bucket_name = s3["bucket"]["name"]
        raw_key = s3["object"]["key"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as error:
        raise Rejected("malformed", f"not an S3 event notification ({type(error).__name__}: {error})") from None
    if opaque_data is not None and record.get("opaqueData") != opaque_data:
        # Never echo the value: it is a shared secret.
        raise Rejected("bad_opaque_data", "opaqueData missing or not the configured value")
    if not isinstance(event_name, str) or not event_name.startswith(("ObjectCreated:", "s3:ObjectCreated:")):
        raise Rejected("not_object_created", f"eventName {event_name!r}")
    if bucket_name != bucket:
        raise Rejected("other_bucket", f"bucket {bucket_name!r}")
    try:
        event_time = ttime.parse_iso_utc(event_time_text)
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise Rejected("malformed", f"eventTime {event_time_text!r} is not ISO 8601 with a timezone") from None
    if not ttime.is_plausible(event_time):
        raise Rejected("malformed", f"eventTime {event_time_text!r} is outside 2000-2100")
    # S3 event notifications URL-encode object keys (a space arrives as '+').
    if isinstance(raw_key, str) and ("%" in raw_key or "+" in raw_key):
        key = urllib.parse.unquote_plus(raw_key)
    else:
        key = raw_key
    try:
        object_key = parse_object_key(key, expected_sensors_filename)
    except (BadObjectKey, TypeError) as error:
        raise Rejected("bad_key", str(error)) from None
    return FileArrival(object_key, event_time, ttime.observing_day_of_utc(event_time))


def ceph_notification(*, bucket: str, key: str, event_time: float, size: int = 0, etag: str = "",
                      event_name: str = "ObjectCreated:Put", opaque_data: str = "") -> bytes:
    """A bucket notification as Ceph sends it (the inverse of `parse_file_notification`)."""
    return orjson.dumps({"Records": [{
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "awsRegion": "",
        "eventTime": ttime.to_datetime(event_time).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "eventName": event_name,
        "userIdentity": {"principalId": bucket},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": f"{bucket}-notification",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": urllib.parse.quote(key, safe="/"), "size": size, "eTag": etag, "versionId": "",
                       "sequencer": f"{int(event_time * 1e6):016X}", "metadata": [], "tags": []},
        },
        "eventId": f"{event_time:.6f}.{etag}",
        "opaqueData": opaque_data,
    }]})


@dataclass(frozen=True, slots=True)
class EndReadout:
    """The camera's endReadout event, reduced to what dtm needs."""

    image_name: str
    image_source: str
    image_controller: str
    image_date: str
    end_readout_tai: float  # TAI unix seconds

    @property
    def instrument(self) -> str:
        return INSTRUMENTS[self.image_source]

    @property
    def end_readout_utc(self) -> float:
        return ttime.tai_to_utc(self.end_readout_tai)

    @property
    def day_obs(self) -> str:
        return ttime.observing_day_of_tai(self.end_readout_tai)

    @property
    def prefix(self) -> str:
        return exposure_prefix(self.instrument, self.image_date, self.image_name)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> "EndReadout":
        return cls(**orjson.loads(data))


def end_readout_from_fields(fields: dict) -> EndReadout:
    """Validate a decoded endReadout (from JSON or Avro)."""
    try:
        image_name = fields["imageName"]
        image_source = fields["imageSource"]
        image_controller = fields["imageController"]
        image_date = fields["imageDate"]
        end_tai = float(fields["timestampEndOfReadout"])
    except KeyError as error:
        raise Rejected("missing_field", f"endReadout lacks {error.args[0]!r}") from None
    except (TypeError, ValueError):
        raise Rejected("malformed", "timestampEndOfReadout is not a number") from None
    if image_source not in INSTRUMENTS:
        raise Rejected("unknown_image_source", f"imageSource {image_source!r} (known: {', '.join(INSTRUMENTS)})")
    if not isinstance(image_name, str) or not is_image_name(image_name):
        raise Rejected("malformed", f"imageName {image_name!r}")
    if not (isinstance(image_date, str) and len(image_date) == 8 and image_date.isdigit()):
        raise Rejected("malformed", f"imageDate {image_date!r}")
    if isinstance(fields["timestampEndOfReadout"], bool) or not ttime.is_plausible(end_tai):
        raise Rejected("malformed", f"timestampEndOfReadout {end_tai!r} is not TAI unix seconds of 2000-2100")
    return EndReadout(image_name, image_source, str(image_controller), image_date, end_tai)

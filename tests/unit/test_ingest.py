"""`parse_batch`: counting, rejecting, and keeping the good messages around a bad one."""
from __future__ import annotations

import copy
import json

import pytest
from confluent_kafka import KafkaError
from dtm.common.settings import Settings
from dtm.ingest.consumer import STREAM, count, parse_batch
from prometheus_client import REGISTRY

IMAGE = "MC_O_20251203_000123"


class FakeError:
    def __init__(self, code: int):
        self._code = code

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return f"kafka error {self._code}"


class FakeMessage:
    def __init__(self, value: bytes | None, offset: int, error: FakeError | None = None):
        self._value, self._offset, self._error = value, offset, error

    def value(self):
        return self._value

    def topic(self):
        return "rubin-summit-notifications"

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def error(self):
        return self._error


@pytest.fixture
def make(samples):
    template = json.loads((samples / "file_notification.json").read_text())

    def make(rest: str, event_time: str = "2025-12-04T05:12:35.318204Z", bucket: str = "rubin-summit") -> bytes:
        document = copy.deepcopy(template)
        record = document["Records"][0]
        record["eventTime"] = event_time
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["object"]["key"] = f"LSSTCam/20251203/{IMAGE}/{IMAGE}_{rest}"
        return json.dumps(document).encode()
    return make


def test_parse_batch(make, settings):
    messages = [
        FakeMessage(make("R22_S11.fits"), 10),
        FakeMessage(make("R22_S11.json"), 11),
        FakeMessage(b"{broken", 12),
        FakeMessage(make("R00_SG0_guider.fits"), 13),
        FakeMessage(None, 14, FakeError(KafkaError._PARTITION_EOF)),
        FakeMessage(make("R22_S12.fits", bucket="another-bucket"), 15),
        FakeMessage(make("R22_S12.txt"), 16),
        # After 12:00 TAI (11:59:23 UTC) the observing day is the next one.
        FakeMessage(make("R22_S12.fits", event_time="2025-12-04T11:59:30Z"), 17),
        FakeMessage(None, 18, FakeError(KafkaError._TRANSPORT)),
        FakeMessage(make("expectedSensors.json"), 19),
        FakeMessage(make("R22_S12.fits"), 20),
    ]
    batch = parse_batch(messages, settings)
    assert [a.object_key.key.rsplit("_", 2)[-2:] for a in batch.arrivals] == [
        ["R22", "S11.fits"], ["R22", "S11.json"], ["SG0", "guider.fits"], ["R22", "S12.fits"],
        ["000123", "expectedSensors.json"], ["R22", "S12.fits"]]
    assert dict(batch.received) == {
        ("2025-12-03", "fits"): 3, ("2025-12-03", "json"): 2, ("2025-12-04", "fits"): 1}
    assert dict(batch.rejected) == {"malformed": 1, "other_bucket": 1, "bad_key": 1}


def test_opaque_data_from_settings(make):
    settings = Settings.from_env({"FILE_NOTIFICATION_OPAQUE_DATA": "token"})
    batch = parse_batch([FakeMessage(make("R22_S11.fits"), 1)], settings)
    assert batch.arrivals == [] and dict(batch.rejected) == {"bad_opaque_data": 1}


def test_count_records_metrics(make, settings):
    def value(name, labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    received = ("dtm_file_messages_received_total", {"day": "2025-12-03", "kind": "fits"})
    rejected = ("dtm_rejected_messages_total", {"stream": STREAM, "reason": "malformed"})
    before = value(*received), value(*rejected)
    batch = parse_batch([FakeMessage(make("R22_S11.fits"), 1), FakeMessage(make("R22_S11.fits"), 2),
                         FakeMessage(b"", 3)], settings)
    count(batch)
    assert value(*received) - before[0] == 2
    assert value(*rejected) - before[1] == 1
    # The next day's series exists (at 0 or more) before any of its messages arrive.
    assert REGISTRY.get_sample_value("dtm_file_messages_received_total", {"day": "2025-12-04", "kind": "json"}) \
        is not None


def test_a_message_that_breaks_the_parser_is_skipped_not_fatal(make, monkeypatch):
    """Whatever a parser raises, the message is counted as `unexpected` and the batch goes on."""
    from dtm.ingest import consumer

    good = FakeMessage(make("R22_S11.fits"), offset=1)

    def explode_on_first(value, **options):
        if value == b"boom":
            raise ZeroDivisionError("a parser bug")
        return real_parse(value, **options)

    real_parse = consumer.parse_file_notification
    monkeypatch.setattr(consumer, "parse_file_notification", explode_on_first)
    batch = parse_batch([FakeMessage(b"boom", offset=0), good], Settings.from_env({}))
    assert dict(batch.rejected) == {"unexpected": 1}
    assert len(batch.arrivals) == 1


@pytest.mark.parametrize("event_time", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "1970-01-01T00:00:00Z"])
def test_implausible_event_times_are_rejected(make, event_time):
    batch = parse_batch([FakeMessage(make("R22_S11.fits", event_time=event_time), offset=0)], Settings.from_env({}))
    assert dict(batch.rejected) == {"malformed": 1} and batch.arrivals == []

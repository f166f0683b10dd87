"""Avro end readouts through a Schema Registry served by another process, over HTTP."""
from __future__ import annotations

import importlib.util
import logging
import threading

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from dtm.common.models import EndReadout, Rejected
from dtm.common.settings import Settings
from dtm.scheduler.consumer import ReadoutScheduler, parse_readout, store_until_done
from dtm.scheduler.decoding import RegistryUnavailable, avro_decoder, decode_json, make_decoder
from prometheus_client import REGISTRY

from dtm import camera_avro
from dtm.embedded import free_port
from dtm.schema_registry import SchemaRegistryProcess

from .conftest import FakeMessage

TOPIC = "lsst.sal.MTCamera.logevent_endReadout"
EXPECTED = EndReadout("MC_O_20251203_000123", "MC", "O", "20251203", 1764825186.211875)


def serialize(url: str, schema: str, fields: dict, topic: str = TOPIC) -> bytes:
    serializer = AvroSerializer(SchemaRegistryClient({"url": url}), schema)
    return serializer(fields, SerializationContext(topic, MessageField.VALUE))


def rejected(stream: str, reason: str) -> float:
    return REGISTRY.get_sample_value("dtm_rejected_messages_total", {"stream": stream, "reason": reason}) or 0.0


def test_round_trip_through_the_registry_process(registry, end_readout_sample, end_readout_schema):
    value = serialize(registry.url, end_readout_schema, end_readout_sample)
    assert value[0] == 0
    schema_id = int.from_bytes(value[1:5], "big")
    # The serializer registered the schema over HTTP, in the other process, as <topic>-value.
    client = SchemaRegistryClient({"url": registry.url})
    assert client.get_latest_version(f"{TOPIC}-value").schema_id == schema_id

    decode = avro_decoder(registry.url)
    fields = decode(value, TOPIC)
    assert fields == end_readout_sample
    assert parse_readout(decode, value, TOPIC) == EXPECTED
    # The JSON path gives the same readout.
    assert parse_readout(decode_json, orjson.dumps(end_readout_sample), TOPIC) == EXPECTED


def test_schema_fetched_by_id_once_and_cached(end_readout_sample, end_readout_schema):
    with SchemaRegistryProcess() as own_registry:
        value = serialize(own_registry.url, end_readout_schema, end_readout_sample)
        decode = avro_decoder(own_registry.url)
        assert decode(value, TOPIC)["imageName"] == "MC_O_20251203_000123"
    # The registry is gone: the cached schema still decodes.
    assert parse_readout(decode, value, TOPIC) == EXPECTED


@pytest.mark.parametrize("value", [None, b"", b'{"imageName": "MC_O_20251203_000123"}', b"\x01\x00\x00\x00\x01abc"])
def test_wrong_magic_byte_rejected(registry, value):
    with pytest.raises(Rejected) as error:
        avro_decoder(registry.url)(value, TOPIC)
    assert error.value.reason == "bad_magic_byte"
    assert "magic byte" in error.value.detail


def test_unknown_schema_id_rejected(registry, end_readout_sample, end_readout_schema):
    value = serialize(registry.url, end_readout_schema, end_readout_sample)
    unknown = b"\x00" + (987654).to_bytes(4, "big") + value[5:]
    with pytest.raises(Rejected) as error:
        avro_decoder(registry.url)(unknown, TOPIC)
    assert error.value.reason == "unknown_schema"
    assert "987654" in error.value.detail


@pytest.mark.parametrize("cut", [5, 6, 40])
def test_truncated_or_headless_body_rejected(registry, end_readout_sample, end_readout_schema, cut):
    value = serialize(registry.url, end_readout_schema, end_readout_sample)
    with pytest.raises(Rejected) as error:
        avro_decoder(registry.url)(value[:cut], TOPIC)
    assert error.value.reason == "malformed"


def test_schema_without_end_of_readout_is_rejected(registry, end_readout_sample):
    schema = camera_avro.schema(camera_avro.END_READOUT, without=("timestampEndOfReadout",))
    fields = {name: value for name, value in end_readout_sample.items() if name != "timestampEndOfReadout"}
    value = serialize(registry.url, schema, fields, topic="lsst.sal.MTCamera.logevent_endReadout.old")
    decode = avro_decoder(registry.url)
    assert "timestampEndOfReadout" not in decode(value, TOPIC)
    with pytest.raises(Rejected) as error:
        parse_readout(decode, value, TOPIC)
    assert error.value.reason == "missing_field"
    assert "timestampEndOfReadout" in error.value.detail


def test_rejections_are_counted_and_logged_never_fatal(registry, end_readout_sample, end_readout_schema,
                                                       redis_connection, caplog):
    assert importlib.util.find_spec("lupa"), "RQ's unique=True runs a Lua script: install 'fakeredis[lua]'"
    settings = Settings.from_env({"END_READOUT_SCHEMA_REGISTRY": registry.url})
    scheduler = ReadoutScheduler(settings, redis_connection)
    decode = make_decoder(settings.schema_registry_url)
    good = serialize(registry.url, end_readout_schema, end_readout_sample)
    messages = [
        FakeMessage(TOPIC, b'{"not": "avro"}', offset=1),
        FakeMessage(TOPIC, b"\x00" + (424242).to_bytes(4, "big") + good[5:], offset=2),
        FakeMessage(TOPIC, serialize(registry.url, camera_avro.schema(
            camera_avro.END_READOUT, without=("timestampEndOfReadout",)),
            {k: v for k, v in end_readout_sample.items() if k != "timestampEndOfReadout"},
            topic="other-topic"), offset=3),
        FakeMessage(TOPIC, good[:20], offset=4),
        FakeMessage(TOPIC, good, offset=5),
    ]
    before = {reason: rejected("end_readouts", reason)
              for reason in ("bad_magic_byte", "unknown_schema", "missing_field", "malformed")}
    with caplog.at_level(logging.WARNING, logger="dtm.scheduler.consumer"):
        assert store_until_done(messages, decode, scheduler, threading.Event()) is True
    after = {reason: rejected("end_readouts", reason) for reason in before}
    assert {reason: after[reason] - before[reason] for reason in before} == {
        "bad_magic_byte": 1, "unknown_schema": 1, "missing_field": 1, "malformed": 1}
    reasons = [record.reason for record in caplog.records
               if record.getMessage().startswith("message rejected") and record.stream == "end_readouts"]
    assert sorted(reasons) == ["bad_magic_byte", "malformed", "missing_field", "unknown_schema"]
    assert [record.offset for record in caplog.records if hasattr(record, "offset")] == [1, 2, 3, 4]
    # The good message after the bad ones was stored.
    assert scheduler.store.readout(EXPECTED.image_name) == EXPECTED


def test_registry_down_is_retried_not_rejected(end_readout_sample, end_readout_schema):
    port = free_port()
    url = f"http://dtm:s3cret-pw@127.0.0.1:{port}"
    decode = avro_decoder(url, timeout=1)
    framed = b"\x00\x00\x00\x00\x01" + b"\x02" * 40
    with pytest.raises(RegistryUnavailable) as error:
        decode(framed, TOPIC)
    assert "s3cret-pw" not in str(error.value)


def test_store_until_done_retries_a_registry_outage(redis_connection, end_readout_sample):
    settings = Settings.from_env({})
    scheduler = ReadoutScheduler(settings, redis_connection)
    calls = []

    def flaky(value, topic):
        calls.append(topic)
        if len(calls) == 1:
            raise RegistryUnavailable("schema registry unavailable (ConnectError)")
        return decode_json(value, topic)

    message = FakeMessage(TOPIC, orjson.dumps(end_readout_sample))
    assert store_until_done([message], flaky, scheduler, threading.Event()) is True
    assert len(calls) == 2  # retried, not skipped
    assert scheduler.store.readout(EXPECTED.image_name) == EXPECTED


def test_json_path_unchanged(end_readout_sample):
    assert make_decoder(None) is decode_json
    assert parse_readout(decode_json, orjson.dumps(end_readout_sample), TOPIC) == EXPECTED
    for bad in (b"not json", b"[1, 2]", None):
        with pytest.raises(Rejected) as error:
            parse_readout(decode_json, bad, TOPIC)
        assert error.value.reason == "malformed"

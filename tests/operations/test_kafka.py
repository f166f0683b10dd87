"""`dtm capture` and the consumer lag of `dtm status`, on librdkafka's mock cluster (a real broker over TCP)."""
from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from rq import Queue, SimpleWorker

from dtm.capture import CapturedMessage, plan
from dtm.embedded import KafkaMockCluster, free_port

from .conftest import END_READOUT_TOPIC, NOTIFICATION_TOPIC

T0 = 1764828000.0


@pytest.fixture
def kafka(world, monkeypatch):
    cluster = KafkaMockCluster({NOTIFICATION_TOPIC: 2, END_READOUT_TOPIC: 1})
    for prefix, group in (("FILE_NOTIFICATION_", "dtm-ingest"), ("END_READOUT_", "dtm-scheduler")):
        monkeypatch.setenv(f"{prefix}KAFKA_BOOTSTRAP_SERVERS", cluster.bootstrap_servers)
        monkeypatch.setenv(f"{prefix}KAFKA_GROUP_ID", group)
    yield cluster
    cluster.stop()


def publish(world, kafka) -> list[bytes]:
    """Three notifications on each partition, two end readouts."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    sent = []
    for index, key in enumerate(world.files(world.image_name(601))):
        value = world.notification(key, T0 + index)
        producer.produce(NOTIFICATION_TOPIC, value, partition=index % 2)
        sent.append(value)
    for number in (601, 602):
        value = world.readout_message(world.image_name(number), T0)
        producer.produce(END_READOUT_TOPIC, value)
        sent.append(value)
    producer.flush(10)
    return sent


def test_capture_copies_the_topics_and_replay_reads_them(world, kafka, tmp_path):
    sent = publish(world, kafka)
    output = tmp_path / "capture.jsonl"
    summary = world.cli_json("capture", str(output))
    assert summary["messages"] == 8 and summary["by_stream"] == {"file_notifications": 6, "end_readouts": 2}
    captured = [CapturedMessage.from_line(line) for line in output.read_bytes().splitlines()]
    assert sorted(m.value() for m in captured) == sorted(sent)
    assert {(m.topic(), m.partition()) for m in captured} == {(NOTIFICATION_TOPIC, 0), (NOTIFICATION_TOPIC, 1),
                                                              (END_READOUT_TOPIC, 0)}

    few = tmp_path / "few.jsonl"
    assert world.cli_json("capture", str(few), "--max-messages", "3")["messages"] == 3
    assert len(few.read_bytes().splitlines()) == 3
    only = world.cli_json("capture", str(tmp_path / "readouts.jsonl"), "--stream", "end-readouts")
    assert only["by_stream"] == {"end_readouts": 2}

    replayed = world.cli_json("replay", "--from", str(output), expect=None)
    assert replayed["summary"]["fed"] == {"lines": 8, "notifications": 6, "end_readouts": 2, "skipped": 0,
                                         "errors": 0}
    # Nothing in S3 for them and no stored state: both decided with what the notifications say.
    assert {o["image_name"]: o["status"] for o in replayed["exposures"]} == {
        world.image_name(601): "complete", world.image_name(602): "no_files"}
    # Capturing commits nothing: the pipeline's groups have no offsets.
    status = world.cli_json("status", expect=None)
    assert status["kafka"]["file_notifications"]["partitions"][0]["committed"] is None


def test_binary_values_round_trip_as_base64():
    avro = b"\x00\x00\x00\x00\x07\x02\xff"
    message = CapturedMessage(END_READOUT_TOPIC, avro, 0, 5, 1764828000000)
    line = message.to_line()
    assert b"value_base64" in line and CapturedMessage.from_line(line) == message
    text = CapturedMessage(NOTIFICATION_TOPIC, b'{"Records": []}', 1, 2, None)
    assert orjson.loads(text.to_line())["value"] == '{"Records": []}'
    assert CapturedMessage.from_line(text.to_line()) == text


class StubConsumer:
    """Offsets by timestamp as a real broker answers them (the mock cluster does not implement them)."""

    def __init__(self, timestamps: list[int]):
        self.timestamps = timestamps

    def list_topics(self, topic, timeout):
        partition = type("Partition", (), {})()
        metadata = type("Topic", (), {"error": None, "partitions": {0: partition}})()
        return type("Metadata", (), {"topics": {topic: metadata}})()

    def get_watermark_offsets(self, partition, timeout, cached):
        return 0, len(self.timestamps)

    def offsets_for_times(self, partitions, timeout):
        [wanted] = partitions
        offset = next((i for i, ts in enumerate(self.timestamps) if ts >= wanted.offset), -1)
        return [TopicPartition(wanted.topic, wanted.partition, offset)]


def test_since_and_until_become_offsets():
    consumer = StubConsumer([1000, 2000, 3000, 4000, 5000])
    assert plan(consumer, ["t"], None, None, 1) == {("t", 0): [0, 5]}
    assert plan(consumer, ["t"], 2000, 4000, 1) == {("t", 0): [1, 4]}  # 2000, 3000 and 4000 inclusive
    assert plan(consumer, ["t"], 4500, None, 1) == {("t", 0): [4, 5]}
    assert plan(consumer, ["t"], 6000, None, 1) == {}


def test_status_reads_consumer_lag_without_committing(world, kafka):
    publish(world, kafka)
    committer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "dtm-ingest",
                          "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(NOTIFICATION_TOPIC, 0, 2)], asynchronous=False)
    committer.close()
    SimpleWorker([Queue(world.settings.queue_name, connection=world.connection)],
                 connection=world.connection).register_birth()

    status = world.cli_json("status", "--max-lag", "3", expect=1)
    notifications = status["kafka"]["file_notifications"]
    assert [(p["partition"], p["committed"], p["high"], p["lag"]) for p in notifications["partitions"]] == [
        (0, 2, 3, 1), (1, None, 3, 3)]
    assert notifications["total_lag"] == 4 and status["kafka"]["end_readouts"]["total_lag"] == 2
    assert status["problems"] == ["consumer group dtm-ingest is 4 message(s) behind (limit 3)"]
    assert world.cli_json("status", "--max-lag", "4")["healthy"]
    check = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "dtm-ingest"})
    assert check.committed([TopicPartition(NOTIFICATION_TOPIC, 1)], timeout=5)[0].offset < 0  # still nothing
    check.close()


def test_status_does_not_hang_on_an_unreachable_kafka(world, monkeypatch):
    nowhere = f"127.0.0.1:{free_port()}"
    for prefix in ("FILE_NOTIFICATION_", "END_READOUT_"):
        monkeypatch.setenv(f"{prefix}KAFKA_BOOTSTRAP_SERVERS", nowhere)
        monkeypatch.setenv(f"{prefix}KAFKA_GROUP_ID", "dtm")
    started = time.monotonic()
    status = world.cli_json("status", "--kafka-timeout", "1", expect=1)
    assert time.monotonic() - started < 8
    assert not status["kafka"]["file_notifications"]["reachable"]
    assert any(problem.startswith("Kafka (end_readouts) unreachable") for problem in status["problems"])

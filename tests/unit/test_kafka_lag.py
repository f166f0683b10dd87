"""Consumer lag reporting: revoked partitions do not keep a stale lag."""
from __future__ import annotations

from confluent_kafka import TopicPartition
from dtm.common.kafka import report_lag
from prometheus_client import CollectorRegistry, Gauge


class FakeConsumer:
    def __init__(self, positions: dict[int, int], high: int):
        self.positions = positions
        self.high = high

    def assignment(self):
        return [TopicPartition("t", p) for p in self.positions]

    def position(self, partitions):
        return [TopicPartition("t", p.partition, self.positions[p.partition]) for p in partitions]

    def get_watermark_offsets(self, partition, timeout, cached):
        return 0, self.high


def test_lag_per_partition_and_zero_after_revocation():
    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    reported = report_lag(FakeConsumer({0: 90, 1: 100}, high=100), gauge, set())
    assert registry.get_sample_value("lag", {"topic": "t", "partition": "0"}) == 10
    assert reported == {("t", "0"), ("t", "1")}
    reported = report_lag(FakeConsumer({1: 95}, high=100), gauge, reported)  # partition 0 revoked
    assert registry.get_sample_value("lag", {"topic": "t", "partition": "0"}) == 0
    assert registry.get_sample_value("lag", {"topic": "t", "partition": "1"}) == 5
    assert reported == {("t", "1")}


class UnreachableConsumer(FakeConsumer):
    def get_watermark_offsets(self, partition, timeout, cached):
        from confluent_kafka import KafkaError, KafkaException

        raise KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN))


def test_brokers_away_leave_the_lag_as_it_was():
    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    reported = report_lag(FakeConsumer({0: 90}, high=100), gauge, set())
    assert report_lag(UnreachableConsumer({0: 95}, high=100), gauge, reported) == reported
    assert registry.get_sample_value("lag", {"topic": "t", "partition": "0"}) == 10

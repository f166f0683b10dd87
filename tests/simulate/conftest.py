"""Kafka (librdkafka mock cluster) and S3 (moto server) shared by the simulator's tests, and helpers
to read back what the simulator produced."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dtm.embedded import KafkaMockCluster, S3Server, wait_until

BUCKET = "rubin-summit"
TOPICS = {"api-notifications": 4, "api-end-readout": 1, "cli-notifications": 4, "cli-end-readout": 1}


@pytest.fixture(scope="session")
def kafka():
    cluster = KafkaMockCluster(TOPICS)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3():
    server = S3Server(BUCKET)
    yield server
    server.stop()


def consume_all(bootstrap_servers: str, topic: str) -> list:
    """Every message on the topic: as many as its partitions' high watermarks add up to."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = [TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions]
        total = sum(consumer.get_watermark_offsets(partition, timeout=10)[1] for partition in assignment)
        consumer.assign(assignment)
        messages = []

        def all_read() -> bool:
            for message in consumer.consume(num_messages=500, timeout=0.1):
                assert message.error() is None, message.error()
                messages.append(message)
            return len(messages) >= total

        wait_until(all_read, 15, f"{total} messages on {topic}")
        return messages
    finally:
        consumer.close()


def last_modified(s3_client, prefix: str) -> dict[str, float]:
    listing = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"]: item["LastModified"].timestamp() for item in listing.get("Contents", ())}

"""Ingest throughput: a night's backlog of notifications (1,000 exposures x 410 files).

Two figures:
1. parse + Redis write, in-process (ingest.consumer.parse_batch + ExposureStore.add_arrivals on a
   real Redis server), in batches of the consumer's size;
2. end to end through Kafka: a `dtm ingest` process consuming from librdkafka's mock cluster while
   this process produces, until Redis holds every arrival.

    python bench/ingest_throughput.py [--exposures 1000] [--kafka-exposures 200]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import redis
from confluent_kafka import Producer
from dtm.common import keys
from dtm.common.models import ceph_notification
from dtm.common.objectkey import data_file_keys, exposure_prefix
from dtm.common.settings import Settings
from dtm.common.store import ExposureStore
from dtm.ingest.consumer import BATCH_SIZE, parse_batch

from dtm.embedded import Components, KafkaMockCluster, RedisServer, wait_until

SENSORS = [f"R{r // 5}{r % 5}_S{s // 3}{s % 3}" for r in range(25) for s in range(9)][:205]


def notifications(exposures: int, start: float):
    for number in range(exposures):
        image = f"MC_O_20251203_{number:06d}"
        prefix = exposure_prefix("LSSTCam", "20251203", image)
        for index, sensor in enumerate(SENSORS):
            for key in data_file_keys(prefix, image, sensor, False):
                event_time = start + number * 35 + index * 0.01
                yield image, ceph_notification(bucket="rubin-summit", key=key, event_time=event_time)


class FakeMessage:
    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def value(self):
        return self._value

    def error(self):
        return None

    def topic(self):
        return "bench"

    def partition(self):
        return 0

    def offset(self):
        return 0


def in_process(redis_url: str, exposures: int) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url})
    store = ExposureStore(redis.Redis.from_url(redis_url), 3600)
    messages = [FakeMessage(value) for _, value in notifications(exposures, time.time() - 86400)]
    parse_seconds = write_seconds = 0.0
    for start in range(0, len(messages), BATCH_SIZE):
        t0 = time.perf_counter()
        batch = parse_batch(messages[start:start + BATCH_SIZE], settings)
        t1 = time.perf_counter()
        store.add_arrivals(batch.arrivals, seen_at=time.time())
        write_seconds += time.perf_counter() - t1
        parse_seconds += t1 - t0
    total = parse_seconds + write_seconds
    n = len(messages)
    print(f"in-process: {n} notifications in {total:.2f} s = {n / total:,.0f}/s "
          f"(parse {parse_seconds:.2f} s, Redis {write_seconds:.2f} s)")


def through_kafka(redis_server: RedisServer, exposures: int) -> None:
    topic = "bench-notifications"
    kafka = KafkaMockCluster({topic: 16})
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushdb()
    components = Components({
        "FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILE_NOTIFICATION_TOPIC_NAME": topic,
        "FILE_NOTIFICATION_KAFKA_GROUP_ID": "bench",
        "REDIS_URL": redis_server.url,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="dtm-bench-metrics-"),
        "DTM_LOG_LEVEL": "WARNING",
    }, tempfile.mkdtemp(prefix="dtm-bench-logs-"))
    try:
        components.start("ingest", "ingest")
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5,
                             "queue.buffering.max.messages": 1_000_000})
        images = []
        start = time.perf_counter()
        count = 0
        for image, value in notifications(exposures, time.time() - 86400):
            producer.produce(topic, value, key=image)
            count += 1
            if count % 410 == 0:
                images.append(image)
                producer.poll(0)
        producer.flush(60)
        produced = time.perf_counter() - start

        def all_stored():
            components.check_alive()
            pipe = connection.pipeline(transaction=False)
            for image in images:
                pipe.zcard(keys.arrivals(image))
            return sum(pipe.execute()) == count

        wait_until(all_stored, 600, "every arrival in Redis", interval=0.2)
        total = time.perf_counter() - start
        print(f"through Kafka (dtm ingest process, 16 partitions): {count} notifications stored in {total:.2f} s "
              f"= {count / total:,.0f}/s (producing took {produced:.2f} s)")
    finally:
        components.stop()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=1000)
    parser.add_argument("--kafka-exposures", type=int, default=200)
    arguments = parser.parse_args()
    redis_server = RedisServer()
    try:
        in_process(redis_server.url, arguments.exposures)
        through_kafka(redis_server, arguments.kafka_exposures)
    finally:
        redis_server.stop()
    print(f"(machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

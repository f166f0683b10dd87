"""`dtm scheduler` as a process: Avro end readouts and transfer summaries from Kafka (librdkafka's mock
cluster), schemas from the Schema Registry process, stored in a real Redis."""
from __future__ import annotations

import pytest
import redis
from confluent_kafka import Producer
from dtm.common import keys
from dtm.common.models import EndReadout

from dtm import camera_avro
from dtm.embedded import Components, KafkaMockCluster, RedisServer, wait_until

pytestmark = pytest.mark.integration

READOUT_TOPICS = ("lsst.sal.MTCamera.logevent_endReadout", "summit.lsst.sal.ATCamera.logevent_endReadout")
SUMMARY_TOPIC = "lsst.sal.ATCamera.logevent_fileTransferPerImageSummary"


@pytest.fixture
def services():
    redis_server = RedisServer()
    kafka = KafkaMockCluster({READOUT_TOPICS[0]: 1, READOUT_TOPICS[1]: 2, SUMMARY_TOPIC: 1})
    yield redis_server, kafka
    kafka.stop()
    redis_server.stop()


def test_scheduler_reads_avro_through_the_registry(services, registry, end_readout_sample, end_readout_schema,
                                                    summary_sample, summary_schema, tmp_path):
    redis_server, kafka = services
    components = Components({
        "END_READOUT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "END_READOUT_TOPIC_NAME": ",".join(READOUT_TOPICS),
        "END_READOUT_KAFKA_GROUP_ID": "dtm-scheduler-avro-test",
        # Basic-auth credentials in the URL (this registry ignores them): never in the logs.
        "END_READOUT_SCHEMA_REGISTRY": registry.url.replace("http://", "http://dtm:registry-pw@"),
        "FILE_TRANSFER_SUMMARY_TOPIC_NAME": SUMMARY_TOPIC,
        "REDIS_URL": redis_server.url,
        "S3_WAIT_TIME": "30",
    }, tmp_path / "logs")
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    encode_readout = camera_avro.serializer(registry.url, end_readout_schema)
    latiss = {**end_readout_sample, "imageName": "AT_O_20251203_000007", "imageSource": "AT", "imageNumber": 7}
    producer.produce(READOUT_TOPICS[0], b'{"json": "where Avro is expected"}')  # rejected, not fatal
    producer.produce(READOUT_TOPICS[0], encode_readout(end_readout_sample, READOUT_TOPICS[0]))
    producer.produce(READOUT_TOPICS[1], encode_readout(latiss, READOUT_TOPICS[1]))
    encode_summary = camera_avro.serializer(registry.url, summary_schema)
    producer.produce(SUMMARY_TOPIC, encode_summary({**summary_sample, "obsId": "AT_O_20251203_000007"}, SUMMARY_TOPIC))
    assert producer.flush(10) == 0

    connection = redis.Redis.from_url(redis_server.url)
    try:
        components.start("scheduler", "scheduler")

        def stored():
            components.check_alive()
            return connection.exists(keys.readout("MC_O_20251203_000123"), keys.readout("AT_O_20251203_000007"),
                                     keys.transfer_summary("AT_O_20251203_000007")) == 3

        wait_until(stored, 60, "the scheduler to store both readouts and the summary")
        readout = EndReadout.from_json(connection.get(keys.readout("AT_O_20251203_000007")))
        assert (readout.instrument, readout.end_readout_tai) == ("LATISS", end_readout_sample["timestampEndOfReadout"])
        components.check_alive()
        log = components.log("scheduler")
        assert '"reason":"bad_magic_byte"' in log
        assert "registry-pw" not in log
    finally:
        components.stop()

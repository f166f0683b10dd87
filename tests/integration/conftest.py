"""Real services for the integration tests: Redis server, Kafka (librdkafka mock cluster), S3 (moto server)."""
from __future__ import annotations

import pytest

from dtm.embedded import KafkaMockCluster, RedisServer, S3Server

BUCKET = "rubin-summit"
NOTIFICATION_TOPIC = "rubin-summit-notifications"
END_READOUT_TOPIC = "lsst.sal.MTCamera.logevent_endReadout"


@pytest.fixture
def redis_server():
    server = RedisServer()
    yield server
    server.stop()
    assert server.process.poll() is not None


@pytest.fixture
def kafka():
    cluster = KafkaMockCluster({NOTIFICATION_TOPIC: 4, END_READOUT_TOPIC: 1})
    yield cluster
    cluster.stop()


@pytest.fixture
def s3():
    server = S3Server(BUCKET)
    yield server
    server.stop()

"""Fixtures of the production-input tests: samples, a Schema Registry in its own process, an in-memory
Redis, moto's in-process S3 with an installed worker context, and fake Kafka messages."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import fakeredis
import pytest
from dtm.common.settings import Settings
from dtm.common.store import ExposureStore
from dtm.worker import job
from dtm.worker.s3 import BucketReader
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from dtm.schema_registry import SchemaRegistryProcess
from tests.fakes import FakeMessage  # noqa: F401  (re-exported to the tests here)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "samples"
BUCKET = "rubin-summit"


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"samples not found at {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def end_readout_sample(samples) -> dict:
    return json.loads((samples / "end_readout.json").read_text())


@pytest.fixture(scope="session")
def end_readout_schema(samples) -> str:
    return (samples / "end_readout.avsc").read_text()


@pytest.fixture(scope="session")
def summary_sample(samples) -> dict:
    return json.loads((samples / "file_transfer_per_image_summary.json").read_text())


@pytest.fixture(scope="session")
def summary_schema(samples) -> str:
    return (samples / "file_transfer_per_image_summary.avsc").read_text()


@pytest.fixture(scope="module")
def registry():
    """`python -m dtm.schema_registry` in a separate process, reached over HTTP."""
    with SchemaRegistryProcess() as process:
        yield process
    assert process.process.poll() is not None


@pytest.fixture
def redis_connection():
    connection = fakeredis.FakeRedis()
    yield connection
    connection.flushall()


class World:
    """S3 (moto, in-process), Redis (fakeredis) and an installed worker context."""

    def __init__(self, client, connection, settings: Settings):
        self.client = client
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.settings = settings
        self.store = ExposureStore(connection, settings.redis_key_ttl)
        self.context = job.WorkerContext(settings, self.store, BucketReader(client, BUCKET))

    def put(self, object_key: str, at: float, body: bytes = b"x") -> None:
        """An object whose LastModified is `at` (UTC unix seconds)."""
        self.backend.put_object(BUCKET, object_key, body)
        fake = self.backend.get_object(BUCKET, object_key)
        fake.last_modified = dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(tzinfo=None)


@pytest.fixture
def make_world(redis_connection, monkeypatch):
    """make_world(environment) -> World with those settings, its context installed for decide_exposure."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=BUCKET)

        def make(environment: dict | None = None) -> World:
            settings = Settings.from_env({"S3_WAIT_TIME": "30", "MAX_LATE_FILE_TIME": "10", **(environment or {})})
            world = World(client, redis_connection, settings)
            monkeypatch.setattr(job, "_context", None)  # restored after the test
            job.install(world.context)
            return world

        yield make

"""The operator commands in-process: fakeredis behind REDIS_URL, moto's S3, click's CliRunner.

`World` holds one night of a 3-sensor camera (a science CCD, a wavefront sensor, a guider: six data
files an exposure) with S3 objects whose LastModified the test sets, notifications with chosen
eventTimes, end readouts in the past. Every instant is derived from T0 values, never the clock.
"""
from __future__ import annotations

import datetime as dt

import boto3
import fakeredis
import orjson
import pytest
import redis
from click.testing import CliRunner
from dtm.common import logs
from dtm.common import time as ttime
from dtm.common.models import EndReadout, ceph_notification
from dtm.common.objectkey import data_file_keys, expected_sensors_key, exposure_prefix
from dtm.common.settings import Settings
from dtm.common.store import ExposureStore
from dtm.ingest.consumer import parse_batch
from dtm.scheduler.consumer import ReadoutScheduler
from dtm.worker import job
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from dtm.cli import main
from tests.fakes import FakeMessage  # noqa: F401  (re-exported to the tests here)

BUCKET = "rubin-summit"
FAKE_REDIS_URL = "redis://fake-redis.invalid:6379/0"
NOTIFICATION_TOPIC = "rubin-summit-notifications"
END_READOUT_TOPIC = "lsst.sal.MTCamera.logevent_endReadout"
SENSORS = {"R22_S11": "SCIENCE", "R00_SW0": "SCIENCE", "R00_SG0": "GUIDER"}
WAIT, LATE, RECHECK = 30.0, 10.0, 600.0
ENVIRONMENT = {
    "REDIS_URL": FAKE_REDIS_URL,
    "STORAGE_BUCKET_NAME": BUCKET,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "S3_WAIT_TIME": str(WAIT),
    "MAX_LATE_FILE_TIME": str(LATE),
    "RECHECK_TIME": str(RECHECK),
    "ORPHAN_GRACE_TIME": "900",
    "FILE_NOTIFICATION_TOPIC_NAME": NOTIFICATION_TOPIC,
    "END_READOUT_TOPIC_NAME": END_READOUT_TOPIC,
}


class World:
    def __init__(self, connection: redis.Redis, settings: Settings):
        self.connection = connection
        self.settings = settings
        self.store = ExposureStore(connection, settings.redis_key_ttl)
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        self.runner = CliRunner()

    # -- the summit ---------------------------------------------------------------------------
    @staticmethod
    def image_name(number: int, image_date: str = "20251203") -> str:
        return f"MC_O_{image_date}_{number:06d}"

    @staticmethod
    def files(image_name: str) -> list[str]:
        prefix = exposure_prefix("LSSTCam", image_name.split("_")[2], image_name)
        return [key for sensor, kind in SENSORS.items()
                for key in data_file_keys(prefix, image_name, sensor, kind == "GUIDER")]

    def put(self, key: str, at: float, body: bytes = b"x") -> None:
        """An S3 object whose LastModified is `at`, written behind the API's back."""
        self.backend.put_object(BUCKET, key, body)
        self.backend.get_object(BUCKET, key).last_modified = (
            dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(tzinfo=None))

    def put_expected_sensors(self, image_name: str, at: float) -> None:
        prefix = exposure_prefix("LSSTCam", image_name.split("_")[2], image_name)
        document = {"obsId": image_name, "expectedSensors": SENSORS}
        self.put(expected_sensors_key(prefix, image_name, "expectedSensors.json"), at, orjson.dumps(document))

    @staticmethod
    def readout(image_name: str, end_readout_utc: float) -> EndReadout:
        return EndReadout(image_name, "MC", "O", image_name.split("_")[2], ttime.utc_to_tai(end_readout_utc))

    @staticmethod
    def readout_message(image_name: str, end_readout_utc: float) -> bytes:
        tai = ttime.utc_to_tai(end_readout_utc)
        return orjson.dumps({"imageName": image_name, "imageSource": "MC", "imageController": image_name[3],
                             "imageDate": image_name.split("_")[2], "imageNumber": int(image_name[-6:]),
                             "timestampEndOfReadout": tai, "private_sndStamp": tai})

    @staticmethod
    def notification(key: str, at: float) -> bytes:
        return ceph_notification(bucket=BUCKET, key=key, event_time=at)

    # -- the live pipeline, in-process ---------------------------------------------------------
    def ingest(self, notifications: list[tuple[str, float]], seen_at: float) -> None:
        messages = [FakeMessage(NOTIFICATION_TOPIC, self.notification(key, at)) for key, at in notifications]
        self.store.add_arrivals(parse_batch(messages, self.settings).arrivals, seen_at=seen_at)

    def schedule(self, image_name: str, end_readout_utc: float, now: float) -> None:
        ReadoutScheduler(self.settings, self.connection).handle(self.readout(image_name, end_readout_utc), now=now)

    def context(self) -> job.WorkerContext:
        return job.WorkerContext.from_settings(self.settings, self.connection)

    def decide(self, image_name: str) -> dict:
        """The live decision job, as `dtm worker` runs it."""
        job.install(self.context())
        return job.decide_exposure(image_name)

    # -- the command line ----------------------------------------------------------------------
    def cli(self, *arguments: str, expect: int | None = 0):
        result = self.runner.invoke(main, list(arguments), catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}:\n{result.output}"
        return result

    def cli_json(self, *arguments: str, expect: int | None = 0) -> dict:
        return orjson.loads(self.cli(*arguments, "--json", expect=expect).stdout)


@pytest.fixture
def world(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in ("PROMETHEUS_MULTIPROC_DIR", "FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS",
                 "END_READOUT_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    server = fakeredis.FakeServer()
    real_from_url = redis.Redis.from_url

    def from_url(url, **options):
        return fakeredis.FakeRedis(server=server) if url == FAKE_REDIS_URL else real_from_url(url, **options)

    monkeypatch.setattr(redis.Redis, "from_url", from_url)
    # The commands configure JSON logs on the stream CliRunner captures and closes: keep pytest's.
    monkeypatch.setattr(logs, "configure", lambda *args, **kwargs: None)
    previous_context = job._context
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield World(fakeredis.FakeRedis(server=server), Settings.from_env())
    job._context = previous_context

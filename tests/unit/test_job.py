"""`decide_exposure` end to end in-process: fakeredis, moto's in-process S3, prometheus-client's registry."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import boto3
import pytest
from dtm.common.models import EndReadout, FileArrival
from dtm.common.objectkey import parse_object_key
from dtm.common.settings import Settings
from dtm.common.store import ExposureStore
from dtm.worker import job
from dtm.worker.decision import Decision
from dtm.worker.s3 import BucketReader
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from prometheus_client import REGISTRY

BUCKET = "rubin-summit"
IMAGE = "MC_O_20251203_000123"
PREFIX = f"LSSTCam/20251203/{IMAGE}/"
READOUT = EndReadout(IMAGE, "MC", "O", "20251203", 1764825186.0)
T0 = 1764825149.0  # READOUT's end of readout in UTC: whole seconds, as moto lists LastModified
DAY = "2025-12-03"
CAMERA = {"obsId": IMAGE, "expectedSensors": {"R22_S11": "SCIENCE", "R00_SW0": "SCIENCE", "R00_SG0": "GUIDER"}}


def key(rest: str) -> str:
    return f"{PREFIX}{IMAGE}_{rest}"


class World:
    """An S3 bucket, a Redis and an installed worker context, with helpers to fill them."""

    def __init__(self, client, connection):
        self.client = client
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        settings = Settings.from_env({"S3_WAIT_TIME": "30", "MAX_LATE_FILE_TIME": "10"})
        self.store = ExposureStore(connection, settings.redis_key_ttl)
        self.context = job.WorkerContext(settings, self.store, BucketReader(client, BUCKET))
        self.requests: Counter = Counter()
        client.meta.events.register("before-call.s3.*", self._count)

    def _count(self, event_name: str, **_):
        self.requests[event_name.rsplit(".", 1)[-1]] += 1

    def put(self, object_key: str, at: float, body: bytes = b"x") -> None:
        """An object whose LastModified is `at` (UTC unix seconds), written behind the API's back."""
        self.backend.put_object(BUCKET, object_key, body)
        fake = self.backend.get_object(BUCKET, object_key)
        fake.last_modified = dt.datetime.fromtimestamp(at, dt.timezone.utc).replace(tzinfo=None)

    def notify(self, object_key: str, at: float) -> None:
        self.store.add_arrivals([FileArrival(parse_object_key(object_key), at, DAY)], seen_at=at)


@pytest.fixture
def world(redis_connection, monkeypatch):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="test",
                              aws_secret_access_key="test")
        client.create_bucket(Bucket=BUCKET)
        world = World(client, redis_connection)
        monkeypatch.setattr(job, "_context", None)  # restored after the test
        job.install(world.context)
        world.store.save_readout(READOUT, seen_at=T0)
        yield world


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {"day": DAY, **labels}) or 0.0


METRICS = [
    ("dtm_exposures_decided_total", {"status": "incomplete"}),
    ("dtm_exposures_decided_total", {"status": "complete"}),
    ("dtm_s3_late_or_missing_total", {}),
    ("dtm_s3_transfer_duration_seconds_count", {}),
    ("dtm_s3_transfer_duration_seconds_sum", {}),
    ("dtm_s3_transfer_duration_seconds_bucket", {"le": "10.0"}),
    ("dtm_s3_transfer_duration_seconds_bucket", {"le": "12.0"}),
    ("dtm_clock_anomalies_total", {}),
]


def snapshot() -> list[float]:
    return [sample(name, **labels) for name, labels in METRICS]


def deltas(before: list[float]) -> dict[str, float]:
    after = snapshot()
    return {f"{name}{labels or ''}": round(a - b, 6) for (name, labels), a, b in zip(METRICS, after, before) if a != b}


def test_decide_exposure_end_to_end(world):
    assert READOUT.end_readout_utc == T0
    world.put(key("expectedSensors.json"), T0 - 5, json.dumps(CAMERA).encode())
    world.put(key("R22_S11.fits"), T0 + 3)
    world.put(key("R22_S11.json"), T0 + 4)
    world.put(key("R00_SW0.fits"), T0 + 12)  # late
    world.put(key("R00_SW0.json"), T0 + 45)  # after the window: missing
    world.put(f"{PREFIX}notes.txt", T0 + 1)  # outside the grammar: ignored
    world.notify(key("R22_S11.fits"), T0 + 2.5)  # S3's LastModified wins over the notification
    world.notify(key("R00_SG0_guider.fits"), T0 + 6.5)  # not listed (yet): the notification counts
    # R00_SG0_guider.json: never arrived.

    before = snapshot()
    record = job.decide_exposure(IMAGE)
    assert dict(world.requests) == {"GetObject": 1, "ListObjectsV2": 1}

    assert record["status"] == "incomplete"
    assert record["expected_files"] == 6
    assert record["arrived_files"] == 4
    assert record["late_files"] == [key("R00_SW0.fits")]
    assert record["missing_files"] == sorted([key("R00_SW0.json"), key("R00_SG0_guider.json")])
    assert record["transfer_time_seconds"] == 12.0
    assert record["last_file"] == key("R00_SW0.fits")
    assert record["end_readout_utc"] == "2025-12-04T05:12:29.000Z"
    assert record["day_obs"] == DAY and record["instrument"] == "LSSTCam"
    assert world.store.decision(IMAGE) == record
    assert Decision.from_record(record).late_or_missing == 3

    assert deltas(before) == {
        "dtm_exposures_decided_total{'status': 'incomplete'}": 1,
        "dtm_s3_late_or_missing_total": 3,
        "dtm_s3_transfer_duration_seconds_count": 1,
        "dtm_s3_transfer_duration_seconds_sum": 12.0,
        "dtm_s3_transfer_duration_seconds_bucket{'le': '12.0'}": 1,
    }

    # The job runs again (a retry, a replay): the same decision, no metric moves, the same S3 cost.
    world.requests.clear()
    before = snapshot()
    assert job.decide_exposure(IMAGE) == record
    assert deltas(before) == {}
    assert dict(world.requests) == {"GetObject": 1, "ListObjectsV2": 1}


def test_without_a_readable_expected_sensors_object(world):
    world.put(key("expectedSensors.json"), T0 + 1, b"{not json")
    world.put(key("R22_S11.fits"), T0 + 2)
    world.put(key("R00_SG0_guider.json"), T0 + 5)
    world.put(key("R22_S12.fits"), T0 + 31)  # after the window
    rejected = REGISTRY.get_sample_value("dtm_rejected_messages_total",
                                         {"stream": "expected_sensors", "reason": "malformed"}) or 0.0
    before = snapshot()
    record = job.decide_exposure(IMAGE)
    assert record["expected_sensors_found"] is False
    # Every on-time data file counts; the expected-sensors object itself never does.
    assert record["expected_files"] == record["arrived_files"] == 2
    assert record["missing_files"] == [] and record["late_files"] == []
    assert record["status"] == "complete"
    assert record["last_file"] == key("R00_SG0_guider.json")
    assert deltas(before) == {
        "dtm_exposures_decided_total{'status': 'complete'}": 1,
        "dtm_s3_transfer_duration_seconds_count": 1,
        "dtm_s3_transfer_duration_seconds_sum": 5.0,
        "dtm_s3_transfer_duration_seconds_bucket{'le': '10.0'}": 1,
        "dtm_s3_transfer_duration_seconds_bucket{'le': '12.0'}": 1,
    }
    assert REGISTRY.get_sample_value("dtm_rejected_messages_total",
                                     {"stream": "expected_sensors", "reason": "malformed"}) == rejected + 1


def test_no_expected_sensors_object_and_no_files(world):
    record = job.decide_exposure(IMAGE)
    assert record["status"] == "no_files"
    assert record["expected_files"] == 0 and record["transfer_time_seconds"] is None
    assert dict(world.requests) == {"GetObject": 1, "ListObjectsV2": 1}


def test_clock_anomaly_is_counted_not_observed(world):
    world.put(key("expectedSensors.json"), T0 - 5, json.dumps(CAMERA).encode())
    for rest in ("R22_S11.fits", "R22_S11.json", "R00_SW0.fits", "R00_SW0.json", "R00_SG0_guider.fits",
                 "R00_SG0_guider.json"):
        world.put(key(rest), T0 - 2)
    before = snapshot()
    record = job.decide_exposure(IMAGE)
    assert record["status"] == "complete" and record["transfer_time_seconds"] == -2.0
    assert deltas(before) == {"dtm_exposures_decided_total{'status': 'complete'}": 1,
                              "dtm_clock_anomalies_total": 1}


def test_listing_pages_of_1000_keys(world):
    for index in range(1001):
        world.backend.put_object(BUCKET, f"{PREFIX}{IMAGE}_R{index // 100:02d}_S{index % 100:02d}.fits", b"")
    listed = world.context.bucket.last_modified(PREFIX)
    assert len(listed) == 1001
    assert dict(world.requests) == {"ListObjectsV2": 2}


def test_unknown_exposure_is_not_decided(world):
    assert job.decide_exposure("MC_O_20251203_999999") is None
    assert world.store.decision("MC_O_20251203_999999") is None
    assert dict(world.requests) == {}

"""The whole pipeline as separate processes: dtm ingest, scheduler, worker, exporter.

Real Redis, Kafka over TCP (librdkafka's mock cluster) and S3 over HTTP (moto server). Two
exposures of a 2-sensor camera (one science, one guider: 4 data files each):
- A is complete. Its end readout is published ahead of its files, so its decision waits in RQ's
  scheduled registry until T0 + S3_WAIT_TIME.
- B has one late file and one missing file; its T0 + S3_WAIT_TIME has passed when its end
  readout arrives, so it is decided at once.
Plus one duplicate notification and one malformed message.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
import redis
from confluent_kafka import Producer
from dtm.common import time as ttime
from dtm.common.models import ceph_notification
from dtm.common.objectkey import data_file_keys, expected_sensors_key, exposure_prefix
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from dtm.embedded import Components, free_port, wait_until

from .conftest import BUCKET, END_READOUT_TOPIC, NOTIFICATION_TOPIC

pytestmark = pytest.mark.integration

WAIT_TIME = 2.0
LATE_TIME = 1.5
SENSORS = {"R22_S11": "SCIENCE", "R00_SG0": "GUIDER"}


@pytest.fixture
def pipeline(redis_server, kafka, s3, tmp_path):
    metrics_port = free_port()
    environment = {
        "FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FILE_NOTIFICATION_TOPIC_NAME": NOTIFICATION_TOPIC,
        "FILE_NOTIFICATION_KAFKA_GROUP_ID": "dtm-ingest-test",
        "END_READOUT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "END_READOUT_TOPIC_NAME": END_READOUT_TOPIC,
        "END_READOUT_KAFKA_GROUP_ID": "dtm-scheduler-test",
        "STORAGE_BUCKET_NAME": BUCKET,
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "S3_WAIT_TIME": str(WAIT_TIME),
        "MAX_LATE_FILE_TIME": str(LATE_TIME),
        "REDIS_URL": redis_server.url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "METRICS_PORT": str(metrics_port),
    }
    components = Components(environment, tmp_path / "logs")
    for name in ("ingest", "scheduler", "worker", "exporter"):
        components.start(name, name)
    components.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    components.environment_for_cli = environment
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{metrics_port}/healthz", components) == b"ok\n", 30,
                   "the exporter's /healthz")
        yield components
    finally:
        components.stop()
    assert all(process.poll() is not None for process in components.processes.values()), "a dtm process survived"


def _get(url: str, components: Components) -> bytes | None:
    components.check_alive()
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None


class Summit:
    """Plays the camera and Ceph: uploads files, publishes their notifications and end readouts."""

    def __init__(self, kafka, s3):
        self.s3 = s3.client()
        self.producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
        self.notifications_sent: list[tuple[str, float]] = []  # (key, eventTime)

    def exposure(self, image_name: str, image_date: str) -> dict:
        prefix = exposure_prefix("LSSTCam", image_date, image_name)
        files = [key for sensor, kind in SENSORS.items()
                 for key in data_file_keys(prefix, image_name, sensor, kind == "GUIDER")]
        return {"image_name": image_name, "image_date": image_date, "prefix": prefix, "files": files,
                "expected_sensors": expected_sensors_key(prefix, image_name, "expectedSensors.json")}

    def upload(self, key: str, body: bytes = b"data") -> float:
        """Upload and notify; returns the object's LastModified (whole seconds on moto)."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        event_time = time.time()
        last_modified = ttime.to_unix(self.s3.head_object(Bucket=BUCKET, Key=key)["LastModified"])
        self.notify(key, event_time)
        return last_modified

    def upload_expected_sensors(self, exposure: dict) -> None:
        document = {"obsId": exposure["image_name"], "expectedSensors": SENSORS}
        self.upload(exposure["expected_sensors"], orjson.dumps(document))

    def notify(self, key: str, event_time: float) -> None:
        self.producer.produce(NOTIFICATION_TOPIC, ceph_notification(bucket=BUCKET, key=key, event_time=event_time))
        self.notifications_sent.append((key, event_time))

    def end_readout(self, exposure: dict, end_readout_utc: float) -> None:
        tai = ttime.utc_to_tai(end_readout_utc)
        event = {
            "imageName": exposure["image_name"], "imageSource": "MC", "imageController": "O",
            "imageDate": exposure["image_date"], "imageNumber": int(exposure["image_name"][-6:]),
            "timestampEndOfReadout": tai, "private_sndStamp": tai,
        }
        self.producer.produce(END_READOUT_TOPIC, orjson.dumps(event))
        self.producer.flush(10)


def scrape(pipeline) -> dict[tuple[str, tuple], float]:
    body = _get(pipeline.metrics_url, pipeline)
    assert body is not None, "the exporter did not answer"
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def recorded_once(samples) -> dict:
    """The per-exposure and per-file series (not the live queue gauges)."""
    return {key: value for key, value in samples.items()
            if key[0].startswith(("dtm_s3_", "dtm_exposures_", "dtm_file_", "dtm_clock_"))}


def metric(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def dtm(pipeline, *arguments: str) -> dict:
    """Run a `dtm` command against the pipeline; its JSON output."""
    result = subprocess.run([sys.executable, "-m", "dtm.cli", *arguments],
                            env={**pipeline.environment, **pipeline.environment_for_cli},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return orjson.loads(result.stdout)


def inspect(pipeline, image_name: str) -> dict:
    return dtm(pipeline, "inspect", image_name, "--json")


def test_pipeline_end_to_end(pipeline, kafka, s3):
    summit = Summit(kafka, s3)
    now = time.time()
    day_obs = ttime.observing_day_of_tai(ttime.utc_to_tai(now))
    image_date = day_obs.replace("-", "")
    a = summit.exposure(f"MC_O_{image_date}_000001", image_date)
    b = summit.exposure(f"MC_O_{image_date}_000002", image_date)

    # A: end of readout half a second before the next whole second S, files uploaded once S has
    # begun (moto stamps whole seconds, so they land at S or just after): transfer time 0.5-1.5 s,
    # nothing late (<= LATE_TIME), decision due at S + 1.5 s, in the future when published.
    next_second = float(int(time.time()) + 1)
    a_end = next_second - 0.5
    summit.end_readout(a, a_end)
    wait_until(lambda: time.time() >= next_second, 5, "the next whole second")
    summit.upload_expected_sensors(a)
    a_arrivals = [summit.upload(key) for key in a["files"]]
    summit.notify(a["files"][0], time.time())  # a duplicate notification (Ceph redelivery)

    # B: three of four files, the last one a second later; the readout is placed 1.8 s before that
    # last file, so it is late (> 1.5 s) and the others are not; the fourth file never comes.
    summit.upload_expected_sensors(b)
    b_early = [summit.upload(key) for key in b["files"][:2]]
    wait_until(lambda: time.time() >= max(b_early) + 1, 5, "the next whole second")
    b_last = summit.upload(b["files"][2])
    b_end = b_last - 1.8
    summit.producer.produce(NOTIFICATION_TOPIC, b"{not json")  # a malformed message
    summit.producer.flush(10)
    summit.end_readout(b, b_end)

    def decided(image_name):
        record = inspect(pipeline, image_name)
        return record if record["status"] != "pending" else None

    record_b = wait_until(lambda: decided(b["image_name"]), 30, "exposure B's decision", interval=0.3)
    record_a = wait_until(lambda: decided(a["image_name"]), 30, "exposure A's decision", interval=0.3)
    files_sent = len(summit.notifications_sent)
    wait_until(lambda: sum(v for (name, _), v in scrape(pipeline).items()
                           if name == "dtm_file_messages_received_total") >= files_sent, 20,
               "every notification to be counted")

    assert record_a["status"] == "complete"
    assert record_a["expected_files"] == record_a["arrived_files"] == 4
    assert record_a["late_files"] == record_a["missing_files"] == []
    assert record_a["transfer_time_seconds"] == pytest.approx(max(a_arrivals) - a_end, abs=1e-3)
    assert 0 < record_a["transfer_time_seconds"] <= LATE_TIME
    assert record_a["end_readout_utc"] == ttime.isoformat(a_end)
    assert record_a["day_obs"] == day_obs and record_a["instrument"] == "LSSTCam"

    assert record_b["status"] == "incomplete"
    assert record_b["expected_files"] == 4 and record_b["arrived_files"] == 3
    assert record_b["late_files"] == [b["files"][2]]
    assert record_b["missing_files"] == [b["files"][3]]
    assert record_b["transfer_time_seconds"] == pytest.approx(1.8, abs=1e-3)
    assert record_b["last_file"] == b["files"][2]

    samples = scrape(pipeline)
    day_a, day_b = (ttime.observing_day_of_tai(ttime.utc_to_tai(t)) for t in (a_end, b_end))
    assert {day_a, day_b} == {day_obs} or pytest.skip("the test straddled 12:00 TAI, the observing-day boundary")
    assert metric(samples, "dtm_s3_transfer_duration_seconds_count", day=day_obs) == 2
    assert metric(samples, "dtm_s3_transfer_duration_seconds_bucket", day=day_obs, le="3.0") == 2
    assert metric(samples, "dtm_s3_transfer_duration_seconds_sum", day=day_obs) == pytest.approx(
        record_a["transfer_time_seconds"] + 1.8, abs=1e-3)
    assert metric(samples, "dtm_s3_late_or_missing_total", day=day_obs) == 2
    # 4 data files + the expected-sensors object for A, 3 + 1 for B, one duplicate: 10 notifications.
    received = {kind: metric(samples, "dtm_file_messages_received_total",
                             day=ttime.observing_day_of_utc(summit.notifications_sent[0][1]), kind=kind)
                for kind in ("fits", "json")}
    assert received == {"fits": 2 + 1 + 2, "json": 3 + 2} and files_sent == 10
    assert metric(samples, "dtm_rejected_messages_total", stream="file_notifications", reason="malformed") == 1
    # Tomorrow's series exists at 0 before its first increment.
    assert ("dtm_s3_late_or_missing_total", (("day", ttime.next_day(day_obs)),)) in samples

    # An exposure is observed once: running A's decision again (an RQ retry, a second delivery)
    # stores the same decision and changes no metric.
    queue = Queue("dtm", connection=redis.Redis.from_url(pipeline.environment_for_cli["REDIS_URL"]))
    again = queue.enqueue("dtm.worker.job.decide_exposure", a["image_name"])
    wait_until(lambda: again.get_status(refresh=True) in ("finished", "failed"), 20, "the repeated job")
    assert again.get_status() == "finished"
    assert recorded_once(scrape(pipeline)) == recorded_once(samples)
    assert inspect(pipeline, a["image_name"]) == record_a

    # The operator commands against the same running pipeline.
    report = dtm(pipeline, "report", "--day", day_obs, "--json")
    assert (report["exposures"], report["complete"], report["incomplete"]) == (2, 1, 1)
    assert (report["late_files"], report["missing_files"]) == (1, 1)
    assert report["transfer_time_seconds"]["max"] == pytest.approx(
        max(record_a["transfer_time_seconds"], 1.8), abs=1e-3)
    replay = dtm(pipeline, "replay", "--day", day_obs, "--apply", "--json")
    assert sorted(e["image_name"] for e in replay["exposures"]) == [a["image_name"], b["image_name"]]
    assert recorded_once(scrape(pipeline)) == recorded_once(samples)  # a replay never counts twice
    assert inspect(pipeline, b["image_name"])["missing_files"] == record_b["missing_files"]
    status = dtm(pipeline, "status", "--json")
    assert status["healthy"] is True, status["problems"]

    unknown = subprocess.run([sys.executable, "-m", "dtm.cli", "inspect", "MC_O_20000101_000001"],
                             env={**pipeline.environment, **pipeline.environment_for_cli},
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode != 0 and "MC_O_20000101_000001" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1

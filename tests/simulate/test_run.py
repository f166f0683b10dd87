"""Simulations against a real Kafka (librdkafka mock cluster) and S3 (moto server), read back and
checked against the contract."""
from __future__ import annotations

import collections
import json
import signal

import orjson
import pytest
from click.testing import CliRunner
from dtm.common import time as ttime
from dtm.common.models import Rejected, end_readout_from_fields, parse_file_notification
from dtm.common.objectkey import parse_object_key

from dtm.cli import main
from dtm.simulate import SimulationConfig, package_data, run_simulation

from .conftest import BUCKET, consume_all, last_modified

WAIT, LATE = 5.0, 2.5  # short, with room for late files (dtm's defaults are 30 and 10)
SPEED = 140.0  # one exposure every 0.25 s: exposures overlap


def parse(message):
    return parse_file_notification(message.value(), bucket=BUCKET, expected_sensors_filename="expectedSensors.json")


def kafka_time(message) -> float:
    return message.timestamp()[1] / 1000


def notifications_by_key(messages) -> tuple[dict[str, list], list]:
    """Parsed notifications (with their Kafka message) per key, and the messages that are not notifications."""
    by_key, rejected = collections.defaultdict(list), []
    for message in messages:
        try:
            by_key[parse(message).object_key.key].append((parse(message), message))
        except Rejected:
            rejected.append(message)
    return by_key, rejected


def end_readouts(kafka, topic) -> dict[str, tuple[dict, object]]:
    found = {}
    for message in consume_all(kafka.bootstrap_servers, topic):
        fields = json.loads(message.value())
        found[fields["imageName"]] = (fields, message)
    return found


def test_simulation_follows_the_contract(kafka, s3, tmp_path):
    config = SimulationConfig(exposures=3, speed=SPEED, sensors=4, wait_time=4.0, late_time=LATE, seed=11,
                              truth_path=tmp_path / "truth.jsonl")
    events = []
    truths = run_simulation(config, bootstrap_servers=kafka.bootstrap_servers, s3_client=s3.client(),
                            notification_topic="api-notifications", end_readout_topic="api-end-readout",
                            bucket=BUCKET, on_event=lambda kind, info: events.append((kind, info["image_name"])))

    names = [truth["image_name"] for truth in truths]
    assert sorted(events) == sorted([("published", name) for name in names] + [("truth", name) for name in names])
    lines = (tmp_path / "truth.jsonl").read_text().splitlines()
    assert sorted(lines, key=lambda line: json.loads(line)["image_name"]) == [orjson.dumps(t).decode() for t in truths]
    sequence_numbers = [int(name[-6:]) for name in names]
    assert sequence_numbers == list(range(sequence_numbers[0], sequence_numbers[0] + 3))

    readouts = end_readouts(kafka, "api-end-readout")
    by_key, rejected = notifications_by_key(consume_all(kafka.bootstrap_servers, "api-notifications"))
    assert rejected == []
    avro_fields = {field["name"] for field in json.loads(package_data("end_readout.avsc"))["fields"]}
    for truth in truths:
        fields, message = readouts[truth["image_name"]]
        t0 = ttime.parse_iso_utc(truth["end_readout_utc"])  # millisecond precision
        tai = fields["timestampEndOfReadout"]

        # The end readout: every field, TAI stamps, published at the end of readout.
        assert set(fields) == avro_fields
        assert tai - t0 == pytest.approx(ttime.utc_to_tai(t0) - t0, abs=2e-3)
        assert ttime.utc_to_tai(t0) - t0 == 37.0  # TAI-UTC since 2017
        assert fields["private_sndStamp"] - tai == pytest.approx(0, abs=1.0)
        assert abs(kafka_time(message) - t0) < 1.0  # the Kafka time stamp is UTC
        readout = end_readout_from_fields(fields)
        assert readout.day_obs == truth["day_obs"] == ttime.observing_day_of_tai(tai)
        assert fields["imageDate"] == truth["day_obs"].replace("-", "")
        assert readout.prefix == f"LSSTCam/{fields['imageDate']}/{truth['image_name']}/"

        # S3: the expected-sensors object and two files per sensor, guiders with a suffix.
        listed = last_modified(s3.client(), readout.prefix)
        expected_sensors_key = f"{readout.prefix}{truth['image_name']}_expectedSensors.json"
        assert sorted(listed) == sorted(truth["expected"] + [expected_sensors_key])
        document = json.loads(s3.client().get_object(Bucket=BUCKET, Key=expected_sensors_key)["Body"].read())
        assert document["obsId"] == truth["image_name"] and len(document["expectedSensors"]) == 4
        for key in truth["expected"]:
            object_key = parse_object_key(key)
            assert object_key.guider == (document["expectedSensors"][object_key.sensor] == "GUIDER")
        assert any(parse_object_key(key).guider for key in truth["expected"])

        # One notification per object, eventTime in UTC at the upload (LastModified is whole seconds).
        for key, at in listed.items():
            [(arrival, message)] = by_key[key]
            assert message.value().decode().count('"eventTime":"') == 1
            assert json.loads(message.value())["Records"][0]["eventTime"].endswith("Z")
            assert 0 <= arrival.event_time - at < 2.0
            assert arrival.day_obs == truth["day_obs"]
            if key != expected_sensors_key:
                assert 0 < arrival.event_time - t0 < LATE

        # The truth: everything on time.
        assert truth["status"] == "complete" and truth["late"] == [] and truth["missing"] == []
        assert 0 < truth["transfer_time_seconds"] <= LATE
        assert truth["faults"]["deferred"] == []


@pytest.fixture
def restore_signal_handlers():
    """`dtm simulate` stops on SIGINT/SIGTERM: give pytest its handlers back."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def test_cli_faults_and_truth_file(kafka, s3, tmp_path, restore_signal_handlers):
    truth_path = tmp_path / "truth.jsonl"
    result = CliRunner().invoke(main, [
        "simulate", "--exposures", "3", "--speed", str(SPEED), "--sensors", "4",
        "--wait-time", str(WAIT), "--late-time", str(LATE), "--late-rate", "0.4", "--missing-rate", "0.2",
        "--resend-rate", "1", "--delay-rate", "1", "--late-readout-rate", "1", "--malformed-rate", "1",
        "--seed", "3", "--truth", str(truth_path),
        "--bootstrap-servers", kafka.bootstrap_servers, "--notification-topic", "cli-notifications",
        "--end-readout-topic", "cli-end-readout", "--s3-endpoint", s3.endpoint_url, "--bucket", BUCKET,
    ], env={"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    truths = [json.loads(line) for line in truth_path.read_text().splitlines()]
    assert len(truths) == 3
    assert "3 exposures decided" in result.output

    readouts = end_readouts(kafka, "cli-end-readout")
    by_key, garbage = notifications_by_key(consume_all(kafka.bootstrap_servers, "cli-notifications"))
    uploaded_data_files = 0
    for truth in truths:
        faults = truth["faults"]
        assert faults["deferred"] == [] and faults["failed_uploads"] == []
        # The truth read back from S3 is what the simulator meant to do.
        assert truth["late"] == faults["late"] and truth["missing"] == faults["missing"]
        t0 = ttime.parse_iso_utc(truth["end_readout_utc"])
        prefix = truth["expected"][0].rsplit("/", 1)[0] + "/"
        listed = last_modified(s3.client(), prefix)
        for key in truth["expected"]:
            if key in truth["missing"]:
                assert key not in listed and key not in by_key
                continue
            uploaded_data_files += 1
            assert (listed[key] - t0 > LATE) == (key in truth["late"])
            assert listed[key] <= t0 + WAIT
            # Resend rate 1: two identical notifications; delay rate 1: published a second or more late.
            (first, first_message), (second, second_message) = by_key[key]
            assert first_message.value() == second_message.value()
            assert kafka_time(first_message) - first.event_time >= 0.99
        # Late readout rate 1: the end readout follows every upload of its exposure.
        fields, message = readouts[truth["image_name"]]
        last_upload = max(by_key[key][0][0].event_time for key in truth["expected"] if key in by_key)
        assert kafka_time(message) >= last_upload - 0.01
        assert truth["faults"]["late_readout"]
    # Malformed rate 1: one garbage message per uploaded data file.
    assert len(garbage) == uploaded_data_files == sum(truth["faults"]["malformed_messages"] for truth in truths)
    assert sum(len(truth["late"]) for truth in truths) > 0 and sum(len(truth["missing"]) for truth in truths) > 0

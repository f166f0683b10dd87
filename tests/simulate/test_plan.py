"""The simulator's pure parts: sensors, plans and their faults, timing, messages, ground truth."""
from __future__ import annotations

import json
import random
import threading
import time

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from dtm.common import time as ttime
from dtm.common.models import Rejected, end_readout_from_fields, parse_file_notification
from dtm.common.objectkey import parse_object_key

from dtm.simulate import (
    GARBAGE_MESSAGES,
    SimulationConfig,
    Timeline,
    avro_serializer,
    choose_sensors,
    end_readout_fields,
    garbage_message,
    late_window,
    lsstcam_sensors,
    on_time_window,
    package_data,
    plan_exposure,
    safe_start,
    truth_record,
)

# The sample's end of readout: 2025-12-04T05:13:06.211875 TAI, observing day 2025-12-03.
SAMPLE_END_TAI = 1764825186.211875
SAMPLE_END_UTC = SAMPLE_END_TAI - 37.0
FAST = dict(wait_time=5.0, late_time=2.5)


def plan(config: SimulationConfig, seed: int = 1, end_readout_utc: float = SAMPLE_END_UTC, sequence_number: int = 7):
    return plan_exposure(random.Random(seed), config, choose_sensors(config.sensors), index=0,
                         end_readout_utc=end_readout_utc, sequence_number=sequence_number)


def avro_field_names() -> set[str]:
    return {field["name"] for field in json.loads(package_data("end_readout.avsc"))["fields"]}


# -- sensors


def test_all_lsstcam_sensors_by_default():
    sensors = choose_sensors(None)
    assert len(sensors) == 205
    assert list(sensors.values()).count("GUIDER") == 8
    assert sum("_SW" in sensor for sensor in sensors) == 8


@pytest.mark.parametrize("count", [2, 4, 50])
def test_a_small_camera_keeps_a_guider(count):
    sensors = choose_sensors(count)
    assert len(sensors) == count
    assert list(sensors.values()).count("GUIDER") == 1
    assert list(sensors)[: count - 1] == list(lsstcam_sensors())[: count - 1]


def test_one_sensor_is_the_first_science_sensor():
    assert choose_sensors(1) == {"R01_S00": "SCIENCE"}


# -- plans


def test_plan_names_the_exposure_after_the_observing_day():
    exposure = plan(SimulationConfig(sensors=4))
    assert exposure.image_name == "MC_O_20251203_000007"
    assert exposure.day_obs == "2025-12-03"
    assert exposure.prefix == "LSSTCam/20251203/MC_O_20251203_000007/"
    assert exposure.end_readout_tai == pytest.approx(SAMPLE_END_TAI, abs=1e-6)
    assert exposure.expected_sensors.key == f"{exposure.prefix}MC_O_20251203_000007_expectedSensors.json"


def test_observing_day_turns_at_noon_tai():
    noon_tai = ttime.parse_iso_utc("2025-12-04T12:00:00Z")  # 12:00 TAI as unix seconds
    before = plan(SimulationConfig(sensors=1), end_readout_utc=noon_tai - 37.0 - 1.0)
    after = plan(SimulationConfig(sensors=1), end_readout_utc=noon_tai - 37.0 + 1.0)
    assert (before.day_obs, after.day_obs) == ("2025-12-03", "2025-12-04")
    assert after.image_name == "MC_O_20251204_000007"


def test_every_sensor_has_a_fits_and_a_json_file_with_guider_suffix():
    exposure = plan(SimulationConfig(sensors=4))
    keys = [parse_object_key(key) for key in exposure.data_keys]
    assert len(keys) == 8
    for key in keys:
        assert key.image_name == exposure.image_name and key.day_folder == "20251203"
        assert key.guider == (key.sensor == "R00_SG0")
    assert sorted(key.extension for key in keys) == ["fits"] * 4 + ["json"] * 4
    assert "LSSTCam/20251203/MC_O_20251203_000007/MC_O_20251203_000007_R00_SG0_guider.fits" in exposure.data_keys


def test_expected_sensors_document_has_the_sample_shape():
    exposure = plan(SimulationConfig(sensors=4))
    sample = json.loads(package_data("expected_sensors_lsstcam.json"))
    document = exposure.expected_sensors_document
    assert set(document) == set(sample)
    assert document["obsId"] == exposure.image_name
    assert document["fileName"] == f"{exposure.image_name}_expectedSensors.json"
    assert document["expectedSensors"] == choose_sensors(4)


def test_without_faults_every_file_arrives_on_time():
    config = SimulationConfig(sensors=None, **FAST)
    exposure = plan(config)
    earliest, latest = on_time_window(config)
    assert all(earliest <= planned.upload_delay <= latest for planned in exposure.files)
    faults = exposure.faults()
    assert faults == {"late": [], "missing": [], "resent": [], "delayed_notifications": [], "late_readout": False,
                      "malformed_messages": 0}


def test_rates_of_one():
    config = SimulationConfig(sensors=4, late_rate=1, resend_rate=1, delay_rate=1, late_readout_rate=1,
                              malformed_rate=1, **FAST)
    exposure = plan(config)
    earliest, latest = late_window(config)
    assert all(planned.late and earliest <= planned.upload_delay <= latest for planned in exposure.files)
    faults = exposure.faults()
    assert faults["late"] == faults["resent"] == faults["delayed_notifications"] == sorted(exposure.data_keys)
    assert faults["late_readout"] and faults["malformed_messages"] == 8


def test_missing_rate_of_one_uploads_only_the_expected_sensors():
    exposure = plan(SimulationConfig(sensors=4, missing_rate=1, late_rate=1, **FAST))
    assert exposure.uploads == [exposure.expected_sensors]
    assert exposure.faults()["missing"] == sorted(exposure.data_keys)
    assert exposure.faults()["late"] == []


def test_native_notifications_leave_notification_faults_out():
    exposure = plan(SimulationConfig(sensors=4, resend_rate=1, delay_rate=1, native_notifications=True))
    assert exposure.faults()["resent"] == exposure.faults()["delayed_notifications"] == []


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_fault_rates_are_probabilities_per_file(rate):
    config = SimulationConfig(late_rate=rate, missing_rate=rate, resend_rate=rate, delay_rate=rate, **FAST)
    files = [planned for seed in range(5) for planned in plan(config, seed=seed).files]
    assert len(files) == 5 * 410
    missing = sum(planned.missing for planned in files) / len(files)
    resent = sum(planned.resend_after is not None for planned in files) / len(files)
    late = sum(planned.late for planned in files) / len(files)
    assert missing == pytest.approx(rate, abs=0.04)
    assert resent == pytest.approx(rate * (1 - rate), abs=0.04)  # only uploaded files are notified
    assert late == pytest.approx(rate * (1 - rate), abs=0.04)


def test_a_seed_reproduces_the_plan_and_other_seeds_differ():
    config = SimulationConfig(sensors=20, late_rate=0.3, missing_rate=0.3, resend_rate=0.3, **FAST)
    assert plan(config, seed=5) == plan(config, seed=5)
    assert plan(config, seed=5).faults() != plan(config, seed=6).faults()


def test_garbage_messages_are_rejected():
    rng = random.Random(0)
    messages = set(GARBAGE_MESSAGES) | {garbage_message(rng) for _ in range(50)}
    for message in messages:
        with pytest.raises(Rejected):
            parse_file_notification(message, bucket="rubin-summit", expected_sensors_filename="expectedSensors.json")


# -- timing


@pytest.mark.parametrize("wait, late", [(30, 10), (6, 3), (5, 2.5)])
def test_windows_keep_clear_of_the_boundaries(wait, late):
    config = SimulationConfig(wait_time=wait, late_time=late, late_rate=0.1)
    on_time, late_files = on_time_window(config), late_window(config)
    assert 0 < on_time[0] <= on_time[1] < late - 0.5
    assert late + 1.5 <= late_files[0] <= late_files[1] < wait - 0.5


def test_configurations_without_room_are_refused():
    with pytest.raises(ValueError, match="late files need"):
        SimulationConfig(wait_time=4, late_time=3, late_rate=0.1)
    SimulationConfig(wait_time=4, late_time=3)  # no late files wanted: fine
    with pytest.raises(ValueError, match="no room for on-time files"):
        SimulationConfig(wait_time=4, late_time=0.5)
    with pytest.raises(ValueError, match="missing_rate"):
        SimulationConfig(missing_rate=1.5)


def test_an_upload_near_a_boundary_is_held_past_it():
    config = SimulationConfig(**FAST)  # boundaries at T0 + 2.5 and T0 + 5, margin 1.5
    t0 = 1000.0
    assert safe_start(t0 + 1.0, t0, config) == t0 + 1.0
    assert safe_start(t0 + 2.2, t0, config) == t0 + 4.0
    assert safe_start(t0 + 3.9, t0, config) == t0 + 4.0
    assert safe_start(t0 + 4.6, t0, config) == t0 + 6.5
    assert safe_start(t0 + 7.0, t0, config) == t0 + 7.0


# -- messages


def test_end_readout_has_every_schema_field_in_tai():
    exposure = plan(SimulationConfig(sensors=4))
    fields = end_readout_fields(exposure, message_number=3, send_tai=SAMPLE_END_TAI + 0.5)
    assert set(fields) == avro_field_names()
    assert fields["timestampEndOfReadout"] == pytest.approx(SAMPLE_END_TAI, abs=1e-6)
    assert fields["private_efdStamp"] == pytest.approx(SAMPLE_END_UTC, abs=1e-6)
    assert fields["imageDate"] == "20251203" and fields["imageNumber"] == 7
    readout = end_readout_from_fields(fields)
    assert (readout.image_name, readout.day_obs, readout.prefix) == (exposure.image_name, "2025-12-03", exposure.prefix)


def test_avro_end_readout_round_trip():
    client = SchemaRegistryClient.new_client({"url": "mock://simulate-test"})
    exposure = plan(SimulationConfig(sensors=4))
    fields = end_readout_fields(exposure, message_number=1, send_tai=SAMPLE_END_TAI)
    value = avro_serializer(client)(fields, "lsst.sal.MTCamera.logevent_endReadout")
    assert value[0] == 0  # Confluent wire format
    decoded = AvroDeserializer(client)(value, SerializationContext("lsst.sal.MTCamera.logevent_endReadout",
                                                                   MessageField.VALUE))
    assert decoded == fields


# -- ground truth


def test_truth_applies_the_contract_to_last_modified():
    config = SimulationConfig(sensors=2, **FAST)
    exposure = plan(config)
    t0 = exposure.end_readout_utc
    on_time, late, after_window, never = exposure.data_keys  # 2 sensors: 4 files
    listed = {exposure.expected_sensors.key: t0 - 30, on_time: t0 + 2.0, late: t0 + 4.0, after_window: t0 + 6.0}
    record = truth_record(exposure, listed, config)
    assert record["status"] == "incomplete"
    assert record["late"] == [late]
    assert record["missing"] == sorted([after_window, never])
    assert record["transfer_time_seconds"] == pytest.approx(4.0, abs=1e-5)
    assert record["last_file"] == late
    assert record["expected"] == sorted(exposure.data_keys)
    assert record["end_readout_utc"] == "2025-12-04T05:12:29.211Z"  # as `dtm inspect` prints it
    json.dumps(record)  # one JSON line


def test_timeline_runs_actions_in_time_order_and_drains_on_close():
    timeline = Timeline()
    done, lock = [], threading.Lock()
    now = time.time()
    for label, delay in (("c", 0.06), ("a", 0.0), ("b", 0.03)):
        timeline.at(now + delay, lambda label=label: (lock.acquire(), done.append(label), lock.release()))
    timeline.close()
    assert done == ["a", "b", "c"]

"""Every camera: several end-readout topics, instrument from imageSource, expected sensors per instrument,
DTM_IMAGE_SOURCES / DTM_IMAGE_CONTROLLERS choosing what is monitored. In-process: fakeredis and moto."""
from __future__ import annotations

import importlib.util
import json

import orjson
import pytest
from dtm.common import time as ttime
from dtm.common.objectkey import INSTRUMENTS, data_file_keys, expected_sensors_key, exposure_prefix
from dtm.common.settings import Settings, SettingsError
from dtm.scheduler.consumer import ReadoutScheduler, handle_message
from dtm.scheduler.decoding import decode_json
from dtm.worker import job

from dtm import camera_avro

from .conftest import FakeMessage

T0 = 1764825149.0  # end of readout, UTC, whole seconds (moto lists LastModified in whole seconds)
DAY = "2025-12-03"
ALL_TOPICS = [prefix + topic for prefix in ("", "summit.") for topic in (
    "lsst.sal.MTCamera.logevent_endReadout", "lsst.sal.CCCamera.logevent_endReadout",
    "lsst.sal.ATCamera.logevent_endReadout")]

LATISS_SENSORS = {"R00_S00": "SCIENCE"}
COMCAM_SENSORS = {f"R22_S{row}{column}": "SCIENCE" for row in range(3) for column in range(3)}


def readout_message(image_source: str, controller: str = "O", number: int = 45, topic_prefix: str = "") -> FakeMessage:
    image_name = f"{image_source}_{controller}_20251203_{number:06d}"
    fields = {**camera_avro.defaults(camera_avro.END_READOUT), "imageName": image_name, "imageSource": image_source,
              "imageController": controller, "imageDate": "20251203", "imageNumber": number,
              "timestampEndOfReadout": ttime.utc_to_tai(T0)}
    return FakeMessage(camera_avro.topic(camera_avro.END_READOUT, image_source, topic_prefix), orjson.dumps(fields))


@pytest.fixture(autouse=True)
def _lua():
    assert importlib.util.find_spec("lupa"), "RQ's unique=True runs a Lua script: install 'fakeredis[lua]'"


def test_settings_take_every_topic_and_camera():
    settings = Settings.from_env({"END_READOUT_TOPIC_NAME": " , ".join(ALL_TOPICS),
                                  "DTM_IMAGE_SOURCES": "MC,CC,AT", "DTM_IMAGE_CONTROLLERS": "O,P"})
    assert settings.end_readouts.topics == tuple(ALL_TOPICS)
    assert settings.image_sources == ("MC", "CC", "AT") and settings.image_controllers == ("O", "P")
    assert settings.monitors("AT", "O") and not settings.monitors("AT", "C")
    assert Settings.from_env({}).monitors("CC", "C")  # default: every camera, every controller
    with pytest.raises(SettingsError, match="DTM_IMAGE_SOURCES"):
        Settings.from_env({"DTM_IMAGE_SOURCES": "MC,XX"})


def test_camera_topics_and_instruments():
    assert [camera_avro.topic(camera_avro.END_READOUT, source, prefix)
            for prefix in ("", "summit.") for source in ("MC", "CC", "AT")] == ALL_TOPICS
    assert INSTRUMENTS == {"MC": "LSSTCam", "CC": "LSSTComCam", "AT": "LATISS"}


@pytest.mark.parametrize("image_source, sensors, instrument", [
    ("AT", LATISS_SENSORS, "LATISS"),
    ("CC", COMCAM_SENSORS, "LSSTComCam"),
])
@pytest.mark.parametrize("topic_prefix", ["", "summit."])
def test_exposure_decided(make_world, redis_connection, image_source, sensors, instrument, topic_prefix):
    world = make_world({"END_READOUT_TOPIC_NAME": ",".join(ALL_TOPICS)})
    scheduler = ReadoutScheduler(world.settings, redis_connection)
    message = readout_message(image_source, topic_prefix=topic_prefix)
    assert message.topic() in world.settings.end_readouts.topics
    handle_message(message, decode_json, scheduler)
    image_name = f"{image_source}_O_20251203_000045"
    readout = world.store.readout(image_name)
    assert readout is not None and readout.instrument == instrument and readout.end_readout_utc == T0

    prefix = exposure_prefix(instrument, "20251203", image_name)
    assert prefix == f"{instrument}/20251203/{image_name}/"
    world.put(expected_sensors_key(prefix, image_name, "expectedSensors.json"), T0 - 2,
              json.dumps({"obsId": image_name, "expectedSensors": sensors}).encode())
    names = sorted(sensors)
    for index, sensor in enumerate(names):
        fits, meta = data_file_keys(prefix, image_name, sensor, guider=False)
        world.put(fits, T0 + 3)
        if index == 0:
            world.put(meta, T0 + 12)  # late (> MAX_LATE_FILE_TIME = 10 s)
        elif index == 1:
            pass  # missing
        else:
            world.put(meta, T0 + 4)
    # A sensor the expected-sensors object does not name never counts (e.g. an LSSTCam raft by mistake).
    world.put(f"{prefix}{image_name}_R01_S00.fits", T0 + 5)

    record = job.decide_exposure(image_name)
    expected_files = 2 * len(sensors)
    missing = [] if len(sensors) == 1 else [data_file_keys(prefix, image_name, names[1], False)[1]]
    assert record["instrument"] == instrument
    assert record["day_obs"] == DAY
    assert record["expected_files"] == expected_files
    assert record["arrived_files"] == expected_files - len(missing)
    assert record["missing_files"] == missing
    assert record["late_files"] == [data_file_keys(prefix, image_name, names[0], False)[1]]
    assert record["status"] == ("complete" if not missing else "incomplete")
    assert record["transfer_time_seconds"] == 12.0
    assert all(key.startswith(prefix) for key in record["missing_files"] + record["late_files"])


def test_guider_free_latiss_without_expected_sensors_counts_files_found(make_world, redis_connection):
    world = make_world()
    handle_message(readout_message("AT"), decode_json, ReadoutScheduler(world.settings, redis_connection))
    prefix = exposure_prefix("LATISS", "20251203", "AT_O_20251203_000045")
    for key in data_file_keys(prefix, "AT_O_20251203_000045", "R00_S00", guider=False):
        world.put(key, T0 + 2)
    record = job.decide_exposure("AT_O_20251203_000045")
    assert (record["status"], record["expected_files"], record["arrived_files"]) == ("complete", 2, 2)
    assert record["expected_sensors_found"] is False


@pytest.mark.parametrize("environment, monitored", [
    ({"DTM_IMAGE_SOURCES": "AT"}, {"AT_O_20251203_000045"}),
    ({"DTM_IMAGE_SOURCES": "MC,CC"}, {"MC_O_20251203_000045", "CC_O_20251203_000045", "CC_C_20251203_000046"}),
    ({"DTM_IMAGE_CONTROLLERS": "O"}, {"AT_O_20251203_000045", "MC_O_20251203_000045", "CC_O_20251203_000045"}),
    ({}, {"AT_O_20251203_000045", "MC_O_20251203_000045", "CC_O_20251203_000045", "CC_C_20251203_000046"}),
])
def test_image_sources_and_controllers_choose_what_is_monitored(redis_connection, environment, monitored):
    settings = Settings.from_env({"END_READOUT_TOPIC_NAME": ",".join(ALL_TOPICS), **environment})
    scheduler = ReadoutScheduler(settings, redis_connection)
    for message in (readout_message("AT"), readout_message("MC"), readout_message("CC"),
                    readout_message("CC", controller="C", number=46)):
        handle_message(message, decode_json, scheduler)
    stored = {name for name in ("AT_O_20251203_000045", "MC_O_20251203_000045", "CC_O_20251203_000045",
                                "CC_C_20251203_000046") if scheduler.store.readout(name) is not None}
    assert stored == monitored

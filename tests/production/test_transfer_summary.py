"""The camera's fileTransferPerImageSummary: latest kept, shown next to dtm's decision, disagreements counted once."""
from __future__ import annotations

import importlib.util
import json
import logging

import orjson
import pytest
from dtm.common import camera_summary, keys
from dtm.common import time as ttime
from dtm.common.models import Rejected
from dtm.common.objectkey import data_file_keys, expected_sensors_key, exposure_prefix
from dtm.scheduler.consumer import ReadoutScheduler, handle_message
from dtm.scheduler.decoding import avro_decoder, decode_json
from dtm.worker import job
from prometheus_client import REGISTRY

from dtm import camera_avro
from dtm.exposure_view import exposure_record, format_text

from .conftest import FakeMessage

T0 = 1764825149.0
DAY = "2025-12-03"
IMAGE = "AT_O_20251203_000045"
PREFIX = exposure_prefix("LATISS", "20251203", IMAGE)
READOUT_TOPIC = "lsst.sal.ATCamera.logevent_endReadout"
SUMMARY_TOPICS = ("lsst.sal.ATCamera.logevent_fileTransferPerImageSummary",
                  "lsst.sal.MTCamera.logevent_fileTransferPerImageSummary")
ENVIRONMENT = {"END_READOUT_TOPIC_NAME": READOUT_TOPIC, "FILE_TRANSFER_SUMMARY_TOPIC_NAME": ",".join(SUMMARY_TOPICS)}


@pytest.fixture(autouse=True)
def _lua():
    assert importlib.util.find_spec("lupa"), "RQ's unique=True runs a Lua script: install 'fakeredis[lua]'"


def summary(sample: dict, **changes) -> dict:
    return {**sample, "obsId": IMAGE, "dayObs": "20251203", "expected": 2, "written": 2,
            "transferredBeforeResend": 2, "missingBeforeResend": 0, "resendCount": 0, "transferredAfterResend": 2,
            "missingAfterResend": 0, **changes}


def summary_message(fields: dict, offset: int = 0) -> FakeMessage:
    return FakeMessage(SUMMARY_TOPICS[0], orjson.dumps(fields), offset)


def disagreements() -> float:
    return REGISTRY.get_sample_value("dtm_camera_disagreements_total", {"day": DAY}) or 0.0


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("dtm_rejected_messages_total",
                                     {"stream": "transfer_summaries", "reason": reason}) or 0.0


@pytest.fixture
def latiss(make_world, redis_connection):
    """A LATISS exposure whose .json file never arrives: dtm sees 2 expected files, 1 missing."""
    world = make_world(ENVIRONMENT)
    world.scheduler = ReadoutScheduler(world.settings, redis_connection)
    fields = {**camera_avro.defaults(camera_avro.END_READOUT), "imageName": IMAGE, "imageSource": "AT",
              "imageController": "O", "imageDate": "20251203", "timestampEndOfReadout": ttime.utc_to_tai(T0)}
    handle_message(FakeMessage(READOUT_TOPIC, orjson.dumps(fields)), decode_json, world.scheduler)
    world.put(expected_sensors_key(PREFIX, IMAGE, "expectedSensors.json"), T0 - 1,
              json.dumps({"obsId": IMAGE, "expectedSensors": {"R00_S00": "SCIENCE"}}).encode())
    world.put(data_file_keys(PREFIX, IMAGE, "R00_S00", False)[0], T0 + 3)
    return world


def test_summary_fields_validated(summary_sample):
    assert camera_summary.summary_from_fields(summary_sample) == summary_sample
    for change, reason in (({"missingAfterResend": None}, "malformed"), ({"expected": -1}, "malformed"),
                           ({"obsId": "not-an-image"}, "malformed"), ({"private_sndStamp": "x"}, "malformed")):
        with pytest.raises(Rejected) as error:
            camera_summary.summary_from_fields({**summary_sample, **change})
        assert error.value.reason == reason
    without = {name: value for name, value in summary_sample.items() if name != "missingAfterResend"}
    with pytest.raises(Rejected) as error:
        camera_summary.summary_from_fields(without)
    assert error.value.reason == "missing_field"


def test_latest_summary_kept(latiss, summary_sample):
    store = latiss.store
    assert store.save_transfer_summary(IMAGE, summary(summary_sample, private_sndStamp=100.0, resendCount=0))
    assert store.save_transfer_summary(IMAGE, summary(summary_sample, private_sndStamp=300.0, resendCount=2))
    assert not store.save_transfer_summary(IMAGE, summary(summary_sample, private_sndStamp=200.0, resendCount=1))
    assert store.transfer_summary(IMAGE)["resendCount"] == 2
    assert latiss.store.redis.ttl(keys.transfer_summary(IMAGE)) > 0


def test_summary_topics_routed_in_the_scheduler(latiss, summary_sample):
    before = rejected("missing_field"), rejected("malformed")
    for offset, stamp in enumerate((50.0, 70.0, 60.0)):  # out of order
        handle_message(summary_message(summary(summary_sample, private_sndStamp=stamp), offset), decode_json,
                       latiss.scheduler)
    handle_message(summary_message({"obsId": IMAGE}), decode_json, latiss.scheduler)
    handle_message(FakeMessage(SUMMARY_TOPICS[1], b"{not json"), decode_json, latiss.scheduler)
    assert latiss.store.transfer_summary(IMAGE)["private_sndStamp"] == 70.0
    assert (rejected("missing_field"), rejected("malformed")) == (before[0] + 1, before[1] + 1)
    # A summary is not a readout: nothing was scheduled or stored as one for it.
    assert latiss.store.readout(IMAGE).image_name == IMAGE


def test_unmonitored_camera_summary_ignored(make_world, redis_connection, summary_sample):
    world = make_world({**ENVIRONMENT, "DTM_IMAGE_SOURCES": "MC"})
    handle_message(summary_message(summary(summary_sample)), decode_json,
                   ReadoutScheduler(world.settings, redis_connection))
    assert world.store.transfer_summary(IMAGE) is None


def test_avro_summary(registry, latiss, summary_sample, summary_schema):
    encode = camera_avro.serializer(registry.url, summary_schema)
    value = encode(summary(summary_sample, private_sndStamp=80.0), SUMMARY_TOPICS[0])
    handle_message(FakeMessage(SUMMARY_TOPICS[0], value), avro_decoder(registry.url), latiss.scheduler)
    assert latiss.store.transfer_summary(IMAGE) == summary(summary_sample, private_sndStamp=80.0)


def test_disagreement_at_decision_time_counted_once(latiss, summary_sample, caplog):
    handle_message(summary_message(summary(summary_sample, private_sndStamp=10.0)), decode_json, latiss.scheduler)
    before = disagreements()
    with caplog.at_level(logging.WARNING, logger="dtm.common.camera_summary"):
        record = job.decide_exposure(IMAGE)
        job.decide_exposure(IMAGE)  # the job ran again
        # A later resend summary, still disagreeing, arrives after the decision.
        handle_message(summary_message(summary(summary_sample, private_sndStamp=20.0, resendCount=1)), decode_json,
                       latiss.scheduler)
    assert (record["expected_files"], len(record["missing_files"])) == (2, 1)
    assert disagreements() == before + 1
    [line] = [r for r in caplog.records if r.getMessage() == "the camera's transfer summary and dtm disagree"]
    assert (line.image_name, line.day_obs, line.compared_in) == (IMAGE, DAY, "worker")
    assert (line.camera_expected, line.dtm_expected, line.camera_missing, line.dtm_missing) == (2, 2, 0, 1)
    assert latiss.store.redis.ttl(keys.camera_disagreement(IMAGE)) > 0


def test_summary_after_the_decision_compared_in_the_scheduler(latiss, summary_sample, caplog):
    job.decide_exposure(IMAGE)
    before = disagreements()
    with caplog.at_level(logging.WARNING, logger="dtm.common.camera_summary"):
        message = summary_message(summary(summary_sample, private_sndStamp=30.0, expected=4, missingAfterResend=1))
        handle_message(message, decode_json, latiss.scheduler)
        handle_message(message, decode_json, latiss.scheduler)  # delivered again
    assert disagreements() == before + 1
    [line] = [r for r in caplog.records if r.getMessage() == "the camera's transfer summary and dtm disagree"]
    assert (line.image_name, line.day_obs, line.compared_in) == (IMAGE, DAY, "scheduler")
    assert (line.camera_expected, line.dtm_expected) == (4, 2)


def test_agreement_not_counted(latiss, summary_sample):
    before = disagreements()
    handle_message(summary_message(summary(summary_sample, private_sndStamp=5.0, missingAfterResend=1)),
                   decode_json, latiss.scheduler)
    job.decide_exposure(IMAGE)
    handle_message(summary_message(summary(summary_sample, private_sndStamp=6.0, missingAfterResend=1)),
                   decode_json, latiss.scheduler)
    assert disagreements() == before
    assert not latiss.store.redis.exists(keys.camera_disagreement(IMAGE))


def test_inspect_shows_both_views(latiss, summary_sample):
    handle_message(summary_message(summary(summary_sample, private_sndStamp=1764825238.5)), decode_json,
                   latiss.scheduler)
    pending = exposure_record(latiss.store, IMAGE)
    assert pending["status"] == "pending" and pending["camera_summary"]["obsId"] == IMAGE
    assert "camera" in format_text(pending)
    job.decide_exposure(IMAGE)
    record = exposure_record(latiss.store, IMAGE)
    assert record["camera_summary"]["missingAfterResend"] == 0
    assert json.loads(orjson.dumps(record))["camera_summary"]["expected"] == 2
    text = format_text(record)
    assert "camera summary" in text
    [expected_row] = [line for line in text.splitlines() if "expected files" in line]
    [missing_row] = [line for line in text.splitlines() if "missing files" in line]
    assert expected_row.split()[-2:] == ["2", "2"] and "disagree" not in expected_row
    assert missing_row.split()[2:5] == ["0", "1", "<-"] and "disagree" in missing_row
    # A summary stored without its optional fields still prints.
    assert "camera" in format_text({**record, "camera_summary": {"obsId": IMAGE, "expected": 2}})

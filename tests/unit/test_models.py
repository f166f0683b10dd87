"""Parsing the file notifications and the end readouts."""
from __future__ import annotations

import copy
import json
import math

import pytest
from dtm.common.models import EndReadout, Rejected, end_readout_from_fields, parse_file_notification

SAMPLE_KEY = "LSSTCam/20251203/MC_O_20251203_000123/MC_O_20251203_000123_R22_S11.fits"


@pytest.fixture
def notification(samples) -> dict:
    return json.loads((samples / "file_notification.json").read_text())


@pytest.fixture
def readout_fields(samples) -> dict:
    return json.loads((samples / "end_readout.json").read_text())


def parse(document, **options):
    value = document if isinstance(document, bytes) else json.dumps(document).encode()
    options.setdefault("bucket", "rubin-summit")
    options.setdefault("expected_sensors_filename", "expectedSensors.json")
    return parse_file_notification(value, **options)


def test_sample_notification(notification):
    arrival = parse(notification)
    assert arrival.object_key.key == SAMPLE_KEY
    assert arrival.image_name == "MC_O_20251203_000123"
    assert arrival.object_key.sensor == "R22_S11"
    assert arrival.object_key.extension == "fits"
    assert arrival.event_time == pytest.approx(1764825155.318204, abs=1e-6)
    # 2025-12-04T05:12:35 UTC is 05:13:12 TAI, before 12:00 TAI: the observing day is the day before.
    assert arrival.day_obs == "2025-12-03"


@pytest.mark.parametrize(
    "encoded",
    [
        "LSSTCam%2F20251203%2FMC_O_20251203_000123%2FMC_O_20251203_000123_R00_SG0_guider.fits",
        "LSSTCam/20251203/MC_O_20251203_000123/MC%5FO%5F20251203%5F000123%5FR00%5FSG0%5Fguider.fits",
    ],
    ids=["slashes", "underscores"],
)
def test_url_encoded_key_is_decoded(notification, encoded):
    notification["Records"][0]["s3"]["object"]["key"] = encoded
    arrival = parse(notification)
    assert arrival.object_key.key == (
        "LSSTCam/20251203/MC_O_20251203_000123/MC_O_20251203_000123_R00_SG0_guider.fits")
    assert arrival.object_key.guider


def test_expected_sensors_notification_is_parsed_but_not_data(notification):
    notification["Records"][0]["s3"]["object"]["key"] = (
        "LSSTCam/20251203/MC_O_20251203_000123/MC_O_20251203_000123_expectedSensors.json")
    assert not parse(notification).object_key.is_data_file


def test_s3_style_event_name_accepted(notification):
    notification["Records"][0]["eventName"] = "s3:ObjectCreated:CompleteMultipartUpload"
    assert parse(notification).object_key.key == SAMPLE_KEY


def _edit(path, value):
    def edit(document):
        target = document["Records"][0]
        for name in path[:-1]:
            target = target[name]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return document
    return edit


_DELETE = object()

REJECTIONS = {
    "empty": (lambda d: b"", "malformed"),
    "not_json": (lambda d: b"{not json", "malformed"),
    "json_list": (lambda d: [], "malformed"),
    "json_null": (lambda d: None, "malformed"),
    "no_records": (lambda d: {"Records": []}, "malformed"),
    "records_not_list": (lambda d: {"Records": {"a": 1}}, "malformed"),
    "no_event_name": (_edit(["eventName"], _DELETE), "malformed"),
    "no_event_time": (_edit(["eventTime"], _DELETE), "malformed"),
    "no_s3": (_edit(["s3"], _DELETE), "malformed"),
    "no_key": (_edit(["s3", "object", "key"], _DELETE), "malformed"),
    "naive_event_time": (_edit(["eventTime"], "2025-12-04T05:12:35.318204"), "malformed"),
    "bad_event_time": (_edit(["eventTime"], "yesterday"), "malformed"),
    "numeric_event_time": (_edit(["eventTime"], 1764825155.3), "malformed"),
    "object_removed": (_edit(["eventName"], "ObjectRemoved:Delete"), "not_object_created"),
    "event_name_not_string": (_edit(["eventName"], 42), "not_object_created"),
    "other_bucket": (_edit(["s3", "bucket", "name"], "rubin-other"), "other_bucket"),
    "bad_key": (_edit(["s3", "object", "key"], "LSSTCam/20251203/README.txt"), "bad_key"),
    "key_not_string": (_edit(["s3", "object", "key"], 12), "bad_key"),
}


@pytest.mark.parametrize(("edit", "reason"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejections(notification, edit, reason):
    with pytest.raises(Rejected) as caught:
        parse(edit(copy.deepcopy(notification)))
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{reason}: ")


def test_opaque_data_checked_and_never_echoed(notification):
    notification["Records"][0]["opaqueData"] = "received-token-xyz"
    with pytest.raises(Rejected) as caught:
        parse(notification, opaque_data="configured-token-abc")
    assert caught.value.reason == "bad_opaque_data"
    for text in (str(caught.value), caught.value.detail, repr(caught.value)):
        assert "configured-token-abc" not in text
        assert "received-token-xyz" not in text
    # Missing opaqueData is rejected too; the right value is accepted.
    del notification["Records"][0]["opaqueData"]
    with pytest.raises(Rejected, match="bad_opaque_data"):
        parse(notification, opaque_data="configured-token-abc")
    notification["Records"][0]["opaqueData"] = "configured-token-abc"
    assert parse(notification, opaque_data="configured-token-abc").object_key.key == SAMPLE_KEY


def test_sample_end_readout(readout_fields):
    readout = end_readout_from_fields(readout_fields)
    assert readout.image_name == "MC_O_20251203_000123"
    assert (readout.image_source, readout.image_controller, readout.image_date) == ("MC", "O", "20251203")
    assert readout.instrument == "LSSTCam"
    assert readout.prefix == "LSSTCam/20251203/MC_O_20251203_000123/"
    assert readout.end_readout_tai == 1764825186.211875
    assert readout.end_readout_utc == pytest.approx(1764825149.211875, abs=1e-6)
    assert readout.day_obs == "2025-12-03"
    assert EndReadout.from_json(readout.to_json()) == readout


@pytest.mark.parametrize(
    ("source", "instrument"), [("MC", "LSSTCam"), ("CC", "LSSTComCam"), ("AT", "LATISS")])
def test_image_sources(readout_fields, source, instrument):
    readout_fields["imageSource"] = source
    readout_fields["imageName"] = f"{source}_O_20251203_000123"
    assert end_readout_from_fields(readout_fields).instrument == instrument


@pytest.mark.parametrize("name", ["imageName", "imageSource", "imageController", "imageDate", "timestampEndOfReadout"])
def test_end_readout_missing_field(readout_fields, name):
    del readout_fields[name]
    with pytest.raises(Rejected) as caught:
        end_readout_from_fields(readout_fields)
    assert caught.value.reason == "missing_field"
    assert name in str(caught.value)


BAD_READOUTS = {
    "unknown_image_source": ({"imageSource": "XX"}, "unknown_image_source"),
    "timestamp_text": ({"timestampEndOfReadout": "soon"}, "malformed"),
    "timestamp_null": ({"timestampEndOfReadout": None}, "malformed"),
    "timestamp_zero": ({"timestampEndOfReadout": 0.0}, "malformed"),
    "timestamp_nan": ({"timestampEndOfReadout": math.nan}, "malformed"),
    "timestamp_inf": ({"timestampEndOfReadout": math.inf}, "malformed"),
    "bad_image_name": ({"imageName": "MC_O_20251203_123"}, "malformed"),
    "image_name_not_string": ({"imageName": 123}, "malformed"),
    "bad_image_date": ({"imageDate": "2025-12-03"}, "malformed"),
}


@pytest.mark.parametrize(("change", "reason"), BAD_READOUTS.values(), ids=BAD_READOUTS.keys())
def test_bad_end_readouts(readout_fields, change, reason):
    readout_fields.update(change)
    with pytest.raises(Rejected) as caught:
        end_readout_from_fields(readout_fields)
    assert caught.value.reason == reason


@pytest.mark.parametrize("stamp", [1764825186211.875, 1e300, True, 0.0])
def test_implausible_end_of_readout_rejected(stamp):
    from dtm.common.models import Rejected, end_readout_from_fields

    fields = {"imageName": "MC_O_20251203_000123", "imageSource": "MC", "imageController": "O",
              "imageDate": "20251203", "timestampEndOfReadout": stamp}
    with pytest.raises(Rejected) as caught:
        end_readout_from_fields(fields)
    assert caught.value.reason == "malformed"

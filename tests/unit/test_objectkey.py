"""The object-key grammar and the expected-sensors document."""
from __future__ import annotations

import json

import pytest
from dtm.common.objectkey import (
    BadExpectedSensors,
    BadObjectKey,
    expected_file_keys,
    expected_sensors_key,
    exposure_prefix,
    is_image_name,
    parse_object_key,
    raft_of,
    sensor_kind,
)

IMAGE = "MC_O_20251203_000123"
PREFIX = exposure_prefix("LSSTCam", "20251203", IMAGE)


@pytest.mark.parametrize(
    ("rest", "sensor", "guider", "extension", "kind"),
    [
        ("R22_S11.fits", "R22_S11", False, "fits", "science"),
        ("R22_S11.json", "R22_S11", False, "json", "science"),
        ("R00_SW0.fits", "R00_SW0", False, "fits", "wavefront"),
        ("R44_SW1.json", "R44_SW1", False, "json", "wavefront"),
        ("R00_SG0_guider.fits", "R00_SG0", True, "fits", "guider"),
        ("R40_SG1_guider.json", "R40_SG1", True, "json", "guider"),
    ],
    ids=["science_fits", "science_json", "wavefront_fits", "wavefront_json", "guider_fits", "guider_json"],
)
def test_data_file_keys(rest, sensor, guider, extension, kind):
    key = f"{PREFIX}{IMAGE}_{rest}"
    parsed = parse_object_key(key)
    assert parsed.key == key
    assert (parsed.instrument, parsed.day_folder, parsed.image_name) == ("LSSTCam", "20251203", IMAGE)
    assert (parsed.sensor, parsed.guider, parsed.extension) == (sensor, guider, extension)
    assert parsed.is_data_file
    assert sensor_kind(parsed.sensor, parsed.guider) == kind
    assert raft_of(parsed.sensor) == rest[:3]


def test_expected_sensors_object():
    key = expected_sensors_key(PREFIX, IMAGE, "expectedSensors.json")
    assert key == f"LSSTCam/20251203/{IMAGE}/{IMAGE}_expectedSensors.json"
    parsed = parse_object_key(key)
    assert parsed.sensor is None and not parsed.is_data_file and parsed.extension == "json"
    # A configured file name is honoured, and the default one is then a bad key.
    custom = f"{PREFIX}{IMAGE}_sensors.json"
    assert not parse_object_key(custom, "sensors.json").is_data_file
    with pytest.raises(BadObjectKey):
        parse_object_key(key, "sensors.json")


@pytest.mark.parametrize(
    "key",
    [
        "",
        f"{IMAGE}_R22_S11.fits",  # no folders
        f"20251203/{IMAGE}/{IMAGE}_R22_S11.fits",  # no instrument
        f"LSSTCam/2025120/{IMAGE}/{IMAGE}_R22_S11.fits",  # 7-digit day folder
        f"LSSTCam/20251203/{IMAGE}/MC_O_20251203_000124_R22_S11.fits",  # file of another image
        f"LSSTCam/20251203/{IMAGE}/extra/{IMAGE}_R22_S11.fits",  # one folder too many
        f"{PREFIX}{IMAGE}_R22_S11.txt",
        f"{PREFIX}{IMAGE}_R22_S11.FITS",
        f"{PREFIX}{IMAGE}_R22_S11.fits.gz",
        f"{PREFIX}{IMAGE}_R22_S11_guide.fits",
        f"{PREFIX}{IMAGE}_R2_S11.fits",
        f"{PREFIX}{IMAGE}_R22_S11",
        f"{PREFIX}{IMAGE}_",
        f"{PREFIX}",
        "LSSTCam/20251203/mc_o_20251203_000123/mc_o_20251203_000123_R22_S11.fits",
    ],
)
def test_bad_keys(key):
    with pytest.raises(BadObjectKey):
        parse_object_key(key)


def test_image_names():
    assert is_image_name(IMAGE)
    assert is_image_name("AT_O_20240101_000001")
    assert not is_image_name("MC_O_20251203_123")
    assert not is_image_name(f"{IMAGE}/")


def test_expected_file_keys_of_lsstcam(samples):
    document = json.loads((samples / "expected_sensors_lsstcam.json").read_text())
    keys = expected_file_keys(PREFIX, IMAGE, document)
    assert len(keys) == 410
    assert len(set(keys)) == 410
    guider = [key for key in keys if "_guider." in key]
    assert len(guider) == 16
    assert all(parse_object_key(key).guider for key in guider)
    kinds = [sensor_kind(p.sensor, p.guider) for p in map(parse_object_key, keys)]
    assert (kinds.count("science"), kinds.count("wavefront"), kinds.count("guider")) == (378, 16, 16)
    assert all(key.startswith(PREFIX) and parse_object_key(key).image_name == IMAGE for key in keys)
    assert f"{PREFIX}{IMAGE}_R00_SG0_guider.fits" in keys
    assert f"{PREFIX}{IMAGE}_R00_SW0.json" in keys


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "expectedSensors",
        {},
        {"expectedSensors": None},
        {"expectedSensors": ["R22_S11"]},
        {"expectedSensors": {"R22_S11": "WAVEFRONT"}},
        {"expectedSensors": {"R22_S11": None}},
        {"expectedSensors": {"R2_S11": "SCIENCE"}},
        {"expectedSensors": {"R22_S11.fits": "SCIENCE"}},
        {"expectedSensors": {"R22_S11": "SCIENCE", "../../etc": "SCIENCE"}},
    ],
    ids=["none", "list", "string", "empty", "null_map", "list_map", "unknown_type", "null_type", "bad_sensor",
         "sensor_with_extension", "path_in_sensor"],
)
def test_bad_expected_sensors(document):
    with pytest.raises(BadExpectedSensors):
        expected_file_keys(PREFIX, IMAGE, document)

"""The object-key grammar of the summit bucket.

    <instrument>/<imageDate>/<imageName>/<imageName>_<sensor>[_guider].<ext>

e.g. `LSSTCam/20251203/MC_O_20251203_000123/MC_O_20251203_000123_R00_SG0_guider.fits`.
The expected-sensors object `<imageName>_<EXPECTED_SENSORS_FILENAME>` shares the prefix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# imageSource -> instrument folder.
INSTRUMENTS = {"MC": "LSSTCam", "CC": "LSSTComCam", "AT": "LATISS"}

DATA_EXTENSIONS = ("fits", "json")

_IMAGE_NAME = r"(?P<source>[A-Z]{2})_(?P<controller>[A-Z])_(?P<date>\d{8})_(?P<seq>\d{6})"
_IMAGE_NAME_RE = re.compile(rf"^{_IMAGE_NAME}$")
_KEY_RE = re.compile(
    r"^(?P<instrument>[A-Za-z][A-Za-z0-9]*)/(?P<day_folder>\d{8})/(?P<image_name>[A-Z]{2}_[A-Z]_\d{8}_\d{6})/"
    r"(?P=image_name)_(?P<rest>[^/]+)$"
)
_SENSOR_RE = re.compile(r"^(?P<sensor>R\d\d_S[0-9A-Z]{2})(?P<guider>_guider)?\.(?P<ext>fits|json)$")


class BadObjectKey(ValueError):
    """A key outside the grammar."""


@dataclass(frozen=True, slots=True)
class ObjectKey:
    key: str
    instrument: str
    day_folder: str
    image_name: str
    sensor: str | None  # None for the expected-sensors object
    guider: bool
    extension: str

    @property
    def is_data_file(self) -> bool:
        return self.sensor is not None


def parse_object_key(key: str, expected_sensors_filename: str = "expectedSensors.json") -> ObjectKey:
    match = _KEY_RE.match(key)
    if match is None:
        raise BadObjectKey(f"key {key!r} is not <instrument>/<YYYYMMDD>/<imageName>/<imageName>_<file>")
    instrument, day_folder, image_name, rest = match.group("instrument", "day_folder", "image_name", "rest")
    if rest == expected_sensors_filename:
        return ObjectKey(key, instrument, day_folder, image_name, None, False, rest.rsplit(".", 1)[-1])
    sensor = _SENSOR_RE.match(rest)
    if sensor is None:
        raise BadObjectKey(f"key {key!r}: {rest!r} is not <sensor>[_guider].fits|json")
    return ObjectKey(
        key, instrument, day_folder, image_name,
        sensor.group("sensor"), sensor.group("guider") is not None, sensor.group("ext"),
    )


def is_data_file(key: str) -> bool:
    """A sensor's `.fits` or `.json` file of an exposure (not the expected-sensors object, nor anything else)."""
    match = _KEY_RE.match(key)
    return match is not None and _SENSOR_RE.match(match.group("rest")) is not None


def is_image_name(name: str) -> bool:
    return _IMAGE_NAME_RE.match(name) is not None


def exposure_prefix(instrument: str, image_date: str, image_name: str) -> str:
    return f"{instrument}/{image_date}/{image_name}/"


def expected_sensors_key(prefix: str, image_name: str, expected_sensors_filename: str) -> str:
    return f"{prefix}{image_name}_{expected_sensors_filename}"


def data_file_keys(prefix: str, image_name: str, sensor: str, guider: bool) -> list[str]:
    """The `.fits` and `.json` keys every sensor writes."""
    suffix = "_guider" if guider else ""
    return [f"{prefix}{image_name}_{sensor}{suffix}.{ext}" for ext in DATA_EXTENSIONS]


def sensor_kind(sensor: str, guider: bool) -> str:
    """science, wavefront or guider: how operators group late and missing files."""
    if guider:
        return "guider"
    if "_SW" in sensor:
        return "wavefront"
    return "science"


def raft_of(sensor: str) -> str:
    return sensor.split("_", 1)[0]


SENSOR_TYPES = ("SCIENCE", "GUIDER")


class BadExpectedSensors(ValueError):
    """An expected-sensors document dtm cannot read."""


def expected_file_keys(prefix: str, image_name: str, document: dict) -> list[str]:
    """Every data file an exposure should have, from its expected-sensors document."""
    sensors = document.get("expectedSensors") if isinstance(document, dict) else None
    if not isinstance(sensors, dict) or not sensors:
        raise BadExpectedSensors("no expectedSensors object, or an empty one")
    keys = []
    for sensor, sensor_type in sensors.items():
        if sensor_type not in SENSOR_TYPES or not isinstance(sensor, str) or not _SENSOR_RE.match(f"{sensor}.fits"):
            raise BadExpectedSensors(f"sensor {sensor!r}: {sensor_type!r}")
        keys.extend(data_file_keys(prefix, image_name, sensor, sensor_type == "GUIDER"))
    return keys

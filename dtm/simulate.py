"""`dtm simulate`: a summit that can be pointed at any Kafka and S3.

Per exposure, at a configurable cadence:

1. the end of readout happens now (T0, wall clock); the exposure is named `MC_O_<dayobs>_<seq>` after
   the observing day of T0, and its files live under `<instrument>/<dayobs>/<imageName>/`;
2. the expected-sensors object is uploaded, then a `.fits` and a `.json` object per sensor, each at
   its own delay after T0, by a pool of concurrent uploaders; after each upload a Ceph-format bucket
   notification goes to the notification topic (unless the S3 service sends its own);
3. the camera's endReadout event goes to its topic (JSON, or Avro with a Schema Registry), with every
   time stamp in TAI;
4. once the exposure's decision window (T0 + S3_WAIT_TIME) has passed, one ListObjectsV2 of the prefix
   gives each file's LastModified, and the contract's rule (`dtm.worker.decision.decide`) turns them
   into the ground truth: what dtm must report for that exposure.

Faults (late, missing, duplicated, delayed notifications, late end readout, garbage messages) are drawn
from one `random.Random(seed)` while planning, so a seed reproduces the same faults.

Timing and whole-second S3 time stamps: S3 services such as moto list LastModified truncated to the
second, so an upload just after T0 + late or T0 + wait could be stamped on the other side of the
boundary. Around each boundary B (T0 + late, T0 + wait) no upload runs between B - LEAD_MARGIN and
B + boundary_margin (1.5 s by default, more than the 1 s truncation): on-time uploads start early
enough to finish before T0 + late - LEAD_MARGIN, late ones start after T0 + late + boundary_margin
and finish before T0 + wait - LEAD_MARGIN. An upload that the pool could not start in time is held
until B + boundary_margin and reported as "deferred" in the truth.
"""
from __future__ import annotations

import hashlib
import heapq
import importlib.resources
import itertools
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import click
import orjson

from dtm.common import time as ttime
from dtm.common.kafka import security_config
from dtm.common.models import ceph_notification
from dtm.common.objectkey import (
    INSTRUMENTS,
    data_file_keys,
    expected_sensors_key,
    exposure_prefix,
    parse_object_key,
)
from dtm.common.settings import SettingsError
from dtm.worker.decision import decide

log = logging.getLogger("dtm.simulate")

LSSTCAM_CADENCE = 35.0  # seconds between exposures: 30 s exposure, readout and slew
EXPOSURE_TIME = 30.0  # requestedExposureTime of every simulated exposure
READOUT_TIME = 2.0
PUT_ALLOWANCE = 0.25  # seconds an upload may take: uploads start at least this long before they must be done
LEAD_MARGIN = 0.5  # uploads before a boundary are done at least this long before it (clock jitter)
TRUTH_WORKERS = 2

EventCallback = Callable[[str, dict], None]


# ---------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are probabilities: per data file for late, missing, resend, delay and
    malformed (a garbage message next to the file's notification); per exposure for late readout."""

    exposures: int = 10
    cadence: float = LSSTCAM_CADENCE  # seconds between exposures at speed 1
    speed: float = 1.0  # the cadence is divided by this
    sensors: int | None = None  # None: all 205 LSSTCam sensors; N: the first N (one guider kept when N >= 2)
    uploaders: int = 8  # concurrent S3 uploads
    wait_time: float = 30.0  # S3_WAIT_TIME that dtm uses
    late_time: float = 10.0  # MAX_LATE_FILE_TIME that dtm uses
    boundary_margin: float = 1.5  # no upload starts this soon after T0 + late_time or T0 + wait_time
    late_rate: float = 0.0
    missing_rate: float = 0.0
    resend_rate: float = 0.0
    delay_rate: float = 0.0
    late_readout_rate: float = 0.0
    malformed_rate: float = 0.0
    seed: int | None = None
    native_notifications: bool = False  # the S3 service sends the notifications itself
    avro_registry_url: str | None = None  # set: the end readout is Avro (Confluent wire format)
    image_source: str = "MC"
    image_controller: str = "O"
    first_sequence: int | None = None  # None: continue after the highest sequence number in the day folder
    expected_sensors_filename: str = "expectedSensors.json"
    truth_path: str | Path | None = None  # written afresh: one JSON line per exposure as its truth becomes known

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def interval(self) -> float:
        """Seconds between two ends of readout."""
        return self.cadence / self.speed

    @property
    def instrument(self) -> str:
        return INSTRUMENTS[self.image_source]

    def problems(self) -> list[str]:
        found = []
        if self.exposures < 0:
            found.append("exposures must be >= 0")
        if self.cadence <= 0 or self.speed <= 0:
            found.append("cadence and speed must be > 0")
        if self.uploaders < 1:
            found.append("uploaders must be >= 1")
        if self.sensors is not None and not 1 <= self.sensors <= len(lsstcam_sensors()):
            found.append(f"sensors must be between 1 and {len(lsstcam_sensors())}")
        if self.image_source not in INSTRUMENTS:
            found.append(f"image source {self.image_source!r} is not one of {', '.join(INSTRUMENTS)}")
        for name in ("late_rate", "missing_rate", "resend_rate", "delay_rate", "late_readout_rate", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append(f"{name} must be between 0 and 1")
        margin = self.boundary_margin
        if margin < 0:
            found.append("boundary margin must be >= 0")
        if on_time_window(self)[1] <= 0:
            found.append(f"late time {self.late_time:g} s leaves no room for on-time files: "
                         f"it must exceed {LEAD_MARGIN + PUT_ALLOWANCE:g} s")
        if self.wait_time < self.late_time:
            found.append(f"wait time {self.wait_time:g} s is shorter than the late time {self.late_time:g} s")
        earliest_late, latest_late = late_window(self)
        if self.late_rate > 0 and latest_late < earliest_late:
            room = margin + LEAD_MARGIN + PUT_ALLOWANCE
            found.append(f"late files need wait time - late time >= {room:g} s (boundary margin {margin:g} s + "
                         f"{LEAD_MARGIN + PUT_ALLOWANCE:g} s); here {self.wait_time - self.late_time:g} s")
        return found


# ---------------------------------------------------------------------------------------------------------------
# Sensors and the expected-sensors document


def package_data(name: str) -> bytes:
    return importlib.resources.files("dtm").joinpath("data", name).read_bytes()


def lsstcam_sensors() -> dict[str, str]:
    """The 205 LSSTCam sensors, sensor name -> SCIENCE or GUIDER, in the sample's order."""
    return dict(orjson.loads(package_data("expected_sensors_lsstcam.json"))["expectedSensors"])


def choose_sensors(count: int | None) -> dict[str, str]:
    """The first `count` LSSTCam sensors; with two or more, the last one is a guider if none is."""
    every_sensor = lsstcam_sensors()
    if count is None or count >= len(every_sensor):
        return every_sensor
    chosen = dict(itertools.islice(every_sensor.items(), count))
    if count >= 2 and "GUIDER" not in chosen.values():
        chosen.pop(list(chosen)[-1])
        first_guider = next(sensor for sensor, kind in every_sensor.items() if kind == "GUIDER")
        chosen[first_guider] = "GUIDER"
    return chosen


def expected_sensors_document(image_name: str, sensors: dict[str, str], filename: str) -> dict:
    """The same shape as the camera's `<imageName>_expectedSensors.json`."""
    return {
        "fileName": f"{image_name}_{filename}",
        "fileType": "expectedSensors",
        "obsId": image_name,
        "version": 1.0,
        "expectedSensors": dict(sensors),
    }


# ---------------------------------------------------------------------------------------------------------------
# Timing: when files arrive, relative to the end of readout T0


def on_time_window(config: SimulationConfig) -> tuple[float, float]:
    """Delays after T0 at which on-time uploads start: they are done before T0 + late - LEAD_MARGIN.

    The earliest is 1 s when there is room, so that a whole-second LastModified still falls after T0.
    """
    latest = config.late_time - LEAD_MARGIN - PUT_ALLOWANCE
    return min(1.0, latest / 2), latest


def late_window(config: SimulationConfig) -> tuple[float, float]:
    """Delays after T0 at which late uploads start: after T0 + late + margin, done before T0 + wait - LEAD_MARGIN."""
    return config.late_time + config.boundary_margin, config.wait_time - LEAD_MARGIN - PUT_ALLOWANCE


def truth_delay(config: SimulationConfig) -> float:
    """Seconds after T0 at which the exposure's S3 listing is final."""
    return config.wait_time + config.boundary_margin


def safe_start(now: float, end_readout_utc: float, config: SimulationConfig) -> float:
    """`now`, or, when an upload starting now could be stamped on either side of T0 + late or T0 + wait,
    the instant `boundary_margin` after that boundary."""
    start = now
    for boundary in sorted((config.late_time, config.wait_time)):
        edge = end_readout_utc + boundary
        if edge - LEAD_MARGIN < start < edge + config.boundary_margin:
            start = edge + config.boundary_margin
    return start


# ---------------------------------------------------------------------------------------------------------------
# Plans: every random choice of an exposure, made up front


@dataclass
class PlannedFile:
    key: str
    upload_delay: float | None  # seconds after T0; None: never uploaded (missing)
    late: bool = False
    notification_delay: float = 0.0  # seconds between the upload and its notification
    resend_after: float | None = None  # seconds after the first notification that a duplicate follows
    garbage: bytes | None = None  # a malformed message published just before the file's notification

    @property
    def missing(self) -> bool:
        return self.upload_delay is None


@dataclass
class ExposurePlan:
    index: int
    image_name: str
    instrument: str
    day_obs: str  # YYYY-MM-DD
    sequence_number: int
    prefix: str
    end_readout_tai: float
    end_readout_utc: float  # as dtm computes it from the TAI stamp
    expected_sensors: PlannedFile
    expected_sensors_document: dict
    files: list[PlannedFile]  # data files, missing ones included
    late_readout: bool

    @property
    def day_folder(self) -> str:
        return self.day_obs.replace("-", "")

    @property
    def data_keys(self) -> list[str]:
        return [planned.key for planned in self.files]

    @property
    def uploads(self) -> list[PlannedFile]:
        """Every object to put, the expected-sensors object first."""
        return [self.expected_sensors] + [planned for planned in self.files if not planned.missing]

    def faults(self) -> dict:
        uploaded = [planned for planned in self.files if not planned.missing]
        return {
            "late": sorted(planned.key for planned in uploaded if planned.late),
            "missing": sorted(planned.key for planned in self.files if planned.missing),
            "resent": sorted(planned.key for planned in uploaded if planned.resend_after is not None),
            "delayed_notifications": sorted(planned.key for planned in uploaded if planned.notification_delay > 0),
            "late_readout": self.late_readout,
            "malformed_messages": sum(planned.garbage is not None for planned in uploaded),
        }


def day_obs_of(end_readout_utc: float) -> str:
    return ttime.observing_day_of_tai(ttime.utc_to_tai(end_readout_utc))


def image_name_of(config: SimulationConfig, day_obs: str, sequence_number: int) -> str:
    return f"{config.image_source}_{config.image_controller}_{day_obs.replace('-', '')}_{sequence_number:06d}"


def plan_exposure(rng: random.Random, config: SimulationConfig, sensors: dict[str, str], *, index: int,
                  end_readout_utc: float, sequence_number: int) -> ExposurePlan:
    """Name the exposure and draw its files' arrival delays and faults.

    The number of draws does not depend on the outcomes, so a seed gives the same faults whatever
    the rates of the other faults.
    """
    end_readout_tai = ttime.utc_to_tai(end_readout_utc)
    day_obs = ttime.observing_day_of_tai(end_readout_tai)
    image_name = image_name_of(config, day_obs, sequence_number)
    prefix = exposure_prefix(config.instrument, day_obs.replace("-", ""), image_name)
    files = [
        plan_file(rng, config, key)
        for sensor, kind in sensors.items()
        for key in data_file_keys(prefix, image_name, sensor, kind == "GUIDER")
    ]
    late_readout = rng.random() < config.late_readout_rate
    return ExposurePlan(
        index=index,
        image_name=image_name,
        instrument=config.instrument,
        day_obs=day_obs,
        sequence_number=sequence_number,
        prefix=prefix,
        end_readout_tai=end_readout_tai,
        end_readout_utc=ttime.tai_to_utc(end_readout_tai),
        expected_sensors=PlannedFile(expected_sensors_key(prefix, image_name, config.expected_sensors_filename), 0.0),
        expected_sensors_document=expected_sensors_document(image_name, sensors, config.expected_sensors_filename),
        files=files,
        late_readout=late_readout,
    )


def plan_file(rng: random.Random, config: SimulationConfig, key: str) -> PlannedFile:
    missing = rng.random() < config.missing_rate
    late = rng.random() < config.late_rate and not missing
    resend = rng.random() < config.resend_rate
    delayed = rng.random() < config.delay_rate
    malformed = rng.random() < config.malformed_rate
    garbage = garbage_message(rng)
    on_time_delay = arrival_delay(rng, on_time_window(config))
    late_delay = rng.uniform(*late_window(config))
    notification_delay = rng.uniform(1.0, max(1.0, config.late_time))
    resend_after = rng.uniform(0.0, 1.0)
    if missing:
        return PlannedFile(key, None)
    notifies = not config.native_notifications
    return PlannedFile(
        key,
        upload_delay=late_delay if late else on_time_delay,
        late=late,
        notification_delay=notification_delay if delayed and notifies else 0.0,
        resend_after=resend_after if resend and notifies else None,
        garbage=garbage if malformed else None,
    )


def arrival_delay(rng: random.Random, window: tuple[float, float]) -> float:
    """Most files arrive in the first half of the window, a few near its end (as on the summit link)."""
    earliest, latest = window
    return rng.triangular(earliest, latest, earliest + 0.4 * (latest - earliest))


GARBAGE_MESSAGES = (
    b"",
    b"this is not JSON",
    b'{"Records": []}',
    b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',
    b'[1, 2, 3]',
)


def garbage_message(rng: random.Random) -> bytes:
    """A message on the notification topic that is no S3 notification at all."""
    choice = rng.randrange(len(GARBAGE_MESSAGES) + 1)
    return GARBAGE_MESSAGES[choice] if choice < len(GARBAGE_MESSAGES) else b"\xff\xfe" + rng.randbytes(16)


# ---------------------------------------------------------------------------------------------------------------
# Messages and objects


def end_readout_fields(plan: ExposurePlan, *, message_number: int, send_tai: float) -> dict:
    """Every field of `end_readout.avsc`; time stamps TAI unix seconds except private_efdStamp (UTC)."""
    acquisition_start_tai = plan.end_readout_tai - EXPOSURE_TIME - READOUT_TIME
    group_id = ttime.isoformat(ttime.tai_to_utc(acquisition_start_tai)).rstrip("Z").replace(":", "\\:")
    return {
        "private_efdStamp": plan.end_readout_utc,
        "private_kafkaStamp": send_tai,
        "private_revCode": "dtmsimul",
        "private_sndStamp": send_tai,
        "private_rcvStamp": 0.0,
        "private_seqNum": message_number,
        "private_identity": "MTCamera",
        "private_origin": 0,
        "additionalKeys": "imageType:groupId:testType:stutterRows:stutterNShifts:stutterDelay:reason:program",
        "additionalValues": f"SCIENCE:{group_id}:SCIENCE:0:0:0.0:simulation:dtm-simulate",
        "imagesInSequence": 1,
        "imageName": plan.image_name,
        "imageIndex": 1,
        "imageSource": plan.image_name[:2],
        "imageController": plan.image_name[3],
        "imageDate": plan.day_folder,
        "imageNumber": plan.sequence_number,
        "timestampAcquisitionStart": acquisition_start_tai,
        "requestedExposureTime": EXPOSURE_TIME,
        "timestampEndOfReadout": plan.end_readout_tai,
    }


EndReadoutSerializer = Callable[[dict, str], bytes]


def json_serializer(fields: dict, topic: str) -> bytes:
    return orjson.dumps(fields)


def avro_serializer(registry_client) -> EndReadoutSerializer:
    """Confluent wire format with `end_readout.avsc`, registered under `<topic>-value` on first use."""
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(registry_client, package_data("end_readout.avsc").decode())
    return lambda fields, topic: serializer(fields, SerializationContext(topic, MessageField.VALUE))


def end_readout_serializer(avro_registry_url: str | None) -> EndReadoutSerializer:
    if not avro_registry_url:
        return json_serializer
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return avro_serializer(SchemaRegistryClient({"url": avro_registry_url}))


def object_content(plan: ExposurePlan, planned: PlannedFile) -> bytes:
    """A few bytes standing in for the real file."""
    if planned is plan.expected_sensors:
        return orjson.dumps(plan.expected_sensors_document, option=orjson.OPT_INDENT_2)
    sensor = parse_object_key(planned.key).sensor
    if planned.key.endswith(".fits"):
        return f"SIMPLE  = T / fake FITS of {plan.image_name} {sensor} from dtm simulate".encode()
    return orjson.dumps({"obsId": plan.image_name, "sensor": sensor, "source": "dtm simulate"})


class SequenceNumbers:
    """The camera's sequence counter per day folder, continuing after what the bucket already holds."""

    def __init__(self, s3_client, bucket: str, config: SimulationConfig):
        self.s3 = s3_client
        self.bucket = bucket
        self.config = config
        self.next_by_day: dict[str, int] = {}

    def next(self, day_obs: str) -> int:
        if day_obs not in self.next_by_day:
            if self.config.first_sequence is not None and not self.next_by_day:
                self.next_by_day[day_obs] = self.config.first_sequence
            else:
                self.next_by_day[day_obs] = self.highest_in_bucket(day_obs) + 1
        number = self.next_by_day[day_obs]
        self.next_by_day[day_obs] += 1
        return number

    def highest_in_bucket(self, day_obs: str) -> int:
        day_folder = day_obs.replace("-", "")
        name_start = f"{self.config.image_source}_{self.config.image_controller}_{day_folder}_"
        folder = f"{self.config.instrument}/{day_folder}/"
        highest = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder + name_start, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                sequence = common["Prefix"][len(folder) + len(name_start):].rstrip("/")
                if sequence.isdigit():
                    highest = max(highest, int(sequence))
        return highest


def list_last_modified(s3_client, bucket: str, prefix: str) -> dict[str, float]:
    """Key -> LastModified (UTC unix seconds) of every object under the prefix: one ListObjectsV2 request
    for up to 1000 keys (an LSSTCam exposure has 411)."""
    found = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"]] = ttime.to_unix(item["LastModified"])
    return found


# ---------------------------------------------------------------------------------------------------------------
# Ground truth


def truth_record(plan: ExposurePlan, last_modified: dict[str, float], config: SimulationConfig,
                 *, deferred: Iterable[str] = (), uncertain: Iterable[str] = (), failed: Iterable[str] = ()) -> dict:
    """What dtm must report for the exposure, from the S3 listing read after its window.

    `faults` records what was planned (late, missing, ...) and what went differently: `deferred`
    uploads started too late and were moved past a boundary (so a planned on-time file may be late);
    `uncertain` puts were still running at T0 + wait, so dtm's own listing may or may not have shown
    them; `failed_uploads` were refused by S3 (and count as missing).
    """
    arrivals = {key: at for key, at in last_modified.items() if key != plan.expected_sensors.key}
    decision = decide(
        image_name=plan.image_name,
        instrument=plan.instrument,
        day_obs=plan.day_obs,
        end_readout_utc=plan.end_readout_utc,
        expected_keys=plan.data_keys,
        arrivals=arrivals,
        wait_time=config.wait_time,
        max_late_time=config.late_time,
    )
    return {
        "image_name": plan.image_name,
        "instrument": plan.instrument,
        "day_obs": plan.day_obs,
        "end_readout_utc": ttime.isoformat(plan.end_readout_utc),
        "end_readout_tai": plan.end_readout_tai,
        "status": decision.status,
        "expected": sorted(plan.data_keys),
        "arrived_files": decision.arrived_files,
        "late": decision.late_files,
        "missing": decision.missing_files,
        "transfer_time_seconds": decision.transfer_time_seconds,
        "last_file": decision.last_file,
        "faults": {**plan.faults(), "deferred": sorted(deferred), "uncertain": sorted(uncertain),
                   "failed_uploads": sorted(failed)},
    }


# ---------------------------------------------------------------------------------------------------------------
# Running it


class Timeline:
    """Runs short actions at wall-clock instants, in time order, on one thread."""

    def __init__(self):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="simulate-timeline", daemon=True)
        self._thread.start()

    def at(self, when: float, action: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._heap, (when, next(self._order), action))
            self._condition.notify()

    def close(self, *, cancel: bool = False) -> None:
        """Stop when every pending action has run (or at once, dropping them, with `cancel`)."""
        with self._condition:
            self._closing = True
            if cancel:
                self._heap.clear()
            self._condition.notify()
        self._thread.join()

    def _next_action(self) -> Callable[[], None] | None:
        with self._condition:
            while True:
                if not self._heap:
                    if self._closing:
                        return None
                    self._condition.wait()
                    continue
                due_in = self._heap[0][0] - time.time()
                if due_in <= 0:
                    return heapq.heappop(self._heap)[2]
                self._condition.wait(due_in)

    def _run(self) -> None:
        while (action := self._next_action()) is not None:
            try:
                action()
            except Exception:
                log.exception("simulation action failed")


@dataclass
class ExposureRun:
    """One exposure in flight."""

    plan: ExposurePlan
    uploads_left: int
    uploads_done: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    deferred: set[str] = field(default_factory=set)  # uploads moved past a boundary: the pool fell behind
    uncertain: set[str] = field(default_factory=set)  # puts still running at T0 + wait
    failed: set[str] = field(default_factory=set)  # uploads S3 refused


class Simulator:
    def __init__(self, config: SimulationConfig, *, notification_producer, end_readout_producer, s3_client,
                 bucket: str, notification_topic: str, end_readout_topic: str,
                 on_event: EventCallback | None, stop: threading.Event):
        self.config = config
        self.notification_producer = notification_producer
        self.end_readout_producer = end_readout_producer
        self.s3 = s3_client
        self.bucket = bucket
        self.notification_topic = notification_topic
        self.end_readout_topic = end_readout_topic
        self.on_event = on_event
        self.stop = stop
        self.rng = random.Random(config.seed)
        self.sensors = choose_sensors(config.sensors)
        self.sequence_numbers = SequenceNumbers(s3_client, bucket, config)
        self.serialize_end_readout = end_readout_serializer(config.avro_registry_url)
        self.message_numbers = itertools.count(1)
        self.lock = threading.Lock()
        self.runs: list[ExposureRun] = []
        self.truths: dict[int, dict] = {}
        self.delivery_failures = 0
        self.timeline = Timeline()
        self.uploaders = ThreadPoolExecutor(config.uploaders, thread_name_prefix="simulate-upload")
        self.checkers = ThreadPoolExecutor(TRUTH_WORKERS, thread_name_prefix="simulate-truth")
        self.truth_file = open(config.truth_path, "w") if config.truth_path else None

    def run(self) -> list[dict]:
        try:
            first = time.time()
            for index in range(self.config.exposures):
                if self.stop.wait(max(0.0, first + index * self.config.interval - time.time())):
                    break
                self.start_exposure(index)
            self.wait_for_truths()
        finally:
            self.shut_down()
        return [self.truths[index] for index in sorted(self.truths)]

    # -- one exposure

    def start_exposure(self, index: int) -> None:
        end_readout_utc = time.time()
        sequence_number = self.sequence_numbers.next(day_obs_of(end_readout_utc))
        plan = plan_exposure(self.rng, self.config, self.sensors, index=index, end_readout_utc=end_readout_utc,
                             sequence_number=sequence_number)
        run = ExposureRun(plan, uploads_left=len(plan.uploads))
        self.runs.append(run)
        t0 = plan.end_readout_utc
        for planned in plan.uploads:
            self.timeline.at(t0 + planned.upload_delay, lambda planned=planned: self.uploaders.submit(
                self.upload, run, planned))
        if not plan.late_readout:
            self.publish_end_readout(plan)
        self.timeline.at(t0 + truth_delay(self.config), lambda: self.checkers.submit(self.record_truth, run))

    def upload(self, run: ExposureRun, planned: PlannedFile) -> None:
        if not self.stop.is_set() and self.moved_past_boundary(run, planned):
            return  # runs again later
        try:
            if not self.stop.is_set():
                self.put_and_notify(run, planned)
        except Exception as error:
            log.warning("upload of %s failed: %s", planned.key, error)
            with self.lock:
                run.failed.add(planned.key)
        finally:
            self.upload_finished(run)

    def moved_past_boundary(self, run: ExposureRun, planned: PlannedFile) -> bool:
        """Reschedule a data file that the pool starts too close to a boundary (it fell behind)."""
        if planned is run.plan.expected_sensors:
            return False
        now = time.time()
        start = safe_start(now, run.plan.end_readout_utc, self.config)
        if start == now:
            return False
        log.debug("uploaders behind: %s moved %.1f s later, past a decision boundary", planned.key, start - now)
        with self.lock:
            run.deferred.add(planned.key)
        self.timeline.at(start, lambda: self.uploaders.submit(self.upload, run, planned))
        return True

    def put_and_notify(self, run: ExposureRun, planned: PlannedFile) -> None:
        body = object_content(run.plan, planned)
        started = time.time()
        self.s3.put_object(Bucket=self.bucket, Key=planned.key, Body=body)
        uploaded_at = time.time()
        window_end = run.plan.end_readout_utc + self.config.wait_time
        if started < window_end + 1.0 and uploaded_at > window_end - LEAD_MARGIN:
            with self.lock:  # a slow put that ran over T0 + wait: dtm's listing may or may not show it
                run.uncertain.add(planned.key)
        if planned.garbage is not None:
            self.publish_notification(planned.garbage)
        if not self.config.native_notifications:
            self.notify(planned, uploaded_at, body)

    def notify(self, planned: PlannedFile, uploaded_at: float, body: bytes) -> None:
        message = ceph_notification(bucket=self.bucket, key=planned.key, event_time=uploaded_at, size=len(body),
                                    etag=hashlib.md5(body).hexdigest())
        published_at = uploaded_at + planned.notification_delay
        if planned.notification_delay > 0:
            self.timeline.at(published_at, lambda: self.publish_notification(message))
        else:
            self.publish_notification(message)
        if planned.resend_after is not None:
            self.timeline.at(published_at + planned.resend_after, lambda: self.publish_notification(message))

    def upload_finished(self, run: ExposureRun) -> None:
        with self.lock:
            run.uploads_left -= 1
            all_done = run.uploads_left == 0
        if all_done:
            if run.plan.late_readout:
                self.publish_end_readout(run.plan)
            run.uploads_done.set()

    def record_truth(self, run: ExposureRun) -> None:
        try:
            while not run.uploads_done.wait(0.1):
                if self.stop.is_set():
                    return
            last_modified = list_last_modified(self.s3, self.bucket, run.plan.prefix)
            if run.deferred:
                log.warning("%s: %d uploads started too late and were moved past a decision boundary: the "
                            "uploaders (%d) or S3 are too slow for this many files", run.plan.image_name,
                            len(run.deferred), self.config.uploaders)
            with self.lock:
                record = truth_record(run.plan, last_modified, self.config, deferred=run.deferred,
                                      uncertain=run.uncertain, failed=run.failed)
                self.truths[run.plan.index] = record
                if self.truth_file:
                    self.truth_file.write(orjson.dumps(record).decode() + "\n")
                    self.truth_file.flush()
            self.emit("truth", record)
        except Exception:
            log.exception("ground truth of %s failed", run.plan.image_name)
        finally:
            run.finished.set()

    def wait_for_truths(self) -> None:
        for run in self.runs:
            while not run.finished.wait(0.1):
                if self.stop.is_set():
                    return

    # -- Kafka

    def publish_end_readout(self, plan: ExposurePlan) -> None:
        fields = end_readout_fields(plan, message_number=next(self.message_numbers),
                                    send_tai=ttime.utc_to_tai(time.time()))
        produce(self.end_readout_producer, self.end_readout_topic, self.serialize_end_readout(
            fields, self.end_readout_topic), self.delivered)
        self.emit("published", {
            "image_name": plan.image_name, "day_obs": plan.day_obs,
            "end_readout_utc": ttime.isoformat(plan.end_readout_utc), "end_readout_tai": plan.end_readout_tai,
            "files": len(plan.files), "late_readout": plan.late_readout,
        })

    def publish_notification(self, message: bytes) -> None:
        produce(self.notification_producer, self.notification_topic, message, self.delivered)

    def delivered(self, error, message) -> None:
        if error is not None:
            self.delivery_failures += 1
            log.warning("message to %s not delivered: %s", message.topic(), error)

    def emit(self, kind: str, info: dict) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, info)
        except Exception:
            log.exception("on_event(%r) failed", kind)

    def shut_down(self) -> None:
        stopping = self.stop.is_set()
        self.timeline.close(cancel=stopping)
        self.uploaders.shutdown(wait=True, cancel_futures=True)
        self.checkers.shutdown(wait=True, cancel_futures=True)
        if self.truth_file:
            self.truth_file.close()
        for producer in {id(p): p for p in (self.notification_producer, self.end_readout_producer)}.values():
            left = producer.flush(10)
            if left:
                log.warning("%d Kafka messages not delivered", left)


def produce(producer, topic: str, value: bytes, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, value=value, on_delivery=on_delivery)
            break
        except BufferError:  # the local queue is full: let it drain
            producer.poll(0.1)
    producer.poll(0)


def make_producer(bootstrap_servers: str, extra_config: dict | None = None):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap_servers, "client.id": "dtm-simulate", "linger.ms": 5,
                     **(extra_config or {})})


def run_simulation(
    config: SimulationConfig,
    *,
    bootstrap_servers: str,
    s3_client,
    notification_topic: str,
    end_readout_topic: str,
    bucket: str,
    end_readout_bootstrap_servers: str | None = None,
    kafka_config: dict | None = None,
    end_readout_kafka_config: dict | None = None,
    on_event: EventCallback | None = None,
    stop: threading.Event | None = None,
) -> list[dict]:
    """Simulate `config.exposures` exposures; return their ground truth, in exposure order.

    `on_event(kind, info)` is called from worker threads: `"published"` when an exposure's end readout
    is sent, `"truth"` with the truth record once its decision window has passed. Setting `stop` ends
    the run early; the truth of exposures not yet decided is then left out.
    """
    notification_producer = make_producer(bootstrap_servers, kafka_config)
    if end_readout_bootstrap_servers and end_readout_bootstrap_servers != bootstrap_servers:
        end_readout_producer = make_producer(end_readout_bootstrap_servers, end_readout_kafka_config)
    else:
        end_readout_producer = notification_producer
    simulator = Simulator(
        config, notification_producer=notification_producer, end_readout_producer=end_readout_producer,
        s3_client=s3_client, bucket=bucket, notification_topic=notification_topic,
        end_readout_topic=end_readout_topic, on_event=on_event, stop=stop or threading.Event(),
    )
    return simulator.run()


# ---------------------------------------------------------------------------------------------------------------
# Command line


def describe_truth(record: dict) -> str:
    transfer = record["transfer_time_seconds"]
    transfer_text = "-" if transfer is None else f"{transfer:.1f} s"
    return (f"{record['image_name']}: {record['status']}, transfer {transfer_text}, "
            f"late {len(record['late'])}, missing {len(record['missing'])}")


def rate_option(name: str, what: str):
    return click.option(name, type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, help=what)


@click.command(epilog="""\b
Example, against the embedded services of a demo (any Kafka and S3 work):
  dtm simulate --exposures 5 --speed 7 --sensors 8 --wait-time 6 --late-time 3 \\
      --late-rate 0.1 --missing-rate 0.05 --seed 42 --truth truth.jsonl \\
      --bootstrap-servers localhost:9092 --s3-endpoint http://localhost:5000
""")
@click.option("--exposures", type=click.IntRange(min=0), default=10, show_default=True, help="Exposures to simulate.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Divides the cadence: 7 gives one exposure every 5 s.")
@click.option("--cadence", type=click.FloatRange(min=0, min_open=True), default=LSSTCAM_CADENCE, show_default=True,
              help="Seconds between exposures at speed 1 (LSSTCam: about 35).")
@click.option("--sensors", type=click.IntRange(min=1), help="Only the first N LSSTCam sensors (default all 205).")
@click.option("--uploaders", type=click.IntRange(min=1), default=8, show_default=True, help="Concurrent S3 uploads.")
@click.option("--wait-time", type=float, help="Seconds from end of readout to decision [default: $S3_WAIT_TIME or 30].")
@click.option("--late-time", type=float, help="Late threshold in seconds [default: $MAX_LATE_FILE_TIME or 10].")
@rate_option("--late-rate", "Probability per file of arriving after the late threshold (within the wait).")
@rate_option("--missing-rate", "Probability per file of never being uploaded.")
@rate_option("--resend-rate", "Probability per file of a duplicated notification.")
@rate_option("--delay-rate", "Probability per file of a notification published late, out of order.")
@rate_option("--late-readout-rate", "Probability per exposure of the end readout coming after its files.")
@rate_option("--malformed-rate", "Probability per file of a garbage message next to its notification.")
@click.option("--seed", type=int, help="Seed of the random faults and arrival times (reproducible runs).")
@click.option("--truth", "truth_path", type=click.Path(dir_okay=False, writable=True),
              help="Write the ground truth here, one JSON line per exposure.")
@click.option("--native-notifications", is_flag=True,
              help="Publish no file notifications: the S3 service sends them itself.")
@click.option("--avro", "avro_registry_url", metavar="REGISTRY_URL",
              help="Send the end readout as Avro, registering the schema with this Schema Registry.")
@click.option("--bootstrap-servers", help="Kafka [default: $FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS].")
@click.option("--end-readout-bootstrap-servers",
              help="Kafka of the end readout [default: $END_READOUT_KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers].")
@click.option("--notification-topic", help="[default: $FILE_NOTIFICATION_TOPIC_NAME]")
@click.option("--end-readout-topic", help="[default: the first of $END_READOUT_TOPIC_NAME]")
@click.option("--s3-endpoint", help="S3 endpoint URL [default: $S3_ENDPOINT_URL]; credentials from AWS_* variables.")
@click.option("--bucket", help="[default: $STORAGE_BUCKET_NAME or rubin-summit]")
@click.option("--create-bucket", is_flag=True, help="Create the bucket first if it does not exist.")
@click.option("--first-sequence", type=click.IntRange(min=1),
              help="First sequence number [default: after the highest one in today's day folder].")
def simulate_command(bootstrap_servers: str | None, end_readout_bootstrap_servers: str | None,
                     notification_topic: str | None, end_readout_topic: str | None, s3_endpoint: str | None,
                     bucket: str | None, create_bucket: bool, wait_time: float | None, late_time: float | None,
                     **options) -> None:
    """Play the summit: exposures, their files in S3, bucket notifications and end-readout events.

    Writes the ground truth (what dtm must report for each exposure, from the S3 LastModified values
    read back after the exposure's window) with --truth.
    """
    from dtm.operator import load_settings, stop_on_signals

    settings = load_settings()
    try:
        config = SimulationConfig(wait_time=settings.s3_wait_time if wait_time is None else wait_time,
                                  late_time=settings.max_late_file_time if late_time is None else late_time,
                                  **options)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    bootstrap_servers = bootstrap_servers or settings.file_notifications.bootstrap_servers
    notification_topic = notification_topic or next(iter(settings.file_notifications.topics), None)
    end_readout_topic = end_readout_topic or next(iter(settings.end_readouts.topics), None)
    for value, name in ((bootstrap_servers, "--bootstrap-servers"), (notification_topic, "--notification-topic"),
                        (end_readout_topic, "--end-readout-topic")):
        if not value:
            raise click.UsageError(f"{name} is needed (or its environment variable)")
    bucket = bucket or settings.bucket
    try:
        kafka_configs = security_config(settings.file_notifications), security_config(settings.end_readouts)
    except SettingsError as error:
        raise click.ClickException(f"configuration: {error}") from None
    s3_client = make_s3_client(s3_endpoint or settings.s3_endpoint_url, settings, config.uploaders)
    if create_bucket:
        ensure_bucket(s3_client, bucket)

    truths = run_simulation(
        config, bootstrap_servers=bootstrap_servers, s3_client=s3_client, notification_topic=notification_topic,
        end_readout_topic=end_readout_topic, bucket=bucket,
        end_readout_bootstrap_servers=end_readout_bootstrap_servers or settings.end_readouts.bootstrap_servers,
        kafka_config=kafka_configs[0],
        end_readout_kafka_config=kafka_configs[1],
        on_event=print_progress, stop=stop_on_signals(),
    )
    late = sum(len(record["late"]) for record in truths)
    missing = sum(len(record["missing"]) for record in truths)
    click.echo(f"{len(truths)} exposures decided: {late} late files, {missing} missing files")


_echo_lock = threading.Lock()


def print_progress(kind: str, info: dict) -> None:
    with _echo_lock:
        if kind == "published":
            click.echo(f"{info['image_name']}: end of readout {info['end_readout_utc']} (day {info['day_obs']})")
        elif kind == "truth":
            click.echo(describe_truth(info))


def make_s3_client(endpoint_url: str | None, settings, uploaders: int):
    import boto3
    import botocore.config

    secret = settings.aws_secret_access_key
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", verify=settings.s3_verify,
        aws_access_key_id=settings.aws_access_key_id, aws_secret_access_key=secret.reveal() if secret else None,
        config=botocore.config.Config(max_pool_connections=uploaders + TRUTH_WORKERS + 2,
                                      retries={"max_attempts": 5, "mode": "standard"}),
    )


def ensure_bucket(s3_client, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
    except ClientError:
        s3_client.create_bucket(Bucket=bucket)

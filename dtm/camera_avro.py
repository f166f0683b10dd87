"""The camera's Sasquatch events as Avro: schemas, topic names and a producer-side serializer.

For `dtm simulate --avro`, `dtm demo --avro` and the tests. The schemas are those of
`samples/end_readout.avsc` and `samples/file_transfer_per_image_summary.avsc`, one namespace per camera
(`lsst.sal.MTCamera`, `lsst.sal.CCCamera`, `lsst.sal.ATCamera`); dtm itself reads whatever schema a
message's id names in the registry.
"""
from __future__ import annotations

import json
from typing import Callable

# imageSource -> SAL component of the camera.
CAMERA_COMPONENTS = {"MC": "MTCamera", "CC": "CCCamera", "AT": "ATCamera"}

END_READOUT = "logevent_endReadout"
TRANSFER_SUMMARY = "logevent_fileTransferPerImageSummary"

_PRIVATE_FIELDS = [
    ("private_efdStamp", "double"), ("private_kafkaStamp", "double"), ("private_revCode", "string"),
    ("private_sndStamp", "double"), ("private_rcvStamp", "double"), ("private_seqNum", "long"),
    ("private_identity", "string"), ("private_origin", "long"),
]
_FIELDS = {
    END_READOUT: _PRIVATE_FIELDS + [
        ("additionalKeys", "string"), ("additionalValues", "string"), ("imagesInSequence", "long"),
        ("imageName", "string"), ("imageIndex", "long"), ("imageSource", "string"), ("imageController", "string"),
        ("imageDate", "string"), ("imageNumber", "long"), ("timestampAcquisitionStart", "double"),
        ("requestedExposureTime", "double"), ("timestampEndOfReadout", "double"),
    ],
    TRANSFER_SUMMARY: _PRIVATE_FIELDS + [
        ("site", "string"), ("dayObs", "string"), ("obsId", "string"), ("expected", "long"), ("written", "long"),
        ("transferredBeforeResend", "long"), ("missingBeforeResend", "long"), ("resendCount", "long"),
        ("transferredAfterResend", "long"), ("missingAfterResend", "long"), ("metaData", "string"),
    ],
}


def topic(event: str, image_source: str = "MC", prefix: str = "") -> str:
    """`lsst.sal.MTCamera.logevent_endReadout`; prefix `summit.` for the summit copies."""
    return f"{prefix}lsst.sal.{CAMERA_COMPONENTS[image_source]}.{event}"


def schema(event: str, image_source: str = "MC", *, without: tuple[str, ...] = ()) -> str:
    """The Avro schema (JSON text) of `event` for one camera; `without` drops fields (for tests)."""
    fields = [{"name": name, "type": kind} for name, kind in _FIELDS[event] if name not in without]
    return json.dumps({"type": "record", "name": event, "namespace": f"lsst.sal.{CAMERA_COMPONENTS[image_source]}",
                       "fields": fields})


def defaults(event: str) -> dict:
    """A value for every field of `event` (zeros and empty strings), to fill in what a caller leaves out."""
    return {name: {"double": 0.0, "long": 0, "string": ""}[kind] for name, kind in _FIELDS[event]}


def serializer(registry_url: str, schema_str: str) -> Callable[[dict, str], bytes]:
    """`encode(fields, topic) -> bytes` in the Confluent wire format; registers the schema as `<topic>-value`."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    avro = AvroSerializer(SchemaRegistryClient({"url": registry_url}), schema_str)

    def encode(fields: dict, topic_name: str) -> bytes:
        return avro(fields, SerializationContext(topic_name, MessageField.VALUE))

    return encode

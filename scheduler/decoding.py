"""Turning end-readout message bytes into field dicts: JSON, or Avro through a Schema Registry.

With `END_READOUT_SCHEMA_REGISTRY` set, messages are in the Confluent wire format (magic byte 0,
4-byte schema id, Avro body); the deserializer fetches each schema by id once and caches it.
"""
from __future__ import annotations

from typing import Callable

import orjson

from ..common.models import Rejected

Decoder = Callable[[bytes | None, str], dict]


def decode_json(value: bytes | None, topic: str) -> dict:
    try:
        fields = orjson.loads(value or b"")
    except orjson.JSONDecodeError as error:
        raise Rejected("malformed", f"not JSON ({error})") from None
    if not isinstance(fields, dict):
        raise Rejected("malformed", "the JSON message is not an object")
    return fields


def avro_decoder(registry_url: str) -> Decoder:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))

    def decode(value: bytes | None, topic: str) -> dict:
        if not value or value[0] != 0:
            raise Rejected("bad_magic_byte", "not in the Confluent wire format (magic byte 0)")
        try:
            fields = deserializer(value, SerializationContext(topic, MessageField.VALUE))
        except SchemaRegistryError as error:
            schema_id = int.from_bytes(value[1:5], "big")
            raise Rejected("unknown_schema", f"schema id {schema_id}: {error.error_message}") from None
        except (SerializationError, EOFError, ValueError, TypeError, IndexError) as error:
            raise Rejected("malformed", f"Avro body does not match its schema ({error})") from None
        if not isinstance(fields, dict):
            raise Rejected("malformed", "the Avro message is not a record")
        return fields

    return decode


def make_decoder(registry_url: str | None) -> Decoder:
    return avro_decoder(registry_url) if registry_url else decode_json

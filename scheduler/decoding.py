"""Turning end-readout (and camera transfer-summary) message bytes into field dicts: JSON, or Avro
through a Schema Registry.

With `END_READOUT_SCHEMA_REGISTRY` set, messages are in the Confluent wire format (magic byte 0,
4-byte big-endian schema id, Avro body); the writer schema is fetched by id once and cached by the
client. A message dtm cannot read raises `Rejected` (counted, logged, skipped). A registry that
cannot be reached raises `RegistryUnavailable`: not the message's fault, so the caller retries it
instead of skipping it.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from ..common.models import Rejected

Decoder = Callable[[bytes | None, str], dict]

WIRE_HEADER = 5  # magic byte + schema id


class RegistryUnavailable(RuntimeError):
    """The Schema Registry did not answer (or failed): retry the message later, do not reject it."""


def decode_json(value: bytes | None, topic: str) -> dict:
    try:
        fields = orjson.loads(value or b"")
    except orjson.JSONDecodeError as error:
        raise Rejected("malformed", f"not JSON ({error})") from None
    if not isinstance(fields, dict):
        raise Rejected("malformed", "the JSON message is not an object")
    return fields


def _without_secrets(text: str, registry_url: str) -> str:
    """An error text with any password of the registry URL(s) masked."""
    for url in registry_url.split(","):
        password = urlsplit(url.strip()).password
        if password:
            text = text.replace(password, "***")
    return text


def registry_client_config(registry_url: str, timeout: float = 10.0) -> dict:
    """SchemaRegistryClient settings; `user:password@` in the URL(s) moves to `basic.auth.user.info`.

    Left in the URL, the password would be printed by the HTTP library's request log lines.
    """
    urls, user_info = [], None
    for url in registry_url.split(","):
        parts = urlsplit(url.strip())
        if parts.username is not None or parts.password is not None:
            user_info = user_info or f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            host = parts.hostname or ""
            parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
        urls.append(urlunsplit(parts))
    config = {"url": ",".join(urls), "timeout": timeout}
    if user_info:
        config["basic.auth.user.info"] = user_info
    return config


def avro_decoder(registry_url: str, *, timeout: float = 10.0) -> Decoder:
    """A decoder of Confluent-framed Avro; `registry_url` may carry `user:password@` (basic auth)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    client = SchemaRegistryClient(registry_client_config(registry_url, timeout))
    deserializer = AvroDeserializer(client)

    def unavailable(error: Exception) -> RegistryUnavailable:
        detail = _without_secrets(f"{type(error).__name__}: {error}", registry_url)
        return RegistryUnavailable(f"schema registry unavailable ({detail})")

    def decode(value: bytes | None, topic: str) -> dict:
        if not value or value[0] != 0:
            raise Rejected("bad_magic_byte", "not in the Confluent wire format (magic byte 0)")
        if len(value) <= WIRE_HEADER:
            raise Rejected("malformed", f"{len(value)} bytes: no Avro body after the wire-format header")
        schema_id = int.from_bytes(value[1:WIRE_HEADER], "big")
        try:
            # By id only: cached after the first message of each schema.
            client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                raise Rejected("unknown_schema", f"schema id {schema_id}: {error.error_message}") from None
            raise unavailable(error) from None
        except Exception as error:  # noqa: BLE001 - transport errors (httpx), timeouts: retry later
            raise unavailable(error) from None
        try:
            # No SerializationContext: with one, the deserializer would also look up a `<topic>-value`
            # subject, which a registry filled by another naming strategy (Sasquatch) may not have.
            fields = deserializer(value, None)
        except SchemaRegistryError as error:
            raise unavailable(error) from None
        except Exception as error:  # noqa: BLE001 - whatever fastavro raises on a bad body or schema
            raise Rejected("malformed", f"Avro body does not match schema id {schema_id} "
                                        f"({type(error).__name__}: {error})") from None
        if not isinstance(fields, dict):
            raise Rejected("malformed", f"schema id {schema_id} is not an Avro record")
        return fields

    return decode


def make_decoder(registry_url: str | None) -> Decoder:
    return avro_decoder(registry_url) if registry_url else decode_json

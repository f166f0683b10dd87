"""The local Schema Registry: the endpoints confluent-kafka's client, serializer and deserializer call."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from dtm import camera_avro
from dtm.schema_registry import RegistryError, SchemaRegistryServer, register_schema

READOUT = camera_avro.schema(camera_avro.END_READOUT)
SUMMARY = camera_avro.schema(camera_avro.TRANSFER_SUMMARY)


@pytest.fixture
def server():
    with SchemaRegistryServer() as registry:
        yield registry


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_register_and_fetch_with_the_client(server):
    client = SchemaRegistryClient({"url": server.url})
    subject = "lsst.sal.MTCamera.logevent_endReadout-value"
    first = client.register_schema(subject, Schema(READOUT, "AVRO"))
    # The same schema again (even re-serialised differently): same id, same version.
    assert register_schema(server.url, subject, json.dumps(json.loads(READOUT), indent=2)) == first
    second = client.register_schema(subject, Schema(SUMMARY, "AVRO"))
    assert second != first
    # Another subject with a known schema reuses its id.
    assert client.register_schema("other-value", Schema(READOUT, "AVRO")) == first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (second, 2, subject)
    assert json.loads(client.get_version(subject, 1).schema.schema_str) == json.loads(READOUT)
    assert sorted(client.get_subjects()) == sorted([subject, "other-value"])
    assert sorted(client.get_subjects_by_schema_id(first)) == sorted([subject, "other-value"])
    assert json.loads(client.get_schema(second).schema_str) == json.loads(SUMMARY)
    assert client.lookup_schema(subject, Schema(SUMMARY, "AVRO")).version == 2


def test_http_answers(server):
    schema_id = server.register("s-value", READOUT)
    status, body = get(f"{server.url}/schemas/ids/{schema_id}?subject=any-subject-at-all")
    assert status == 200 and json.loads(json.loads(body)["schema"]) == json.loads(READOUT)
    status, body = get(f"{server.url}/subjects/s-value/versions/latest/schema")
    assert status == 200 and json.loads(body) == json.loads(READOUT)
    assert get(f"{server.url}/associations/resources/-/topic?resourceType=topic") == (200, "[]")
    for path, code in (("/schemas/ids/99", 40403), ("/subjects/nope/versions/latest", 40401),
                       ("/subjects/s-value/versions/7", 40402), ("/no/such/route", 404)):
        status, body = get(server.url + path)
        assert status == 404 and json.loads(body)["error_code"] == code, path


def test_errors_reach_the_client_as_registry_errors(server):
    client = SchemaRegistryClient({"url": server.url})
    with pytest.raises(SchemaRegistryError) as error:
        client.get_schema(12345)
    assert (error.value.http_status_code, error.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as error:
        client.register_schema("bad-value", Schema('{"type": "no-such-avro-type"}', "AVRO"))
    assert (error.value.http_status_code, error.value.error_code) == (422, 42201)
    with pytest.raises(RegistryError):
        register_schema(server.url, "bad-value", "not json")
    assert "bad-value" not in client.get_subjects()
    schema_id = server.register("gone-value", READOUT)
    assert client.delete_subject("gone-value") == [1]
    assert "gone-value" not in client.get_subjects()
    assert client.get_schema(schema_id)  # schemas outlive their subjects, as in the real registry


def test_command_line_registers_at_start(tmp_path):
    schema_file = tmp_path / "end_readout.avsc"
    schema_file.write_text(READOUT)
    process = subprocess.Popen(
        [sys.executable, "-m", "dtm.schema_registry", "--port", "0", "--register", f"endReadout-value={schema_file}"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "registered endReadout-value as schema id 1"
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        assert SchemaRegistryClient({"url": url}).get_latest_version("endReadout-value").schema_id == 1
    finally:
        process.terminate()
        assert process.wait(10) == 0

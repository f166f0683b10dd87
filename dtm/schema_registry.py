"""A small Confluent-compatible Schema Registry for tests and `dtm demo --avro` / `dtm simulate --avro`.

It speaks the REST API that confluent-kafka's `SchemaRegistryClient`, `AvroSerializer` and
`AvroDeserializer` call (checked against confluent-kafka 2.16 by tests/production):

    POST   /subjects/{subject}/versions             register (idempotent: same schema, same id)
    POST   /subjects/{subject}                      look a schema up under a subject
    GET    /schemas/ids/{id}[?subject=...]          fetch a schema by id (`subject` is ignored)
    GET    /schemas/ids/{id}/subjects|versions
    GET    /schemas/guids/{guid}
    GET    /schemas/types
    GET    /subjects
    GET    /subjects/{subject}/versions
    GET    /subjects/{subject}/versions/{version|latest|-1}[/schema]
    DELETE /subjects/{subject}[/versions/{version}]
    GET|PUT /config[/{subject}], GET /mode
    GET    /associations/resources/{namespace}/{topic}   always [] (serializers fall back to {topic}-value)
    GET    /                                        health: {}

State lives in memory; compatibility is stored but never enforced; Avro schemas are validated
with fastavro (an invalid one is refused with 422/42201, as the real registry does).

From Python (in-process, a thread):

    with SchemaRegistryServer() as registry:           # port 0: a free port
        schema_id = registry.register("lsst.sal.MTCamera.logevent_endReadout-value", schema_str)
        decode = avro_decoder(registry.url)

As a separate process (what other processes need: the mock:// client cannot serve them):

    python -m dtm.schema_registry --port 8081 [--register SUBJECT=FILE.avsc ...]

or `SchemaRegistryProcess()` from Python, which starts that command and stops it.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class RegistryError(Exception):
    """An error answer: HTTP status, Schema Registry error code, message."""

    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass
class _Schema:
    id: int
    guid: str
    schema: str
    schema_type: str
    references: list = field(default_factory=list)

    def body(self) -> dict:
        """The `schema` object of the REST API (schemaType omitted for Avro, as the registry does)."""
        body = {"schema": self.schema}
        if self.schema_type != "AVRO":
            body["schemaType"] = self.schema_type
        if self.references:
            body["references"] = self.references
        return body


class Registry:
    """The registry's state and rules, independent of HTTP. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._schemas: dict[int, _Schema] = {}
        self._ids_by_content: dict[tuple, int] = {}
        self._subjects: dict[str, list[int | None]] = {}  # version n at index n-1; None: deleted
        self._compatibility = "BACKWARD"
        self._subject_compatibility: dict[str, str] = {}

    # -- schemas ---------------------------------------------------------------------------------
    @staticmethod
    def _content_key(schema: str, schema_type: str, references: list) -> tuple:
        canonical = schema
        if schema_type in ("AVRO", "JSON"):
            try:
                canonical = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
            except ValueError:
                pass
        return schema_type, canonical, json.dumps(references, sort_keys=True)

    @staticmethod
    def _validate(schema: str, schema_type: str) -> None:
        if schema_type not in SCHEMA_TYPES:
            raise RegistryError(422, 42201, f"Invalid schema type {schema_type!r}")
        if schema_type != "AVRO":
            return
        try:
            from fastavro import parse_schema

            parse_schema(json.loads(schema))
        except Exception as error:  # noqa: BLE001 - any parse failure is an invalid schema
            raise RegistryError(422, 42201, f"Invalid schema: {type(error).__name__}: {error}") from None

    def register(self, subject: str, schema: str, schema_type: str = "AVRO", references: list | None = None) -> dict:
        """Register `schema` under `subject`; the same schema again gives the same id and version."""
        if not isinstance(schema, str) or not schema:
            raise RegistryError(422, 42201, "Invalid schema: empty")
        references = references or []
        self._validate(schema, schema_type)
        key = self._content_key(schema, schema_type, references)
        with self._lock:
            schema_id = self._ids_by_content.get(key)
            if schema_id is None:
                schema_id = len(self._schemas) + 1
                self._schemas[schema_id] = _Schema(schema_id, str(uuid.uuid4()), schema, schema_type, references)
                self._ids_by_content[key] = schema_id
            versions = self._subjects.setdefault(subject, [])
            if schema_id in versions:
                version = versions.index(schema_id) + 1
            else:
                versions.append(schema_id)
                version = len(versions)
            return self._registered(subject, version, self._schemas[schema_id])

    @staticmethod
    def _registered(subject: str, version: int, schema: _Schema) -> dict:
        return {"subject": subject, "version": version, "id": schema.id, "guid": schema.guid, **schema.body()}

    def schema_by_id(self, schema_id: int) -> _Schema:
        with self._lock:
            schema = self._schemas.get(schema_id)
        if schema is None:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return schema

    def schema_by_guid(self, guid: str) -> _Schema:
        with self._lock:
            found = [schema for schema in self._schemas.values() if schema.guid == guid]
        if not found:
            raise RegistryError(404, 40403, f"Schema {guid} not found")
        return found[0]

    def versions_of_id(self, schema_id: int) -> list[dict]:
        self.schema_by_id(schema_id)
        with self._lock:
            return [{"subject": subject, "version": index + 1}
                    for subject, versions in sorted(self._subjects.items())
                    for index, version_id in enumerate(versions) if version_id == schema_id]

    # -- subjects --------------------------------------------------------------------------------
    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(subject for subject, versions in self._subjects.items() if any(versions))

    def versions(self, subject: str) -> list[int]:
        with self._lock:
            versions = self._subjects.get(subject) or []
            live = [index + 1 for index, schema_id in enumerate(versions) if schema_id is not None]
        if not live:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return live

    def version(self, subject: str, version: str) -> dict:
        live = self.versions(subject)
        if version in ("latest", "-1"):
            number = live[-1]
        else:
            try:
                number = int(version)
            except ValueError:
                raise RegistryError(422, 42202, f"Invalid version {version!r}") from None
            if number not in live:
                raise RegistryError(404, 40402, f"Version {version} not found.")
        with self._lock:
            schema = self._schemas[self._subjects[subject][number - 1]]
        return self._registered(subject, number, schema)

    def lookup(self, subject: str, schema: str, schema_type: str = "AVRO", references: list | None = None) -> dict:
        live = self.versions(subject)
        with self._lock:
            schema_id = self._ids_by_content.get(self._content_key(schema, schema_type, references or []))
            versions = self._subjects[subject]
        for number in live:
            if versions[number - 1] == schema_id:
                return self.version(subject, str(number))
        raise RegistryError(404, 40403, "Schema not found")

    def delete_subject(self, subject: str) -> list[int]:
        live = self.versions(subject)
        with self._lock:
            self._subjects.pop(subject, None)
        return live

    def delete_version(self, subject: str, version: str) -> int:
        number = self.version(subject, version)["version"]
        with self._lock:
            self._subjects[subject][number - 1] = None
        return number

    # -- config ----------------------------------------------------------------------------------
    def compatibility(self, subject: str | None = None) -> str:
        if subject is None:
            return self._compatibility
        level = self._subject_compatibility.get(subject)
        if level is None:
            raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
        return level

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        level = str(level).upper()
        if level not in ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
                         "FULL_TRANSITIVE", "NONE"):
            raise RegistryError(422, 42203, f"Invalid compatibility level {level!r}")
        if subject is None:
            self._compatibility = level
        else:
            self._subject_compatibility[subject] = level
        return level


# -- HTTP -------------------------------------------------------------------------------------------
_SUBJECT = r"(?P<subject>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern, str]] = [
    (method, re.compile(f"^{pattern}$"), name) for method, pattern, name in (
        ("GET", r"/?", "root"),
        ("GET", r"/schemas/types", "schema_types"),
        ("GET", r"/schemas/ids/(?P<id>-?\d+)", "schema_by_id"),
        ("GET", r"/schemas/ids/(?P<id>-?\d+)/schema", "raw_schema_by_id"),
        ("GET", r"/schemas/ids/(?P<id>-?\d+)/subjects", "subjects_of_id"),
        ("GET", r"/schemas/ids/(?P<id>-?\d+)/versions", "versions_of_id"),
        ("GET", r"/schemas/guids/(?P<guid>[^/]+)", "schema_by_guid"),
        ("GET", r"/subjects", "subjects"),
        ("GET", rf"/subjects/{_SUBJECT}/versions", "versions"),
        ("GET", rf"/subjects/{_SUBJECT}/versions/(?P<version>[^/]+)", "version"),
        ("GET", rf"/subjects/{_SUBJECT}/versions/(?P<version>[^/]+)/schema", "raw_version"),
        ("POST", rf"/subjects/{_SUBJECT}/versions", "register"),
        ("POST", rf"/subjects/{_SUBJECT}", "lookup"),
        ("DELETE", rf"/subjects/{_SUBJECT}", "delete_subject"),
        ("DELETE", rf"/subjects/{_SUBJECT}/versions/(?P<version>[^/]+)", "delete_version"),
        ("GET", r"/config", "get_config"),
        ("PUT", r"/config", "put_config"),
        ("GET", rf"/config/{_SUBJECT}", "get_config"),
        ("PUT", rf"/config/{_SUBJECT}", "put_config"),
        ("GET", r"/mode", "mode"),
        ("GET", rf"/mode/{_SUBJECT}", "mode"),
        # confluent-kafka >= 2.16 serializers ask which subject a topic is associated with; none is.
        ("GET", r"/associations/resources/[^/]+/[^/]+", "associations"),
    )
]


class _Text(str):
    """An answer sent as it is (the `/schema` routes return the schema itself, not JSON around it)."""


class _Handler(BaseHTTPRequestHandler):
    server_version = "dtm-schema-registry/1"
    protocol_version = "HTTP/1.1"  # keep-alive: the client's httpx session reuses connections
    registry: Registry  # set on the subclass made per server
    verbose = False

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        if self.verbose:
            sys.stderr.write(f"schema-registry: {self.address_string()} {format % args}\n")

    def _dispatch(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        try:
            body = self._body()
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(split.path)
                if match and route_method == method:
                    params = {key: urllib.parse.unquote(value) for key, value in match.groupdict().items()}
                    status, answer = getattr(self, f"_{name}")(params, query, body)
                    self._send(status, answer)
                    return
            raise RegistryError(404, 404, f"HTTP 404 Not Found: {method} {split.path}")
        except RegistryError as error:
            self._send(error.status, {"error_code": error.error_code, "message": error.message})
        except Exception as error:  # noqa: BLE001 - a bad request never stops the server
            self._send(500, {"error_code": 50001, "message": f"{type(error).__name__}: {error}"})

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            raise RegistryError(400, 400, "Unexpected character: the body is not JSON") from None

    def _send(self, status: int, answer) -> None:
        raw = answer.encode() if isinstance(answer, _Text) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    # -- routes: each returns (status, JSON-able answer) -----------------------------------------------
    def _root(self, params, query, body):
        return 200, {}

    def _schema_types(self, params, query, body):
        return 200, list(SCHEMA_TYPES)

    def _schema_by_id(self, params, query, body):
        # `?subject=` (sent by AvroDeserializer) only selects a context in the real registry: ignored.
        schema = self.registry.schema_by_id(int(params["id"]))
        return 200, {**schema.body(), "guid": schema.guid}

    def _raw_schema_by_id(self, params, query, body):
        return 200, _Text(self.registry.schema_by_id(int(params["id"])).schema)

    def _subjects_of_id(self, params, query, body):
        return 200, sorted({item["subject"] for item in self.registry.versions_of_id(int(params["id"]))})

    def _versions_of_id(self, params, query, body):
        return 200, self.registry.versions_of_id(int(params["id"]))

    def _schema_by_guid(self, params, query, body):
        schema = self.registry.schema_by_guid(params["guid"])
        return 200, {**schema.body(), "id": schema.id, "guid": schema.guid}

    def _subjects(self, params, query, body):
        return 200, self.registry.subjects()

    def _versions(self, params, query, body):
        return 200, self.registry.versions(params["subject"])

    def _version(self, params, query, body):
        return 200, self.registry.version(params["subject"], params["version"])

    def _raw_version(self, params, query, body):
        return 200, _Text(self.registry.version(params["subject"], params["version"])["schema"])

    @staticmethod
    def _schema_request(body) -> tuple[str, str, list]:
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise RegistryError(422, 42201, "Invalid schema: the body needs a \"schema\" string")
        return body["schema"], body.get("schemaType") or "AVRO", body.get("references") or []

    def _register(self, params, query, body):
        schema, schema_type, references = self._schema_request(body)
        return 200, self.registry.register(params["subject"], schema, schema_type, references)

    def _lookup(self, params, query, body):
        schema, schema_type, references = self._schema_request(body)
        return 200, self.registry.lookup(params["subject"], schema, schema_type, references)

    def _delete_subject(self, params, query, body):
        return 200, self.registry.delete_subject(params["subject"])

    def _delete_version(self, params, query, body):
        return 200, self.registry.delete_version(params["subject"], params["version"])

    def _get_config(self, params, query, body):
        return 200, {"compatibilityLevel": self.registry.compatibility(params.get("subject"))}

    def _put_config(self, params, query, body):
        level = (body or {}).get("compatibility") if isinstance(body, dict) else None
        return 200, {"compatibility": self.registry.set_compatibility(level, params.get("subject"))}

    def _mode(self, params, query, body):
        return 200, {"mode": "READWRITE"}

    def _associations(self, params, query, body):
        return 200, []


class SchemaRegistryServer:
    """The registry over HTTP, served by a thread of this process (one thread per request)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False):
        self.registry = Registry()
        handler = type("Handler", (_Handler,), {"registry": self.registry, "verbose": verbose})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host, self.port = self._server.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SchemaRegistryServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="schema-registry",
                                            daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """Register directly (no HTTP); returns the schema id."""
        return self.registry.register(subject, schema, schema_type)["id"]

    def __enter__(self) -> "SchemaRegistryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- a separate process -----------------------------------------------------------------------------
def register_schema(url: str, subject: str, schema: str, schema_type: str = "AVRO", timeout: float = 10) -> int:
    """Register a schema with any Confluent-compatible registry over HTTP; returns its id."""
    body = json.dumps({"schema": schema, **({} if schema_type == "AVRO" else {"schemaType": schema_type})}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/subjects/{urllib.parse.quote(subject, safe='')}/versions", data=body, method="POST",
        headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["id"]
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise RegistryError(error.code, -1, f"registering {subject!r}: HTTP {error.code} {detail}") from None


def is_serving(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class SchemaRegistryProcess:
    """`python -m dtm.schema_registry` as a child process (stopped with it, even if the parent dies)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", *, log_file=None, timeout: float = 15):
        from .embedded import _die_with_parent, free_port

        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dtm.schema_registry", "--host", host, "--port", str(self.port)],
            stdout=log_file or subprocess.DEVNULL, stderr=log_file or subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not is_serving(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"the schema registry exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the schema registry did not answer on {self.url} within {timeout:.0f} s")
            time.sleep(0.05)

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        return register_schema(self.url, subject, schema, schema_type)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "SchemaRegistryProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dtm.schema_registry",
        description="A small in-memory Confluent-compatible Schema Registry (tests, dtm demo --avro).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="TCP port (default 8081; 0: any free port)")
    parser.add_argument("--register", action="append", default=[], metavar="SUBJECT=FILE",
                        help="register the schema in FILE (.avsc) under SUBJECT at start; repeatable")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)
    server = SchemaRegistryServer(args.host, args.port, verbose=args.verbose)
    for item in args.register:
        subject, _, path = item.partition("=")
        if not subject or not path:
            parser.error(f"--register {item!r}: expected SUBJECT=FILE")
        with open(path) as schema_file:
            schema_id = server.register(subject, schema_file.read())
        print(f"registered {subject} as schema id {schema_id}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server._server.shutdown).start())
    print(f"schema registry listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

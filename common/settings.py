"""Settings, read once from the environment (contract section 5) and passed on.

`Settings.from_env()` validates every variable and raises `SettingsError` naming the first bad
one, so a misconfigured pod fails at start-up with one clear line. Secrets are wrapped in
`Secret`, whose repr never shows the value.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(ValueError):
    """A missing or invalid environment variable; the message names it (never its secret value)."""


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """A URL without its password, for logs (`redis://:***@host:6379/0`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True)
class KafkaStream:
    """One Kafka input: where it is, how to authenticate, which topics."""

    env_prefix: str  # e.g. "END_READOUT_", used in error messages
    bootstrap_servers: str | None
    topics: tuple[str, ...]
    group_id: str | None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: str | None = None
    ssl_verify: bool = True

    def require(self) -> "KafkaStream":
        """Fail with the variable's name when the stream is used but not configured."""
        for suffix, value in (("KAFKA_BOOTSTRAP_SERVERS", self.bootstrap_servers), ("TOPIC_NAME", self.topics),
                              ("KAFKA_GROUP_ID", self.group_id)):
            if not value:
                raise SettingsError(f"{self.env_prefix}{suffix} is not set")
        return self.require_credentials()

    def require_credentials(self) -> "KafkaStream":
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise SettingsError(
                f"{self.env_prefix}SECURITY_PROTOCOL={self.security_protocol} needs {self.env_prefix}SASL_USERNAME "
                f"and {self.env_prefix}SASL_PASSWORD (or {self.env_prefix}SASL_PASSWORD_FILE)"
            )
        return self


@dataclass(frozen=True)
class Settings:
    file_notifications: KafkaStream
    end_readouts: KafkaStream
    transfer_summary_topics: tuple[str, ...] = ()
    schema_registry_url: str | None = None
    file_notification_opaque_data: Secret | None = None
    image_sources: tuple[str, ...] = ("MC", "CC", "AT")
    image_controllers: tuple[str, ...] | None = None  # None: every controller
    bucket: str = "rubin-summit"
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: Secret | None = None
    s3_verify: bool | str = True  # False, True or a CA bundle path
    expected_sensors_filename: str = "expectedSensors.json"
    s3_wait_time: float = 30.0
    max_late_file_time: float = 10.0
    recheck_time: float = 600.0
    orphan_grace_time: float = 900.0
    redis_url: str = "redis://localhost:6379/0"
    redis_key_ttl: int = 14 * 86400
    queue_name: str = "dtm"
    prometheus_multiproc_dir: str | None = None
    metrics_port: int = 8000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = _Env(os.environ if environ is None else environ)
        settings = cls(
            file_notifications=env.kafka_stream("FILE_NOTIFICATION_"),
            end_readouts=env.kafka_stream("END_READOUT_"),
            transfer_summary_topics=env.list("FILE_TRANSFER_SUMMARY_TOPIC_NAME"),
            schema_registry_url=env.text("END_READOUT_SCHEMA_REGISTRY"),
            file_notification_opaque_data=env.secret("FILE_NOTIFICATION_OPAQUE_DATA"),
            image_sources=env.list("DTM_IMAGE_SOURCES") or ("MC", "CC", "AT"),
            image_controllers=env.list("DTM_IMAGE_CONTROLLERS") or None,
            bucket=env.text("STORAGE_BUCKET_NAME") or "rubin-summit",
            s3_endpoint_url=env.text("S3_ENDPOINT_URL"),
            aws_access_key_id=env.text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.secret("AWS_SECRET_ACCESS_KEY"),
            s3_verify=env.s3_verify(),
            expected_sensors_filename=env.text("EXPECTED_SENSORS_FILENAME") or "expectedSensors.json",
            s3_wait_time=env.seconds("S3_WAIT_TIME", 30.0),
            max_late_file_time=env.seconds("MAX_LATE_FILE_TIME", env.seconds("MAX_FILE_LATE_TIME", 10.0)),
            recheck_time=env.seconds("RECHECK_TIME", 600.0),
            orphan_grace_time=env.seconds("ORPHAN_GRACE_TIME", 900.0),
            redis_url=_revealed(env.secret("REDIS_URL")) or "redis://localhost:6379/0",
            redis_key_ttl=int(env.seconds("REDIS_KEY_TTL", 14 * 86400.0)),
            queue_name=env.text("DTM_QUEUE_NAME") or "dtm",
            prometheus_multiproc_dir=env.text("PROMETHEUS_MULTIPROC_DIR"),
            metrics_port=env.port("METRICS_PORT", 8000),
            log_level=env.choice("DTM_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        )
        from .objectkey import INSTRUMENTS

        unknown = [source for source in settings.image_sources if source not in INSTRUMENTS]
        if unknown:
            raise SettingsError(f"DTM_IMAGE_SOURCES: unknown image source(s) {unknown} (known: {sorted(INSTRUMENTS)})")
        if urlsplit(settings.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        for registry_url in (settings.schema_registry_url or "").split(","):
            if registry_url.strip() and urlsplit(registry_url.strip()).scheme not in ("http", "https"):
                # Not echoed: the URL may hold user:password.
                raise SettingsError("END_READOUT_SCHEMA_REGISTRY must be http(s)://host:port (comma-separated list)")
        if settings.recheck_time <= settings.s3_wait_time:
            raise SettingsError("RECHECK_TIME must be longer than S3_WAIT_TIME")
        if settings.redis_key_ttl < max(settings.recheck_time, settings.orphan_grace_time):
            raise SettingsError("REDIS_KEY_TTL must be at least RECHECK_TIME and ORPHAN_GRACE_TIME: "
                                "an exposure's keys must outlive its last look")
        return settings

    def __repr__(self) -> str:
        # URLs may carry a password (redis://:pw@host, https://user:pw@registry): show them redacted.
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_url") and isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def monitors(self, image_source: str, image_controller: str) -> bool:
        """Whether exposures of this camera and controller are monitored."""
        return image_source in self.image_sources and (
            self.image_controllers is None or image_controller in self.image_controllers
        )


def _revealed(secret: Secret | None) -> str | None:
    return secret.reveal().strip() if secret else None


@dataclass
class _Env:
    environ: Mapping[str, str]

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def list(self, name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in (self.text(name) or "").split(",") if item.strip())

    def secret(self, name: str) -> Secret | None:
        """From NAME, or from the file named by NAME_FILE (a Kubernetes secret mount)."""
        value = self.environ.get(name)
        path = self.text(f"{name}_FILE")
        if path:
            try:
                value = Path(path).read_text().rstrip("\r\n")
            except OSError as error:
                raise SettingsError(f"{name}_FILE: cannot read {path!r} ({error.strerror})") from None
        return Secret(value) if value else None

    def seconds(self, name: str, default: float) -> float:
        text = self.text(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0:
            raise SettingsError(f"{name}={text!r} must be a finite number of seconds >= 0")
        return value

    def port(self, name: str, default: int) -> int:
        text = self.text(name)
        if text is None:
            return default
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise SettingsError(f"{name}={text!r} is not a TCP port")
        return int(text)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        text = self.text(name)
        if text is None:
            return default
        if text.upper() not in choices:
            raise SettingsError(f"{name}={text!r} is not one of {', '.join(choices)}")
        return text.upper()

    def flag(self, name: str, default: bool) -> bool:
        text = self.text(name)
        if text is None:
            return default
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={text!r} is not a boolean (true/false)")

    def s3_verify(self) -> bool | str:
        ca_bundle = self.text("S3_CA_BUNDLE")
        if not self.flag("S3_VERIFY_TLS", True):
            return False
        return ca_bundle or True

    def kafka_stream(self, prefix: str) -> KafkaStream:
        protocol = self.choice(f"{prefix}SECURITY_PROTOCOL", SECURITY_PROTOCOLS, "PLAINTEXT")
        mechanism = self.text(f"{prefix}SASL_MECHANISM")
        if mechanism is not None:
            mechanism = self.choice(f"{prefix}SASL_MECHANISM", SASL_MECHANISMS, mechanism)
        return KafkaStream(
            env_prefix=prefix,
            bootstrap_servers=self.text(f"{prefix}KAFKA_BOOTSTRAP_SERVERS"),
            topics=self.list(f"{prefix}TOPIC_NAME"),
            group_id=self.text(f"{prefix}KAFKA_GROUP_ID"),
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=self.text(f"{prefix}SASL_USERNAME"),
            sasl_password=self.secret(f"{prefix}SASL_PASSWORD"),
            ssl_ca_location=self.text(f"{prefix}SSL_CA_LOCATION"),
            ssl_verify=self.flag(f"{prefix}SSL_VERIFY", True),
        )

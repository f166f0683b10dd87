"""Authenticated Kafka for both consumers: SASL_SSL + SCRAM-SHA-512, certificates verified, secrets never shown."""
from __future__ import annotations

import logging

import certifi
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer
from dtm.common.kafka import consumer_config, describe
from dtm.common.logs import JsonFormatter
from dtm.common.models import Rejected
from dtm.common.settings import Settings, SettingsError
from dtm.scheduler.decoding import avro_decoder, registry_client_config

from dtm import camera_avro
from dtm.cli import main
from dtm.schema_registry import SchemaRegistryServer

SECRET = "pa55-w0rd-S3CRET"
PREFIXES = ("END_READOUT_", "FILE_NOTIFICATION_")


def environment(prefix: str, **overrides) -> dict:
    env = {
        f"{prefix}KAFKA_BOOTSTRAP_SERVERS": "sasquatch-kafka-bootstrap.example.org:9094",
        f"{prefix}TOPIC_NAME": "lsst.sal.MTCamera.logevent_endReadout",
        f"{prefix}KAFKA_GROUP_ID": "dtm",
        f"{prefix}SECURITY_PROTOCOL": "SASL_SSL",
        f"{prefix}SASL_MECHANISM": "SCRAM-SHA-512",
        f"{prefix}SASL_USERNAME": "dtm",
        f"{prefix}SASL_PASSWORD": SECRET,
        f"{prefix}SSL_CA_LOCATION": certifi.where(),
    }
    env.update({f"{prefix}{name}": value for name, value in overrides.items()})
    return {name: value for name, value in env.items() if value is not None}


def stream_of(settings: Settings, prefix: str):
    return settings.end_readouts if prefix == "END_READOUT_" else settings.file_notifications


def assert_no_secret(records) -> None:
    formatter = JsonFormatter()
    for record in records:
        line = formatter.format(record)
        assert SECRET not in line, line


@pytest.mark.parametrize("prefix", PREFIXES)
def test_sasl_ssl_scram_config(prefix, caplog):
    with caplog.at_level(logging.DEBUG):
        settings = Settings.from_env(environment(prefix))
        config = consumer_config(stream_of(settings, prefix), client_id="dtm-test")
        logging.getLogger("dtm.test").info("consumer configured", extra={"kafka": describe(config)})
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "dtm"
    assert config["sasl.password"] == SECRET
    assert config["ssl.ca.location"] == certifi.where()
    # Certificates verified: librdkafka's defaults are left alone.
    assert config.get("enable.ssl.certificate.verification", True) is not False
    assert config.get("ssl.endpoint.identification.algorithm", "https") == "https"
    assert describe(config)["sasl.password"] == "***"
    assert SECRET not in repr(describe(config))
    assert SECRET not in repr(settings)
    assert_no_secret(caplog.records)
    # librdkafka accepts every property (SCRAM built in, CA file readable).
    Consumer(config).close()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_password_from_file(prefix, tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")  # Kubernetes secret files may end with a newline
    settings = Settings.from_env(environment(prefix, SASL_PASSWORD=None, SASL_PASSWORD_FILE=str(secret_file)))
    assert consumer_config(stream_of(settings, prefix), client_id="dtm-test")["sasl.password"] == SECRET


def test_mechanism_defaults_to_scram_sha_512():
    settings = Settings.from_env(environment("END_READOUT_", SASL_MECHANISM=None))
    assert consumer_config(settings.end_readouts, client_id="dtm-test")["sasl.mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL", "SASL_PLAINTEXT", "PLAINTEXT"])
def test_certificate_verification_never_off_by_default(protocol, caplog):
    with caplog.at_level(logging.WARNING):
        settings = Settings.from_env(environment("END_READOUT_", SECURITY_PROTOCOL=protocol))
        config = consumer_config(settings.end_readouts, client_id="dtm-test")
    assert config["security.protocol"] == protocol
    assert "enable.ssl.certificate.verification" not in config  # librdkafka default: verify
    assert "ssl.endpoint.identification.algorithm" not in config
    assert not caplog.records


def test_verification_off_only_on_request_and_warned(caplog):
    with caplog.at_level(logging.WARNING):
        settings = Settings.from_env(environment("END_READOUT_", SSL_VERIFY="false"))
        config = consumer_config(settings.end_readouts, client_id="dtm-test")
    assert config["enable.ssl.certificate.verification"] is False
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "END_READOUT_SSL_VERIFY=false" in warnings[0].getMessage()
    assert_no_secret(caplog.records)


@pytest.mark.parametrize("overrides, names", [
    ({"SASL_USERNAME": None}, "END_READOUT_SASL_USERNAME"),
    ({"SASL_PASSWORD": None}, "END_READOUT_SASL_PASSWORD"),
    ({"SASL_PASSWORD_FILE": "/nonexistent/dtm-password"}, "END_READOUT_SASL_PASSWORD_FILE"),
    ({"SASL_MECHANISM": "GSSAPI"}, "END_READOUT_SASL_MECHANISM"),
    ({"SSL_VERIFY": "maybe"}, "END_READOUT_SSL_VERIFY"),
    ({"SECURITY_PROTOCOL": "TLS"}, "END_READOUT_SECURITY_PROTOCOL"),
])
def test_settings_errors_name_the_variable_never_the_secret(overrides, names, caplog):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SettingsError) as error:
            settings = Settings.from_env(environment("END_READOUT_", **overrides))
            consumer_config(settings.end_readouts, client_id="dtm-test")
    assert names in str(error.value)
    assert SECRET not in str(error.value)
    assert_no_secret(caplog.records)


def test_registry_url_password_never_in_settings_errors_or_repr():
    url = f"https://dtm:{SECRET}@sasquatch-schema-registry.example.org"
    settings = Settings.from_env({"END_READOUT_SCHEMA_REGISTRY": url})
    assert SECRET not in repr(settings)
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"END_READOUT_SCHEMA_REGISTRY": f"ftp://dtm:{SECRET}@registry"})
    assert "END_READOUT_SCHEMA_REGISTRY" in str(error.value) and SECRET not in str(error.value)


@pytest.mark.parametrize("arguments", [["--help"], ["scheduler", "--help"], ["ingest", "--help"],
                                       ["inspect", "--help"]])
def test_help_never_shows_secrets(arguments):
    env = {**environment("END_READOUT_"), **environment("FILE_NOTIFICATION_"),
           "FILE_NOTIFICATION_OPAQUE_DATA": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}
    result = CliRunner().invoke(main, arguments, env=env)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output


def test_registry_credentials_leave_the_url():
    config = registry_client_config(f"https://dtm:{SECRET}@registry-a.example.org:8081,https://registry-b.example.org")
    assert config["url"] == "https://registry-a.example.org:8081,https://registry-b.example.org"
    assert config["basic.auth.user.info"] == f"dtm:{SECRET}"
    assert "basic.auth.user.info" not in registry_client_config("http://registry.example.org:8081")


def test_registry_password_never_logged(caplog):
    # The HTTP library's loggers may have been quietened by an earlier test's logs.configure():
    # open them up, since the point is that even their request lines carry no password.
    with (SchemaRegistryServer() as registry, caplog.at_level(logging.DEBUG),
          caplog.at_level(logging.DEBUG, logger="httpx"), caplog.at_level(logging.DEBUG, logger="httpx2")):
        schema_id = registry.register("endReadout", camera_avro.schema(camera_avro.END_READOUT))
        decode = avro_decoder(registry.url.replace("http://", f"http://dtm:{SECRET}@"))
        with pytest.raises(Rejected):
            decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x00" * 10, "lsst.sal.MTCamera.logevent_endReadout")
    assert any("schemas/ids" in record.getMessage() for record in caplog.records)  # the request was logged...
    assert_no_secret(caplog.records)  # ...without the password


def test_opaque_data_from_a_file_checked_never_logged(tmp_path, caplog):
    from dtm.common.models import ceph_notification
    from dtm.ingest.consumer import parse_batch

    from .conftest import FakeMessage

    secret_file = tmp_path / "opaque"
    secret_file.write_text(SECRET + "\n")
    settings = Settings.from_env({"FILE_NOTIFICATION_OPAQUE_DATA_FILE": str(secret_file)})
    key = "LATISS/20251203/AT_O_20251203_000045/AT_O_20251203_000045_R00_S00.fits"
    good = ceph_notification(bucket="rubin-summit", key=key, event_time=1764825150.0, opaque_data=SECRET)
    bad = ceph_notification(bucket="rubin-summit", key=key, event_time=1764825150.0, opaque_data="guess")
    with caplog.at_level(logging.DEBUG):
        batch = parse_batch([FakeMessage("notifications", good), FakeMessage("notifications", bad, offset=1)],
                            settings)
    assert [arrival.object_key.key for arrival in batch.arrivals] == [key]
    assert dict(batch.rejected) == {"bad_opaque_data": 1}
    assert caplog.records and all("guess" not in JsonFormatter().format(record) for record in caplog.records)
    assert_no_secret(caplog.records)

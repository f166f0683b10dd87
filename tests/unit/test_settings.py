"""Settings from the environment: defaults, validation, secrets."""
from __future__ import annotations

import pytest
from dtm.common.settings import Secret, Settings, SettingsError, redact_url


def test_defaults():
    settings = Settings.from_env({})
    assert settings.bucket == "rubin-summit"
    assert settings.expected_sensors_filename == "expectedSensors.json"
    assert settings.s3_wait_time == 30.0
    assert settings.max_late_file_time == 10.0
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.metrics_port == 8000
    assert settings.schema_registry_url is None
    assert settings.image_sources == ("MC", "CC", "AT")
    assert settings.image_controllers is None
    assert settings.file_notifications.security_protocol == "PLAINTEXT"
    assert settings.end_readouts.security_protocol == "PLAINTEXT"
    assert settings.end_readouts.sasl_password is None
    assert settings.recheck_time > settings.s3_wait_time


def test_values_read():
    settings = Settings.from_env({
        "S3_WAIT_TIME": " 45.5 ",
        "MAX_LATE_FILE_TIME": "12",
        "STORAGE_BUCKET_NAME": "other-bucket",
        "END_READOUT_TOPIC_NAME": "lsst.sal.MTCamera.logevent_endReadout, lsst.sal.CCCamera.logevent_endReadout",
        "END_READOUT_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "END_READOUT_KAFKA_GROUP_ID": "dtm",
        "END_READOUT_SECURITY_PROTOCOL": "sasl_ssl",
        "END_READOUT_SASL_MECHANISM": "scram-sha-512",
        "END_READOUT_SASL_USERNAME": "dtm",
        "END_READOUT_SASL_PASSWORD": "pw",
        "METRICS_PORT": "9100",
        "DTM_IMAGE_SOURCES": "MC",
    })
    assert settings.s3_wait_time == 45.5
    assert settings.max_late_file_time == 12.0
    assert settings.bucket == "other-bucket"
    assert settings.end_readouts.topics == ("lsst.sal.MTCamera.logevent_endReadout",
                                            "lsst.sal.CCCamera.logevent_endReadout")
    assert settings.end_readouts.security_protocol == "SASL_SSL"
    assert settings.end_readouts.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.end_readouts.require() is settings.end_readouts
    assert settings.metrics_port == 9100
    assert settings.monitors("MC", "O") and not settings.monitors("AT", "O")


def test_max_file_late_time_alias():
    assert Settings.from_env({"MAX_FILE_LATE_TIME": "7"}).max_late_file_time == 7.0
    # The contract's name wins over the old alias.
    assert Settings.from_env({"MAX_FILE_LATE_TIME": "7", "MAX_LATE_FILE_TIME": "5"}).max_late_file_time == 5.0


INVALID = {
    "wait_not_number": ({"S3_WAIT_TIME": "thirty"}, "S3_WAIT_TIME"),
    "wait_negative": ({"S3_WAIT_TIME": "-1"}, "S3_WAIT_TIME"),
    "wait_nan": ({"S3_WAIT_TIME": "nan"}, "S3_WAIT_TIME"),
    "wait_inf": ({"S3_WAIT_TIME": "inf"}, "S3_WAIT_TIME"),
    "late_not_number": ({"MAX_LATE_FILE_TIME": "10s"}, "MAX_LATE_FILE_TIME"),
    "alias_not_number": ({"MAX_FILE_LATE_TIME": "ten"}, "MAX_FILE_LATE_TIME"),
    "port_text": ({"METRICS_PORT": "http"}, "METRICS_PORT"),
    "port_zero": ({"METRICS_PORT": "0"}, "METRICS_PORT"),
    "port_too_big": ({"METRICS_PORT": "65536"}, "METRICS_PORT"),
    "port_negative": ({"METRICS_PORT": "-80"}, "METRICS_PORT"),
    "port_fraction": ({"METRICS_PORT": "80.5"}, "METRICS_PORT"),
    "security_protocol": ({"END_READOUT_SECURITY_PROTOCOL": "KERBEROS"}, "END_READOUT_SECURITY_PROTOCOL"),
    "file_security_protocol": ({"FILE_NOTIFICATION_SECURITY_PROTOCOL": "TLS"}, "FILE_NOTIFICATION_SECURITY_PROTOCOL"),
    "sasl_mechanism": ({"END_READOUT_SASL_MECHANISM": "GSSAPI"}, "END_READOUT_SASL_MECHANISM"),
    "image_source": ({"DTM_IMAGE_SOURCES": "MC,XX"}, "DTM_IMAGE_SOURCES"),
    "recheck_equal": ({"S3_WAIT_TIME": "60", "RECHECK_TIME": "60"}, "RECHECK_TIME"),
    "recheck_shorter": ({"RECHECK_TIME": "20"}, "RECHECK_TIME"),
    "recheck_default_shorter": ({"S3_WAIT_TIME": "900"}, "RECHECK_TIME"),
    "redis_scheme": ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
    "log_level": ({"DTM_LOG_LEVEL": "verbose"}, "DTM_LOG_LEVEL"),
    "verify_flag": ({"S3_VERIFY_TLS": "maybe"}, "S3_VERIFY_TLS"),
}


@pytest.mark.parametrize(("environ", "name"), INVALID.values(), ids=INVALID.keys())
def test_invalid_values_name_the_variable(environ, name):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert name in str(caught.value)


def test_sasl_without_credentials_is_named_when_required():
    settings = Settings.from_env({
        "END_READOUT_TOPIC_NAME": "t", "END_READOUT_KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        "END_READOUT_KAFKA_GROUP_ID": "g", "END_READOUT_SECURITY_PROTOCOL": "SASL_SSL",
    })
    with pytest.raises(SettingsError, match="END_READOUT_SASL_USERNAME"):
        settings.end_readouts.require()
    with pytest.raises(SettingsError, match="FILE_NOTIFICATION_KAFKA_BOOTSTRAP_SERVERS"):
        settings.file_notifications.require()


def test_sasl_password_file(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-the-file\n")
    settings = Settings.from_env({
        "END_READOUT_SASL_PASSWORD": "from-the-env",
        "END_READOUT_SASL_PASSWORD_FILE": str(secret_file),
        "FILE_NOTIFICATION_SASL_PASSWORD_FILE": str(secret_file),
    })
    assert settings.end_readouts.sasl_password.reveal() == "from-the-file"  # the file wins
    assert settings.file_notifications.sasl_password.reveal() == "from-the-file"


def test_unreadable_password_file(tmp_path):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"END_READOUT_SASL_PASSWORD_FILE": str(tmp_path / "absent")})
    assert "END_READOUT_SASL_PASSWORD_FILE" in str(caught.value)


def test_repr_never_shows_a_password(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("file-password-1\n")
    settings = Settings.from_env({
        "END_READOUT_SASL_PASSWORD": "env-password-2",
        "FILE_NOTIFICATION_SASL_PASSWORD_FILE": str(secret_file),
        "AWS_SECRET_ACCESS_KEY": "aws-secret-3",
        "FILE_NOTIFICATION_OPAQUE_DATA": "opaque-secret-4",
        "REDIS_URL": "redis://:redis-password-5@redis.example:6379/0",
        "END_READOUT_SCHEMA_REGISTRY": "https://sr-user:registry-password-6@registry.example/",
    })
    text = repr(settings) + str(settings) + repr(settings.end_readouts) + repr(settings.file_notifications)
    for secret in ("file-password-1", "env-password-2", "aws-secret-3", "opaque-secret-4", "redis-password-5",
                   "registry-password-6"):
        assert secret not in text
    # The values themselves are still there for the code that needs them.
    assert settings.aws_secret_access_key.reveal() == "aws-secret-3"
    assert "redis-password-5" in settings.redis_url
    assert "redis.example" in repr(settings)


def test_secret_and_redact_url():
    assert "hunter2" not in repr(Secret("hunter2")) + str(Secret("hunter2"))
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert redact_url("redis://:hunter2@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_redis_url_from_a_file(tmp_path):
    secret_file = tmp_path / "redis-url"
    secret_file.write_text("redis://:s3cr3t@redis.example.org:6379/0\n")
    settings = Settings.from_env({"REDIS_URL_FILE": str(secret_file)})
    assert settings.redis_url == "redis://:s3cr3t@redis.example.org:6379/0"
    assert "s3cr3t" not in repr(settings)

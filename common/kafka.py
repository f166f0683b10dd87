"""librdkafka configuration for dtm's consumers, built from settings."""
from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from .models import Rejected
from .settings import KafkaStream

log = logging.getLogger(__name__)

UNEXPECTED = "unexpected"  # rejection reason of a message whose handling raised an unforeseen error


def consumer_config(stream: KafkaStream, *, client_id: str) -> dict:
    """The confluent-kafka Consumer configuration of one stream.

    Offsets are committed by hand, after Redis holds the batch: auto-commit is off.
    The returned dict holds the SASL password: never log it (log `describe(config)`).
    """
    stream.require()
    config = {
        "bootstrap.servers": stream.bootstrap_servers,
        "group.id": stream.group_id,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # An idle partition otherwise holds a fetch for 500 ms: keep latency low for live monitoring.
        "fetch.wait.max.ms": 50,
    }
    config.update(security_config(stream))
    return config


def security_config(stream: KafkaStream) -> dict:
    """The SASL/TLS part of a client configuration, for consumers and producers alike.

    Certificates are verified unless the operator turned it off (then a warning is logged).
    """
    stream.require_credentials()
    config = {"security.protocol": stream.security_protocol}
    if stream.security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = stream.sasl_mechanism or "SCRAM-SHA-512"
        config["sasl.username"] = stream.sasl_username
        config["sasl.password"] = stream.sasl_password.reveal()
    if stream.security_protocol.endswith("SSL"):
        if stream.ssl_ca_location:
            config["ssl.ca.location"] = stream.ssl_ca_location
        if not stream.ssl_verify:
            log.warning(
                "TLS certificate verification is OFF for this Kafka stream (%sSSL_VERIFY=false)", stream.env_prefix,
                extra={"stream": stream.env_prefix.rstrip("_").lower()},
            )
            config["enable.ssl.certificate.verification"] = False
            config["ssl.endpoint.identification.algorithm"] = "none"
    return config


def describe(config: dict) -> dict:
    """The configuration with secrets masked, for logs."""
    return {key: ("***" if "password" in key or "secret" in key else value) for key, value in config.items()}


def report_lag(consumer, gauge, reported: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Set `gauge{topic,partition}` to how far each assigned partition is behind its end.

    `reported` is what the previous call set; partitions revoked since are set to 0 (a multiprocess
    gauge cannot be removed), so a rebalance leaves no stale lag behind. Returns what this call set.
    """
    current = set()
    try:
        for partition in consumer.position(consumer.assignment()):
            if partition.offset < 0:  # nothing consumed yet on this partition
                continue
            _low, high = consumer.get_watermark_offsets(partition, timeout=2, cached=False)
            labels = (partition.topic, str(partition.partition))
            gauge.labels(*labels).set(max(high - partition.offset, 0))
            current.add(labels)
    except KafkaException as error:  # brokers away: the lag is unknown this time, consuming goes on
        log.warning("consumer lag not measured: %s", error)
        return reported
    for labels in reported - current:
        gauge.labels(*labels).set(0)
    return current


def log_rejection(stream: str, rejection: Rejected, message) -> None:
    """One log line for a skipped message, with where it is in Kafka (to find it again)."""
    extra = {"stream": stream, "reason": rejection.reason, "topic": message.topic(),
             "partition": message.partition(), "offset": message.offset()}
    if rejection.reason == UNEXPECTED:
        log.error("message skipped after an unexpected error: %s", rejection.detail, extra=extra)
    else:
        log.warning("message rejected: %s", rejection.detail, extra=extra)


def as_rejection(error: Exception) -> Rejected:
    """A parser's Rejected as it is; any other error (a bug, not the message's fault alone) as
    `unexpected`: one message must never stop a stream."""
    if isinstance(error, Rejected):
        return error
    return Rejected(UNEXPECTED, f"{type(error).__name__}: {error}")


def commit(consumer) -> None:
    """Commit the consumed positions synchronously, after Redis holds the batch; never raises."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as error:
        if error.args[0].code() == KafkaError._NO_OFFSET:
            return
        # A rebalance or a broker away: the batch is in Redis already; if it is delivered again,
        # writing it again changes nothing. The consumer goes on.
        log.warning("offset commit failed (the batch may be delivered again): %s", error)

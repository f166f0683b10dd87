"""Test doubles shared by several test folders."""
from __future__ import annotations


class FakeMessage:
    """What dtm's consumers read of a confluent-kafka message."""

    def __init__(self, topic: str, value: bytes | None, offset: int = 0):
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self):
        return self._topic

    def value(self):
        return self._value

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def error(self):
        return None

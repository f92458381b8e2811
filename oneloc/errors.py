"""The project's error types. Each knows the HTTP status it maps to when it reaches a client."""

from __future__ import annotations


class OneLocError(Exception):
    """Base class of every error this project raises on purpose."""

    http_status = 500


class ConfigError(OneLocError):
    """The configuration file or an override is invalid."""


class ValidationError(OneLocError):
    """An event or request field is invalid. ``field`` names it, ``reason`` says why."""

    http_status = 422

    def __init__(self, field: str, reason: str, record: str = "record"):
        self.field = field
        self.reason = reason
        self.record = record
        super().__init__(f"{record}.{field}: {reason}")


class DecodeError(OneLocError):
    """Bytes that are not a valid encoded event of a known schema."""

    http_status = 400


class KafkaUnavailable(OneLocError):
    """The Kafka cluster could not be reached or the embedded broker failed to start."""

    http_status = 503


class StorageError(OneLocError):
    """A Delta table (or checkpoint store) could not be written: disk full, read-only, bad path.
    Nothing was committed: the table's version and stored offsets are unchanged."""

    http_status = 503

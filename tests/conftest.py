"""Shared pytest setup. Integration fixtures (real Kafka broker, real Ray cluster, real Delta
tables) live in tests/integration/fixtures_*.py and are loaded as plugins below."""

import pytest

pytest_plugins = [
    "tests.integration.fixtures_kafka",
    "tests.integration.fixtures_ray",
]


@pytest.fixture
def no_bundled_dataset(monkeypatch):
    """The bundled-dataset readers (streaming/dataset.py) fail in this process: a test of a stream that is
    not NYC proves that nothing falls back to the bundled files."""
    from oneloc.streaming import dataset

    def no_bundled(*a, **k):
        raise AssertionError("the bundled dataset was read")

    for name in ("load_checkins", "load_pois", "dataset_catalog", "dataset_samples"):
        monkeypatch.setattr(dataset, name, no_bundled)

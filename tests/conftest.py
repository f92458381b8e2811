"""Shared pytest setup. Integration fixtures (real Kafka broker, real Ray cluster, real Delta
tables) live in tests/integration/fixtures_*.py and are loaded as plugins below."""

pytest_plugins = [
    "tests.integration.fixtures_kafka",
    "tests.integration.fixtures_ray",
]

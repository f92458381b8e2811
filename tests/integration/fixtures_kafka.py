"""Kafka fixtures (owned by the infra/kafka work). Placeholder until that lands."""

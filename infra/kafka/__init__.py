"""The embedded Apache Kafka broker (KRaft) and admin helpers for any Kafka cluster."""

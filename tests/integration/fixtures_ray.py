"""Ray fixtures: one local Ray cluster per test session. Placeholder until ingestion lands."""

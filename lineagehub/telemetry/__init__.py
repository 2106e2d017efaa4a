"""Telemetry shared by the operator and the stage runner: publishing to Kafka,
run-level OpenLineage events, and spans with ids we choose (restart-safe)."""

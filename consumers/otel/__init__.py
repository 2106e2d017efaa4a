"""`lineage-hub consume otel`: OTLP spans and metrics from Kafka into ClickHouse."""

"""`lineage-hub consume lineage`: OpenLineage events from Kafka into Marquez."""

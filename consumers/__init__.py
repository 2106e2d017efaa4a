"""Kafka consumers: OpenLineage events into Marquez, OTLP telemetry into ClickHouse.

Nothing here imports the operator, the stage runner or the local stack: a
consumer pod carries only aiokafka, aiohttp, the OTLP protos and a ClickHouse client.
"""

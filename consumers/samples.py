"""Sample OTLP requests and OpenLineage events, built with the real proto/client classes.

Used by the tests and the benchmark; handy for smoke-testing a deployment too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

T0 = 1_735_787_045_123_456_789  # 2025-01-02T03:04:05.123456789Z


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span(
    trace_id: bytes,
    span_id: bytes,
    name: str,
    *,
    parent: bytes = b"",
    start: int = T0,
    duration: int = 1_000_000,
    kind: int = trace_pb2.Span.SPAN_KIND_INTERNAL,
    status: int = trace_pb2.Status.STATUS_CODE_UNSET,
    message: str = "",
    attributes: dict[str, Any] | None = None,
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=[kv(k, v) for k, v in (attributes or {}).items()],
        status=trace_pb2.Status(code=status, message=message),  # type: ignore[arg-type]
    )


def traces_request(
    spans: Sequence[trace_pb2.Span], service: str = "pipeline-runner", **resource: Any
) -> ExportTraceServiceRequest:
    extra = [kv(k, v) for k, v in resource.items()]
    res = Resource(attributes=[kv("service.name", service), *extra])
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=res,
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=InstrumentationScope(name="lineagehub.runner", version="0.1.0"),
                        spans=list(spans),
                    )
                ],
            )
        ]
    )


def run_trace(
    run_id: str,
    pipeline: str = "orders",
    stages: Sequence[str] = ("extract", "transform", "load"),
    children: int = 2,
    trace_id: bytes | None = None,
) -> ExportTraceServiceRequest:
    """A run as the runner emits it: a root span, a span per stage, child spans per stage."""
    tid = trace_id or os.urandom(16)
    root_id = os.urandom(8)
    spans = [
        span(
            tid,
            root_id,
            f"pipelinerun {pipeline}",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            duration=10_000_000 * (len(stages) + 1),
            attributes={"lineagehub.run_id": run_id, "lineagehub.pipeline": pipeline},
        )
    ]
    for i, stage in enumerate(stages):
        sid = os.urandom(8)
        start = T0 + i * 10_000_000
        common = {
            "lineagehub.run_id": run_id,
            "lineagehub.stage": stage,
            "lineagehub.pipeline": pipeline,
        }
        spans.append(
            span(
                tid,
                sid,
                f"stage {stage}",
                parent=root_id,
                start=start,
                duration=9_000_000,
                status=trace_pb2.Status.STATUS_CODE_OK,
                attributes={
                    **common,
                    "lineagehub.records_in": 100 * (i + 1),
                    "lineagehub.records_out": 100 * (i + 1) - i,
                },
            )
        )
        for c in range(children):
            spans.append(
                span(
                    tid,
                    os.urandom(8),
                    f"{stage}.step{c}",
                    parent=sid,
                    start=start + c * 1000,
                    duration=1_000_000,
                    attributes=common,
                )
            )
    return traces_request(spans)


def metrics_request(
    service: str = "pipeline-runner", run_id: str = "r1"
) -> ExportMetricsServiceRequest:
    """One gauge, one monotonic cumulative sum, one histogram (with an exemplar)."""
    attrs = [kv("lineagehub.run_id", run_id), kv("lineagehub.stage", "transform")]
    gauge = metrics_pb2.Metric(
        name="lineagehub.stage.memory",
        unit="By",
        description="memory",
        gauge=metrics_pb2.Gauge(
            data_points=[
                metrics_pb2.NumberDataPoint(attributes=attrs, time_unix_nano=T0, as_int=42)
            ]
        ),
    )
    total = metrics_pb2.Metric(
        name="lineagehub.records",
        unit="{record}",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(
                    attributes=attrs,
                    start_time_unix_nano=T0 - 10,
                    time_unix_nano=T0,
                    as_double=99.5,
                )
            ],
        ),
    )
    hist = metrics_pb2.Metric(
        name="lineagehub.stage.duration",
        unit="s",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    attributes=attrs,
                    start_time_unix_nano=T0 - 10,
                    time_unix_nano=T0,
                    count=3,
                    sum=4.5,
                    bucket_counts=[1, 2, 0],
                    explicit_bounds=[1.0, 2.0],
                    min=0.5,
                    max=2.0,
                    exemplars=[
                        metrics_pb2.Exemplar(
                            time_unix_nano=T0,
                            as_double=2.0,
                            trace_id=bytes(range(1, 17)),
                            span_id=bytes(range(1, 9)),
                        )
                    ],
                )
            ],
        ),
    )
    res = Resource(attributes=[kv("service.name", service)])
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=res,
                schema_url="https://opentelemetry.io/schemas/1.26.0",
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope=InstrumentationScope(name="lineagehub.runner", version="0.1.0"),
                        metrics=[gauge, total, hist],
                    )
                ],
            )
        ]
    )


def lineage_event(
    run_id: str,
    event_type: str = "START",
    namespace: str = "lineagehub-test",
    job: str = "orders.transform",
    event_time: str = "2025-01-02T03:04:05.123Z",
) -> dict[str, Any]:
    """A RunEvent with schema + columnLineage facets, as plain JSON."""
    producer = "https://github.com/lineagehub/lineage-hub"
    schema_url = (
        "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
    )
    lineage_url = (
        "https://openlineage.io/spec/facets/1-2-0/"
        "ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
    )
    in_fields = [{"name": "id", "type": "int64"}, {"name": "amount", "type": "double"}]
    out_fields = [{"name": "id", "type": "int64"}, {"name": "total", "type": "double"}]
    return {
        "eventType": event_type,
        "eventTime": event_time,
        "producer": producer,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": namespace, "name": job, "facets": {}},
        "inputs": [
            {
                "namespace": "file",
                "name": f"{job}.input",
                "facets": {
                    "schema": {
                        "_producer": producer,
                        "_schemaURL": schema_url,
                        "fields": in_fields,
                    }
                },
            }
        ],
        "outputs": [
            {
                "namespace": "file",
                "name": f"{job}.output",
                "facets": {
                    "schema": {
                        "_producer": producer,
                        "_schemaURL": schema_url,
                        "fields": out_fields,
                    },
                    "columnLineage": {
                        "_producer": producer,
                        "_schemaURL": lineage_url,
                        "fields": {
                            "total": {
                                "inputFields": [
                                    {
                                        "namespace": "file",
                                        "name": f"{job}.input",
                                        "field": "amount",
                                        "transformations": [
                                            {"type": "DIRECT", "subtype": "AGGREGATION"}
                                        ],
                                    }
                                ]
                            }
                        },
                    },
                },
            }
        ],
    }


def lineage_bytes(*args: Any, **kwargs: Any) -> bytes:
    return json.dumps(lineage_event(*args, **kwargs)).encode()

"""The stage's metrics message, written without the OpenTelemetry SDK, says what the
SDK's in-memory reader and OTLP encoder say for the same measurements, its resource
(`telemetry.sdk.*` included) and which timestamps each point carries (a gauge's point
has no start time); only the timestamps' values differ. Its bytes, written without the
protobuf message classes, are the ones those classes serialise for it."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from pipeline_runner import stage_metrics
from pipeline_runner.stage_metrics import HISTOGRAM_BOUNDS, INSTRUMENTS, Kind, Measurements
from pipeline_runner.telemetry import resource_of

SCOPE = "pipeline_runner"
RESOURCE = resource_of("lineage-hub-runner", {"k8s.pod.name": "p-1"})
ATTRS = {"lineagehub.stage": "transform", "lineagehub.outcome": "success"}


def _sdk(m: Measurements) -> bytes:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    meter = provider.get_meter(SCOPE)
    made = {}
    for i in INSTRUMENTS:  # created in order, as the stage did
        if i.kind is Kind.SUM:
            made[i] = meter.create_counter(i.name, i.unit, i.description).add
        elif i.kind is Kind.HISTOGRAM:
            made[i] = meter.create_histogram(i.name, i.unit, i.description).record
        else:
            made[i] = meter.create_gauge(i.name, i.unit, i.description).set
    for i, value in m.recorded():
        made[i](value, m.attributes)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return encode_metrics(data).SerializeToString()


def _comparable(message: bytes) -> dict[str, Any]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    data = MessageToDict(ExportMetricsServiceRequest.FromString(message))
    (rm,) = data["resourceMetrics"]
    rm["resource"]["attributes"] = sorted(rm["resource"]["attributes"], key=lambda a: str(a["key"]))
    for a in rm["resource"]["attributes"]:
        if a["key"] == "service.instance.id":  # a random one per process
            a["value"] = "an id"
    for sm in rm["scopeMetrics"]:
        for metric in sm["metrics"]:
            for kind in ("sum", "gauge", "histogram"):
                for point in metric.get(kind, {}).get("dataPoints", []):
                    for stamp in ("startTimeUnixNano", "timeUnixNano"):
                        if int(point.get(stamp, 0)):  # set, to a time of this process
                            point[stamp] = "set"
    return data


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 2**40), min_size=5, max_size=5),
    duration=st.one_of(
        st.sampled_from(HISTOGRAM_BOUNDS),  # a value on a bound goes in the bucket it ends
        st.floats(0, 20_000, allow_nan=False),
    ),
    peak=st.integers(1, 2**40),
)
def test_the_message_is_what_the_sdk_makes(counts: list[int], duration: float, peak: int) -> None:
    m = Measurements(dict(ATTRS))
    sums = [i for i in INSTRUMENTS if i.kind is Kind.SUM]
    for instrument, value in zip(sums, counts, strict=True):
        if value:
            m.put(instrument, value)
    m.put(stage_metrics.DURATION, duration)
    m.put(stage_metrics.PEAK_MEMORY, peak)
    ours = stage_metrics.encode(m, RESOURCE, SCOPE)
    assert _comparable(ours) == _comparable(_sdk(m))
    # Written by hand, byte for byte what the message classes serialise for it.
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    assert ExportMetricsServiceRequest.FromString(ours).SerializeToString() == ours

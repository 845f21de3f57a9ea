"""The Prometheus registry, pushed over OTLP at intervals with the official SDK exporter.

The series are exactly those ``/metrics`` serves (one source of truth, nothing counted
twice on the call path): every ``interval_seconds`` a thread of its own collects the
registry, turns each family into the SDK's metric data (a counter into a monotonic
cumulative sum, a gauge into a gauge, a histogram into an explicit-bucket histogram)
and hands it to the OTLP exporter (HTTP/protobuf or gRPC). A call never waits on it; a
collector that is down costs that thread its export timeout, and the data points of
the failed export are counted as dropped (``wardgate_telemetry_dropped{sink=
"otlp_metrics"}``). Cumulative values make a lost export harmless: the next one
carries the totals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from wardgate.config.telemetry import OtlpMetricsConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric as PromFamily

__all__ = ["OtlpMetrics", "make_metric_exporter", "metrics_data"]

log = logging.getLogger("wardgate.telemetry")

_SCOPE = InstrumentationScope("wardgate")
_CUMULATIVE = AggregationTemporality.CUMULATIVE


def make_metric_exporter(config: OtlpMetricsConfig) -> MetricExporter:
    """The official OTLP metric exporter for the configured protocol.

    Raises:
        ImportError: the ``otel`` extra is not installed.
    """
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=config.endpoint,
            headers=tuple(config.headers.items()) or None,
            timeout=config.export_timeout_seconds,
            insecure=config.insecure,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=config.endpoint,
        headers=dict(config.headers) or None,
        timeout=config.export_timeout_seconds,
    )


def _key(labels: dict[str, str], drop: str | None = None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def _convert(family: PromFamily, start_ns: int, now_ns: int) -> Metric | None:
    kind = family.type
    if kind == "counter":
        created = {
            _key(s.labels): int(s.value * 1e9)
            for s in family.samples
            if s.name.endswith("_created")
        }
        points = [
            NumberDataPoint(dict(s.labels), created.get(_key(s.labels), start_ns), now_ns, s.value)
            for s in family.samples
            if s.name.endswith("_total")
        ]
        data: Any = Sum(points, _CUMULATIVE, is_monotonic=True)
    elif kind == "gauge":
        points = [
            NumberDataPoint(dict(s.labels), start_ns, now_ns, s.value) for s in family.samples
        ]
        data = Gauge(points)
    elif kind == "histogram":
        data = Histogram(_histogram_points(family, start_ns, now_ns), _CUMULATIVE)
    else:
        return None  # the gateway registers no other kinds
    return Metric(family.name, family.documentation or None, family.unit or None, data)


def _histogram_points(family: PromFamily, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    sums: dict[tuple[tuple[str, str], ...], float] = {}
    created: dict[tuple[tuple[str, str], ...], int] = {}
    for s in family.samples:
        if s.name.endswith("_bucket"):
            buckets.setdefault(_key(s.labels, "le"), []).append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            sums[_key(s.labels)] = s.value
        elif s.name.endswith("_created"):
            created[_key(s.labels)] = int(s.value * 1e9)
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        bounds = [le for le, _ in cumulative if not math.isinf(le)]
        counts: list[int] = []
        below = 0.0
        for _, total in cumulative:
            counts.append(int(total - below))
            below = total
        points.append(
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=created.get(key, start_ns),
                time_unix_nano=now_ns,
                count=int(below),
                sum=sums.get(key, 0.0),
                bucket_counts=counts,
                explicit_bounds=bounds,
                # Prometheus histograms keep no extremes; the fields stay unset on the wire.
                min=None,  # type: ignore[arg-type]
                max=None,  # type: ignore[arg-type]
            )
        )
    return points


def metrics_data(
    families: Iterable[PromFamily], resource: Resource, start_ns: int, now_ns: int
) -> tuple[MetricsData, int]:
    """The SDK's metric data for the registry's families, and its number of data points."""
    metrics = [m for f in families if (m := _convert(f, start_ns, now_ns)) is not None]
    points = sum(len(m.data.data_points) for m in metrics)
    scope = ScopeMetrics(_SCOPE, metrics, "")
    return MetricsData([ResourceMetrics(resource, [scope], "")]), points


class OtlpMetrics:
    """Pushes ``registry`` to the exporter every ``interval_seconds``; ``start()`` starts
    the thread, ``shutdown()`` pushes once more (bounded by the export timeout) and stops.

    Raises:
        ImportError: the ``otel`` extra is not installed (at construction).
    """

    def __init__(
        self,
        config: OtlpMetricsConfig,
        registry: CollectorRegistry,
        *,
        exporter: MetricExporter | None = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._exporter = exporter if exporter is not None else make_metric_exporter(config)
        self._resource = Resource.create({"service.name": config.service_name})
        self._start_ns = time.time_ns()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Data points lost to failed exports, and exports that went through.
        self.dropped = 0
        self.exported = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="wardgate-otlp-metrics", daemon=True
            )
            self._thread.start()

    def export_once(self) -> bool:
        """Collect and export now (on the caller's thread); whether it was delivered."""
        data, points = metrics_data(
            self._registry.collect(), self._resource, self._start_ns, time.time_ns()
        )
        try:
            result = self._exporter.export(
                data, timeout_millis=self._config.export_timeout_seconds * 1000
            )
        except Exception:
            log.exception("metrics export failed")
            result = MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self.exported += 1
            return True
        self.dropped += points
        return False

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._config.interval_seconds)
            if self._stopping:
                break
            self.export_once()

    def shutdown(self) -> None:
        """Push the final values and stop (a dead collector costs one export timeout)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self._config.export_timeout_seconds + 5)
            self._thread = None
            self.export_once()
        self._exporter.shutdown(timeout_millis=self._config.export_timeout_seconds * 1000)

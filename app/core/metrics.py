"""Prometheus metrics of the service, one registry per app (so several apps can live in one process).

Names follow Prometheus conventions (base unit seconds, `_total` counters); the Grafana dashboard of a later
issue is built on exactly these names.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
PERSON_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)
STAGES = ("decode", "detect", "prepare", "queue_wait", "pose", "postprocess")  # app.pipeline.timing
SOURCE_STAGES = {"lgm": STAGES, "fused": STAGES,  # app.pipeline.sources: `detector` never runs LGM-Pose
                 "detector": ("decode", "detect", "postprocess")}


class Metrics:
    """All service metrics, registered in their own `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "lgm_pose_request_duration_seconds", "HTTP request latency", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.stage_duration = Histogram(
            "lgm_pose_stage_duration_seconds", "Time per pipeline stage", ["stage", "source"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "lgm_pose_batch_size", "Person crops per pose forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.persons_per_image = Histogram(
            "lgm_pose_persons_per_image", "Persons returned per image", ["source"], buckets=PERSON_BUCKETS,
            registry=r)
        self.requests_in_flight = Gauge("lgm_pose_requests_in_flight", "HTTP requests being served", registry=r)
        self.queue_depth = Gauge("lgm_pose_queue_depth", "Person crops waiting for a pose forward pass", registry=r)
        self.ws_streams_active = Gauge("lgm_pose_ws_streams_active", "Open WebSocket pose streams", registry=r)
        self.ws_frames_received = Counter(
            "lgm_pose_ws_frames_received_total", "WebSocket frames received", registry=r)
        self.ws_frames_processed = Counter(
            "lgm_pose_ws_frames_processed_total", "WebSocket frames answered with poses", registry=r)
        self.ws_frames_dropped = Counter(
            "lgm_pose_ws_frames_dropped_total", "WebSocket frames dropped (stale or overloaded)", registry=r)
        self.errors = Counter("lgm_pose_errors_total", "Errors by type", ["type"], registry=r)
        self.model_info = Info("lgm_pose_model", "The pose model being served", registry=r)
        for source, stages in SOURCE_STAGES.items():  # every series from the start: dashboards see zeros, not gaps
            self.persons_per_image.labels(source=source)
            for stage in stages:
                self.stage_duration.labels(stage=stage, source=source)

    def set_model_info(self, *, config: str, input_size: str, device: str, backend: str, weights: str,
                       **runtime: str) -> None:
        """The served model; `runtime`: precision, chosen_because and the detector's backend, precision and
        chosen_because (what auto chose and why)."""
        self.model_info.info({"config": config, "input_size": input_size, "device": device, "backend": backend,
                              "weights": weights, **runtime})

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

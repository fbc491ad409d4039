"""Cluster settings (environment prefix LGM_POSE_CLUSTER_): replicas, their resources, autoscaling, retries."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClusterSettings(BaseSettings):
    """How the service is spread over a Ray cluster; the service's own settings stay `app.core.settings.Settings`.

    Autoscaling follows Ray Serve's ongoing requests per replica. The default target of 2 keeps one request
    computing and one decoded and waiting per replica (a replica computes one network call at a time on CPU),
    so a replica is added when requests start to queue, not when one arrives; `max_ongoing_requests` bounds
    what a replica accepts (the rest waits in Ray's router, up to `max_queued_requests`, then 503).
    """

    model_config = SettingsConfigDict(env_prefix="LGM_POSE_CLUSTER_", extra="ignore")

    min_replicas: int = Field(1, ge=0, description="pose replicas kept running (each: detector + LGM-Pose + batcher)")
    max_replicas: int = Field(4, ge=1)
    num_replicas: int | None = Field(None, ge=1, description="a fixed replica count instead of autoscaling")
    target_ongoing_requests: float = Field(2.0, gt=0, description="autoscaling target per replica")
    max_ongoing_requests: int = Field(8, ge=1, description="requests one replica accepts at once")
    max_queued_requests: int = Field(64, ge=-1, description="requests waiting in Ray's router; beyond: 503")
    cpus_per_replica: float = Field(1.0, ge=0, description="Ray CPUs a pose replica asks for")
    gpus_per_replica: float = Field(0.0, ge=0, description="Ray GPUs a pose replica asks for (a fraction shares one)")
    gateway_replicas: int = Field(1, ge=1, description="the thin ingress (no model): forwards, retries, relays")
    retries: int = Field(2, ge=0, description="a request whose replica died is sent again this many times")
    request_timeout_s: float = Field(120.0, gt=0, description="a forwarded request's limit; beyond it: 503")
    ready_timeout_s: float = Field(600.0, gt=0, description="a new replica's limit to load its models")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

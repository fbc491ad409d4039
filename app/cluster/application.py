"""The Ray Serve application: a thin gateway (ingress) in front of autoscaled pose replicas.

`build_app(args)` is the application builder Ray Serve imports (`serve run app.cluster.application:build_app`,
or a KubeRay RayService's `import_path`); `args` may carry service settings (`settings`, the fields of
`app.core.settings.Settings`) and cluster settings (`cluster`, `app.cluster.settings.ClusterSettings`); anything
not given comes from the LGM_POSE_* / LGM_POSE_CLUSTER_* environment of each process.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from app.cluster.gateway import Gateway
from app.cluster.settings import ClusterSettings
from app.cluster.worker import PoseWorker

APP_NAME = "lgm-pose"


def worker_options(cluster: ClusterSettings) -> dict[str, Any]:
    """Ray Serve options of the pose replicas: resources, replica count or autoscaling, queue bounds."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cluster.cpus_per_replica, "num_gpus": cluster.gpus_per_replica},
        "max_ongoing_requests": cluster.max_ongoing_requests,
        "max_queued_requests": cluster.max_queued_requests,
        "health_check_period_s": 5, "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 15,
    }
    if cluster.num_replicas is not None:
        options["num_replicas"] = cluster.num_replicas
    else:
        options["autoscaling_config"] = {"min_replicas": cluster.min_replicas,
                                         "initial_replicas": max(cluster.min_replicas, 1),
                                         "max_replicas": max(cluster.max_replicas, cluster.min_replicas),
                                         "target_ongoing_requests": cluster.target_ongoing_requests}
    return options


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The gateway bound to the pose worker deployment (settings overrides from `args`)."""
    args = dict(args or {})
    overrides: dict[str, Any] = dict(args.get("settings") or {})
    cluster = ClusterSettings(**(args.get("cluster") or {}))
    worker = serve.deployment(PoseWorker, name="PoseWorker", **worker_options(cluster)).bind(
        overrides, cluster.ready_timeout_s)
    gateway = serve.deployment(Gateway, name="Gateway", num_replicas=cluster.gateway_replicas,
                               ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
    return gateway.bind(worker, overrides, cluster.model_dump(mode="json"))

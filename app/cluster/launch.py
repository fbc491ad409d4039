"""`lgm-pose serve --cluster local|auto|ADDRESS`: the service as a Ray Serve application, until SIGTERM/SIGINT.

`local` starts a Ray cluster on this machine (a head node in this process's session), `auto` joins the one
started by `ray start` on this node, anything else is a Ray address (`ray://host:10001`). The service settings
(LGM_POSE_*, the serve flags) go to every replica; LGM_POSE_CLUSTER_* say how many replicas and their resources.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from app.cluster.settings import ClusterSettings

log = logging.getLogger("lgm_pose.cluster")
# Ray settings of a cluster this command starts (KubeRay: the same variables in the pods' env):
RAY_ENV = {
    "RAY_max_direct_call_object_size": str(16 << 20),  # images travel inline to the replica, not through the
                                                       # object store (10 ms more per request here)
    "RAY_worker_niceness": "0",  # replicas compute at normal priority, as the single-box server does
    # one X-Request-ID per answer, the one in error bodies (app.cluster.request_ids)
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "app.cluster.request_ids.proxy_middlewares",
}


def start_cluster(address: str, overrides: dict[str, Any], cluster: ClusterSettings,
                  num_cpus: int | None = None) -> None:
    """Connect to (or start) Ray, start Serve's proxy on cluster.host:port and deploy the application."""
    import ray
    from ray import serve

    from app.cluster.application import APP_NAME, build_app

    if address == "local":
        for key, value in RAY_ENV.items():
            os.environ.setdefault(key, value)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    serve.start(http_options={"host": cluster.host, "port": cluster.port})
    app = build_app({"settings": {k: str(v) if hasattr(v, "__fspath__") else v for k, v in overrides.items()},
                     "cluster": cluster.model_dump(mode="json")})
    serve.run(app, name=APP_NAME, route_prefix="/")


def run_cluster(address: str, overrides: dict[str, Any]) -> int:
    """Deploy, then wait for SIGTERM/SIGINT; take the application down (and a local Ray with it)."""
    from ray import serve

    from app.cluster.application import APP_NAME

    cluster = ClusterSettings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    start_cluster(address, {**overrides, "jobs_shared": True}, cluster)
    print(f"lgm-pose on Ray Serve: http://{cluster.host}:{cluster.port} (application {APP_NAME!r})", flush=True)
    stop.wait()
    serve.delete(APP_NAME)
    if address == "local":
        serve.shutdown()
    return 0

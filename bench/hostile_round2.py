"""`lgm-pose bench hostile`, second round (issue 25): each attack of bench/hostile_{http,images,ws}.py against a
fresh `lgm-pose serve` (CPU defaults), measured by bench.hostile_probe beside a /healthz prober and a normal client.

The HTTP edge's attacks need a key configured (they are unauthenticated), so they run against a second server
with `LGM_POSE_API_KEY`; the image and WebSocket attacks against one without. Bars (the issue's acceptance):
every attack leaves the server healthy with RSS back within 100 MB of idle; unauthenticated bodies add under
50 MB and keep /healthz p95 under 200 ms; the normal client keeps half its idle rate beside the compressed-format
bombs and the text-flooding streams.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from bench import hostile_http, hostile_images, hostile_ws
from bench.hostile_probe import MB, idle_rate, measure_attack
from bench.server_process import ServerProcess, rss_bytes

HALF_RATE = ("compressed_format_bombs", "ws text flood")  # attacks with the throughput bar


def verdict(row: dict[str, Any], authenticated_attack: bool) -> bool:
    """The issue's bars for one measured attack."""
    ok = row["healthy_after"] and row["rss_after_over_idle_mb"] <= 100
    if authenticated_attack:
        ok = ok and row["peak_rss_over_idle_mb"] < 50 and row["healthz"]["p95_ms"] < 200
    if row["attack"].startswith(HALF_RATE):
        ok = ok and (row["normal_over_idle"] or 0) >= 0.5
    return ok


def _round(server: ServerProcess, attacks: list, headers: dict[str, str] | None, edge: bool) -> list[dict[str, Any]]:
    time.sleep(1.0)
    idle_rss = rss_bytes(server.pid)
    rate = idle_rate(server.url, headers=headers)
    print(f"server pid {server.pid}: idle RSS {idle_rss / MB:.0f} MB, normal client {rate:.2f} requests/s", flush=True)
    rows = []
    for name, attack in attacks:
        row = measure_attack(server, name, attack, idle_rss, rate, headers)
        row["ok"] = verdict(row, edge)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def run() -> dict[str, Any]:
    """Both servers, every attack; the rows and whether all passed."""
    with ServerProcess() as server:
        rows = _round(server, hostile_images.attacks(server) + hostile_ws.attacks(server), None, False)
    key = secrets.token_urlsafe(24)
    with ServerProcess(env={"LGM_POSE_API_KEY": key}) as server:
        rows += _round(server, hostile_http.attacks(server), {"Authorization": f"Bearer {key}"}, True)
    return {"attacks": rows, "ok": all(r["ok"] for r in rows)}

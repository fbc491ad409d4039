"""Before and after the repeat-offender cool-down (app/core/offenders.py), side by side in one run: the
compressed-format bombs of bench/hostile_images.py against a server with the cool-down off
(`LGM_POSE_OFFENDER_COOL_DOWN_S=0`, as before) and one with the defaults, alternately, each measured by
`bench.hostile_probe.measure_attack` (the normal client's requests/s against its idle rate, /healthz, the CPU of
the server and of the attacker's process). A last row: the bombs from the normal client's own address (one
address for both, as behind a NAT or a proxy), where the cool-down cannot tell them apart.

    lgm-pose bench cooldown [--runs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.hostile_images import ATTACKER_ADDRESS, bomb_threads
from bench.hostile_probe import idle_rate, measure_attack
from bench.server_process import ServerProcess, rss_bytes

FIGURES = ("normal_over_idle", "server_cpu_cores", "healthz", "normal_client")


def row(server: ServerProcess, label: str, address: str) -> dict[str, Any]:
    """One measured bomb attack from `address` on `server`, after the normal client's idle rate."""
    rate = idle_rate(server.url)
    measured = measure_attack(server, label, lambda: bomb_threads(server.url, address=address),
                              rss_bytes(server.pid), rate)
    out = {"server": label, "attacker_address": address, "idle_rps": rate,
           **{k: measured[k] for k in FIGURES}, "attack": measured["attack_figures"]}
    print(json.dumps(out), flush=True)
    time.sleep(11.0)  # the cool-down (10 s) ends before the next row
    return out


def main(args: argparse.Namespace) -> int:
    rows = []
    with ServerProcess(env={"LGM_POSE_OFFENDER_COOL_DOWN_S": "0"}) as before, ServerProcess() as after:
        for _ in range(args.runs):
            rows.append(row(before, "cool-down off (before)", ATTACKER_ADDRESS))
            rows.append(row(after, "cool-down on (after)", ATTACKER_ADDRESS))
        rows.append(row(after, "cool-down on, bombs from the normal client's address", "127.0.0.1"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0

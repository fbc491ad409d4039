"""The served networks in every CPU runtime and precision, side by side in one run (`lgm-pose bench model`).

LGM-Pose per crop (batch 1 and 4) and YOLO11n-pose on `bus.jpg` letterboxed at 640, in ONNX Runtime f32 and
OpenVINO f32/bf16/int8, each where the CPU computes it natively (`cpu_features`). Cases alternate run by run, so
drift hits all alike; medians. A precision is timed whether or not its offline check accepted it; the `accepted`
column says whether the service would run it (`precision.refusal`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from model.inference.cpu_features import cpu_flags, cpu_name, missing_units, shown_flags
from model.inference.engines import Engine, int8_path, open_engine
from model.inference.precision import refusal
from model.inference.runtime_choice import PRECISIONS_OF, runtime_missing

POSE_BATCHES = (1, 4)


def engines_of(onnx: Path) -> tuple[dict[str, Engine], list[str]]:
    """Every runtime/precision that compiles `onnx` here (the CPU's native units only), and why others do not."""
    found, notes = {}, []
    for runtime, precisions in PRECISIONS_OF.items():
        if why := runtime_missing(runtime):
            notes.append(why)
            continue
        for precision in precisions:
            if lacking := missing_units(precision, cpu_flags()):
                notes.append(f"{runtime}/{precision}: {lacking}")
            elif precision == "int8" and not int8_path(onnx).is_file():
                notes.append(f"{runtime}/int8: no quantised model {int8_path(onnx).name} (lgm-pose check-precision "
                             "--quantize)")
            else:
                found[f"{runtime}/{precision}"] = open_engine(onnx, runtime, precision, verified=False)
    return found, notes


def _accepted(onnx: Path, key: str) -> str:
    runtime, precision = key.split("/")
    why = refusal(int8_path(onnx) if precision == "int8" else onnx, runtime, precision)
    return "yes" if why is None else ("failed" if "failed" in why else "unchecked")


def run(pose_onnx: Path, detector_onnx: Path, image: Path, repeats: int = 30) -> tuple[list[dict], list[str]]:
    """Median ms per (network, runtime/precision, batch), cases interleaved; and the notes on what was left out."""
    import cv2

    from model.inference.onnx_detector import letterbox

    pose, notes = engines_of(pose_onnx)
    det, det_notes = engines_of(detector_onnx)
    h, w = 256, 192
    rng = np.random.default_rng(0)
    cases = [("LGM-Pose", pose_onnx, key, engine, rng.standard_normal((b, 3, h, w), dtype=np.float32), b)
             for b in POSE_BATCHES for key, engine in pose.items()]
    blob = letterbox(cv2.imread(str(image)), 640)[0]
    cases += [("YOLO11n-pose 640", detector_onnx, key, engine, blob, 1) for key, engine in det.items()]
    times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for rep in range(repeats + 3):
        for i, (_, _, _, engine, x, _) in enumerate(cases):
            start = time.perf_counter()
            engine.run(x)
            if rep >= 3:  # the first three: warm-up
                times[i].append((time.perf_counter() - start) * 1000)
    rows = []
    for i, (name, onnx, key, _, _, batch) in enumerate(cases):
        ms = statistics.median(times[i])
        rows.append({"model": name, "runtime": key.split("/")[0], "precision": key.split("/")[1], "batch": batch,
                     "median_ms": round(ms, 2), "per_image_ms": round(ms / batch, 2),
                     "accepted": _accepted(onnx, key)})
    return rows, [f"LGM-Pose {n}" for n in notes] + [f"YOLO11n-pose {n}" for n in det_notes]


def print_table(rows: list[dict], notes: list[str]) -> None:
    print(f"CPU: {cpu_name()}; flags: {shown_flags()}")
    print("{:18s} {:>5s} {:>14s} {:>10s} {:>10s} {:>8s} {:>9s} {:>9s}".format(
        "model", "batch", "onnxruntime f32", "runtime", "precision", "median", "vs ORT", "accepted"))
    base = {(r["model"], r["batch"]): r["median_ms"] for r in rows if r["runtime"] == "onnxruntime"}
    for r in rows:
        ref = base.get((r["model"], r["batch"]))
        ratio = f"{ref / r['median_ms']:.2f}x" if ref else "-"
        print(f"{r['model']:18s} {r['batch']:5d} {ref or float('nan'):14.2f} {r['runtime']:>10s} {r['precision']:>10s} "
              f"{r['median_ms']:8.2f} {ratio:>9s} {r['accepted']:>9s}")
    for note in notes:
        print("not timed:", note)

"""CPU latency of LGM-Pose vs SimpleBaseline-MobileNetV2, PyTorch eager and ONNX Runtime, in one run; then the
served networks (the shipped LGM-Pose export and YOLO11n-pose) in every CPU runtime and precision side by side, with
the CPU's flags (`bench.runtime_compare`)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from tqdm import tqdm

from bench.baselines import SimpleBaselineMobileNetV2
from model.nn.complexity import count_macs, count_params
from model.nn.network import build_model


def _export(model: nn.Module, hw: tuple[int, int], path: Path) -> None:
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, *hw),), str(path), input_names=["input"],
                      output_names=["out"], dynamic_axes={"input": {0: "b"}, "out": {0: "b"}},
                      opset_version=17, dynamo=False)


def _median_ms(fn, x, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(config: str = "coco_256x192", batches: tuple[int, ...] = (1, 8), repeats: int = 30,
        threads: int | None = None) -> list[dict]:
    """Median latency per (model, backend, batch); models interleaved so drift hits both alike."""
    if threads:
        torch.set_num_threads(threads)
    lgm = build_model(config).eval()
    hw = lgm.cfg.input_hw
    models = {"LGM-Pose": lgm, "SimpleBaseline-MobileNetV2": SimpleBaselineMobileNetV2(lgm.cfg.num_joints).eval()}
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            _export(model, hw, path)
            sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = []
    jobs = [(b, backend, name) for b in batches for backend in ("torch", "onnxruntime") for name in models]
    for batch, backend, name in tqdm(jobs, desc="bench", unit="case"):
        x = np.random.default_rng(0).random((batch, 3, *hw), dtype=np.float32)
        if backend == "torch":
            model = models[name]
            xt = torch.from_numpy(x)

            def fn(_, model=model, xt=xt):
                with torch.inference_mode():
                    model(xt)
            ms = _median_ms(fn, None, repeats if batch == 1 else max(5, repeats // 4), 3)
        else:
            sess = sessions[name]
            ms = _median_ms(lambda x, sess=sess: sess.run(None, {"input": x}), x,
                            repeats if batch == 1 else max(5, repeats // 4), 3)
        rows.append({"model": name, "backend": backend, "batch": batch, "median_ms": round(ms, 2),
                     "per_image_ms": round(ms / batch, 2), "params": count_params(models[name]),
                     "macs": count_macs(models[name], hw)})
    return rows


def print_table(rows: list[dict]) -> None:
    header = ("model", "backend", "batch", "median ms", "ms/img", "params", "GMACs")
    print("{:28s} {:12s} {:>5s} {:>10s} {:>8s} {:>10s} {:>6s}".format(*header))
    for r in rows:
        print(f"{r['model']:28s} {r['backend']:12s} {r['batch']:5d} {r['median_ms']:10.2f} {r['per_image_ms']:8.2f} "
              f"{r['params']:10,d} {r['macs'] / 1e9:6.2f}")
    for batch in sorted({r["batch"] for r in rows}):
        for backend in ("torch", "onnxruntime"):
            sel = {r["model"]: r["median_ms"] for r in rows if r["batch"] == batch and r["backend"] == backend}
            if len(sel) == 2:
                ratio = sel["SimpleBaseline-MobileNetV2"] / sel["LGM-Pose"]
                print(f"batch {batch} {backend}: LGM-Pose is {ratio:.2f}x the speed of SimpleBaseline-MobileNetV2")


def served_exports(pose_onnx: str | None, detector_onnx: str | None) -> tuple[Path, Path]:
    """The ONNX files the service runs: given, else the exports of the default weights (made once, cached)."""
    from app.core.settings import Settings
    from model.inference.loader import DEFAULT_EXPORT_DIR
    from model.inference.onnx_detector import export_yolo_onnx
    from model.inference.torch_loader import load_network, onnx_export_cached

    settings = Settings()
    if pose_onnx is None:
        model, loaded, _ = load_network(settings.pose_weights, None)
        pose_onnx = onnx_export_cached(model, settings.pose_weights if loaded else None, None)
    if detector_onnx is None:
        detector_onnx = export_yolo_onnx(settings.resolved_detector_weights(), DEFAULT_EXPORT_DIR)
    return Path(pose_onnx), Path(detector_onnx)


def main(args) -> int:
    from bench import runtime_compare
    from bench.service_load import bus_jpg

    rows = run(args.config, tuple(args.batches), args.repeats, args.threads)
    print_table(rows)
    pose_onnx, detector_onnx = served_exports(args.pose_onnx, args.detector_onnx)
    runtime_rows, notes = runtime_compare.run(pose_onnx, detector_onnx, bus_jpg(), args.repeats)
    runtime_compare.print_table(runtime_rows, notes)
    if args.out:
        Path(args.out).write_text(json.dumps({"networks": rows, "runtimes": runtime_rows, "not_timed": notes},
                                             indent=2))
    return 0

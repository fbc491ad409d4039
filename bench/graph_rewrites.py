"""Exact rewrites of the pose graph, timed side by side in each CPU runtime (`lgm-pose bench rewrites`).

Issue 26 item 4: the ConvTranspose, LayerNormalization and Transpose costs. Each variant computes what the export
does (its largest difference from it is printed; kept only within 1e-4) and is timed per crop at batch 1 and 4 in
ONNX Runtime f32 and OpenVINO f32 (bf16 too where the CPU has it), OpenVINO both as one dynamic compile and as the
engine serves it (one static compile per batch size, `engines.OpenVinoEngine`). Cases alternate run by run;
medians. Variants:

- `deconv BN folded`: each deconvolution's BatchNormalization folded into its weights and a bias;
- `deconv 4 phases`: each 4x4 stride-2 deconvolution as four 2x2 convolutions (one per output phase, the same
  multiply-adds) and a DepthToSpace;
- `deconv 3x3 sub-pixel`: one 3x3 convolution to 4x the channels and a DepthToSpace (2.25x the multiply-adds);
- `LARM pixels on axis 1`: the LARM's pixel MLP applied along the patch-pixel axis where it lies (a left MatMul,
  LayerNorm as two ReduceMeans, its affine folded into the first Linear), so the transpose between the two MLPs
  and its way back go; constant reshapes.

These variants are experiments, not the served graph: none is exported by `lgm-pose export` (README, "Speed").
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.inference.engines import Engine

POSE_BATCHES = (1, 4)
TAPS = {0: [3, 1], 1: [2, 0]}  # output phase -> the 4x4/s2/p1 deconvolution's kernel taps, in input order
PADS = {0: (1, 0), 1: (0, 1)}  # output phase -> (before, after) padding of its 2x2 convolution


def _array(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def _add_initializer(model, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    return name


def _prune(model):
    used = {t for node in model.graph.node for t in node.input}
    for unused in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(unused)
    return model


def fold_deconv_bn(model):
    """ConvTranspose -> BatchNormalization becomes one ConvTranspose with folded weights and a bias."""
    from onnx import helper

    for deconv in [n for n in model.graph.node if n.op_type == "ConvTranspose"]:
        (bn,) = [n for n in model.graph.node if deconv.output[0] in n.input]
        assert bn.op_type == "BatchNormalization", bn.op_type
        scale, beta, mean, var = (_array(model, t) for t in bn.input[1:])
        eps = next(helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon")
        k = scale / np.sqrt(var + eps)
        bias = _array(model, deconv.input[2]) if len(deconv.input) > 2 else np.zeros_like(k)
        deconv.input[1] = _add_initializer(model, deconv.name + "_w_bn", _array(model, deconv.input[1]) *
                                           k[None, :, None, None])
        folded = _add_initializer(model, deconv.name + "_b_bn", (bias - mean) * k + beta)
        deconv.input[2:] = [folded]
        for node in model.graph.node:
            node.input[:] = [deconv.output[0] if t == bn.output[0] else t for t in node.input]
        model.graph.node.remove(bn)
    return _prune(model)


def deconv_as_phases(model, one_conv: bool = False):
    """Each (BN-folded) 4x4 stride-2 pad-1 ConvTranspose as per-phase convolutions and a DepthToSpace (DCR)."""
    from onnx import helper

    for deconv in [n for n in model.graph.node if n.op_type == "ConvTranspose"]:
        w = _array(model, deconv.input[1])  # (cin, cout, 4, 4)
        cin, cout = w.shape[:2]
        b = _array(model, deconv.input[2]) if len(deconv.input) > 2 else np.zeros(cout, np.float32)
        name, nodes = deconv.name, []
        if one_conv:  # phase (a, c) at output channels (2a + c) * cout ..., its 2x2 taps inside a 3x3 window
            w3 = np.zeros((4 * cout, cin, 3, 3), np.float32)
            for a in (0, 1):
                for c in (0, 1):
                    for p, kh in enumerate(TAPS[a]):
                        for q, kw in enumerate(TAPS[c]):
                            w3[(2 * a + c) * cout:(2 * a + c + 1) * cout, :, a + p, c + q] = w[:, :, kh, kw].T
            inputs = [deconv.input[0], _add_initializer(model, name + "_w3", w3),
                      _add_initializer(model, name + "_b3", np.tile(b, 4))]
            nodes.append(helper.make_node("Conv", inputs, [name + "_phases"], name=name + "_conv3",
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        else:
            outs = []
            for a in (0, 1):
                for c in (0, 1):
                    wk = w[:, :, TAPS[a]][:, :, :, TAPS[c]].transpose(1, 0, 2, 3)
                    inputs = [deconv.input[0], _add_initializer(model, f"{name}_w{a}{c}", wk),
                              _add_initializer(model, f"{name}_b{a}{c}", b)]
                    outs.append(f"{name}_phase{a}{c}")
                    nodes.append(helper.make_node("Conv", inputs, [outs[-1]], name=outs[-1], kernel_shape=[2, 2],
                                                  pads=[PADS[a][0], PADS[c][0], PADS[a][1], PADS[c][1]]))
            nodes.append(helper.make_node("Concat", outs, [name + "_phases"], axis=1, name=name + "_concat"))
        nodes.append(helper.make_node("DepthToSpace", [name + "_phases"], [deconv.output[0]], blocksize=2,
                                      mode="DCR", name=name + "_d2s"))
        at = list(model.graph.node).index(deconv)
        model.graph.node.remove(deconv)
        for i, node in enumerate(nodes):
            model.graph.node.insert(at + i, node)
    return _prune(model)


def _larm_pixels_on_axis1(self, x):
    """LARM.forward with the pixel MLP applied along axis 1 of (B, P, d, N) (same parameters, same function)."""
    import torch

    d = int(x.shape[1])  # a constant in the export, as every shape below
    (ph, pw), (nh, nw) = self.patch, self.grid
    u = x.reshape(-1, d, nh, ph, nw, pw).permute(0, 3, 5, 1, 2, 4).reshape(-1, ph * pw, d, nh * nw)
    u = self.mix_patches(u)
    norm, fc1, act, fc2 = self.mix_pixels.net
    centred = u - u.mean(1, keepdim=True)
    z = centred * torch.rsqrt((centred * centred).mean(1, keepdim=True) + norm.eps)
    w1, b1 = fc1.weight * norm.weight[None, :], fc1.bias + fc1.weight @ norm.bias
    h = act(torch.matmul(w1, z.reshape(-1, ph * pw, d * nh * nw)) + b1[:, None])
    g = u + (torch.matmul(fc2.weight, h) + fc2.bias[:, None]).reshape(-1, ph * pw, d, nh * nw)
    return g.reshape(-1, ph, pw, d, nh, nw).permute(0, 3, 4, 1, 5, 2).reshape(-1, d, nh * ph, nw * pw)


def export_larm_axis1(weights: Path, out: Path) -> Path:
    from model.nn.blocks import LARM
    from model.nn.checkpoint import load_model
    from model.nn.export import export_onnx

    model = load_model(weights)
    for module in model.modules():
        if isinstance(module, LARM):
            module.forward = types.MethodType(_larm_pixels_on_axis1, module)
    return export_onnx(model, out)


def variants(pose_onnx: Path, weights: Path, work: Path) -> dict[str, Path]:
    import onnx

    base = onnx.load(str(pose_onnx))
    made = {"as exported": pose_onnx,
            "deconv BN folded": fold_deconv_bn(copy.deepcopy(base)),
            "deconv 4 phases": deconv_as_phases(fold_deconv_bn(copy.deepcopy(base))),
            "deconv 3x3 sub-pixel": deconv_as_phases(fold_deconv_bn(copy.deepcopy(base)), one_conv=True)}
    for i, (name, model) in enumerate(list(made.items())[1:]):
        onnx.save(model, str(work / f"variant{i}.onnx"))
        made[name] = work / f"variant{i}.onnx"
    made["LARM pixels on axis 1"] = export_larm_axis1(weights, work / "larm_axis1.onnx")
    return made


def runtimes() -> dict[str, Callable[[Path], Engine]]:
    from model.inference.cpu_features import cpu_flags, missing_units
    from model.inference.engines import OpenVinoEngine, OrtEngine

    found = {"onnxruntime f32": lambda p: OrtEngine(p),
             "openvino f32 dynamic": lambda p: OpenVinoEngine(p, per_batch=False),
             "openvino f32 per batch": lambda p: OpenVinoEngine(p)}
    if not missing_units("bf16", cpu_flags()):
        found["openvino bf16 dynamic"] = lambda p: OpenVinoEngine(p, precision="bf16", per_batch=False)
        found["openvino bf16 per batch"] = lambda p: OpenVinoEngine(p, precision="bf16")
    return found


def run(pose_onnx: Path, weights: Path, repeats: int = 30) -> list[dict]:
    """Median ms per crop per (variant, runtime, batch), cases interleaved; each variant's max |diff| to the export."""
    rng = np.random.default_rng(0)
    x = {b: rng.standard_normal((b, 3, 256, 192), dtype=np.float32) for b in POSE_BATCHES}
    with tempfile.TemporaryDirectory() as tmp:
        files = variants(pose_onnx, weights, Path(tmp))
        engines = {(v, rt): make(path) for v, path in files.items() for rt, make in runtimes().items()}
        reference = engines[("as exported", "onnxruntime f32")].run(x[4])
        diff = {v: float(np.abs(engines[(v, "onnxruntime f32")].run(x[4]) - reference).max()) for v in files}
        times: dict[tuple, list[float]] = {(*key, b): [] for key in engines for b in POSE_BATCHES}
        for rep in range(repeats + 2):
            for key, engine in engines.items():
                for b in POSE_BATCHES:
                    start = time.perf_counter()
                    engine.run(x[b])
                    if rep >= 2:  # two warm-up rounds
                        times[(*key, b)].append((time.perf_counter() - start) * 1000 / b)
    return [{"variant": v, "runtime": rt, "batch": b, "ms_per_crop": round(statistics.median(t), 2),
             "max_abs_diff": diff[v]} for (v, rt, b), t in times.items()]


def print_table(rows: list[dict]) -> None:
    from model.inference.cpu_features import cpu_name, shown_flags

    print(f"CPU: {cpu_name()}; flags: {shown_flags()}")
    ms = {(r["variant"], r["runtime"], r["batch"]): r["ms_per_crop"] for r in rows}
    print(f"{'variant':24s} {'runtime':24s} {'max|diff|':>9s} " + " ".join(
        f"{'b' + str(b) + ' ms':>8s} {'vs export':>9s} {'vs ORT':>7s}" for b in POSE_BATCHES))
    for r in [r for r in rows if r["batch"] == POSE_BATCHES[0]]:
        cells = []
        for b in POSE_BATCHES:
            t = ms[(r["variant"], r["runtime"], b)]
            cells.append(f"{t:8.2f} {ms[('as exported', r['runtime'], b)] / t:8.2f}x "
                         f"{ms[('as exported', 'onnxruntime f32', b)] / t:6.2f}x")
        print(f"{r['variant']:24s} {r['runtime']:24s} {r['max_abs_diff']:9.1e} " + " ".join(cells))


def main(args) -> int:
    import json

    from app.core.settings import Settings
    from bench.model_speed import served_exports

    pose_onnx, _ = served_exports(args.pose_onnx, args.detector_onnx)
    rows = run(pose_onnx, Settings().pose_weights, args.repeats)
    print_table(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0

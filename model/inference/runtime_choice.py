"""`auto`: the runtime and precision a model runs in, chosen at start-up among the accepted candidates.

Candidates are every CPU runtime that imports (ONNX Runtime; OpenVINO when installed) at every precision the CPU
computes natively and the model's offline check accepted (`model.inference.precision`; f32 always). With one
candidate left it is taken; with several, each is compiled and timed on the served model (`TRIAL_RUNS` runs in
alternation after a warm-up, median) and the fastest wins. A pinned runtime or precision narrows the candidates to
it. The `Choice` says what was chosen and why, for /readyz, the start-up log and the model-info metric.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.inference.cpu_features import PRECISIONS, shown_flags
from model.inference.engines import RUNTIMES, Engine, int8_path, open_engine
from model.inference.precision import refusal

log = logging.getLogger("lgm_pose.runtime")
TRIAL_RUNS = 7
WARMUP_RUNS = 3
PRECISIONS_OF = {"onnxruntime": ("f32",), "openvino": PRECISIONS}


@dataclass
class Choice:
    """What `auto` (or a pinned setting) chose: runtime, precision, and why."""

    runtime: str
    precision: str
    reason: str
    trial_ms: dict[str, float] = field(default_factory=dict)  # "runtime/precision" -> median ms of the trial


def runtime_missing(runtime: str) -> str | None:
    """None when `runtime`'s Python package imports, else why not."""
    try:
        __import__("onnxruntime" if runtime == "onnxruntime" else "openvino")
    except ImportError as exc:
        return f"{runtime} is not installed ({type(exc).__name__})"
    return None


def candidates(onnx_path: str | Path, runtime: str = "auto",
               precision: str = "auto") -> tuple[list[tuple[str, str]], list[str]]:
    """The (runtime, precision) pairs that may run this model here, and why each other one may not."""
    runtimes = RUNTIMES if runtime == "auto" else (runtime,)
    found: list[tuple[str, str]] = []
    notes: list[str] = []
    for rt in runtimes:
        if missing := runtime_missing(rt):
            notes.append(missing)
            continue
        for prec in PRECISIONS_OF[rt] if precision == "auto" else (precision,):
            if prec not in PRECISIONS_OF[rt]:
                notes.append(f"{rt} has no {prec}")
                continue
            model = int8_path(onnx_path) if prec == "int8" else Path(onnx_path)
            if prec == "int8" and not model.is_file():
                notes.append(f"{rt}/int8: no quantised model {model.name}")
            elif why := refusal(model, rt, prec):
                notes.append(f"{rt}/{prec}: {why}")
            else:
                found.append((rt, prec))
    return found, notes


def trial_ms(engines: dict[str, Engine], sample: Callable[[Engine], np.ndarray]) -> dict[str, float]:
    """Median ms per candidate: each warmed up, then timed in alternation (drift hits all alike)."""
    inputs = {key: sample(engine) for key, engine in engines.items()}
    for key, engine in engines.items():
        for _ in range(WARMUP_RUNS):
            engine.run(inputs[key])
    times: dict[str, list[float]] = {key: [] for key in engines}
    for _ in range(TRIAL_RUNS):
        for key, engine in engines.items():
            start = time.perf_counter()
            engine.run(inputs[key])
            times[key].append((time.perf_counter() - start) * 1000)
    return {key: round(statistics.median(t), 2) for key, t in times.items()}


def choose_engine(onnx_path: str | Path, sample: Callable[[Engine], np.ndarray], runtime: str = "auto",
                  precision: str = "auto", threads: int | None = None) -> tuple[Engine, Choice]:
    """The engine for `onnx_path`: the fastest accepted candidate on `sample(engine)` (the model's input); both
    pinned: that one or PrecisionRefused."""
    if runtime != "auto" and precision != "auto":
        engine = open_engine(onnx_path, runtime, precision, threads)
        return engine, Choice(runtime, precision, f"pinned by the settings; CPU flags: {shown_flags()}")
    found, notes = candidates(onnx_path, runtime, precision)
    if not found:
        if runtime in ("auto", "onnxruntime") and precision in ("auto", "f32"):
            raise RuntimeError("no runtime can serve " + Path(onnx_path).name + ": " + "; ".join(notes))
        raise RuntimeError(f"{runtime}/{precision} may not serve {Path(onnx_path).name}: " + "; ".join(notes))
    engines: dict[str, Engine] = {}
    for rt, prec in found:
        try:
            engines[f"{rt}/{prec}"] = open_engine(onnx_path, rt, prec, threads)
        except Exception as exc:  # a runtime that cannot compile this model is no candidate
            notes.append(f"{rt}/{prec} failed: {type(exc).__name__}: {exc}")
    if not engines:
        raise RuntimeError(f"no candidate compiled for {Path(onnx_path).name}: " + "; ".join(notes))
    trial = trial_ms(engines, sample) if len(engines) > 1 else {key: 0.0 for key in engines}
    engine = engines[min(trial, key=trial.__getitem__)]
    if len(trial) > 1:
        ranked = sorted(trial.items(), key=lambda kv: kv[1])
        why = "fastest in a timed trial (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ranked)
    else:
        why = "the only accepted candidate"
    reason = f"{why}; CPU flags: {shown_flags()}" + (f"; not candidates: {'; '.join(notes)}" if notes else "")
    return engine, Choice(engine.runtime, engine.precision, reason, trial)

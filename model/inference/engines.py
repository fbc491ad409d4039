"""One ONNX model in a CPU runtime: ONNX Runtime or OpenVINO, behind the same three calls.

Both runtimes read the same `.onnx` file and its metadata (`metadata(key)`); the pose runner and the person
detector are written once over an `Engine` (`model.inference.runners`, `model.inference.onnx_detector`).
OpenVINO compiles with an explicit INFERENCE_PRECISION_HINT (its CPU default is bf16 where the processor has it,
which must never happen unchecked) and the latency hint (one stream, every core for one request). A precision other
than f32 is refused unless its offline check accepted it (`model.inference.precision`). int8 in OpenVINO reads the
quantised IR beside the export (`int8_path`), made by `lgm-pose check-precision --quantize`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from model.inference.onnx_session import cpu_session
from model.inference.precision import require_accepted

RUNTIMES = ("onnxruntime", "openvino")
OV_PRECISION = {"f32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 comes from the quantised graph itself


class Engine(Protocol):
    """A compiled model: one input in, the first output out (call from one thread at a time)."""

    runtime: str
    precision: str
    path: Path  # the file it runs

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def metadata(self, key: str) -> str | None: ...


def int8_path(onnx_path: str | Path) -> Path:
    """Where the OpenVINO int8 model (NNCF-quantised IR) of an ONNX export lives."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".int8.xml")


class OrtEngine:
    """ONNX Runtime, CPU provider, f32 (`onnx_session.cpu_session`)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path, self.precision = Path(path), "f32"
        self.session = cpu_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self._meta = self.session.get_modelmeta().custom_metadata_map

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def metadata(self, key: str) -> str | None:
        return self._meta.get(key)


class OpenVinoEngine:
    """OpenVINO on the CPU: `Core().read_model` of the ONNX file (or the int8 IR), compiled at `precision`.

    A model whose only dynamic axis is the batch (the pose network) is compiled once per batch size with every shape
    static: OpenVINO then folds the graph's shape computations away and picks its kernels for that shape (the pose
    stage 1.40x faster per crop at batch 1, README). The same operations run, so a precision verdict still holds.
    Batches of up to `STATIC_BATCHES` get one static compile each (on first use; the server's start-up runs every
    size its batcher may form); larger ones share one dynamic compile, so at most STATIC_BATCHES + 1 compiles exist
    and none is ever dropped and made again. The detector, whose image size varies, stays one dynamic compile
    (compiling per image shape measured 1.04x and cost 0.6 s a new shape).
    """

    runtime = "openvino"
    STATIC_BATCHES = 8

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32",
                 per_batch: bool = True) -> None:
        """`per_batch=False`: one dynamic compile whatever the model (`lgm-pose bench rewrites` times both)."""
        import openvino as ov

        self.path, self.precision = Path(path), precision
        self._core = ov.Core()
        self.model = self._core.read_model(str(self.path))
        self._config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY",
                        "NUM_STREAMS": "1"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = str(threads)
        shape = self.model.input(0).get_partial_shape()
        self.static_batches = per_batch and len(self.model.inputs) == 1 and all(d.is_static for d in list(shape)[1:])
        self._requests: dict[int, object] = {}  # batch size (0: the dynamic compile) -> InferRequest
        self._request_for(1)  # compiled now: a model that fails does so at load

    @property
    def compiled_batches(self) -> tuple[int, ...]:
        """The batch sizes compiled so far, in order of compiling (0: the dynamic compile)."""
        return tuple(self._requests)

    def _request_for(self, batch: int):
        """The infer request that runs a batch of `batch`, compiled on first use."""
        key = batch if self.static_batches and batch <= self.STATIC_BATCHES else 0
        request = self._requests.get(key)
        if request is None:
            model = self.model
            if key:
                model = self.model.clone()
                shape = model.input(0).get_partial_shape()
                shape[0] = key
                model.reshape(shape)
            request = self._requests[key] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return request

    def run(self, x: np.ndarray) -> np.ndarray:
        request = self._request_for(len(x))
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return request.get_output_tensor(0).data.copy()  # the request's buffer is reused by the next call

    def metadata(self, key: str) -> str | None:
        if not self.model.has_rt_info(["framework", key]):  # ONNX metadata_props, as the ONNX frontend keeps them
            return None
        return self.model.get_rt_info(["framework", key]).astype(str)


def open_engine(onnx_path: str | Path, runtime: str = "onnxruntime", precision: str = "f32",
                threads: int | None = None, verified: bool = True) -> Engine:
    """The model of `onnx_path` compiled in `runtime` at `precision`; PrecisionRefused for an unaccepted one
    (`verified=False` only for the offline check itself, which runs a precision before its verdict exists)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
    source = int8_path(onnx_path) if precision == "int8" else Path(onnx_path)
    if precision == "int8" and runtime != "openvino":
        raise ValueError("int8 runs in OpenVINO only (an NNCF-quantised model); ONNX Runtime serves f32")
    if precision == "bf16" and runtime != "openvino":
        raise ValueError("bf16 runs in OpenVINO only; ONNX Runtime serves f32")
    if verified:
        require_accepted(source, runtime, precision)
    if runtime == "openvino":
        return OpenVinoEngine(source, threads, precision)
    return OrtEngine(source, threads)

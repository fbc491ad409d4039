"""One way to open an ONNX Runtime CPU session for both networks (pose and detector)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(onnx_path: str | Path, threads: int | None = None):
    """An InferenceSession on the CPU provider. Intra-op threads sleep instead of spinning when idle: the detector
    and the pose network run at the same time from different threads, and spinning workers would steal the cores
    the other session is computing on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

"""Which reduced precisions a model may run in: verdicts of the offline check, stored beside the model.

`lgm-pose check-precision` scores a precision against fp32 (AP on fashion/val, keypoint deltas on real images) and
records the verdict in a sidecar JSON next to the model file, `<model>.onnx.precision.json`, keyed by the model's
SHA-256, runtime and precision: a changed model file no longer matches any verdict. A sidecar rather than the
ONNX metadata, because writing the verdict into the file would change the hash it is stored under. f32 is the
reference and needs no verdict; any other precision without an accepted verdict is refused at load.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from model.inference.cpu_features import PRECISIONS, missing_units
from model.inference.provenance import file_sha256

AP_TOLERANCE = 0.005  # a precision is accepted when its AP is within this of fp32's
SIDECAR_FORMAT = 1


class PrecisionRefused(ValueError):
    """A precision that may not run here: never checked, failed its check, or no native units on this CPU."""


def sidecar_path(model: str | Path) -> Path:
    model = Path(model)
    return model.with_name(model.name + ".precision.json")


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def model_hash(model: str | Path) -> str:
    """SHA-256 of the model file (cached per size and mtime)."""
    st = Path(model).stat()
    return _sha256(str(Path(model).resolve()), st.st_size, st.st_mtime_ns)


def read_verdicts(model: str | Path) -> list[dict[str, Any]]:
    path = sidecar_path(model)
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("verdicts", []))


def verdict_for(model: str | Path, runtime: str, precision: str) -> dict[str, Any] | None:
    """The stored verdict for this model file, runtime and precision (the latest), or None."""
    sha = model_hash(model)
    found = [v for v in read_verdicts(model) if (v["sha256"], v["runtime"], v["precision"]) == (sha, runtime,
                                                                                                   precision)]
    return found[-1] if found else None


def store_verdict(model: str | Path, verdict: dict[str, Any]) -> Path:
    """Add `verdict` (with sha256, runtime, precision, accepted) to the sidecar, replacing the same key's."""
    key = (verdict["sha256"], verdict["runtime"], verdict["precision"])
    kept = [v for v in read_verdicts(model) if (v["sha256"], v["runtime"], v["precision"]) != key]
    path = sidecar_path(model)
    path.write_text(json.dumps({"format": SIDECAR_FORMAT, "verdicts": [*kept, verdict]}, indent=1))
    return path


def refusal(model: str | Path, runtime: str, precision: str, check_units: bool = True) -> str | None:
    """None when `precision` may run `model` in `runtime` here, else why not."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})"
    if precision == "f32":
        return None
    if check_units and (lacking := missing_units(precision)):
        return lacking
    verdict = verdict_for(model, runtime, precision)
    if verdict is None:
        return (f"{precision} in {runtime} was never checked for {Path(model).name} (this file's hash): run "
                f"`lgm-pose check-precision --model {Path(model).name} --runtime {runtime} --precision {precision}`")
    if not verdict.get("accepted"):
        return (f"{precision} in {runtime} failed its check for {Path(model).name}: AP {verdict.get('ap')} against "
                f"fp32 {verdict.get('ap_fp32')} (tolerance {AP_TOLERANCE})")
    return None


def require_accepted(model: str | Path, runtime: str, precision: str) -> None:
    """Raise PrecisionRefused unless `precision` may run `model` in `runtime` on this CPU."""
    if (why := refusal(model, runtime, precision)) is not None:
        raise PrecisionRefused(why)

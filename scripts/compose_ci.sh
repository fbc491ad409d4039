#!/usr/bin/env bash
# `docker compose up` for real, with Podman (CI: Debian bookworm, no Docker engine, no registry).
# Prepares Podman (runc, explicit ulimits, DNS between containers), makes a local Debian base image with
# Python 3.11 (debootstrap; the official python image cannot be pulled here), builds the CPU image from
# docker/Dockerfile.cpu (BASE_IMAGE overridden, nothing else) and a Prometheus image from Debian's package,
# brings up the compose stack's CPU service and Prometheus with a fresh API key, runs scripts/compose_e2e.py
# against the published ports, and takes the stack down. Usage: scripts/compose_ci.sh (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=localhost/lgm-pose-base:bookworm
PROM=localhost/lgm-pose-prometheus:debian
PROJECT=lgmci
WORK=$(mktemp -d)
trap 'podman-compose -p $PROJECT down -v >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
start=$(date +%s)

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in podman runc debootstrap podman-compose golang-github-containernetworking-plugin-dnsname; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p /etc/containers
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
fi

if ! podman image exists "$BASE"; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" \
    "${mirror:-http://deb.debian.org/debian}" >/dev/null
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null 2>&1
  rm -rf "$WORK/rootfs"
fi
echo "base image ready ($(($(date +%s) - start)) s)"

secret=()  # HTTPS to PyPI through this host's CA bundle, mounted for the build only
[ -f /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt)
podman build -q --format docker -f docker/Dockerfile.cpu --build-arg BASE_IMAGE="$BASE" "${secret[@]}" \
  -t lgm-pose:cpu . >/dev/null
podman build -q --format docker -f docker/Dockerfile.prometheus --build-arg BASE_IMAGE="$BASE" -t "$PROM" . >/dev/null
echo "images built ($(($(date +%s) - start)) s)"

(umask 022; head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' > "$WORK/api_key")
data=../shared/data; [ -d "$data" ] || { data="$WORK/data"; mkdir -p "$data"; }
export LGM_POSE_API_KEY_FILE_HOST="$WORK/api_key" LGM_POSE_PROMETHEUS_IMAGE="$PROM" LGM_POSE_DATA_DIR="$data"
podman-compose -p $PROJECT up -d lgm-pose prometheus > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
if ! .venv/bin/python scripts/compose_e2e.py --project $PROJECT --key-file "$WORK/api_key"; then
  for c in $(podman ps -a --filter label=io.podman.compose.project=$PROJECT --format '{{.Names}}'); do
    echo "--- logs of $c"; podman logs --tail 40 "$c" 2>&1
  done
  exit 1
fi
podman-compose -p $PROJECT down -v >/dev/null 2>&1
left=$(podman ps -a --filter label=io.podman.compose.project=$PROJECT -q | wc -l)
[ "$left" -eq 0 ] || { echo "containers left after down: $left"; exit 1; }
echo "compose stack up, tested and down in $(($(date +%s) - start)) s"

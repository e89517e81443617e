#!/usr/bin/env bash
# Builds the worker daemon's container image, localhost/gpumesh-worker:latest, without any
# container registry: the base is a minimal Debian root made with debootstrap (from Debian's
# package mirror) and imported into Podman; the daemon is built here with the CUDA feature
# (it loads the NVIDIA libraries at run time, so the image runs on GPU and CPU machines alike).
#
#   scripts/worker-image.sh            # needs podman and debootstrap (apt-get install -y debootstrap)
#
# Run it (the worker drives the host's engine through its socket; GPUs come from the NVIDIA
# Container Toolkit's CDI devices): see worker/README.md, "The daemon in a container".
set -euo pipefail
cd "$(dirname "$0")/.."

base=localhost/gpumesh-debian-base:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=${CONTAINERS_CONF:-/tmp/gpumesh-podman/containers.conf}
[ -f "$CONTAINERS_CONF" ] || unset CONTAINERS_CONF

if ! podman image exists "$base"; then
    command -v debootstrap >/dev/null || {
        echo "worker-image: debootstrap is missing: apt-get install -y debootstrap" >&2
        exit 1
    }
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "worker-image: making a minimal Debian bookworm root from $mirror" >&2
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >&2
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base" >&2
fi

CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback \
    cargo build --release --locked -p gpumesh-worker --features cuda --bin gpumesh-worker >&2
target=${CARGO_TARGET_DIR:-target}
context=$(mktemp -d)
cp "$target/release/gpumesh-worker" worker/Containerfile "$context/"
strip "$context/gpumesh-worker" 2>/dev/null || true
podman --runtime runc build --build-arg "BASE=$base" -t localhost/gpumesh-worker:latest \
    -f "$context/Containerfile" "$context" >&2
rm -rf "$context"
echo "localhost/gpumesh-worker:latest"

#!/usr/bin/env bash
# Builds the resume example's image, localhost/gpumesh-resume:latest, with Podman (or Docker)
# from the host's busybox-static: no registry is needed.
#   examples/resume/build.sh [podman|docker]
set -euo pipefail
engine=${1:-podman}
here=$(cd "$(dirname "$0")" && pwd)
[ -x /bin/busybox ] || { echo "build.sh: /bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Containerfile" "$here/train.sh" /bin/busybox "$context/"
if [ "$engine" = podman ]; then
    podman --runtime runc build -t localhost/gpumesh-resume:latest -f "$context/Containerfile" "$context"
else
    docker build -t localhost/gpumesh-resume:latest -f "$context/Containerfile" "$context"
fi

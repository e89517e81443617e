#!/usr/bin/env bash
# Installs Podman (when missing) and starts its Docker-compatible API socket, for the worker
# daemon's container tests and for running a worker on a machine without Docker. Safe to run
# twice: an answering socket is left alone.
#
#   scripts/podman-service.sh            # prints the DOCKER_HOST line to export
#   eval "$(scripts/podman-service.sh)"  # or export it directly
#
# GPUMESH_PODMAN_DIR (default /tmp/gpumesh-podman) holds the socket, the containers.conf, the
# service's log and its pid. The facts behind the settings (runc, not crun; no default ulimits)
# are in the repository's toolchain notes: crun fails on hybrid cgroups and Podman's default
# RLIMIT_NOFILE cannot be set in unprivileged sandboxes.
set -euo pipefail

dir=${GPUMESH_PODMAN_DIR:-/tmp/gpumesh-podman}
sock="$dir/podman.sock"
mkdir -p "$dir"

answers() {
    curl -sf --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1
}

if answers; then
    echo "export DOCKER_HOST=unix://$sock"
    exit 0
fi

# slirp4netns, ip, unshare and nsenter: the network-partition test runs a daemon in a network
# namespace of its own.
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || [ ! -x /bin/busybox ] \
    || ! command -v curl >/dev/null || ! command -v slirp4netns >/dev/null \
    || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null \
    || ! command -v unshare >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "podman-service: podman, runc, busybox-static, curl, slirp4netns, iproute2 and util-linux are needed; run as root or install them: apt-get install -y podman runc busybox-static curl slirp4netns iproute2 util-linux" >&2
        exit 1
    fi
    echo "podman-service: installing podman, runc, busybox-static, curl, slirp4netns, iproute2, util-linux" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static curl \
        slirp4netns iproute2 util-linux >&2
fi

cat >"$dir/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$dir/containers.conf"

rm -f "$sock"
nohup podman --runtime runc system service --time 0 "unix://$sock" \
    >"$dir/service.log" 2>&1 &
echo $! >"$dir/service.pid"

for _ in $(seq 1 100); do
    if answers; then
        echo "podman-service: the Docker Engine API answers on $sock (pid $(cat "$dir/service.pid"))" >&2
        echo "export DOCKER_HOST=unix://$sock"
        exit 0
    fi
    sleep 0.1
done
echo "podman-service: the socket $sock does not answer after 10 s; see $dir/service.log:" >&2
tail -20 "$dir/service.log" >&2
exit 1

#!/usr/bin/env bash
# The worker daemon on an NVIDIA machine that has no Rust toolchain: the CUDA backend's own check
# (scripts/gpu-check.sh), then the real `gpumesh-worker` binary started the way a supplier starts
# it, once with the machine's true claim (it must detect the GPU through NVML, measure its
# bandwidth, accept the claim and go on to connect) and three times with a claim or floor the
# machine does not meet (it must refuse to start and say what to change).
#
#   scripts/gpu-daemon-check.sh DIR
#
# DIR holds `gpu-check` and `gpumesh-worker` built with the cuda feature:
#   cargo build --release -p gpumesh-worker --features cuda --bins
# and `node.json`, a node key (`gpumesh keys new --outfile DIR/node.json`).
# The claim below is an H200's (141 GB, about 4.8 TB/s on its datasheet); change CLASS, VRAM_MIB
# and BANDWIDTH_GBPS for another GPU.
set -uo pipefail

dir="${1:-}"
if [[ -z "$dir" || ! -x "$dir/gpumesh-worker" || ! -x "$dir/gpu-check" || ! -f "$dir/node.json" ]]; then
    echo "usage: $0 DIR  (DIR/gpu-check, DIR/gpumesh-worker built with --features cuda, DIR/node.json)" >&2
    exit 2
fi
dir="$(cd "$dir" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
CLASS="${CLASS:-h200}"
VRAM_MIB="${VRAM_MIB:-135000}"
BANDWIDTH_GBPS="${BANDWIDTH_GBPS:-3000}"
# The deployment the worker names (any valid address: nothing here talks to a chain).
PROGRAM_ID="${PROGRAM_ID:-GYw39QwiZ2MB8G7hWu9Jo9KzxJdxkbLYWLoFd97qfBYX}"
WORKER="${WORKER:-11111111111111111111111111111111}"

failed=0
check() {
    if [[ "$1" == 0 ]]; then echo "PASS $2"; else echo "FAIL $2"; failed=1; fi
}

echo "== the CUDA backend"
"$here/gpu-check.sh" "$dir/gpu-check"
check $? "gpu-check"

# The libraries gpu-check.sh found, for the daemon too.
libs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$d" ]] && libs+=("$d")
done
while IFS= read -r site; do
    for lib in "$site"/nvidia/*/lib; do
        [[ -d "$lib" ]] && libs+=("$lib")
    done
done < <(python3 -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
joined="$(IFS=:; echo "${libs[*]:-}")"
export LD_LIBRARY_PATH="${joined}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

work="$(mktemp -d)"
# Runs the daemon with a [claim] and [floor]; its log in $work/$1.log; returns its exit code
# (124: still running after $2 seconds, as a daemon that found no orchestrator should be).
daemon() {
    local name="$1" seconds="$2" class="$3" gpus="$4" vram="$5" bw="$6" floor_vram="$7"
    cat > "$work/$name.toml" <<EOF
state = "$work/$name.sqlite"
work_dir = "$work/$name-jobs"
[hardware]
backend = "cuda"
[floor]
min_vram_mib = $floor_vram
min_bandwidth_gbps = 144
[claim]
class = "$class"
gpus = $gpus
vram_mib = $vram
bandwidth_gbps = $bw
[runtime]
kind = "command"
[results]
store = "local"
dir = "$work/$name-results"
[connection]
backoff_initial_ms = 500
EOF
    RUST_LOG=info timeout "$seconds" "$dir/gpumesh-worker" --config "$work/$name.toml" \
        --orchestrator ws://127.0.0.1:9/v1/worker --node-key "$dir/node.json" \
        --worker "$WORKER" --program-id "$PROGRAM_ID" > "$work/$name.log" 2>&1
    local rc=$?
    sed 's/\x1b\[[0-9;]*m//g' "$work/$name.log" | head -20
    return $rc
}

echo
echo "== the daemon with the machine's claim: $CLASS, 1 GPU, $VRAM_MIB MiB, $BANDWIDTH_GBPS GB/s"
daemon good 40 "$CLASS" 1 "$VRAM_MIB" "$BANDWIDTH_GBPS" 7629
rc=$?
log="$(sed 's/\x1b\[[0-9;]*m//g' "$work/good.log")"
grep -q "machine checked" <<<"$log" && grep -q "class=$CLASS" <<<"$log" && grep -q "backend=cuda" <<<"$log"
check $? "the daemon detects the $CLASS through NVML and CUDA and accepts the claim"
[[ $rc == 124 ]] && grep -q "reconnecting in" <<<"$log"
check $? "it keeps trying to reach the orchestrator (exit $rc after 40 s)"

echo
echo "== refusals"
daemon wrong-class 60 h100 1 "$VRAM_MIB" "$BANDWIDTH_GBPS" 7629
rc=$?
[[ $rc != 0 && $rc != 124 ]] && grep -q "the class is $CLASS, the claim says h100" "$work/wrong-class.log"
check $? "a claim of another class is refused (exit $rc)"
daemon too-many 60 "$CLASS" 2 "$VRAM_MIB" "$BANDWIDTH_GBPS" 7629
rc=$?
[[ $rc != 0 && $rc != 124 ]] && grep -q "the GPU count is 1, the claim says 2" "$work/too-many.log"
check $? "a claim of more GPUs than the machine has is refused (exit $rc)"
daemon floor 60 "$CLASS" 1 "$VRAM_MIB" "$BANDWIDTH_GBPS" 400000
rc=$?
[[ $rc != 0 && $rc != 124 ]] && grep -q "the market needs at least" "$work/floor.log"
check $? "a market floor above the GPU's memory is refused (exit $rc)"

echo
if [[ $failed == 0 ]]; then echo "GPU DAEMON CHECK PASSED"; else echo "GPU DAEMON CHECK FAILED"; fi
exit $failed

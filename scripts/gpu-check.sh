#!/usr/bin/env bash
# Runs the gpumesh GPU check on an NVIDIA machine that has no Rust toolchain.
#
#   scripts/gpu-check.sh path/to/gpu-check
#
# Build the binary elsewhere with:
#   cargo build --release -p gpumesh-worker --features cuda --bin gpu-check
# The binary loads libcuda (driver), libcublasLt, libnvrtc and libnvidia-ml at run time. This
# script finds cuBLAS and NVRTC in the CUDA toolkit or in Python's NVIDIA pip wheels
# (site-packages/nvidia/*/lib) and puts them on LD_LIBRARY_PATH.
set -euo pipefail

bin="${1:-}"
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "usage: $0 path/to/gpu-check  (an executable built with --features cuda)" >&2
    exit 2
fi

dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$d" ]] && dirs+=("$d")
done
for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
        while IFS= read -r site; do
            for lib in "$site"/nvidia/*/lib; do
                [[ -d "$lib" ]] && dirs+=("$lib")
            done
        done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
        break
    fi
done

joined="$(IFS=:; echo "${dirs[*]:-}")"
export LD_LIBRARY_PATH="${joined}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$bin"

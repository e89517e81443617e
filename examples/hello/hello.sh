#!/bin/sh
# A small CPU job: says hello, shows what the worker gave it, works for a few seconds and leaves
# a result file for the daemon to hash and store.
set -eu
echo "hello from gpumesh, lease ${GPUMESH_LEASE:-?} (nonce ${GPUMESH_LEASE_NONCE:-?})"
echo "GPUs: ${GPUMESH_GPUS:-0}, CUDA_VISIBLE_DEVICES=[${CUDA_VISIBLE_DEVICES:-}]"
echo "greeting: ${GREETING:-none}"
i=0
while [ "$i" -lt "${STEPS:-3}" ]; do
    i=$((i + 1))
    echo "step $i"
    echo "working" >&2
    sleep 1
done
mkdir -p /results
echo "${GREETING:-hello}, after $i steps" > /results/hello.txt
echo "done: /results/hello.txt"

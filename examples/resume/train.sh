#!/bin/sh
# A small, deterministic training job that checkpoints and resumes: it fits y = w*x + b to 64
# fixed points by full-batch gradient descent, one epoch per step, in awk on the CPU. Its state
# (step, w, b) is written to the checkpoint directory every CHECKPOINT_EVERY steps, atomically
# (a temporary file renamed over the old one), and then it asks the worker for a snapshot now.
# A job moved to another worker finds the latest good snapshot restored into that directory
# and goes on from its step: the final model is the same bytes as an uninterrupted run's.
set -eu
steps=${STEPS:-100}
every=${CHECKPOINT_EVERY:-5}
pause=${STEP_SECONDS:-0.2}
ckpt=${GPUMESH_CHECKPOINT_DIR:-/scratch/ckpt}
scratch=${GPUMESH_SCRATCH:-/scratch}
results=${GPUMESH_RESULTS:-/results}
mkdir -p "$ckpt" "$results"

step=0 w=0 b=0
# Stopped (the lease ended): leave at once; the last checkpoint is what a successor resumes from.
trap 'echo "stopped at step $step"; exit 143' TERM INT
if [ -f "$ckpt/state" ]; then
    read -r step w b < "$ckpt/state"
    echo "resuming at step $step from checkpoint ${GPUMESH_RESUME_HASH:-?} taken at ${GPUMESH_RESUME_UNIX_MS:-?} ms"
else
    echo "starting from step 0"
fi

# One epoch: the gradient of the mean squared error over the 64 points, a step of 0.05 against
# it. Numbers pass between epochs as %.17g, which gives back the same double exactly.
epoch() {
    awk -v w="$1" -v b="$2" 'BEGIN {
        n = 64; gw = 0; gb = 0; loss = 0; seed = 12345
        for (i = 0; i < n; i++) {
            seed = (seed * 1103515245 + 12345) % 2147483648
            x = i / 16 - 2
            y = 3 * x - 2 + (seed / 2147483648 - 0.5) / 4
            e = w * x + b - y
            gw += 2 * e * x / n; gb += 2 * e / n; loss += e * e / n
        }
        printf "%.17g %.17g %.17g\n", w - 0.05 * gw, b - 0.05 * gb, loss
    }'
}

while [ "$step" -lt "$steps" ]; do
    set -- $(epoch "$w" "$b")
    w=$1 b=$2 loss=$3
    step=$((step + 1))
    echo "step $step loss $loss"
    if [ $((step % every)) -eq 0 ]; then
        printf '%s %s %s\n' "$step" "$w" "$b" > "$ckpt/state.tmp"
        mv "$ckpt/state.tmp" "$ckpt/state"
        touch "$scratch/.gpumesh-checkpoint"
    fi
    sleep "$pause"
done
printf 'w %s\nb %s\nsteps %s\n' "$w" "$b" "$steps" > "$results/model.txt"
echo "done: w=$w b=$b after $steps steps"

"""A PyTorch-style training job for gpumesh: trains a small classifier on synthetic data on the
GPUs the worker gave it (CUDA_VISIBLE_DEVICES), checkpoints to /scratch as it goes, and leaves
the final model and its metrics in /results, which the worker hashes and stores when the job
ends. Stopping is graceful: on SIGTERM (the lease ended) it saves and exits before the grace
period runs out.
"""

import json
import os
import signal
import time

import torch
from torch import nn

EPOCHS = int(os.environ.get("EPOCHS", "5"))
STEPS = int(os.environ.get("STEPS_PER_EPOCH", "200"))
BATCH = int(os.environ.get("BATCH", "512"))
SCRATCH = os.environ.get("GPUMESH_SCRATCH", "/scratch")
RESULTS = os.environ.get("GPUMESH_RESULTS", "/results")

stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(f"device: {device}, GPUs visible: {torch.cuda.device_count()}", flush=True)
torch.manual_seed(0)

model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 10)).to(device)
if torch.cuda.device_count() > 1:
    model = nn.DataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
teacher = torch.randn(256, 10, device=device)

checkpoint = os.path.join(SCRATCH, "checkpoint.pt")
start_epoch = 0
if os.path.exists(checkpoint):
    state = torch.load(checkpoint, map_location=device)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    start_epoch = state["epoch"] + 1
    print(f"resumed from epoch {start_epoch}", flush=True)

metrics = []
for epoch in range(start_epoch, EPOCHS):
    began = time.time()
    total = 0.0
    for _ in range(STEPS):
        x = torch.randn(BATCH, 256, device=device)
        y = (x @ teacher).argmax(dim=1)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        if stop:
            break
    entry = {"epoch": epoch, "loss": total / STEPS, "seconds": time.time() - began}
    metrics.append(entry)
    print(json.dumps(entry), flush=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, checkpoint)
    if stop:
        print("SIGTERM: saved, leaving", flush=True)
        break

os.makedirs(RESULTS, exist_ok=True)
torch.save(model.state_dict(), os.path.join(RESULTS, "model.pt"))
with open(os.path.join(RESULTS, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
print("results written", flush=True)

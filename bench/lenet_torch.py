#!/usr/bin/env python3
"""PyTorch CPU anchor for `frugal bench train`: the LeNet-style CNN (conv 5x5 32, max-pool 2,
conv 5x5 64, max-pool 2, fc 512, fc 10; ReLU), batch 64 of 1x28x28, SGD lr 0.01 momentum 0.9,
two threads. Times whole training steps (forward, loss, backward, step) on random MNIST-shaped
batches and prints/writes images per second.

Usage: python3 bench/lenet_torch.py [--steps 30] [--warmup 5] [--threads 2] [--json FILE]"""
import argparse, json, statistics, time
import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=30)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.rand(a.batch, 1, 28, 28); y = torch.randint(0, 10, (a.batch,))
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    opt.zero_grad(); loss = nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
    if i >= a.warmup: times.append(time.perf_counter() - t0)
med = statistics.median(times)
res = {"framework": "pytorch", "version": torch.__version__, "threads": a.threads, "batch": a.batch,
       "step_ms_median": med * 1e3, "images_per_second": a.batch / med}
print(f"pytorch {torch.__version__}: {med*1e3:.1f} ms/step (median of {a.steps}), {a.batch/med:.0f} images/s")
if a.json:
    json.dump(res, open(a.json, "w"), indent=1)

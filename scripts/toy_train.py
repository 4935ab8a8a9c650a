#!/usr/bin/env python3
"""Toy "training run" for lossdiff's external-command arms (stdlib only).

Loss follows a noisy exponential decay toward a floor; the noise is seeded, so a run is a pure
function of its flags. --bug adds a systematic upward drift (a planted regression). The learning
rate follows linear warmup then cosine decay over --lr-decay-iters, and scales the decay speed.
--perturb-seed N (not 0) nudges the initial state in its last bit, up or down as N picks: the
perturbation ensemble lossdiff uses as its "within rounding" yardstick.
Writes one JSON object per step: {"step": s, "loss": l, "lr": r}.
"""
import argparse
import json
import math
import random
import sys

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--warmup", type=int, default=10)
p.add_argument("--lr-decay-iters", type=int, default=100)
p.add_argument("--perturb-seed", type=int, default=0,
               help="0: none; else nudge the initial loss by one ulp, direction seeded by it")
p.add_argument("--bug", action="store_true", help="add a drift of +0.2%% of the loss per 10 steps")
p.add_argument("--out", default="-", help="JSONL path, or - for stdout")
a = p.parse_args()

rng = random.Random(a.seed)
floor, start, progress = 2.0, 10.0, 0.0
if a.perturb_seed:
    # The toy's "initial weights" are its starting loss; a real script would nudge every
    # parameter tensor the same way (e.g. torch.nextafter(w, +/-inf) on a seeded mask).
    start = math.nextafter(start, math.inf if random.Random(a.perturb_seed).random() < 0.5 else -math.inf)
out = sys.stdout if a.out == "-" else open(a.out, "w")
for step in range(1, a.steps + 1):
    if step <= a.warmup:
        lr = a.lr * step / a.warmup
    else:
        t = min(1.0, (step - a.warmup) / max(1, a.lr_decay_iters - a.warmup))
        lr = a.lr * 0.1 + 0.45 * a.lr * (1.0 + math.cos(math.pi * t))
    progress += lr / a.lr * 0.05
    loss = floor + (start - floor) * math.exp(-progress)
    loss *= 1.0 + 0.01 * rng.gauss(0.0, 1.0)
    if a.bug:
        loss *= 1.0 + 0.0002 * step
    out.write(json.dumps({"step": step, "loss": loss, "lr": lr}) + "\n")
    out.flush()
if out is not sys.stdout:
    out.close()

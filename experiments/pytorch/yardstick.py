#!/usr/bin/env python3
"""Prints the PyTorch upgrade's size table (docs/pytorch-upgrade.md) from its goldens.

For each cell: torch 2.15.0 − 2.14.1 in the late window (last 20 % of steps, mean over the three
paired seeds), the rounding spread (standard deviation, over the four perturbation runs, of their
late-window mean difference from the unperturbed seed-1 run of 2.14.1), the ratio of the two,
the 0.1 % margin, and how far inside it the rounding spread sits. Standard library only:

    python3 experiments/pytorch/yardstick.py            # reads golden/pytorch_upgrade/
"""

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "golden/pytorch_upgrade")
A, B = "torch_2_14_1", "torch_2_15_0"


def losses(trace):
    return trace["series"]["lm_loss"]["values"]


def late(xs):
    tail = xs[len(xs) - len(xs) // 5 :]
    return sum(tail) / len(tail)


def row(cell_dir):
    a = json.loads((cell_dir / f"{A}.golden.json").read_text())
    b = json.loads((cell_dir / f"{B}.golden.json").read_text())
    by_seed = {t["seeds"]["seed"]: t for t in b["seed_traces"]}
    diffs = [late([y - x for x, y in zip(losses(t), losses(by_seed[t["seeds"]["seed"]]))]) for t in a["seed_traces"]]
    base = next(t for t in a["seed_traces"] if t["seeds"]["seed"] == 1)
    null = [late([p - q for p, q in zip(losses(t), losses(base))]) for t in a["perturbation_traces"]]
    level = statistics.mean(late(losses(t)) for t in a["seed_traces"])
    spread, margin, diff = statistics.stdev(null), 1e-3 * level, statistics.mean(diffs)
    return (
        f"| {cell_dir.name} | {level:.4f} | {diff:+.1e} | {spread:.2e} | {abs(diff) / spread:.1f} "
        f"| ±{margin:.2e} | {margin / spread:.1e} |"
    )


def main():
    cells = sorted((d for d in ROOT.iterdir() if d.is_dir()), key=lambda d: int(d.name.split("=")[1]))
    print("| cell | late loss (A) | B − A, late | rounding spread | ratio | margin | margin / spread |")
    print("|---|---|---|---|---|---|---|")
    for d in cells:
        print(row(d))


if __name__ == "__main__":
    main()

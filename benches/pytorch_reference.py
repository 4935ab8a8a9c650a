"""PyTorch CPU eager reference for `benches/train_step.rs`: the same GPT, one optimiser step.

The README's speed table puts lossdiff's step time next to PyTorch's. The machine is shared and
noisy, so the two are measured in the same session, back to back, and compared as a ratio.

The model is a preset of `src/config.rs` (`--preset`, default `small`): nanoGPT's architecture
(pre-LayerNorm blocks, GELU (erf), tied LM head, biases), f32, micro batch 8, dropout 0, AdamW with
lossdiff's parameter groups (weight decay 0.1 on linear weights only), global-norm clipping at
1.0. Attention is explicit matmuls with a causal mask (what lossdiff's `naive` backend computes)
or `scaled_dot_product_attention` (`--attention sdpa`).

Run (torch from PyPI in any virtualenv):

    python3 benches/pytorch_reference.py --threads 1
    python3 benches/pytorch_reference.py --threads 2 --attention sdpa
    python3 benches/pytorch_reference.py --threads 1 --preset medium

It prints the median and quartiles of the per-step wall time over `--steps` steps after
`--warmup` steps.

`--attention-bench T` times causal `scaled_dot_product_attention` forward + `sum().backward()`
instead (B=1, `--heads` 4, `--head-dim` 32, `--dtype f32|bf16`): up to `--steps` timed runs after
`--warmup`, stopping early once the timed runs add up to `--budget-secs`. `--json` prints one JSON
line (`median_s`, `q1_s`, `q3_s`, `samples`, `torch`) instead of prose: `lossdiff bench speed`
runs this script that way, interleaved with lossdiff's own cells.
"""

import argparse
import json
import math
import statistics
import time
import warnings

# A torch wheel built against NumPy warns at import when NumPy is missing; the bench uses no NumPy,
# and the warning would bury the one line this script prints.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# (vocab, seq, d_model, layers, heads), as `RunConfig::preset` has them.
PRESETS = {
    "gate": (64, 32, 64, 2, 4),
    "small": (256, 128, 128, 4, 4),
    "medium": (256, 256, 256, 6, 8),
}


class Block(nn.Module):
    def __init__(self, d, n_head, sdpa):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        self.n_head = n_head
        self.sdpa = sdpa

    def attn(self, x):
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, hs).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(t, t, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class Gpt(nn.Module):
    def __init__(self, vocab, seq, d, layers, n_head, sdpa):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq, d)
        self.h = nn.ModuleList(Block(d, n_head, sdpa) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def quartiles(times):
    """Returns (q1, median, q3) of the timed runs; one run is its own quartiles."""
    if len(times) == 1:
        return times[0], times[0], times[0]
    q1, med, q3 = statistics.quantiles(times, n=4)
    return q1, med, q3


def train_step_times(args):
    """Times `args.steps` optimiser steps of a preset after `args.warmup`; returns (times, params)."""
    torch.manual_seed(1)
    vocab, seq, d, layers, heads = PRESETS[args.preset]
    batch = 8
    model = Gpt(vocab, seq, d, layers, heads, sdpa=args.attention == "sdpa")
    n_params = sum(p.numel() for p in model.parameters())
    # lossdiff's groups: decay on the linear weights only (not biases, norms or embeddings).
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in named if p.dim() < 2 or n.startswith(("wte", "wpe"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        x = torch.randint(0, vocab, (batch, seq))
        y = torch.randint(0, vocab, (batch, seq))
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return times, n_params


def attention_times(args):
    """Times causal SDPA forward + sum().backward() at T = `args.attention_bench`.

    The same work as lossdiff's flash cell: (1, nh, T, hs) inputs, loss = sum(out), gradients of
    q, k and v. Warm-up runs at T = 128 (thread pool and kernel start-up), then up to `args.steps`
    timed runs at T, stopping once they add up to `args.budget_secs`.
    """
    torch.manual_seed(1)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

    def inputs(t):
        shape = (1, args.heads, t, args.head_dim)
        return [torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3)]

    def run(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()

    warm = inputs(128)
    for _ in range(max(args.warmup, 1)):
        run(*warm)
    q, k, v = inputs(args.attention_bench)
    times = []
    while len(times) < max(args.steps, 1):
        for z in (q, k, v):
            z.grad = None
        start = time.perf_counter()
        run(q, k, v)
        times.append(time.perf_counter() - start)
        if sum(times) >= args.budget_secs:
            break
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attention", choices=["explicit", "sdpa"], default="explicit")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--attention-bench", type=int, metavar="T", help="time causal SDPA fwd+bwd at T")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--budget-secs", type=float, default=float("inf"))
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    if args.attention_bench is not None:
        times = attention_times(args)
        what = (
            f"attention fwd+bwd T={args.attention_bench} {args.dtype} "
            f"nh={args.heads} hs={args.head_dim}"
        )
    else:
        times, n_params = train_step_times(args)
        what = f"{args.preset} ({n_params} params) attention={args.attention}"
    q1, med, q3 = quartiles(times)
    if args.json:
        record = {"median_s": med, "q1_s": q1, "q3_s": q3, "samples": len(times)}
        record["torch"] = torch.__version__
        print(json.dumps(record))
        return
    print(
        f"pytorch {torch.__version__} {what} threads={args.threads}: median {med * 1e3:.1f} ms "
        f"(quartiles {q1 * 1e3:.1f}-{q3 * 1e3:.1f}, {len(times)} runs)"
    )


if __name__ == "__main__":
    main()

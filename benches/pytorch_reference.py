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
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attention", choices=["explicit", "sdpa"], default="explicit")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
    q1, med, q3 = statistics.quantiles(times, n=4)
    print(
        f"pytorch {torch.__version__} {args.preset} ({n_params} params) attention={args.attention} "
        f"threads={args.threads}: median {med * 1e3:.1f} ms/step "
        f"(quartiles {q1 * 1e3:.1f}-{q3 * 1e3:.1f}, {args.steps} steps)"
    )


if __name__ == "__main__":
    main()

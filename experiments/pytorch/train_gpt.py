#!/usr/bin/env python3
"""A small GPT trained in PyTorch (CPU, f32), written as a lossdiff trace: the external arm of
the PyTorch upgrade experiment (experiments/pytorch_upgrade.toml, docs/pytorch-upgrade.md).

The same script runs under two PyTorch releases (one virtualenv each, from
scripts/pytorch-venvs.sh); lossdiff passes every setting from the spec's resolved config, so the
recorded command says what was trained. A run is a pure function of its flags and the PyTorch
build: one intra-op and one inter-op thread, `torch.use_deterministic_algorithms(True)`, weights
from `torch.manual_seed(seed)`, and tokens from Python's own `random` (not torch's), so the data
cannot change with the PyTorch release while everything that does change with it is exercised.

- Model: nanoGPT's architecture (pre-LayerNorm blocks, GELU (erf), tied LM head, biases;
  attention through F.scaled_dot_product_attention, or explicit matmuls and a causal mask with
  `--attention naive`), init normal(0, init_method_std), biases 0.
- Optimiser: AdamW, weight decay on linear weights only, global-norm clipping (lossdiff's groups).
- Schedule: Megatron-LM's `OptimizerParamScheduler.get_lr` (linear warmup, then cosine or
  linear decay to min_lr over lr_decay_iters, min_lr after), as `src/schedule.rs` has it:
  optimiser step s (0-based) trains with lr_at(s).
- Data: a seeded second-order source (the law of lossdiff's synthetic corpus, `src/data.rs`):
  x[t+1] = (perm[x[t]] + (x[t-1] mod 2)·V/2 + o_J) mod V with J ~ q ∝ 1/(j+1), j < K. Its entropy
  rate H(q) is the best loss any model can reach; it is recorded as `loss_floor`.
- `--perturb-seed N` (not 0) moves every initial weight one ulp up or down, the direction drawn
  from N: lossdiff's perturbation ensemble, the "within rounding" yardstick.

`--versions` prints what the lossdiff probe records (`torch 2.15.0+cu132`, `python 3.11.7`, ...)
and exits. The trace is written with python/lossdiff's TraceLogger, imported from this checkout.
"""

import argparse
import math
import os
import random
import sys
import warnings

# The venvs hold torch and its dependencies only; torch works without NumPy but warns on import.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

# Seeds the corpus law (permutation and offsets), fixed for every run like lossdiff's corpus_seed.
CORPUS_SEED = 1234


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", action="store_true", help="print the probe lines and exit")
    p.add_argument("--seed", type=int, default=1234, help="weights and data order")
    p.add_argument("--perturb-seed", type=int, default=0, help="0: none; else nudge every initial weight one ulp")
    p.add_argument("--out", help="trace path (lossdiff-jsonl/1)")
    p.add_argument("--vocab-size", type=int, default=64)
    p.add_argument("--seq-length", type=int, default=32)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-attention-heads", type=int, default=4)
    p.add_argument("--attention", choices=["naive", "flash"], default="flash",
                   help="lossdiff's names: naive = explicit matmuls and a causal mask; "
                   "flash = F.scaled_dot_product_attention (its fused CPU kernel)")
    p.add_argument("--init-method-std", type=float, default=0.02)
    p.add_argument("--layernorm-epsilon", type=float, default=1e-5)
    p.add_argument("--branching", type=int, default=4, help="K: next-token choices per context")
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--train-iters", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--lr-warmup-iters", type=int, default=0)
    p.add_argument("--lr-decay-iters", type=int, default=None, help="default: train-iters")
    p.add_argument("--lr-decay-style", choices=["cosine", "linear"], default="cosine")
    p.add_argument("--adam-beta1", type=float, default=0.9)
    p.add_argument("--adam-beta2", type=float, default=0.95)
    p.add_argument("--adam-eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip-grad", type=float, default=1.0)
    a = p.parse_args(argv)
    if not a.versions and not a.out:
        p.error("--out is required (or --versions)")
    if a.lr_decay_iters is None:
        a.lr_decay_iters = a.train_iters
    if a.lr_decay_iters <= a.lr_warmup_iters:
        p.error(f"--lr-decay-iters ({a.lr_decay_iters}) must exceed --lr-warmup-iters ({a.lr_warmup_iters})")
    if a.hidden_size % a.num_attention_heads:
        p.error("--hidden-size must be a multiple of --num-attention-heads")
    if not 1 <= a.branching <= a.vocab_size or a.vocab_size % 2:
        p.error("--branching must be in 1..vocab-size, and --vocab-size even")
    return a


def lr_at(step, a):
    """Returns the lr optimiser step `step` (0-based) trains with (Megatron's get_lr)."""
    # 1) Linear warmup from 0, inclusive of the last warmup step.
    if a.lr_warmup_iters > 0 and step <= a.lr_warmup_iters:
        return a.lr * step / a.lr_warmup_iters
    # 2) Past the decay horizon: min_lr, constant.
    if step > a.lr_decay_iters:
        return a.min_lr
    # 3) Decay on the ratio of decay progress.
    ratio = (step - a.lr_warmup_iters) / (a.lr_decay_iters - a.lr_warmup_iters)
    coeff = 0.5 * (math.cos(math.pi * ratio) + 1.0) if a.lr_decay_style == "cosine" else 1.0 - ratio
    return a.min_lr + coeff * (a.lr - a.min_lr)


class Corpus:
    """The second-order synthetic source (see the module docs); tokens from Python's `random`."""

    def __init__(self, vocab, branching, corpus_seed):
        rng = random.Random(f"corpus:{corpus_seed}")
        self.vocab = vocab
        self.perm = list(range(vocab))
        rng.shuffle(self.perm)
        self.offsets = rng.sample(range(vocab), branching)
        w = [1.0 / (j + 1) for j in range(branching)]
        self.probs = [x / sum(w) for x in w]

    def floor(self):
        """Entropy rate H(q) in nats: the loss of the true conditional law."""
        return -sum(p * math.log(p) for p in self.probs)

    def batch(self, seed, step, rows, length):
        """Returns `rows` sequences of `length + 1` tokens for one step, a function of (seed, step)."""
        rng = random.Random(f"data:{seed}:{step}")
        half = self.vocab // 2
        out = []
        for _ in range(rows):
            x = [rng.randrange(self.vocab), rng.randrange(self.vocab)]
            while len(x) < length + 1:
                j = rng.choices(range(len(self.offsets)), weights=self.probs)[0]
                x.append((self.perm[x[-1]] + (x[-2] % 2) * half + self.offsets[j]) % self.vocab)
            out.append(x[: length + 1])
        return out


def build_model(a):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d = a.hidden_size
            self.ln_1 = nn.LayerNorm(d, eps=a.layernorm_epsilon)
            self.c_attn = nn.Linear(d, 3 * d)
            self.c_proj = nn.Linear(d, d)
            self.ln_2 = nn.LayerNorm(d, eps=a.layernorm_epsilon)
            self.c_fc = nn.Linear(d, 4 * d)
            self.mlp_proj = nn.Linear(4 * d, d)
            self.register_buffer("mask", torch.ones(a.seq_length, a.seq_length, dtype=torch.bool).tril())

        def attn(self, x):
            b, t, c = x.shape
            nh = a.num_attention_heads
            q, k, v = self.c_attn(x).split(c, dim=2)
            q, k, v = (z.view(b, t, nh, c // nh).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
            if a.attention == "flash":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // nh))  # (B, nh, T, T)
                att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(dim=-1)
                y = att @ v  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
            return self.c_proj(y)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(a.vocab_size, a.hidden_size)
            self.wpe = nn.Embedding(a.seq_length, a.hidden_size)
            self.h = nn.ModuleList(Block() for _ in range(a.num_layers))
            self.ln_f = nn.LayerNorm(a.hidden_size, eps=a.layernorm_epsilon)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, mean=0.0, std=a.init_method_std)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

        def forward(self, idx, targets):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head, (B, T, V)
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    return Gpt()


def perturb(model, perturb_seed):
    """Moves every parameter one ulp up or down, the direction drawn from `perturb_seed`."""
    import torch

    g = torch.Generator().manual_seed(perturb_seed)
    with torch.no_grad():
        for p in model.parameters():
            up = torch.rand(p.shape, generator=g) < 0.5
            p.copy_(
                torch.where(
                    up,
                    torch.nextafter(p, torch.full_like(p, math.inf)),
                    torch.nextafter(p, torch.full_like(p, -math.inf)),
                )
            )


def versions():
    """Returns the probe lines: `name version`, one per line (lossdiff keys them by name)."""
    import platform

    import torch

    return [
        f"torch {torch.__version__}",
        f"python {platform.python_version()}",
        f"torch_cuda_build {torch.version.cuda}",
        f"torch_cpu_capability {torch.backends.cpu.get_cpu_capability()}",
        f"torch_git {torch.version.git_version}",
    ]


def main(argv=None):
    a = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    if a.versions:
        print("\n".join(versions()))
        return
    from lossdiff import TraceLogger

    corpus = Corpus(a.vocab_size, a.branching, CORPUS_SEED)
    torch.manual_seed(a.seed)
    model = build_model(a)
    if a.perturb_seed:
        perturb(model, a.perturb_seed)
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in named if p.dim() < 2 or n.startswith(("wte", "wpe"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(a.adam_beta1, a.adam_beta2),
        eps=a.adam_eps,
    )
    # What the run trained: every setting except where it writes and the perturbation (which
    # lossdiff records as a seed), plus the corpus facts.
    config = {k: v for k, v in vars(a).items() if k not in ("out", "versions", "perturb_seed", "seed")}
    config.update(corpus_seed=CORPUS_SEED, loss_floor=corpus.floor(), threads=1, dtype="float32")
    with TraceLogger(a.out, config=config, seed=a.seed, versions=dict(l.split(" ", 1) for l in versions())) as log:
        for step in range(a.train_iters):
            lr = lr_at(step, a)
            for group in opt.param_groups:
                group["lr"] = lr
            tokens = torch.tensor(corpus.batch(a.seed, step, a.micro_batch_size, a.seq_length))
            loss = model(tokens[:, :-1], tokens[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad)
            opt.step()
            log.log(step + 1, loss=loss.item(), lr=lr, grad_norm=grad_norm.item())


if __name__ == "__main__":
    main()

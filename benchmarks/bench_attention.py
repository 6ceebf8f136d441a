"""Attention on crossbars (not a test): run ``python benchmarks/bench_attention.py``.

vit-tiny (``--model vit-tiny``, the default) or a one-encoder softmax-attention classifier
(``--model tiny``: 8×8 images in 2×2 patches, 16 tokens of 4 pixels, width 32, 2 heads,
pre-norm encoder with an MLP, mean pooling) or spikformer-tiny (``--model spikformer-tiny``:
the image repeated over 4 time steps, logits averaged) is trained digitally on digits. The
written operands (K and V) are described on 256 training images: the kurtosis of their
entries, the largest in standard deviations, the share above β of the largest. Then:

1. **Write-noise sweep** (ClipFormer's experiment, :func:`spikecim.analog.write_sweep.write_noise_sweep`):
   K and V written into RRAM-like crossbars at every inference (g_max 10 µS = 1/100 kΩ,
   on/off 100, 8-bit weights at 2 bits per cell, 8-bit DAC, as ClipFormer's setup), static
   projections on the same crossbars; accuracy against γ ∈ {0, 3, 4, 5} with ClipFormer off
   and on (α = 2, β = ``--beta``), K and V mapped per tile or with one range per product
   calibrated on 256 training images (``--operand-range``, ``--percentile``), before and
   after hardware-aware (variation-aware) training;
   mean over programming seeds. Writes ``attention_write_noise.png`` and the JSON.
   ``--k-outlier M`` first adds to the first K channel of every head a constant M times the
   largest |K| of that attention on 256 training images (through the bias of the K
   projection): every query's scores move by the same amount for every key, so softmax and
   the digital model are unchanged (checked: the logits before and after agree to 1e-4),
   but K now has the outlier channel, constant across tokens, that sets its range. This
   tests ClipFormer's premise that the clip cuts a few large entries the output does not
   need (BENCHMARKS.md#attention-on-crossbars). ``--shift alpha`` uses the paper's shift
   by α·G_min instead of (α − 1)·G_min.
2. **Speed**: the noisy analog forward (write noise γ = 5, ClipFormer, PCM read noise on the
   static layers) against the digital forward of the same model and batch, median of
   ``--repeats`` runs, side by side in one process.

``--out DIR`` (default a temporary folder) receives the figures; ``--json PATH`` the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spikecim import ops
from spikecim.analog import load_crossbar_config, program, to_analog
from spikecim.analog.mitigation import WeightModifier, hwa_train
from spikecim.analog.write_sweep import plot_write_noise_sweep, write_noise_sweep
from spikecim.data import load_dataset
from spikecim.train.evaluate import ModelInput

CROSSBAR = {  # ClipFormer's setup (Bhattacharjee et al., TCAD 2024): RRAM, R_min 100 kΩ, on/off 100
    "device": "ideal",
    "r_on_ohm": 100_000.0,
    "r_off_ohm": 10_000_000.0,
    "weight_bits": 8,
    "bits_per_cell": 2,
    "dac_bits": 8,
    "tile_rows": 64,
    "tile_cols": 64,
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.qk, self.av = ops.MatMul(), ops.MatMul()
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        def split(t):
            return t.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = self.softmax(self.qk(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1]))
        return self.o(self.av(a, v).transpose(-3, -2).flatten(-2))


class TinyViT(nn.Module):
    """Patch embedding, one pre-norm encoder (attention + MLP), mean pooling, classifier."""

    def __init__(self, dim: int = 32, heads: int = 2, patch: int = 2, classes: int = 10):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch * patch, dim)
        self.pos = nn.Parameter(torch.zeros(1, (8 // patch) ** 2, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        p = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2)  # [B, tokens, patch²]
        t = self.embed(p) + self.pos
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.head(t.mean(1))


class OneStep(nn.Module):
    """A time-major model (``x[T, B, ...] -> logits[T, B, classes]``, vit-tiny) run for one
    step on ``x[B, ...]``: ``model(x[None])[0]``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x[None])[0]


class RateCoded(nn.Module):
    """A spiking model on ``x[B, ...]``: the image repeated over ``steps`` time steps (direct
    input), the logits averaged over them."""

    def __init__(self, model: nn.Module, steps: int = 4):
        super().__init__()
        self.model, self.steps = model, steps

    def forward(self, x):
        return self.model(x[None].expand(self.steps, *x.shape)).mean(0)


def build(name: str) -> nn.Module:
    if name == "tiny":
        return TinyViT()
    from spikecim.models import create_model

    kw = {"num_classes": 10, "in_channels": 1, "input_size": 8}
    if name == "spikformer-tiny":
        return RateCoded(create_model("spikformer-tiny", spiking=True, **kw))
    return OneStep(create_model("vit-tiny", spiking=False, **kw))


def written_operand_stats(model: nn.Module, x: torch.Tensor, beta: float) -> dict[str, dict]:
    """Per MatMul, over the written operands ``b`` of ``model(x)``: the kurtosis of the entries
    (3 for a Gaussian), the largest |entry| in standard deviations, and the share of entries
    above β of the largest |entry| (those ClipFormer's clip cuts with a range fixed at it)."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.setdefault(name, []).append(args[1]))
        for name, m in model.named_modules()
        if isinstance(m, ops.MatMul)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    stats = {}
    for name, parts in seen.items():
        b = torch.cat([p.flatten() for p in parts]).double()
        c = b - b.mean()
        largest = float(b.abs().max())
        stats[name] = {
            "kurtosis": float((c**4).mean() / (c**2).mean() ** 2),
            "max_over_std": largest / float(b.std()),
            "above_beta": float((b.abs() > beta * largest).double().mean()),
        }
    return stats


def train(model, x, y, epochs: int, seed: int = 0, lr: float = 3e-3) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def add_key_outlier(model: nn.Module, x: torch.Tensor, mult: float) -> nn.Module:
    """``model`` (changed in place) with ``mult`` × max|K| added to the first K channel of
    every head of every attention (module docstring): q·(k + c·e_j) = q·k + c·q_j is the same
    for every key, and softmax ignores a constant added to a row of scores."""
    attentions = [
        m for m in model.modules() if isinstance(getattr(m, "k", None), nn.Linear) and hasattr(m, "heads")
    ]
    if not attentions:
        raise SystemExit("--k-outlier: the model has no attention with a K projection")
    keys = {}
    hooks = [
        a.k.register_forward_hook(lambda mod, i, o, a=a: keys.__setitem__(a, o.detach())) for a in attentions
    ]
    with torch.no_grad():
        before = model(x)
        for h in hooks:
            h.remove()
        for a in attentions:
            head_dim = a.k.out_features // a.heads
            a.k.bias[::head_dim] += mult * float(keys[a].abs().max())
        diff = float((model(x) - before).abs().max())
    if diff > 1e-4 * max(1.0, float(before.abs().max())):
        raise SystemExit(
            f"--k-outlier: the logits moved by {diff:g}; the outlier must leave softmax unchanged"
        )
    return model


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        choices=["vit-tiny", "tiny", "spikformer-tiny"],
        default="vit-tiny",
        help="vit-tiny (registered), the one-encoder model above, or spikformer-tiny (4 steps, direct input)",
    )
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--operand-range",
        choices=["tile", "calibrated"],
        default="calibrated",
        help="K/V mapping: each tile by its abs-max, or one range per product calibrated on 256 training images",
    )
    ap.add_argument("--beta", type=float, default=0.25, help="ClipFormer's clip β (α = 2)")
    ap.add_argument(
        "--shift",
        choices=["alpha_minus_one", "alpha"],
        default="alpha_minus_one",
        help="ClipFormer's shift: (α − 1)·G_min (α = 1: none) or α·G_min (the paper's formula as printed)",
    )
    ap.add_argument(
        "--k-outlier",
        type=float,
        default=0.0,
        help="add a K channel constant across tokens, this many times max|K|, to every head (softmax-invariant)",
    )
    ap.add_argument(
        "--percentile",
        type=float,
        default=100.0,
        help="percentile of |K|, |V| for --operand-range calibrated",
    )
    ap.add_argument("--seeds", type=int, default=5, help="programming seeds per point")
    ap.add_argument("--sigma", type=float, default=None, help="write-noise σ (default: the config's)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--samples", type=int, default=None, help="test samples of the sweep (default: all 450)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)"
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="spikecim-attention-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data = load_dataset("digits")
    model = train(
        build(args.model), data.x_train, data.y_train, args.epochs, lr=3e-3 if args.model == "tiny" else 2e-3
    )
    if args.k_outlier:
        model = add_key_outlier(model, data.x_train[:256], args.k_outlier)
    stats = written_operand_stats(model, data.x_train[:256], args.beta)
    for name, st in stats.items():
        print(
            f"written {name}: kurtosis {st['kurtosis']:.1f}, largest {st['max_over_std']:.1f} std, "
            f"{st['above_beta'] * 100:.1f} % above β of the largest"
        )
    vat = hwa_train(
        model,
        data.x_train,
        data.y_train,
        WeightModifier(kind="add_normal", std=0.05),
        5,
        1e-3,
        None,
        "direct",
    ).eval()
    crossbar = dict(CROSSBAR)
    crossbar["dynamic"] = {
        "operand_range": args.operand_range,
        "operand_percentile": args.percentile,
        "clipformer": {"alpha": 2.0, "beta": args.beta, "shift": args.shift},
    }
    if args.sigma is not None:
        crossbar["dynamic"]["write_noise_sigma"] = args.sigma
    cfg = load_crossbar_config(crossbar)
    n = args.samples
    ideal = {
        "plain": accuracy(model, data.x_test[:n], data.y_test[:n]),
        "hwa": accuracy(vat, data.x_test[:n], data.y_test[:n]),
    }
    gammas = [0.0, 3.0, 4.0, 5.0]
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    x_test, y_test = data.x_test[: args.samples], data.y_test[: args.samples]
    sweep = write_noise_sweep(
        {"plain": model, "hwa": vat}, x_test, y_test, cfg, gammas, seeds, ModelInput(None), data.x_train[:256]
    )
    sweep_s = time.perf_counter() - start
    title = (
        f"{args.model} on digits, K/V range {args.operand_range}, β = {args.beta:g}\n"
        f"RRAM, 8-bit entries in 2-bit cells, σ = {cfg.dynamic.write_noise_sigma:g}"
    )
    if args.k_outlier:
        title += f", K outlier {args.k_outlier:g} × max|K|"
    plot_write_noise_sweep(sweep, ideal, out / "attention_write_noise.png", title)

    # speed: noisy analog (write noise γ = 5 + ClipFormer + PCM read noise) vs digital forward
    noisy = load_crossbar_config(
        {
            "preset": "pcm-aihwkit",
            "dynamic": {"unit": "crossbar", "write_noise_gamma": 5.0, "clipformer": {"enabled": True}},
        }
    )
    am = program(to_analog(model, noisy), 0)
    x = data.x_test[:256]
    with torch.no_grad():
        t_digital = median_time(lambda: model(x), args.repeats)
        t_analog = median_time(lambda: am(x), args.repeats)
    result = {
        "k_outlier": args.k_outlier,
        "written_operands": stats,
        "ideal": ideal,
        "crossbar": crossbar,
        "write_noise_sigma": cfg.dynamic.write_noise_sigma,
        "sweep": sweep,
        "sweep_seconds": sweep_s,
        "speed": {
            "batch": len(x),
            "threads": torch.get_num_threads(),
            "digital_ms": t_digital * 1e3,
            "analog_ms": t_analog * 1e3,
            "ratio": t_analog / t_digital,
        },
        "figure": str(out / "attention_write_noise.png"),
    }
    print(f"digital accuracy: plain {ideal['plain']:.4f}, after HWA training {ideal['hwa']:.4f}")
    print("| training | ClipFormer | " + " | ".join(f"γ = {g:g}" for g in gammas) + " |")
    print("|---|---|" + "---|" * len(gammas))
    for c in sweep["curves"]:
        cells = " | ".join(f"{m * 100:.1f} ± {s * 100:.1f}" for m, s in zip(c["mean"], c["std"]))
        print(f"| {c['training']} | {'on' if c['clipformer'] else 'off'} | {cells} |")
    sp = result["speed"]
    print(
        f"forward of {sp['batch']} samples ({sp['threads']} threads): digital {sp['digital_ms']:.2f} ms, "
        f"noisy analog {sp['analog_ms']:.2f} ms, ratio {sp['ratio']:.2f}"
    )
    print(f"figure: {result['figure']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

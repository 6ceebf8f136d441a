"""``vit-tiny``: a DeiT-style vision transformer (Dosovitskiy et al. 2021; Touvron et al.
2021, DeiT), sized for 8x8 digits in 2x2 patches (16 tokens) and for 32x32 images in 4x4
patches (64 tokens).

    tokens = Conv(stride patch)(image) + position              (+ a class token, pool="cls")
    encoder (pre-norm), ``depth`` times:
        a = Attention(LN(x));  x = x + a;  x = x + MLP(LN(x)),  MLP = Linear-GELU-Linear
    logits = Linear(mean over tokens of LN(x))   or of the class token (pool="cls")

Defaults: width 64, depth 2, 4 heads, MLP ratio 2, mean pooling, overlapping patches (2
encoders: 4 overfit digits without augmentation, docs/transformers.md).
``width`` (the multiplier every model takes) scales the width per head. The patch is 2 for
inputs up to 16 pixels, 4 above (1 below 4 pixels), or the largest patch under that which
divides the input; ``patch_size`` sets it, and it must divide the input size.
``embed="overlap"`` reads overlapping patches (kernel 2p − 1, stride p: the same token grid,
the convolutional stem of Xiao et al. 2021, "Early convolutions help transformers see
better"), which small data sets without augmentation need (docs/transformers.md: on digits
96.9 % against 92.7 % with ``embed="patch"``, ViT's non-overlapping patches).

The softmax transformer has no spiking form: ``create_model("vit-tiny", spiking=True)`` is
the Spikformer (:mod:`spikecim.models.spikformer`) of the same patch, width, depth, heads
and MLP ratio, so a run's ``snn`` and ``ann`` variants compare the spiking transformer with
the ViT (docs/transformers.md).

Every encoder's forward is ``(x, previous attention output) -> (x, its attention output)``,
so TReX (:mod:`spikecim.models.trex`) can replace an encoder's attention by a block that
reads the previous encoder's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.models._layers import check_width, scaled
from spikecim.models._registry import register_model
from spikecim.models.attention import SoftmaxAttention, check_block_steps
from spikecim.nn import BatchNorm2d, apply_folded
from spikecim.nn.linear import Linear

__all__ = ["Encoder", "PatchEmbedding", "VisionTransformer", "patch_for", "vit_tiny"]


def patch_for(input_size: int, patch_size: int | None) -> int:
    """The patch side: ``patch_size``, which must divide the input; else 1 below 4 pixels, 2 up
    to 16, 4 above, or the largest side under that which divides the input (2 for 34 pixels)."""
    p = patch_size
    if p is None:
        p = 1 if input_size < 4 else 2 if input_size <= 16 else 4
        p = max(d for d in range(1, p + 1) if input_size % d == 0)
    if isinstance(p, bool) or not isinstance(p, int) or p < 1 or input_size % p:
        raise SpikecimError(
            f"model.patch_size: must be a positive divisor of the input size {input_size}, got {p!r}"
        )
    return p


class PatchEmbedding(nn.Module):
    """``x[B, C, H, W] -> tokens[B, N(+1), D]``: a patch convolution (followed by BatchNorm
    with ``norm``, Spikformer's), a learned position per token and, with ``cls_token``, a
    learned class token in front. The position and class token are added, never on a crossbar.

    ``overlap``: the convolution reads overlapping patches (kernel 2p − 1, stride p, padding
    p − 1: the same token grid), else ViT's non-overlapping p × p patches."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        patch: int,
        grid: int,
        cls_token: bool,
        norm: bool = False,
        overlap: bool = False,
    ) -> None:
        super().__init__()
        kernel, pad = (2 * patch - 1, patch - 1) if overlap else (patch, 0)
        self.conv = nn.Conv2d(in_channels, dim, kernel, patch, pad, bias=not norm)
        self.bn = BatchNorm2d(dim) if norm else nn.Identity()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.position = nn.Parameter(torch.randn(grid * grid + int(cls_token), dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.bn(self.conv(x)).flatten(2).transpose(1, 2)
        if self.cls is not None:
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.position


class Encoder(nn.Module):
    """A pre-norm encoder: ``a = attn(norm1(x)); x = x + a; x = x + mlp(x)`` where ``mlp``
    is the whole residual branch ``LN -> Linear -> GELU -> Linear``."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SoftmaxAttention(dim, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), Linear(dim, hidden), nn.GELU(), Linear(hidden, dim))

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attn(self.norm1(x))
        x = x + a
        return x + self.mlp(x), a


class VisionTransformer(nn.Module):
    """``x[T, B, C, H, W] -> logits[T, B, classes]``, each step on its own (T = 1 as an ANN)."""

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        patch: int,
        pool: str,
        embed: str,
    ) -> None:
        super().__init__()
        self.pool = check_pool(pool)
        self.embed = PatchEmbedding(
            in_channels, dim, patch, input_size // patch, pool == "cls", overlap=check_embed(embed)
        )
        self.blocks = nn.ModuleList(Encoder(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = Linear(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        t, prev = self.embed(x), None
        for block in self.blocks:
            t, prev = block(t, prev)
        t = self.norm(t)
        return t[:, 0] if self.pool == "cls" else t.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_folded(lambda z: self.head(self.features(z)), x)


@register_model("vit-tiny")
def vit_tiny(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    width: float = 1.0,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    patch_size: int | None = None,
    embed: str = "overlap",
    pool: str = "mean",
    block_steps: int | None = None,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> nn.Module:
    """The ViT (``spiking=False``) or, as its spiking form, the Spikformer of the same size
    (``pool`` is the ViT's; ``block_steps`` the Spikformer's STAtten option). Every argument
    of either form is checked at the door, whichever form is built."""
    check_pool(pool)
    check_embed(embed)
    check_block_steps(block_steps)
    sizes = transformer_sizes("vit-tiny", width, dim, depth, heads, mlp_ratio)
    patch = patch_for(input_size, patch_size)
    if spiking:
        from spikecim.models.spikformer import spikformer_tiny

        return spikformer_tiny(
            spiking=True,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            width=width,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            embed=embed,
            block_steps=block_steps,
            neuron=neuron,
            neuron_kw=neuron_kw,
        )
    dim, hidden = sizes
    return VisionTransformer(
        in_channels, input_size, num_classes, dim, depth, heads, hidden, patch, pool, embed
    )


def check_pool(pool: str) -> str:
    """``pool`` checked at the door: ``"cls"`` (the class token) or ``"mean"`` (over the tokens)."""
    if pool not in ("cls", "mean"):
        raise SpikecimError(f"model.pool: must be 'cls' or 'mean', got {pool!r}")
    return pool


def check_embed(embed: str) -> bool:
    """``embed`` checked at the door: True for overlapping patches."""
    if embed not in ("overlap", "patch"):
        raise SpikecimError(f"model.embed: must be 'overlap' or 'patch', got {embed!r}")
    return embed == "overlap"


def transformer_sizes(
    name: str, width: float, dim: int, depth: int, heads: int, mlp_ratio: float
) -> tuple[int, int]:
    """``(D, hidden)``: the embedding width ``heads · scaled(dim / heads, width)`` (a multiple
    of the heads) and the MLP width ``round(D · mlp_ratio)``; every size checked at the door."""
    width = check_width(name, width)
    for field, v in (("dim", dim), ("depth", depth), ("heads", heads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikecimError(f"model.{field}: must be a positive integer, got {v!r}")
    if dim % heads:
        raise SpikecimError(f"model.heads: must divide model.dim {dim}, got {heads}")
    if not (
        isinstance(mlp_ratio, (int, float))
        and not isinstance(mlp_ratio, bool)
        and math.isfinite(mlp_ratio)
        and mlp_ratio > 0
    ):
        raise SpikecimError(f"model.mlp_ratio: must be a finite number > 0, got {mlp_ratio!r}")
    d = heads * scaled(dim // heads, width)
    return d, max(1, round(d * mlp_ratio))

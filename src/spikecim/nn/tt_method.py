"""The method transform ``tt``: a model's convolutions as tensor-train cores (TT-SNN).

In a run config::

    variants:
      - name: snn-tt
        methods: [{name: tt, rank: 8, mode: htt}]

replaces every ``nn.Conv2d`` with a ``kh x kw`` window (both sides > 1), groups 1, dilation 1
and zero padding by a :class:`~spikecim.nn.tt.TTConv2d` of the same shape, except the
model's first convolution (``first: true`` replaces it too); 1x1 convolutions (residual
shortcuts) stay dense. Options:

- ``rank`` (integer >= 1): the TT rank of every core;
- ``mode``: ``stt``, ``ptt`` or ``htt`` (default ``stt``);
- ``from_trained`` (default false): start the cores from the TT-SVD of the convolution's
  weight, rather than PyTorch's default initialisation (training from scratch);
- ``weights``: with ``from_trained``, a safetensors state_dict of the dense model (e.g.
  ``runs/<name>/checkpoint/snn.safetensors`` of a finished run of the same model) loaded
  before the decomposition. Without it, ``from_trained`` decomposes the weights the model
  holds (in Python: a model you trained; in a run: its fresh initialisation).
- ``first`` (default false): replace the first convolution too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrize import type_before_parametrizations

from spikecim.errors import SpikecimError
from spikecim.methods import read_options, register_method
from spikecim.nn.conv import Conv2d
from spikecim.nn.tt import TTConv2d
from spikecim.schema import Schema

__all__ = ["TTOptions", "tt"]


class TTOptions(Schema):
    """Options of the ``tt`` method (see the module docstring)."""

    rank: int = Field(gt=0, le=65536, description="TT rank of every core")
    mode: Literal["stt", "ptt", "htt"] = Field("stt", description="sequential, parallel or hybrid cores")
    from_trained: bool = Field(False, description="start the cores from the TT-SVD of the weights")
    weights: str | None = Field(
        None, min_length=1, description="dense model weights (safetensors) to decompose"
    )
    first: bool = Field(False, description="replace the model's first convolution too")


@register_method("tt", changes={"conv-structure"})
def tt(model: nn.Module, **options) -> nn.Module:
    """Replace the model's convolutions by :class:`TTConv2d` (in place; returns the model)."""
    opts = read_options(TTOptions, "tt", options)
    if opts.weights is not None:
        if not opts.from_trained:
            raise SpikecimError("methods.tt.weights: only read with from_trained: true")
        from spikecim.train.checkpoint import load_weights

        path = Path(opts.weights).expanduser()
        if not path.is_file():
            raise SpikecimError(f"methods.tt.weights: {path} is not a file")
        load_weights(model, path)
    first = next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    convs = [
        (name, m) for name, m in model.named_modules() if _decomposable(m) and (opts.first or name != first)
    ]
    parametrised = next((name for name, m in convs if parametrize.is_parametrized(m)), None)
    if parametrised is not None:
        raise SpikecimError(
            f"methods.tt: the convolution '{parametrised}' is parametrised by a method listed before tt "
            "(prune, weight-qat, mint); list tt first, and those methods act on its cores"
        )
    if not convs:
        raise SpikecimError(
            f"methods.tt: {type(model).__name__} has no k x k Conv2d (k > 1) to decompose"
            + ("" if opts.first or first is None else " besides the first (set first: true)")
        )
    for name, conv in convs:
        if opts.from_trained:
            layer = TTConv2d.from_conv(conv, opts.rank, opts.mode)
        else:
            layer = TTConv2d(
                conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride),
                tuple(conv.padding), conv.bias is not None, opts.rank, opts.mode,
            ).to(device=conv.weight.device, dtype=conv.weight.dtype)  # fmt: skip
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, layer)
    return model


def _decomposable(m: nn.Module) -> bool:
    return (
        # other subclasses (analog, quantised) are other layers; a parametrised one is refused above
        type_before_parametrizations(m) in (nn.Conv2d, Conv2d)
        and min(m.kernel_size) > 1
        and m.groups == 1
        and tuple(m.dilation) == (1, 1)
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )

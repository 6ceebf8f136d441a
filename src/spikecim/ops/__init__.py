"""The operator registry: what a synaptic operator is, in one place.

For each operator kind (``linear``, ``conv1d``, ``conv2d``, ``matmul`` of two activations)
one :class:`Op` says how it is

- **recognised**: ``isinstance(module, Op.modules)``, so subclasses (``class
  QLinear(nn.Linear)``) are the same operator;
- **traced**: the accumulates triggered by the non-zero entries of its streamed input, those
  of them that meet a non-zero weight (pruned, exactly-zero weights skipped), and the
  kind-specific fields of its :mod:`Workload <spikecim.trace.workload>` entry;
- **converted to analog**: the crossbar twin ``to_analog`` puts in its place, or ``None``
  when it stays digital (a matmul of two activations has no programmed weight: its twin, a
  crossbar written at every call, exists only when the config's ``dynamic`` section asks);
- **exported to NIR**: the node(s) it becomes, or a one-line error naming it;
- **described in the Workload**: by its ``kind`` tag, which names the entry class.

The tracer, ``to_analog``, the mitigation passes and the NIR exporter ask :func:`find`;
none of them keeps its own list. A new operator is one file and one decorator::

    @register_op
    class MyOp(Op):
        kind = "myop"                 # a Workload entry kind (spikecim.trace.workload)
        modules = (MyModule,)
        ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "MatMul",
    "Op",
    "find",
    "get_op",
    "list_ops",
    "programmed_layers",
    "programmed_weights",
    "register_op",
]


class Op(ABC):
    """One operator kind. Every hook is abstract except ``weighted_accumulates`` (default: the
    accumulates, for an operator without a static weight) and ``to_analog`` (default: stays
    digital)."""

    kind: ClassVar[str] = ""
    modules: ClassVar[tuple[type, ...]] = ()
    operands_in: ClassVar[int] = 1  # activation inputs of forward: 1, or 2 for a matmul of activations
    on_crossbar: ClassVar[bool] = False  # to_analog gives a crossbar twin (its weight is programmed)

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, self.modules)

    @abstractmethod
    def sample_ndim(self, module: nn.Module) -> int | None:
        """Dimensions of one sample of the streamed input (``None``: any, e.g. a linear layer
        applied to ``[..., S, F]``); the tracer uses it to read the time/batch layout."""

    @abstractmethod
    def accumulates(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Accumulates triggered by the non-zero entries of the streamed input, per row:
        ``inputs`` are the forward's activation inputs as ``[N, *sample]``; returns ``[N]``."""

    def weighted_accumulates(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The accumulates whose two operands are both non-zero, per row ``[N]``: (non-zero
        input, non-zero weight) pairs, the weight read as ``module.weight`` (a parametrised
        module gives its effective weight there). Default: ``accumulates``, for an operator
        without a static weight (a matmul of two activations)."""
        return self.accumulates(module, inputs)

    @abstractmethod
    def describe(
        self, module: nn.Module, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]
    ) -> dict:
        """The kind-specific fields of the Workload entry, from the module and the per-sample
        shapes of its inputs and output (the tracer adds activity, bits and the neuron)."""

    @abstractmethod
    def static_weight(self, module: nn.Module) -> torch.Tensor | None:
        """The weight programmed once (crossbar conductances), or ``None`` (dynamic operands)."""

    @abstractmethod
    def to_nir(self, writer, module: nn.Module, name: str, prev: str | None):
        """Add the NIR node(s): ``(entry nodes, exit node)``, or raise a one-line SpikecimError."""

    def to_analog(self, module: nn.Module, config) -> nn.Module | None:
        """The crossbar twin of ``module``, or ``None`` when the operator stays digital."""
        return None


_OPS: dict[str, Op] = {}


def register_op(cls: type[Op]) -> type[Op]:
    """Register an operator kind (class decorator). Refuses an abstract or unnamed class."""
    if not cls.kind or not cls.modules:
        raise TypeError(f"{cls.__name__}: an operator needs a kind and the modules it recognises")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TypeError(f"{cls.__name__}: operator hooks not implemented: {', '.join(missing)}")
    _OPS[cls.kind] = cls()
    return cls


def find(module: nn.Module) -> Op | None:
    """The operator ``module`` is an instance of, or ``None`` (not a synaptic operator).
    The most recently registered match wins, so a plug-in can refine a built-in kind."""
    for op in reversed(list(_OPS.values())):
        if op.matches(module):
            return op
    return None


def get_op(kind: str) -> Op:
    if kind not in _OPS:
        raise KeyError(f"operator kind '{kind}' is not registered, allowed: {', '.join(sorted(_OPS))}")
    return _OPS[kind]


def list_ops() -> list[str]:
    return sorted(_OPS)


def programmed_layers(model: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, module, weight)`` of every operator ``to_analog`` programs onto crossbars, in
    module order: the operators with a crossbar twin and a static weight, that weight as the
    layer computes it (after its parametrisations, if any)."""
    out = []
    for name, m in model.named_modules():
        op = find(m)
        w = op.static_weight(m) if op is not None and op.on_crossbar else None
        if w is not None:
            out.append((name, m, w))
    return out


def programmed_weights(model: nn.Module) -> list[nn.Parameter]:
    """The trained tensors behind the weights of :func:`programmed_layers`: the static weight
    itself, or, where it is parametrised (``torch.nn.utils.parametrize``: pruning masks,
    weight QAT, MINT), the parameter it is computed from (``parametrizations.weight.original``),
    so that what is written into these tensors reaches the forward."""
    return [
        m.parametrizations["weight"].original if parametrize.is_parametrized(m, "weight") else w
        for _, m, w in programmed_layers(model)
    ]


# the built-in operators register themselves on import
from spikecim.ops import conv, linear, matmul  # noqa: F401
from spikecim.ops.matmul import MatMul

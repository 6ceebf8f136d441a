"""Shared LIF state (EfficientLIF-Net; docs/references.md#efficientlif-net).

Kim, Li, Moitra, Yin and Panda (Front. Neurosci. 2023) store one membrane where a plain
SNN stores many. The equation is still :func:`spikecim.nn.functional.lif_step`; only the
order in which one membrane meets the inputs changes.

**Channel groups** (:class:`SharedLIF`, ``channel_groups = G``): the C channels of one step
``x[t][B, C, ...]`` are split into G contiguous chunks of C/G channels, processed in sequence
by one neuron of C/G channels. Chunk g at step t integrates onto the membrane chunk g-1 left
at step t; chunk 0 at step t onto the membrane chunk G-1 left at step t-1. This is the LIF
run over a sequence of T·G steps ``(t, g)`` in lexicographic order, which is how it is
computed (:func:`to_group_steps`), so the fused kernels apply unchanged. As the public code
(``archs/vgg/vgg_channelshare.py``, ``channel_divlif``) does.

**Across layers** (:class:`SharedStage`): L neuron layers of one stage whose outputs have the
same shape use one neuron. Layer l at step t integrates onto the membrane layer l-1 left at
step t; layer 0 at step t onto the membrane layer L-1 left at step t-1; the membrane starts
at zero for (t = 0, l = 0). Layer l+1 at step t needs layer l's spikes at step t, so the
stage runs step by step: for t, for l: synaptic layers of l, then the shared neuron (with G
channel groups, the (t, l, g) chain). As the public code (``archs/vgg/vgg_layershare.py``,
one ``LIFNode`` called by every layer of a stage inside the time loop).

"The membrane a use leaves" is the state :func:`~spikecim.nn.functional.lif_step`
returns: after the reset with the same-step reset (``reset_delay=False``, the public code's
SpikingJelly convention); with the delayed reset (snnTorch's default) the reset of a spike
is applied by the next use, exactly as for one neuron used in sequence.

BatchNorm layers inside a shared stage see one step's batch ``[B, ...]`` at a time (as in
the public code's time loop), where the unshared network normalises over ``T·B`` at once;
in evaluation mode the two are the same.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import functional as F
from spikecim.nn.neurons import IF, LIF, TemporalModule
from spikecim.trace.steps import at_step

__all__ = ["MembraneCell", "SharedLIF", "SharedStage", "from_group_steps", "to_group_steps"]


def to_group_steps(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``x[T, B, C, ...] -> [T*G, B, C/G, ...]``: step ``t*G + g`` holds channel chunk g of step t."""
    T, B, C = x.shape[:3]
    rest = x.shape[3:]
    return (
        x.reshape(T, B, groups, C // groups, *rest).transpose(1, 2).reshape(T * groups, B, C // groups, *rest)
    )


def from_group_steps(y: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse of :func:`to_group_steps`: ``[T*G, B, C/G, ...] -> [T, B, C, ...]``."""
    TG, B, Cg = y.shape[:3]
    rest = y.shape[3:]
    return (
        y.reshape(TG // groups, groups, B, Cg, *rest)
        .transpose(1, 2)
        .reshape(TG // groups, B, groups * Cg, *rest)
    )


class SharedLIF(LIF):
    """A LIF whose C channels form ``channel_groups`` chunks sharing one membrane of C/G channels.

    Takes ``x[T, B, C, ...]`` like any neuron (channels on dim 2, features for a linear
    layer); its state is :class:`~spikecim.nn.functional.LIFState` with a membrane
    ``[B, C/G, ...]``. With ``channel_groups=1`` it is the LIF. beta and theta are one value
    each (a shared neuron has one set of parameters). Other arguments as :class:`LIF`.
    """

    def __init__(self, *args, channel_groups: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(channel_groups, bool) or not isinstance(channel_groups, int) or channel_groups < 1:
            raise SpikecimError(f"channel_groups: must be an integer >= 1, got {channel_groups!r}")
        for name in ("beta", "threshold"):
            if getattr(self, name).numel() != 1:
                raise SpikecimError(
                    f"{name}: a shared LIF takes one value, got {getattr(self, name).numel()}"
                )
        self.channel_groups = channel_groups

    @classmethod
    def from_lif(cls, lif: LIF, channel_groups: int = 1) -> SharedLIF:
        """A shared LIF with ``lif``'s parameters (learnable ones stay learnable)."""
        if type(lif) not in (LIF, IF, cls):
            raise SpikecimError(f"shared-lif: shares LIF and IF neurons only, got {type(lif).__name__}")
        new = cls(
            beta=lif.beta.detach(),
            threshold=lif.threshold.detach(),
            reset=lif.reset,
            reset_delay=lif.reset_delay,
            detach_reset=lif.detach_reset,
            surrogate=lif.surrogate,
            learn_beta=isinstance(lif.beta, nn.Parameter),
            learn_threshold=isinstance(lif.threshold, nn.Parameter),
            backend=lif.backend,
            channel_groups=channel_groups,
        )
        # A membrane quantiser set by an earlier method (squat) stays on the shared membrane.
        new.membrane_quant = lif.membrane_quant
        new.quantize_after = lif.quantize_after
        new.membrane_bits = lif.membrane_bits
        return new

    def _check_channels(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[2] % self.channel_groups:
            got = "no channel dimension" if x.dim() < 3 else f"{x.shape[2]} channels"
            raise SpikecimError(
                f"channel_groups: {self.channel_groups} groups must divide the channels of x[T, B, C, ...], got {got}"
            )

    def initial_state(self, x: torch.Tensor) -> F.LIFState:
        """Zeros of one channel chunk, ``[B, C/G, ...]``, for one step ``x[B, C, ...]``."""
        return F.LIFState(x.new_zeros(x.shape[0], x.shape[1] // self.channel_groups, *x.shape[2:]))

    def run(self, x: torch.Tensor, state=None):
        """``(spikes[T, B, C, ...], states)`` with ``states.v[T*G, B, C/G, ...]``, step ``t*G + g``."""
        self._check_channels(x)
        state = self.initial_state(x[0]) if state is None else state
        spk, states = super().run(to_group_steps(x, self.channel_groups), state)
        return from_group_steps(spk, self.channel_groups), states

    def membrane(self, states: F.LIFState) -> torch.Tensor:
        """Each neuron's membrane after its own update, ``[T, B, C, ...]``."""
        return from_group_steps(states.v, self.channel_groups)

    def step(self, x: torch.Tensor, state=None):
        """One step ``x[B, C, ...]``: the G chunks in sequence; returns ``(spikes, state)``."""
        spk, states = self.run(x[None], state)
        return spk[0], F.last(states)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channel_groups={self.channel_groups}"


class MembraneCell(TemporalModule):
    """One use of a stage's shared neuron: one step ``(x[B, ...], state) -> (spikes[B, ...], state)``.

    A stage holds one cell per layer, so hooks (tracing, activity) see each layer's spikes;
    the cells step the one neuron held by their :class:`SharedStage` (``membrane_owner``,
    which the tracer uses to put the layers in one ``neuron_group``).
    """

    def __init__(self, neuron: SharedLIF) -> None:
        super().__init__()
        object.__setattr__(self, "membrane_owner", neuron)  # held by the stage, not registered twice

    @property
    def channel_groups(self) -> int:
        return self.membrane_owner.channel_groups

    @property
    def membrane_bits(self) -> int | None:
        return getattr(self.membrane_owner, "membrane_bits", None)

    def forward(self, x: torch.Tensor, state: F.LIFState | None = None) -> tuple[torch.Tensor, F.LIFState]:
        return self.membrane_owner.step(x, state)

    def forward_with_mem(
        self, x: torch.Tensor, state: F.LIFState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's spikes and each neuron's membrane after its update, ``[B, C, ...]``."""
        spk, states = self.membrane_owner.run(x[None], state)
        return spk[0], self.membrane_owner.membrane(states)[0]


class SharedStage(TemporalModule):
    """Neuron layers of one stage sharing one membrane (see the module docstring).

    ``parts[l]`` holds the stateless layers (convolution, BatchNorm...) between the stage's
    neuron l-1 and neuron l; ``parts[0]`` is usually empty (the stage's input feeds its first
    neuron). ``x[T, B, ...] -> spikes[T, B, ...]`` of the last layer.
    """

    def __init__(self, parts: list[list[nn.Module]], neuron: SharedLIF) -> None:
        super().__init__()
        if len(parts) < 2:
            raise SpikecimError(
                f"shared-lif: a stage shares one membrane between >= 2 layers, got {len(parts)}"
            )
        self.layers = nn.ModuleList()
        for part in parts:
            self.layers.extend(part)
            self.layers.append(MembraneCell(neuron))
        self.neuron = neuron  # registered after the layers: module order puts each cell after its layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, outs = None, []
        for t in range(x.shape[0]):
            with at_step(t):  # the layers run on [B, ...] at step t (for trace)
                h = x[t]
                for m in self.layers:
                    if isinstance(m, MembraneCell):
                        h, state = m(h, state)
                    else:
                        h = m(h)
            outs.append(h)
        return torch.stack(outs)

"""spikecim's traced counts and its ``naive-45nm`` and ``spikesim`` estimates against
SpikingJelly 2.0's own counters and energy models (``spikingjelly/activation_based/op_counter/``),
on every shipped model, same weights, same inputs.

What is compared (docs/hardware.md, "spikecim and SpikingJelly's op counters and energy
estimates", says why each difference exists):

- ``synop.py`` ``SynOpCounter`` (spike-driven accumulates) and ``mac.py`` ``MACCounter``
  (dense multiply-accumulates of non-binary inputs) equal the Workload's accumulates and
  dense MACs layer by layer; ``MACCounter`` adds BatchNorm's scale-and-shift (one MAC per
  element), counted here by hand.
- ``neuromorphic_memory_access.py`` ``NeuromorphicMemoryAccessCounter``: weight reads (one
  per accumulate or MAC) and bias reads (one per output) follow from the Workload; neuron
  state traffic is counted for SpikingJelly's own ``BaseNode`` neurons only, and equals the
  Workload's membranes read and written at every step for its LIF.
- ``simple_energy.py`` (45 nm Horowitz: 4.6 pJ per MAC, 0.9 pJ per AC, 24.96 pJ per byte)
  against ``naive-45nm``: same constants; SpikingJelly adds BatchNorm, pooling and residual
  additions and the memory term, which the test computes by hand.
- ``spikesim/`` (``SpikeSimEnergyConfig`` dense mode) against ``spikesim-*-65nm``: same
  constants and per-PE-cycle formula; SpikingJelly charges every convolution output
  position where the SpikeSim script (and spikecim) charges the positions after pooling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import spikecim.nn as snn
from spikecim.hw import estimate, load_architecture
from spikecim.models import create_model
from spikecim.models._resnet import BasicBlock
from spikecim.trace import trace

oc = pytest.importorskip("spikingjelly.activation_based.op_counter")
aten = torch.ops.aten

T, B = 2, 2
# every shipped model, small: digits-sized for convnet and mlp, 3x32x32 with fewer channels
# for the rest; a low threshold keeps an untrained network spiking in every layer
MODELS = {
    "convnet": ({"in_channels": 1, "input_size": 8}, (1, 8, 8)),
    "mlp": ({"in_channels": 1, "input_size": 8}, (1, 8, 8)),
    "vgg5": ({"width": 0.125}, (3, 32, 32)),
    "vgg9": ({"width": 0.125}, (3, 32, 32)),
    "vgg11": ({"width": 0.0625}, (3, 32, 32)),
    "resnet19": ({"width": 0.0625}, (3, 32, 32)),
}
SYNAPTIC = (
    aten.convolution.default,
    aten.mm.default,
    aten.addmm.default,
    aten.bmm.default,
    aten.baddbmm.default,
)
E_MAC_PJ, E_AC_PJ, E_MEM_PJ_PER_BYTE = 4.6, 0.9, 24.96  # simple_energy.py SimpleEnergyCostConfig.fp32()


@dataclass
class _Run:
    model: nn.Module
    x: torch.Tensor
    workload: object
    synop: dict  # scope -> {aten op: count}
    mac: dict
    ac: dict
    ac_alone: int  # ACCounter run on its own
    memory: dict  # scope -> {metric: bytes}
    simple: object  # SimpleEnergyReport
    hand: dict  # what SpikingJelly counts beyond synaptic operators, counted by hand


@functools.cache
def _run(name: str) -> _Run:
    kwargs, shape = MODELS[name]
    torch.manual_seed(0)
    model = create_model(name, spiking=True, num_classes=10, neuron_kw={"threshold": 0.2}, **kwargs).eval()
    x = torch.rand(T, B, *shape)  # direct encoding: the first layer reads real values
    w = trace(model, [x])
    # SpikingJelly's counters over one forward pass; neuron modules are left out (spikecim's
    # naive model costs no neuron update; see the docs section for why)
    profiler = oc.SimpleEnergyProfiler(config=oc.SimpleEnergyConfig(extra_ignore_modules=[snn.Neuron]))
    profiler.bind_model(model)
    hand, hooks = _hand_counters(model)
    try:
        with profiler, torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    alone = oc.ACCounter(extra_ignore_modules=[snn.Neuron])  # without the memory counter beside it
    with torch.no_grad(), oc.DispatchCounterMode([alone]):
        model(x)
    return _Run(
        model, x, w, ac_alone=alone.get_total(),
        synop=profiler.synop_counter.get_counts(), mac=profiler.mac_counter.get_counts(),
        ac=profiler.ac_counter.get_counts(), memory=profiler.memory_counter.get_counts(),
        simple=profiler.get_report(), hand=hand,
    )  # fmt: skip


def _hand_counters(model: nn.Module) -> tuple[dict, list]:
    """The non-synaptic operations SpikingJelly's counters charge, by their rules written out:
    BatchNorm in eval (mac.py ``_mac_native_batch_norm``: x·γ+β, one MAC per element; ac.py
    ``_ac_native_batch_norm``: var+eps per channel, x−mean per element), AvgPool2d(k)
    (``_ac_avg_pool2d``: k²−1 adds per output), global average pooling (``_ac_reduction``:
    inputs − outputs adds) and a residual block's add (``_ac_element_wise``: one per output)."""
    n = {"bn_mac": 0, "bn_ac": 0, "pool_ac": 0, "mean_ac": 0, "residual_ac": 0}

    def bn(m, a, out):
        n["bn_mac"] += out.numel()
        n["bn_ac"] += out.numel() + out.shape[1]

    def avg(m, a, out):
        n["pool_ac"] += out.numel() * (m.kernel_size**2 - 1)

    def gap(m, a, out):
        n["mean_ac"] += a[0].numel() - out.numel()

    def block(m, a, out):
        n["residual_ac"] += out.numel()

    hooks = []
    for m in model.modules():
        for kind, fn in (
            (nn.BatchNorm2d, bn),
            (nn.AvgPool2d, avg),
            (nn.AdaptiveAvgPool2d, gap),
            (BasicBlock, block),
        ):
            if isinstance(m, kind):
                hooks.append(m.register_forward_hook(fn))
    return n, hooks


def _scope(run: _Run, layer) -> str:
    return f"{type(run.model).__name__}.{layer.name}"


def _synaptic(counts: dict, scope: str) -> int:
    return sum(v for op, v in counts.get(scope, {}).items() if op in SYNAPTIC)


def _weight_uses(layer) -> float:
    """Weight reads of one sample: one per accumulate (spike input) or per dense MAC."""
    return sum(layer.acs_per_step) if layer.spiking_input else layer.macs * layer.timesteps


@pytest.mark.parametrize("name", list(MODELS))
def test_synaptic_operations_and_macs_equal_spikingjelly_counters_layer_by_layer(name):
    run = _run(name)
    w = run.workload
    assert any(sum(layer.acs_per_step) > 0 for layer in w.layers if layer.spiking_input)  # not silent
    for layer in w.layers:
        scope = _scope(run, layer)
        synops, macs = _synaptic(run.synop, scope), _synaptic(run.mac, scope)
        if layer.spiking_input:  # spikes in: accumulates, no MAC
            assert (synops, macs) == (sum(layer.acs_per_step) * B, 0), layer.name
        else:  # real values in (first layer, pooled spikes): dense MACs, no synaptic op
            assert (synops, macs) == (0, layer.macs * T * B), layer.name
    # the totals: SpikingJelly's MACs add BatchNorm's scale-and-shift, one per element
    assert run.simple.counts["synop"] == sum(sum(x.acs_per_step) for x in w.layers if x.spiking_input) * B
    dense = sum(x.macs * T for x in w.layers if not x.spiking_input) * B
    assert run.simple.counts["mac"] == dense + run.hand["bn_mac"]


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_and_bias_reads_equal_spikingjelly_neuromorphic_memory_counter(name):
    run = _run(name)
    for layer in run.workload.layers:
        got = run.memory[_scope(run, layer)]
        assert got["weight_read_bytes"] == _weight_uses(layer) * B * layer.weight_bits / 8, layer.name
        bias = layer.out_size * T * B * 4 if layer.has_bias else 0  # float32 bias, one per output
        assert got["bias_read_bytes"] == bias, layer.name
    # SpikingJelly counts the state of its own BaseNode neurons only: spikecim's are not
    assert run.simple.counts["neuron_state_read_bytes"] == run.simple.counts["neuron_state_write_bytes"] == 0


def _state_bytes(ours_neuron: nn.Module, their_node: nn.Module) -> tuple[float, dict]:
    """The Workload's membrane bytes of Linear(16, 8) -> ``ours_neuron`` -> Linear(8, 4), and
    SpikingJelly's memory-access counts of the same linear layers around ``their_node``."""
    torch.manual_seed(1)
    fc1, fc2 = nn.Linear(16, 8), nn.Linear(8, 4)
    x = torch.rand(T, B, 16)
    w = trace(snn.Sequential(fc1, ours_neuron, fc2), [x])
    theirs = nn.Sequential(fc1, their_node, fc2)
    counter = oc.NeuromorphicMemoryAccessCounter()
    with torch.no_grad(), oc.ModuleCounterMode([counter], model=theirs):
        theirs(x)
    return w.metrics()["membrane_bytes"], counter.get_counts()["Global"]


def test_membrane_traffic_equals_spikingjelly_neuron_state_count_for_its_lif():
    """The same network with SpikingJelly's LIFNode: its state counter reads and writes each
    membrane once per step, the Workload's membranes (neurons · bits) times T·B."""
    from spikingjelly.activation_based import neuron

    membrane_bytes, got = _state_bytes(snn.LIF(threshold=0.2), neuron.LIFNode(v_threshold=0.2, step_mode="m"))
    assert membrane_bytes == 8 * 4  # 8 float32 membranes
    assert got["neuron_state_read_bytes"] == got["neuron_state_write_bytes"] == membrane_bytes * T * B


def test_a_two_state_neuron_stores_both_states_as_spikingjellys_memory_counter_counts_them():
    """SpikingJelly's counter reads and writes every state tensor of a node at every step (its
    Izhikevich node keeps v and w); spikecim's synaptic neuron keeps its current and its
    membrane, so the Workload stores two words per neuron."""
    from spikingjelly.activation_based import neuron

    membrane_bytes, got = _state_bytes(snn.SynapticLIF(threshold=0.2), neuron.IzhikevichNode(step_mode="m"))
    assert membrane_bytes == 2 * 8 * 4  # 8 neurons, two float32 states each
    assert got["neuron_state_read_bytes"] == got["neuron_state_write_bytes"] == membrane_bytes * T * B


def test_naive_45nm_uses_spikingjelly_simple_energy_constants():
    p = load_architecture("naive-45nm").p
    fp32 = oc.SimpleEnergyCostConfig.fp32()
    assert (p.e_mac_pj, p.e_ac_pj) == (fp32.e_mac_pj, fp32.e_ac_pj) == (E_MAC_PJ, E_AC_PJ)
    assert fp32.e_memory_pj_per_byte == E_MEM_PJ_PER_BYTE == 3.12 * 8  # its 3.12 pJ/bit, per byte


@pytest.mark.parametrize("name", list(MODELS))
def test_spikingjelly_simple_energy_counts_its_own_occupancy_sum_as_network_adds(name):
    """Inside SimpleEnergyProfiler the memory counter's forward hook sums a convolution's
    occupancy map (neuromorphic_memory_access.py ``_spike_conv_weight_uses_from_tensors``:
    ``occupancy.sum`` outside the dispatch-exclusion guard) while the AC counter listens, so
    each convolution on spikes adds ``numel(occupancy) − 1`` ACs (ac.py ``_ac_reduction``);
    occupancy is ``[T·B, groups, H_out, W_out]``. The ACCounter run alone does not."""
    run = _run(name)
    h = run.hand
    assert (
        run.ac_alone
        == run.simple.counts["synop"] + h["bn_ac"] + h["pool_ac"] + h["mean_ac"] + h["residual_ac"]
    )
    assert run.simple.counts["ac"] - run.ac_alone == _occupancy_adds(run.workload)


def _occupancy_adds(w) -> int:
    return sum(
        T * B * x.groups * x.out_hw[0] * x.out_hw[1] - 1
        for x in w.layers
        if x.kind == "conv2d" and x.spiking_input
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_naive_45nm_equals_spikingjelly_simple_energy_less_what_only_it_counts(name):
    run = _run(name)
    w, h, rep = run.workload, run.hand, run.simple
    ours = estimate(w, "naive-45nm").energy_pj * B  # spikecim reports per sample
    # what only SpikingJelly charges: BatchNorm, pooling and residual adds, its own occupancy
    # sums, and every weight and bias read at 24.96 pJ per byte
    adds = h["bn_ac"] + h["pool_ac"] + h["mean_ac"] + h["residual_ac"] + _occupancy_adds(w)
    reads = sum(
        _weight_uses(x) * x.weight_bits / 8 + (x.out_size * T * 4 if x.has_bias else 0) for x in w.layers
    )
    # the synaptic part is the same: E_MAC·dense MACs + E_AC·synops
    compute = rep.energy_mac_pj + rep.energy_ac_pj
    assert compute - E_MAC_PJ * h["bn_mac"] - E_AC_PJ * adds == pytest.approx(ours, rel=1e-6)
    extra = E_MAC_PJ * h["bn_mac"] + E_AC_PJ * adds + E_MEM_PJ_PER_BYTE * reads * B
    assert rep.energy_total_pj - ours == pytest.approx(extra, rel=1e-6)


def test_spikesim_tables_use_spikingjelly_spikesim_constants():
    cfg = oc.SpikeSimEnergyConfig()
    for arch, xbar in (("spikesim-rram-65nm", cfg.rram_xbar_pj), ("spikesim-sram-65nm", cfg.sram_xbar_pj)):
        p = load_architecture(arch).p
        assert p.xbar_size == cfg.xbar_size
        assert p.e_xbar_read_pj == xbar
        pairs = [
            (p.e_tile_buffer_pj, cfg.tile_buffer_pj), (p.e_temp_buffer_pj, cfg.temp_buffer_pj),
            (p.e_shift_sub_pj, cfg.sub_pj), (p.e_adc_pj, cfg.adc_pj), (p.e_htree_pj, cfg.htree_pj),
            (p.e_mux_pj, cfg.mux_pj), (p.e_mem_fetch_pj, cfg.mem_fetch_pj), (p.e_neuron_pj, cfg.neuron_pj),
        ]  # fmt: skip
        for ours, theirs in pairs:
            assert ours == pytest.approx(theirs, rel=1e-12)
        # the script's X/8 ADCs and 16 shift-subtracts per ADC (spikesim/config.py)
        assert p.cols_per_adc == 8 and p.sub_ops_per_adc == 16


@pytest.mark.parametrize("device", ["rram", "sram"])
@pytest.mark.parametrize("name", list(MODELS))
def test_spikesim_equals_spikingjelly_dense_spikesim_at_the_output_positions_it_charges(name, device):
    run = _run(name)
    w = run.workload
    theirs = oc.estimate_spikesim_energy(
        run.model, run.x, config=oc.SpikeSimEnergyConfig(device=device), strict=False
    )  # strict: it refuses a network without Conv2d (mlp)
    ours = estimate(w, f"spikesim-{device}-65nm")
    for layer, cost in zip(w.layers, ours.layers):
        stage = theirs.energy_by_stage.get(_scope(run, layer))
        if layer.kind != "conv2d":  # neither costs a fully connected layer
            assert stage is None and cost.skipped, layer.name
            continue
        # same PE-cycle energy and PE count; SpikingJelly charges every output position of the
        # convolution, the SpikeSim script (and spikecim) the positions after pooling
        sites = layer.out_hw[0] * layer.out_hw[1]
        out_dim = (layer.pooled_out_hw or layer.out_hw)[0]
        assert stage == pytest.approx(cost.total_energy_pj * B * sites / out_dim**2, rel=1e-6), layer.name
    if not any(layer.kind == "conv2d" for layer in w.layers):
        assert theirs.energy_total_pj == ours.energy_pj == 0.0


def test_spikesim_per_pe_cycle_energy_is_spikingjellys_written_out():
    """One 64×64 PE cycle of a 3×3 convolution, SpikeSim's formula from its constants:
    E_Htree + E_fetch + E_tilebuf + (X/8)·16·E_sub + (X/8)·E_temp + (X/8)²·(E_ADC + E_MUX)
    + E_neuron + (X/8)·k²·E_xbar; spikecim's layer with one PE and one output position."""
    cfg = oc.SpikeSimEnergyConfig()
    a = cfg.xbar_size / 8
    by_hand = (
        cfg.htree_pj + cfg.mem_fetch_pj + cfg.tile_buffer_pj + a * 16 * cfg.sub_pj + a * cfg.temp_buffer_pj
        + a * a * (cfg.adc_pj + cfg.mux_pj) + cfg.neuron_pj + a * 9 * cfg.rram_xbar_pj
    )  # fmt: skip
    assert cfg.pe_cycle_energy_for_kernel_pj((3, 3)) == pytest.approx(by_hand, rel=1e-12)
    conv = nn.Conv2d(64, 64, 3)
    x = (torch.rand(1, 1, 64, 3, 3) < 0.5).float()
    w = trace(snn.Sequential(conv), [x])
    assert estimate(w, "spikesim-rram-65nm").energy_pj == pytest.approx(by_hand, rel=1e-9)


def test_matmul_of_two_spike_tensors_spikingjelly_counts_coinciding_ones_spikecim_rows_met():
    """A bare q @ kᵀ of two spike tensors. SpikingJelly (ac.py ``_spike_bmm``, both operands
    binary) counts the products whose two factors are 1: the sum of the result. spikecim
    counts ``nnz(q)·N``: each non-zero of q meets a whole row of kᵀ, as a crossbar holding
    kᵀ reads it (the same count as for a static weight)."""

    class QK(nn.Module):
        def forward(self, x):
            return torch.matmul(x, x.flip(-1).transpose(-1, -2))

    torch.manual_seed(2)
    x = (torch.rand(T, B, 4, 5) < 0.5).float()  # [T, B, S=4 tokens, D=5]
    (entry,) = trace(QK(), [x]).layers
    syn = oc.SynOpCounter()
    with torch.no_grad(), oc.DispatchCounterMode([syn]):
        QK()(x)
    k = x.flip(-1)
    coinciding = sum(
        int(x[t, b, i, d] * k[t, b, j, d])
        for t in range(T)
        for b in range(B)
        for i in range(4)
        for j in range(4)
        for d in range(5)
    )
    assert syn.get_total() == coinciding
    assert sum(entry.acs_per_step) * B == int((x != 0).sum()) * 4

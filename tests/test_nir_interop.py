"""NIR interop with snnTorch 1.0 and Norse 1.1, both directions: the same input gives the same spikes.

Conventions compared (each tool's documented behaviour):
- snnTorch ``Leaky(reset_mechanism="zero")`` (delayed zero reset) gives the same spikes as
  NIR's same-step reset to zero (docs/references.md#lif-same-step-reset); snnTorch ``Synaptic`` is used with
  ``reset_delay=False``, the form snnTorch's own ``import_from_nir`` builds.
- snnTorch's exporter needs per-neuron parameters (scalar ones give NIR shape ()).
- Norse's ``LIFBoxCell`` ignores ``r`` (documented: it warns unless r = 1), so graphs sent to
  Norse use r = 1; Norse's exporter writes ``tau = dt / tau_mem_inv``, which is the time
  constant when the cell runs with dt = 1 (time counted in steps), as here.
"""

import logging
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikecim.interop import from_nir, to_nir
from spikecim.nn import LIF, Sequential, SynapticLIF

snn = pytest.importorskip("snntorch")
norse = pytest.importorskip("norse.torch")
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

DATA = Path(__file__).parents[2] / "shared" / "data" / "nir-paper"
logging.getLogger().setLevel(logging.ERROR)  # Norse logs a warning per r != 1


def _full(shape, value):
    return torch.full(shape, value)


def _positive(layer: nn.Module) -> nn.Module:
    """Non-negative weights, so a few random inputs make every layer spike."""
    layer.weight.data.abs_()
    return layer


def _run_snntorch(net, x):
    snn_utils.reset(net)
    outs = []
    for t in range(x.shape[0]):
        out = net(x[t])
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs)


def _run_stateful(net, x):
    for m in net.modules():  # snnTorch neurons built with init_hidden keep their state
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    state, outs = None, []
    for t in range(x.shape[0]):
        out, state = net(x[t], state)
        outs.append(out)
    return torch.stack(outs)


def _snntorch_linear_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8),
        snn.Leaky(beta=_full((8,), 0.8), threshold=_full((8,), 0.7), init_hidden=True, reset_mechanism="zero"),
        nn.Linear(8, 3),
        snn.Synaptic(alpha=_full((3,), 0.6), beta=_full((3,), 0.7), threshold=_full((3,), 0.5), init_hidden=True,
                     output=True, reset_mechanism="zero", reset_delay=False),
    )  # fmt: skip


def _snntorch_conv_net():
    torch.manual_seed(0)
    return nn.Sequential(
        _positive(nn.Conv2d(1, 4, 3, padding=1)),
        snn.Leaky(beta=_full((4, 6, 6), 0.8), threshold=_full((4, 6, 6), 0.4), init_hidden=True, reset_mechanism="zero"),
        nn.AvgPool2d(2),
        nn.Flatten(),
        _positive(nn.Linear(36, 3)),
        snn.Synaptic(alpha=_full((3,), 0.6), beta=_full((3,), 0.7), threshold=_full((3,), 0.2), init_hidden=True,
                     output=True, reset_mechanism="zero", reset_delay=False),
    )  # fmt: skip


@pytest.mark.parametrize(
    "make, sample",
    [(_snntorch_linear_net, (1, 5)), (_snntorch_conv_net, (1, 1, 6, 6))],
    ids=["linear", "conv"],
)
def test_snntorch_export_imports_to_the_same_spikes(make, sample, capsys):
    net = make()
    graph = export_to_nir(net, torch.randn(*sample), ignore_dims=[0])
    model = from_nir(graph)
    torch.manual_seed(1)
    x = torch.rand(25, 4, *sample[1:]) * 3
    ref = _run_snntorch(net, x)
    assert ref.sum() > 0
    assert torch.equal(model(x), ref)


def _spikecim_linear():
    torch.manual_seed(0)
    return Sequential(nn.Linear(5, 8), LIF(0.8, 0.7, "zero", False), nn.Linear(8, 3),
                      SynapticLIF(0.6, 0.7, 0.5, "zero", False))  # fmt: skip


def _spikecim_conv():
    torch.manual_seed(0)
    return Sequential(_positive(nn.Conv2d(1, 4, 3, padding=1)), LIF(0.8, 0.4, "zero", False), nn.AvgPool2d(2),
                      nn.Flatten(), _positive(nn.Linear(36, 3)), SynapticLIF(0.6, 0.7, 0.2, "zero", False))  # fmt: skip


@pytest.mark.parametrize(
    "make, shape", [(_spikecim_linear, (5,)), (_spikecim_conv, (1, 6, 6))], ids=["linear", "conv"]
)
def test_spikecim_export_runs_in_snntorch_with_the_same_spikes(make, shape, capsys):
    model = make()
    net = import_from_nir(to_nir(model, input_shape=shape))
    torch.manual_seed(1)
    x = torch.rand(25, 4, *shape) * 3
    # snnTorch's importer maps NIR Flatten(start_dim=0) to torch Flatten(0), which also
    # flattens the batch, so snnTorch runs one sample at a time
    ref = torch.stack([_run_stateful(net, x[:, b : b + 1]).reshape(25, 3) for b in range(4)], dim=1)
    assert ref.sum() > 0
    assert torch.equal(model(x), ref)


def _snntorch_braille(graph: nir.NIRGraph, dt: float = 1e-4) -> nn.Module:
    """The Braille graph as snnTorch ``Synaptic`` neurons with the recurrence written out,
    ``I_in[t] = fc1(x[t]) + w_rec(S[t-1])``, and the conversion snnTorch's ``import_from_nir``
    documents (alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem, threshold / (w_in dt/tau_syn)).
    Built by hand: that importer fails on recurrent sub-graphs with nirtorch 2, and
    ``RSynaptic(reset_delay=False)`` resets a copy of the membrane, not its state."""
    n = graph.nodes
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)

    def linear(node):
        layer = nn.Linear(node.weight.shape[1], node.weight.shape[0])
        layer.weight.data, layer.bias.data = t(node.weight), t(node.bias)
        return layer

    def synaptic(node):
        alpha, beta = 1 - dt / t(node.tau_syn), 1 - dt / t(node.tau_mem)
        threshold = float(np.unique(node.v_threshold / (node.w_in * dt / node.tau_syn))[0])
        return snn.Synaptic(
            alpha=alpha, beta=beta, threshold=threshold, reset_mechanism="zero", reset_delay=False
        )

    return nn.ModuleDict({"fc1": linear(n["fc1"]), "lif1": synaptic(n["lif1.lif"]), "w_rec": linear(n["lif1.w_rec"]),
                          "fc2": linear(n["fc2"]), "lif2": synaptic(n["lif2"])})  # fmt: skip


@pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")
def test_braille_recurrent_graph_matches_snntorch_synaptic_with_explicit_recurrence():
    graph = nir.read(DATA / "braille_noDelay_bias_zero.nir")
    m = _snntorch_braille(graph)
    torch.manual_seed(2)
    x = (torch.rand(40, 3, 12) < 0.4).float()
    spk1, syn1, mem1 = (torch.zeros(3, 38) for _ in range(3))
    syn2, mem2 = torch.zeros(3, 7), torch.zeros(3, 7)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk1, syn1, mem1 = m["lif1"](m["fc1"](x[t]) + m["w_rec"](spk1), syn1, mem1)
            spk2, syn2, mem2 = m["lif2"](m["fc2"](spk1), syn2, mem2)
            outs.append(spk2)
    ref = torch.stack(outs)
    assert ref.sum() > 0
    assert torch.equal(from_nir(graph)(x), ref)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")
def test_norse_and_spikecim_import_the_paper_neuron_to_the_same_spikes():
    x = torch.tensor(np.loadtxt(DATA / "lif_norse.csv", delimiter=",")[:, 0], dtype=torch.float32).reshape(
        -1, 1, 1
    )
    ref = _run_stateful(norse.from_nir(nir.read(DATA / "lif_norse.nir"), dt=1e-4), x)
    assert torch.nonzero(ref.flatten()).flatten().tolist() == [460, 510, 710, 760]
    assert torch.equal(from_nir(DATA / "lif_norse.nir", dt=1e-4)(x), ref)


def test_norse_export_imports_to_the_same_spikes():
    torch.manual_seed(0)
    cell = lambda n, inv, th: norse.LIFBoxCell(
        norse.LIFBoxParameters(tau_mem_inv=_full((n,), inv), v_th=_full((n,), th), v_leak=torch.zeros(n)),
        dt=1.0,
    )
    net = norse.SequentialState(nn.Linear(4, 6), cell(6, 0.2, 0.3), nn.Linear(6, 3), cell(3, 0.25, 0.2))
    model = from_nir(norse.to_nir(net, torch.randn(1, 4), dt=1e-3), dt=1e-3)
    x = torch.rand(50, 5, 4) * 3
    ref = _run_stateful(net, x)
    assert ref.sum() > 0
    assert torch.equal(model(x), ref)


def test_spikecim_export_runs_in_norse_with_the_same_spikes():
    rng = np.random.default_rng(0)
    lif = lambda n, tau, th: nir.LIF(
        tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, th), v_reset=np.zeros(n)
    )
    source = nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(size=(6, 4)).astype(np.float32), bias=np.zeros(6, np.float32)), lif(6, 2e-3, 0.1),
        nir.Affine(weight=rng.normal(size=(3, 6)).astype(np.float32), bias=np.zeros(3, np.float32)), lif(3, 5e-3, 0.05),
    )  # fmt: skip
    model = from_nir(source, dt=1e-4)
    net = norse.from_nir(to_nir(model, dt=1e-4), dt=1e-4)
    x = torch.rand(200, 5, 4) * 3
    ref = _run_stateful(net, x)
    assert ref.sum() > 0
    assert torch.equal(model(x), ref)

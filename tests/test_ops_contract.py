"""Contract tests over the operator registry: every registered kind is traced (hand counts),
converted to analog (ideal equals digital) or kept digital, exported to NIR or refused with
one line, and costed by every estimator; estimators are plug-ins that fail early."""

import math

import pytest
import torch
from torch import nn

import spikecim.nn as snn
from spikecim import ops
from spikecim.analog import to_analog
from spikecim.errors import SpikecimError
from spikecim.hw import estimate, get_estimator, list_architectures, load_architecture
from spikecim.hw.estimators import Estimator, register_estimator
from spikecim.interop import to_nir
from spikecim.ops.conv import output_size
from spikecim.trace import Workload, trace
from spikecim.trace.workload import MatMulWorkload


class _Wrap(nn.Module):
    """One operator applied to a time-folded batch, as spikecim models call them."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return snn.apply_folded(self.layer, x)


class _SelfAttention(nn.Module):
    """a @ aᵀ through the registry's MatMul: both operands are activations."""

    def __init__(self):
        super().__init__()
        self.mm = ops.MatMul()

    def forward(self, x):
        return self.mm(x, x.transpose(-2, -1))


def _ones(layer):
    with torch.no_grad():
        layer.weight.fill_(1.0)
    return layer


# kind -> (model, input x[T, B, ...], hand-counted accumulates per step, dense MACs per step)
def _examples():
    conv1d_x = torch.tensor([1.0, 0.0, 1.0, 1.0]).reshape(1, 1, 1, 4)
    conv2d_x = torch.zeros(1, 1, 1, 3, 3)
    conv2d_x[..., 1, 1] = 1.0
    mm_x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 2, 3)
    lin_x = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]])
    return {
        # 2 then 1 non-zero inputs, each feeding 2 outputs; 3·2 MACs
        "linear": (_Wrap(nn.Linear(3, 2)), lin_x, [4.0, 2.0], 6),
        # windows (padding 1) cover 1 + 2 + 2 + 2 non-zero inputs, times 2 output channels
        "conv1d": (_Wrap(nn.Conv1d(1, 2, 3, padding=1)), conv1d_x, [14.0], 2 * 3 * 4),
        # the centre of a 3x3 input lies under all four 2x2 windows, times 2 channels
        "conv2d": (_Wrap(nn.Conv2d(1, 2, 2)), conv2d_x, [8.0], 2 * 4 * 4),
        # a[2x3] @ aᵀ[3x2]: 3 non-zero entries of a, each meets one row of b with 2 outputs
        "matmul": (_SelfAttention(), mm_x, [6.0], 2 * 3 * 2),
    }


EXAMPLES = _examples()


def test_every_registered_operator_has_an_example():
    assert set(ops.list_ops()) <= set(EXAMPLES)


@pytest.mark.parametrize("kind", ops.list_ops())
def test_operator_is_traced_with_hand_counted_operations(kind):
    model, x, acs, macs = EXAMPLES[kind]
    w = trace(model, [x])
    (entry,) = w.layers
    assert entry.kind == kind
    assert entry.acs_per_step == acs and entry.macs == macs
    # no weight of the examples is zero: every accumulate meets a non-zero weight
    assert entry.acs_nonzero_weights_per_step == acs


def test_grouped_conv2d_counts_each_input_once_per_output_of_its_group():
    conv = nn.Conv2d(4, 6, 1, groups=2)
    x = torch.zeros(1, 1, 4, 1, 1)
    x[..., 0, 0, 0] = 1.0  # one non-zero input in group 0: feeds that group's 3 outputs
    (entry,) = trace(_Wrap(conv), [x]).layers
    assert entry.groups == 2 and entry.acs_per_step == [3.0] and entry.macs == 6 * 2


@pytest.mark.parametrize("kind", ops.list_ops())
def test_operator_converts_to_an_ideal_crossbar_or_stays_digital(kind):
    model, x, _, _ = EXAMPLES[kind]
    op = ops.get_op(kind)
    if not op.on_crossbar:
        with pytest.raises(SpikecimError, match="no layer to map"):
            to_analog(model, "ideal")
        return
    am = to_analog(model, "ideal")
    assert torch.allclose(am(x), model(x), atol=1e-6)


@pytest.mark.parametrize("kind", ops.list_ops())
def test_operator_exports_to_nir_or_is_refused_with_one_line(kind):
    model, x, _, _ = EXAMPLES[kind]
    if kind == "matmul":  # NIR has no node for it: the registry's hook refuses, naming it
        with pytest.raises(SpikecimError) as e:
            ops.get_op(kind).to_nir(None, model.mm, "attn.mm", None)
        assert "\n" not in str(e.value) and "'attn.mm' (MatMul)" in str(e.value)
        return
    graph = to_nir(snn.Sequential(model.layer), input_shape=tuple(x.shape[2:]))
    node = graph.nodes["0"]
    assert type(node).__name__ in ("Affine", "Conv1d", "Conv2d")
    assert torch.equal(torch.as_tensor(node.weight, dtype=torch.float32), model.layer.weight.detach())


def test_a_linear_subclass_is_the_linear_operator():
    class QLinear(nn.Linear):
        weight_bits = 4  # a quantiser says how many bits its weights have

    q = QLinear(3, 2)
    assert ops.find(q).kind == "linear"
    am = to_analog(nn.Sequential(q), "ideal")
    assert type(am[0]).__name__ == "AnalogLinear"
    x = torch.rand(5, 3)
    assert torch.allclose(am(x), q(x), atol=1e-6)
    (entry,) = trace(_Wrap(q), [torch.rand(2, 1, 3)]).layers
    assert entry.weight_bits == 4


def _workload(kind) -> Workload:
    model, x, _, _ = EXAMPLES[kind]
    return trace(model, [x])


@pytest.mark.parametrize("arch", list_architectures())
@pytest.mark.parametrize("kind", ops.list_ops())
def test_every_estimator_costs_every_operator_finitely(kind, arch):
    w = _workload(kind)
    r = estimate(w, arch)
    for v in (r.energy_pj, r.latency_ns, r.area_um2, r.ops, *r.energy_by_component_pj.values()):
        assert math.isfinite(v) and v >= 0
    # zero activity: nothing that scales with activity is spent
    silent = Workload.model_validate(
        {
            **w.model_dump(),
            "layers": [
                {
                    **layer.model_dump(),
                    "in_nonzero_per_step": [0.0] * layer.timesteps,
                    "acs_per_step": [0.0] * layer.timesteps,
                    "acs_nonzero_weights_per_step": [0.0] * layer.timesteps,
                }
                for layer in w.layers
            ],
        }
    )
    est = get_estimator(load_architecture(arch).estimator)
    quiet = estimate(silent, arch).energy_by_component_pj
    for component in est.activity_components:
        assert quiet.get(component, 0.0) == 0.0, component


def test_matmul_writes_counted_by_hand_on_imc():
    # b = [batch 2, k 3, n 4] of 8-bit values on 1-bit cells, 8-bit max: 3 rows x 4·8 columns
    # per head, written at each of 2 steps: 2·3·32·2 = 384 cells at 0.4 pJ
    entry = MatMulWorkload(
        name="qk", batch=2, m=5, k=3, n=4, timesteps=2, input_bits=1, has_neuron=False,
        operands={"b": {"kind": "dynamic", "bits": 8}},
        in_nonzero_per_step=[0.0, 0.0], acs_per_step=[0.0, 0.0],
    )  # fmt: skip
    w = Workload(timesteps=2, layers=[entry])
    r = estimate(w, "imc-rram-65nm")
    assert r.layers[0].energy_pj["write"] == pytest.approx(384 * 0.4)
    # latency: 3 rows written one after another at 10 ns, each step (no input is active)
    assert r.latency_ns == pytest.approx(2 * 3 * 10)


def test_running_fraction_weights_every_step_and_energy_per_step_sums_to_the_step_part():
    w = _workload("conv2d")
    w2 = Workload.model_validate({**w.model_dump(), "timesteps": 1, "running_per_step": [0.5]})
    for arch in ("imc-rram-65nm", "systolic-sata", "naive-45nm"):
        a = load_architecture(arch)
        est = get_estimator(a.estimator)
        full, half = estimate(w, a), estimate(w2, a)
        per_step = est.energy_per_step_pj(w, a.p)
        static = full.energy_pj - sum(per_step)
        assert half.energy_pj == pytest.approx(static + 0.5 * sum(per_step))
        assert static >= -1e-9


def test_an_estimator_missing_a_hook_cannot_be_registered():
    class Incomplete(Estimator):
        name = "incomplete"

        def layer_energy_pj(self, layer, workload, p, dense):
            return {}

        def layer_latency_ns(self, layer, workload, p, dense):
            return 0.0

        def notes(self, workload, p, dense):
            return []

        # layer_area_um2 misspelt: must not silently cost 0
        def layer_area_um2s(self, layer, workload, p):
            return {}

    with pytest.raises(TypeError, match="layer_area_um2"):
        register_estimator(Incomplete)


def test_an_operator_missing_a_hook_cannot_be_registered():
    class Half(ops.Op):
        kind = "half"
        modules = (nn.Identity,)

        def sample_ndim(self, module):
            return None

    with pytest.raises(TypeError, match="accumulates"):
        ops.register_op(Half)
    assert "half" not in ops.list_ops()


def test_pipelined_rate_is_set_by_the_slowest_layer():
    from spikecim.models import create_model

    m = create_model("convnet", spiking=True, num_classes=10, in_channels=1, input_size=8)
    torch.manual_seed(0)
    r = estimate(trace(m, [(torch.rand(2, 3, 1, 8, 8) < 0.3).float()]), "imc-rram-65nm")
    slowest = max(layer.latency_ns for layer in r.layers)
    assert r.stage_latency_ns == slowest and r.frames_per_s == pytest.approx(1e9 / slowest)
    assert r.frames_per_s_sequential == pytest.approx(1e9 / sum(layer.latency_ns for layer in r.layers))
    assert r.pipelined_latency_ns == pytest.approx(len(r.layers) * slowest)


@pytest.mark.parametrize("name", ["convnet", "mlp"])
def test_traced_operations_equal_spikingjelly_synop_counter(name):
    op_counter = pytest.importorskip("spikingjelly.activation_based.op_counter")
    from spikecim.models import create_model

    model = create_model(name, spiking=True, num_classes=10, in_channels=1, input_size=8).eval()
    torch.manual_seed(3)
    x = (torch.rand(3, 2, 1, 8, 8) < 0.4).float()
    syn = op_counter.SynOpCounter()
    with torch.no_grad(), op_counter.DispatchCounterMode([syn]):
        model(x)
    counts = syn.get_counts()
    w = trace(model, [x])
    prefix = type(model).__name__
    for layer in w.layers:
        theirs = sum(counts.get(f"{prefix}.{layer.name}", {}).values())
        assert sum(layer.acs_per_step) * w.samples == pytest.approx(theirs), layer.name


@pytest.mark.parametrize("size", [(7, 9), (4, 5), (16, 16)])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 2), (1, 2)), ((1, 1), (3, 2), (0, 0), (1, 1))],
)
def test_conv_output_size_is_the_extent_torchs_convolution_gives(size, kernel, stride, padding, dilation):
    x, w = torch.zeros(1, 1, *size), torch.zeros(1, 1, *kernel)
    y = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation)
    assert output_size(size, kernel, stride, padding, dilation) == tuple(y.shape[2:])

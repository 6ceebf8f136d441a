"""to_nir: registry models round trip, the snnTorch parameter convention, reset metadata."""

import inspect
import warnings

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.interop import from_nir, to_nir, write_graph
from spikecim.models import create_model, list_models
from spikecim.nn import IF, LIF, Sequential, SynapticLIF


def _small(name: str, neuron: str = "lif") -> nn.Module:
    """A registered spiking model at a test size: 1x8x8 input, narrow where it has a width."""
    torch.manual_seed(0)
    from spikecim.models._registry import _MODELS

    width = inspect.signature(_MODELS[name]).parameters.get("width")
    kw = {"width": 0.0625} if width is not None and isinstance(width.default, float) else {}
    model = create_model(
        name, spiking=True, in_channels=1, input_size=8, neuron=neuron, neuron_kw={"threshold": 0.5}, **kw
    )
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding is exercised
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.4)
    return model.double().eval()


def _spike_count(model: nn.Module, x: torch.Tensor) -> float:
    counts = []
    hooks = [m.register_forward_hook(lambda m, a, o: counts.append(float(o.detach().sum())))
             for m in model.modules() if isinstance(m, LIF)]  # fmt: skip
    model(x)
    for h in hooks:
        h.remove()
    return sum(counts)


TRANSFORMERS = ("spikformer-tiny", "vit-tiny")  # products of activations: NIR has no node for them


@pytest.mark.parametrize("name", [n for n in list_models("classification") if n not in TRANSFORMERS])
def test_registered_spiking_model_round_trips_through_a_nir_file(name, tmp_path):
    model = _small(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default subtract reset warns (tested below)
        path = write_graph(to_nir(model, input_shape=(1, 8, 8)), tmp_path / f"{name}.nir")
    again = from_nir(path, dtype=torch.float64)
    torch.manual_seed(1)
    x = torch.rand(4, 3, 1, 8, 8, dtype=torch.float64) * 2
    assert _spike_count(model, x) > 0
    torch.testing.assert_close(again(x), model(x), atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_export_is_refused_with_one_line(name):
    with pytest.raises(SpikecimError) as e:
        to_nir(create_model(name, width=0.25), input_shape=(1, 8, 8))
    assert "\n" not in str(e.value) and "no NIR equivalent" in str(e.value)


@pytest.mark.parametrize("neuron", ["if", "synaptic"])
def test_mlp_round_trips_with_every_neuron_kind(neuron, tmp_path):
    model = _small("mlp", neuron)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = from_nir(
            write_graph(to_nir(model, input_shape=(1, 8, 8)), tmp_path / "m.nir"), dtype=torch.float64
        )
    x = torch.rand(5, 2, 1, 8, 8, dtype=torch.float64) * 2
    assert _spike_count(model, x) > 0
    torch.testing.assert_close(again(x), model(x), atol=1e-12, rtol=0)


def test_exported_lif_follows_reference_discretisation():
    # docs/references.md#nir-discretisation: tau = dt/(1 - beta), r = tau/dt;
    # synaptic: tau_syn = dt/(1 - alpha), w_in = tau_syn/dt
    model = Sequential(nn.Linear(3, 2), LIF(beta=0.9, threshold=1.3, reset="zero", reset_delay=False),
                       nn.Linear(2, 2), SynapticLIF(alpha=0.8, beta=0.75, threshold=0.7, reset="zero", reset_delay=False))  # fmt: skip
    g = to_nir(model, dt=1e-3)
    lif, cuba = g.nodes["1"], g.nodes["3"]
    assert isinstance(lif, nir.LIF) and isinstance(cuba, nir.CubaLIF)
    # float32 parameters: beta = 0.9 is stored as 0.89999998, hence rtol 1e-6
    np.testing.assert_allclose(lif.tau, [1e-2, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(lif.r, [10.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(lif.v_threshold, [1.3, 1.3], rtol=1e-6)
    np.testing.assert_allclose(cuba.tau_syn, [5e-3, 5e-3], rtol=1e-6)
    np.testing.assert_allclose(cuba.w_in, [5.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(cuba.tau_mem, [4e-3, 4e-3], rtol=1e-6)
    np.testing.assert_allclose(cuba.r, [4.0, 4.0], rtol=1e-6)
    assert lif.metadata == {} and cuba.metadata == {}  # NIR's own reset: nothing to flag
    assert float(g.metadata["dt"]) == 1e-3


def test_if_exports_as_nir_if():
    g = to_nir(Sequential(nn.Linear(2, 3), IF(threshold=2.0, reset="zero", reset_delay=False)))
    node = g.nodes["1"]
    assert isinstance(node, nir.IF)
    np.testing.assert_allclose(node.v_threshold, [2.0] * 3)
    np.testing.assert_allclose(node.r, [1.0] * 3)


def test_subtract_reset_warns_writes_metadata_and_is_restored(tmp_path):
    torch.manual_seed(0)
    model = Sequential(
        nn.Linear(4, 5), LIF(beta=0.9, threshold=0.3, reset="subtract", reset_delay=True)
    ).double()
    with pytest.warns(UserWarning, match="node '1'.*subtract reset"):
        path = write_graph(to_nir(model), tmp_path / "sub.nir")
    node = nir.read(path).nodes["1"]
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in node.metadata.items()}
    assert meta["reset"] == "subtract" and bool(meta["reset_delay"]) is True
    again = from_nir(path, dtype=torch.float64)
    assert again[1].reset == "subtract" and again[1].reset_delay is True
    x = torch.rand(30, 2, 4, dtype=torch.float64) * 2
    torch.testing.assert_close(again(x), model(x), atol=1e-12, rtol=0)


def test_a_quantised_or_channel_shared_membrane_warns_and_is_named_in_metadata(tmp_path):
    """NIR's LIF holds neither a membrane quantiser (SQUAT, MINT) nor a membrane shared by
    channel groups (EfficientLIF-Net): the node is written as the plain neuron, with a warning
    and the lost state in its metadata, never silently."""
    from spikecim.methods import apply_methods
    from spikecim.nn.shared import SharedLIF
    from spikecim.variants import MethodConfig

    neuron = {"beta": 0.9, "threshold": 0.3, "reset": "zero", "reset_delay": False}
    squat = apply_methods(Sequential(nn.Linear(4, 5), LIF(**neuron)), [MethodConfig(name="squat", bits=2)])
    shared = Sequential(nn.Linear(4, 8), SharedLIF(**neuron, channel_groups=2))
    for model, words, meta in (
        (squat, r"membrane quantiser \(2 bits\)", {"membrane_bits": 2}),
        (shared, "membrane shared by 2 channel groups", {"channel_groups": 2}),
    ):
        with pytest.warns(UserWarning, match=f"node '1': its {words}"):
            path = write_graph(to_nir(model), tmp_path / "lost.nir")
        node = nir.read(path).nodes["1"]
        assert {k: int(node.metadata[k]) for k in meta} == meta


def test_graph_without_the_flag_imports_as_nir_zero_reset(tmp_path):
    model = Sequential(nn.Linear(4, 5), LIF(beta=0.9, threshold=0.3, reset="subtract", reset_delay=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = to_nir(model)
    g.nodes["1"].metadata = {}
    again = from_nir(g)
    assert again[1].reset == "zero" and again[1].reset_delay is False


def test_maxpool_on_spikes_exports_as_sumpool_then_threshold(tmp_path):
    torch.manual_seed(0)
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), LIF(0.8, 0.5, "zero", False), nn.MaxPool2d(2),
                       nn.Flatten(), nn.Linear(16, 3)).double()  # fmt: skip
    g = to_nir(model, input_shape=(1, 4, 4))
    kinds = [type(g.nodes[k]).__name__ for k in ("2", "2.spike")]
    assert kinds == ["SumPool2d", "Threshold"]
    again = from_nir(write_graph(g, tmp_path / "mp.nir"), dtype=torch.float64)
    x = torch.rand(6, 2, 1, 4, 4, dtype=torch.float64) * 2
    assert _spike_count(model, x) > 0
    torch.testing.assert_close(again(x), model(x), atol=1e-12, rtol=0)


def test_maxpool_on_real_values_is_refused_naming_the_layer():
    model = Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    with pytest.raises(SpikecimError, match="layer '1' \\(MaxPool2d\\)"):
        to_nir(model, input_shape=(1, 6, 6))


def test_ann_relu_has_no_nir_equivalent_error_names_the_layer():
    model = create_model("mlp", spiking=False)
    with pytest.raises(SpikecimError, match="layer '2' \\(ReLU\\): no NIR equivalent"):
        to_nir(model, input_shape=(1, 8, 8))


def test_conv_model_without_input_shape_asks_for_it():
    with pytest.raises(SpikecimError, match="input_shape"):
        to_nir(Sequential(nn.Conv2d(1, 2, 3), LIF()))


@pytest.mark.parametrize(
    "method", [{"name": "weight-qat", "bits": 3}, {"name": "prune", "sparsity": 0.5, "end_epoch": 0}]
)
def test_a_parametrised_weight_is_exported_as_the_layer_computes_it(method):
    from spikecim.methods import apply_methods
    from spikecim.nn.prune import prune_at
    from spikecim.variants import MethodConfig

    torch.manual_seed(0)
    model = apply_methods(create_model("mlp", spiking=True, hidden=(16,)), [MethodConfig(**method)])
    prune_at(model, 0, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the subtract reset's note
        graph = to_nir(model)
    for name in ("1", "3"):
        np.testing.assert_array_equal(
            graph.nodes[name].weight, model.get_submodule(name).weight.detach().numpy()
        )
    if method["name"] == "prune":
        assert (graph.nodes["1"].weight == 0).sum() == round(0.5 * 64 * 16)

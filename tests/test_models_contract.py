"""Contract tests over the model registry (timm style): every registered model, spiking and
ANN twin, at a small width on 8x8 input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomise_batchnorm
from spikecim import nn as snn
from spikecim.errors import SpikecimError
from spikecim.models import create_model, list_models
from spikecim.models.vit import PatchEmbedding
from spikecim.nn import TemporalModule, get_neuron, list_neurons

T, B, C, S, CLASSES = 3, 2, 2, 8, 5
WIDTH = 0.0625
GRID = [(name, spiking) for name in list_models("classification") for spiking in (True, False)]
IDS = [f"{n}-{'snn' if s else 'ann'}" for n, s in GRID]
# Models whose spiking form is another architecture (docs/transformers.md): vit-tiny's is the
# Spikformer of its size, since a softmax transformer has no spiking form.
OTHER_SPIKING_FORM = {"vit-tiny"}


def _model(name: str, spiking: bool, **kw) -> nn.Module:
    return create_model(
        name, spiking=spiking, num_classes=CLASSES, in_channels=C, input_size=S, width=WIDTH, **kw
    )


def _input(spiking: bool, seed: int = 0, size: int = S) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T if spiking else 1, B, C, size, size, generator=g) * 2


def test_registry_lists_the_published_architectures():
    assert {"mlp", "convnet", "vgg5", "vgg9", "vgg11", "resnet19"} <= set(list_models("classification"))


@pytest.mark.parametrize("name,spiking", GRID, ids=IDS)
def test_output_is_finite_logits_per_step(name, spiking):
    torch.manual_seed(0)
    x = _input(spiking)
    y = _model(name, spiking)(x)
    assert y.shape == (x.shape[0], B, CLASSES)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (2, 1)], ids=["cifar", "mnist", "1x1"])
@pytest.mark.parametrize("name", list_models("classification"))
def test_runs_on_any_square_input_size(name, channels, size):
    torch.manual_seed(0)
    model = create_model(
        name, spiking=True, num_classes=CLASSES, in_channels=channels, input_size=size, width=WIDTH
    )
    y = model(torch.randn(2, 1, channels, size, size))
    assert y.shape == (2, 1, CLASSES)


@pytest.mark.parametrize("name,spiking", GRID, ids=IDS)
def test_every_parameter_receives_a_nonzero_gradient(name, spiking):
    """The last Linear's weight gradient is sum(spikes * dL/dy): zero while the last hidden
    layer is silent, so the spiking models run with a low threshold to guarantee activity."""
    torch.manual_seed(0)
    model = _model(name, spiking, **({"neuron_kw": {"threshold": 0.25}} if spiking else {})).train()
    model(_input(spiking)).pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,spiking", GRID, ids=IDS)
def test_state_dict_round_trip_gives_identical_outputs(name, spiking):
    torch.manual_seed(1)
    a = _model(name, spiking)
    randomise_batchnorm(a, 1)
    torch.manual_seed(2)
    b = _model(name, spiking)
    b.load_state_dict(a.state_dict())
    x = _input(spiking, seed=3)
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    assert torch.equal(ya, yb)


@pytest.mark.parametrize("name", list_models("classification"))
def test_state_resets_between_forward_calls(name):
    torch.manual_seed(0)
    model = _model(name, True).eval()
    x = _input(True)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", sorted(set(list_models("classification")) - OTHER_SPIKING_FORM))
def test_ann_twin_has_identical_topology_with_relu_for_each_neuron(name):
    snn, ann = _model(name, True), _model(name, False)
    snn_kinds = [
        "act" if isinstance(m, TemporalModule) and not list(m.children()) else type(m).__name__
        for m in snn.modules()
    ]
    ann_kinds = ["act" if isinstance(m, nn.ReLU) else type(m).__name__ for m in ann.modules()]
    assert snn_kinds == ann_kinds
    assert [p.shape for p in snn.parameters()] == [p.shape for p in ann.parameters()]


@pytest.mark.parametrize("name", list_models("classification"))
def test_spiking_model_that_never_fires_outputs_the_final_bias(name):
    """With an unreachable threshold no neuron spikes, so every layer after the first sees
    zeros and the logits are the last Linear's bias at every step (hand derivation)."""
    torch.manual_seed(0)
    model = _model(name, True, neuron="if", neuron_kw={"threshold": 1e9}).eval()
    randomise_batchnorm(model, 0)
    with torch.no_grad():
        y = model(_input(True))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    torch.testing.assert_close(y, last.bias.detach().expand(T, B, CLASSES), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list_models("classification"))
def test_every_synaptic_layer_is_a_plain_torch_conv_or_linear(name):
    model = _model(name, True)
    weighted = [
        m
        for m in model.modules()
        if any(p is not None for p in m.parameters(recurse=False)) and not isinstance(m, PatchEmbedding)
    ]
    # spikecim.nn.BatchNorm2d, Conv2d and Linear: torch's layers' parameters and buffers, faster CPU code
    norms = (nn.BatchNorm2d, nn.BatchNorm1d, snn.BatchNorm2d)
    assert all(type(m) in (nn.Conv2d, snn.Conv2d, nn.Linear, snn.Linear, *norms) for m in weighted)


def test_transformers_hold_only_position_and_class_token_outside_conv_linear_and_norms():
    """A transformer's learned position and class token are added to the tokens, never on a crossbar."""
    for model in (_model("spikformer-tiny", True), _model("vit-tiny", False)):
        extra = {
            name
            for mname, m in model.named_modules()
            if type(m)
            not in (
                nn.Conv2d,
                nn.Linear,
                snn.Linear,
                nn.BatchNorm2d,
                nn.BatchNorm1d,
                snn.BatchNorm2d,
                nn.LayerNorm,
            )
            for name, _ in m.named_parameters(prefix=mname, recurse=False)
        }
        assert extra <= {"embed.position", "embed.cls"} and "embed.position" in extra


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"width": 0}, "model.vgg9.width"),
        ({"width": -1.0}, "model.vgg9.width"),
        ({"num_classes": 0}, "model.num_classes"),
        ({"in_channels": 1.5}, "model.in_channels"),
        ({"input_size": -8}, "model.input_size"),
        ({"neuron": "hh"}, "model.neuron"),
        ({"neuron_kw": {"beta": 2.0}}, "model.neuron_kw.beta"),
        ({"neuron": "if", "neuron_kw": {"beta": 0.5}}, "model.neuron_kw"),
    ],
)
def test_bad_model_argument_raises_one_line_error_naming_field(kwargs, field):
    with pytest.raises(SpikecimError) as e:
        create_model("vgg9", **kwargs)
    assert "\n" not in str(e.value) and str(e.value).startswith(field)


@pytest.mark.parametrize("value", [None, 8])
def test_an_argument_the_builder_does_not_take_is_refused_even_when_null(value):
    # YAML's {d_model:8} (no space after the colon) is the key "d_model:8" set to null
    with pytest.raises(SpikecimError) as e:
        create_model("transformer-tiny", spiking=False, **{"d_model:8": value})
    assert str(e.value) == (
        "model.kwargs: unknown argument 'd_model:8' of transformer-tiny, allowed: d_model, layers, heads"
    )


def test_an_infinite_width_is_refused_in_one_line():
    with pytest.raises(SpikecimError) as e:
        create_model("vgg9", width=float("inf"))
    assert str(e.value) == "model.vgg9.width: must be a finite number > 0, got inf"


def test_a_model_larger_than_any_address_space_is_refused_naming_its_arguments():
    # width 1e11 asks for petabytes in one weight: beyond a 47-bit address space, so the
    # allocation fails even where the kernel overcommits memory
    with pytest.raises(SpikecimError) as e:
        create_model("mlp", width=1e11)
    assert "\n" not in str(e.value) and str(e.value).startswith("model.kwargs: mlp with {'width'")


def test_unknown_model_name_lists_the_allowed_names():
    with pytest.raises(SpikecimError, match=r"^model.name: unknown 'vgg99', allowed: .*resnet19"):
        create_model("vgg99")


DEFAULT_INPUT = {
    "mlp": (1, 8, 8),
    "convnet": (1, 8, 8),
    "vgg5": (3, 32, 32),
    "vgg9": (3, 32, 32),
    "vgg11": (3, 32, 32),
    "resnet19": (3, 32, 32),
    "vit-tiny": (1, 8, 8),
    "spikformer-tiny": (1, 8, 8),
}  # docs/neurons-and-models.md


@pytest.mark.parametrize("name", sorted(DEFAULT_INPUT))
def test_input_shape_attribute_records_the_default_sample_shape_the_model_accepts(name):
    model = create_model(name, width=WIDTH)
    assert model.input_shape == DEFAULT_INPUT[name]
    assert model.spiking is True and model.model_name == name
    with torch.no_grad():
        assert model(torch.zeros(1, 1, *model.input_shape)).shape == (1, 1, 10)


@pytest.mark.parametrize("neuron", list_neurons())
@pytest.mark.parametrize("name", ["convnet", "resnet19"])
def test_every_neuron_kind_builds_and_runs(name, neuron):
    torch.manual_seed(0)
    model = _model(name, True, neuron=neuron)
    acts = [m for m in model.modules() if isinstance(m, TemporalModule) and not list(m.children())]
    assert acts and all(type(m) is get_neuron(neuron) for m in acts)
    y = model(_input(True))
    assert y.shape == (T, B, CLASSES) and torch.isfinite(y).all()


@pytest.mark.parametrize("hidden", [(0,), (-3,), (2.5,), 5, ("a",), (True,)])
@pytest.mark.parametrize("name", ["mlp", "vgg5", "resnet19"])
def test_hidden_sizes_that_are_not_positive_integers_are_refused_in_one_line(name, hidden):
    # before the width multiplier, which would turn 0 or -3 into one unit
    with pytest.raises(SpikecimError) as e:
        create_model(name, width=0.1, hidden=hidden)
    assert str(e.value) == f"model.{name}.hidden: must be a list of positive integers, got {hidden!r}"


@pytest.mark.parametrize("hidden", [0, -3, 2.5, (8,)])
def test_convnet_hidden_size_that_is_not_a_positive_integer_is_refused_in_one_line(hidden):
    with pytest.raises(SpikecimError) as e:
        create_model("convnet", width=0.1, hidden=hidden)
    assert str(e.value) == f"model.convnet.hidden: must be a positive integer, got {hidden!r}"


def test_a_model_without_spiking_form_names_both_ways_to_build_it():
    # matmulfree-tiny is registered spiking_form=False (an ANN-only language model)
    with pytest.raises(SpikecimError) as e:
        create_model("matmulfree-tiny")
    assert "variants with spiking: false" in str(e.value)
    assert "create_model(..., spiking=False)" in str(e.value)
    assert "\n" not in str(e.value)

"""``prune`` with ``granularity: channel``: L1-norm filter pruning (Li et al. 2017) against
torch's ``ln_structured``, the masks of the next layer's inputs against hand-built ones, and
the deployed network (its pruned channels removed) against the masked one and hand counts."""

import json

import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils import prune as torch_prune

from spikecim.cli.main import main
from spikecim.methods import apply_methods, deploy_model
from spikecim.models import create_model
from spikecim.nn.prune import prune_at
from spikecim.variants import MethodConfig


def _methods(**options) -> list[MethodConfig]:
    return [MethodConfig.model_validate({"name": "prune", "granularity": "channel", **options})]


def _pruned(model_name: str = "convnet", spiking: bool = True, sparsity: float = 0.5, **kwargs):
    torch.manual_seed(0)
    methods = _methods(sparsity=sparsity)
    model = apply_methods(create_model(model_name, spiking=spiking, **kwargs), methods)
    prune_at(model, 4, 4)  # the final masks (end_epoch 3 of 4)
    return model, methods


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}


def _rows(m: nn.Module) -> torch.Tensor:
    """The output channels ``m``'s mask keeps."""
    return m.parametrizations["weight"][0].mask.flatten(1).any(1)


def _ln_structured_rows(weight: torch.Tensor, amount: int) -> torch.Tensor:
    """The output channels torch's L1 ``ln_structured`` keeps of ``weight``."""
    layer = nn.Linear(1, 1)
    layer.weight = nn.Parameter(weight.detach().clone())
    torch_prune.ln_structured(layer, "weight", amount=amount, n=1, dim=0)
    return layer.weight_mask.flatten(1).any(1)


def test_the_kept_channels_are_torchs_l1_structured_pruning_of_the_masked_weights():
    model, _ = _pruned()
    layers = list(_layers(model).values())
    for i, m in enumerate(layers[:-1]):
        chain = m.parametrizations["weight"]
        # the weights a layer ranks are those its inputs keep: the mask's columns of the layer before
        cols = chain[0].mask.reshape(*chain[0].mask.shape[:2], -1).any(2).any(0)
        n = chain.original.shape[0]
        want = _ln_structured_rows(
            chain.original * cols.view(1, -1, *[1] * (chain.original.dim() - 2)), round(0.5 * n)
        )
        assert torch.equal(_rows(m), want), i
    assert _rows(layers[-1]).all()  # the classifier's outputs are the model's


def test_the_next_layer_reads_no_pruned_channel_across_the_flatten():
    model, _ = _pruned()
    convs = [m for m in _layers(model).values() if isinstance(m, nn.Conv2d)]
    linear = next(m for m in _layers(model).values() if isinstance(m, nn.Linear))
    kept = _rows(convs[-1])
    mask = linear.parametrizations["weight"][0].mask
    # channel c of the 64-channel 4x4 map (after 2x2 pooling of 8x8) is features 16c .. 16c + 15
    by_channel = mask.view(mask.shape[0], kept.numel(), 16)
    for c in range(kept.numel()):
        assert bool(by_channel[_rows(linear)][:, c].all()) == bool(kept[c]), c
        assert not by_channel[~_rows(linear)].any()
    conv_mask = convs[1].parametrizations["weight"][0].mask
    assert torch.equal(conv_mask.any(0).flatten(1).any(1), _rows(convs[0]))


@pytest.mark.parametrize(
    ("model_name", "spiking", "kwargs"),
    [
        ("convnet", True, {}),
        ("convnet", False, {}),
        ("mlp", True, {"hidden": (48, 24)}),
        ("vgg9", True, {"width": 0.125, "in_channels": 1, "input_size": 8}),
    ],
)
def test_the_deployed_chain_computes_what_the_masked_one_computes(model_name, spiking, kwargs):
    model, methods = _pruned(model_name, spiking, 0.6, **kwargs)
    model.eval()
    deployed = deploy_model(model, methods)
    size = 8
    x = torch.rand(4 if spiking else 1, 3, 1, size, size)
    with torch.no_grad():
        assert torch.allclose(deployed(x), model(x), atol=1e-6)
    # hand counts: every layer but the last keeps C - round(0.6 C) of its C output channels
    full = list(_layers(create_model(model_name, spiking=spiking, **kwargs)).values())
    small = list(_layers(deployed).values())
    outs = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in full]
    got = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in small]
    assert got == [c - round(0.6 * c) for c in outs[:-1]] + [outs[-1]]
    assert not any(isinstance(m, nn.BatchNorm2d) and m.num_features not in got for m in deployed.modules())
    # the masked model still holds its masks and full weights
    assert [m.weight.shape[0] for m in _layers(model).values()] == outs


@pytest.mark.parametrize("spiking", [True, False])
def test_a_resnet_loses_channels_inside_its_blocks_only_and_computes_the_same(spiking):
    torch.manual_seed(0)
    kwargs = {"width": 0.125, "in_channels": 1}
    model, methods = _pruned("resnet19", spiking, 0.5, **kwargs)
    model.eval()
    deployed = deploy_model(model, methods)
    x = torch.rand(4 if spiking else 1, 2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(deployed(x), model(x), atol=1e-5)
    # hand counts (Li et al. 2017 prune a block's first convolution only): each block's conv1
    # keeps C - round(C/2) of its C outputs and its conv2 reads them; the stem, the conv2s and
    # the shortcuts keep their channels (the sums tie them); the hidden linear layer keeps half
    full = _layers(create_model("resnet19", spiking=spiking, **kwargs))
    small = _layers(deployed)
    assert full.keys() == small.keys()
    for name, m in full.items():
        want_out, want_in = m.weight.shape[0], m.weight.shape[1]
        if name.endswith(".conv1") or name == "13":
            want_out -= round(0.5 * want_out)
        if name.endswith(".conv2") or name == "15":
            want_in -= round(0.5 * want_in)
        assert tuple(small[name].weight.shape[:2]) == (want_out, want_in), name


@pytest.mark.parametrize("other", ["dt-snn", "squat"])
@pytest.mark.parametrize("first", [True, False])
def test_a_network_with_another_method_deploys_to_the_same_outputs(other, first):
    torch.manual_seed(0)
    prune = {"name": "prune", "sparsity": 0.5, "granularity": "channel"}
    listed = [{"name": other}, prune] if first else [prune, {"name": other}]
    methods = [MethodConfig.model_validate(m) for m in listed]
    model = apply_methods(create_model("convnet"), methods)
    prune_at(model, 4, 4)
    model.eval()
    deployed = deploy_model(model, methods)
    x = torch.rand(4, 3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(deployed(x), model(x), atol=1e-6)
    assert [m.weight.shape[0] for m in _layers(deployed).values()] == [16, 32, 64, 10]
    assert type(deployed) is type(model)


def test_a_pruned_channel_stays_pruned_however_large_its_weights_grow():
    model, _ = _pruned(sparsity=0.5)
    first = next(iter(_layers(model).values()))
    gone = ~_rows(first)
    with torch.no_grad():
        first.parametrizations["weight"].original[gone] *= 1000.0
    prune_at(model, 4, 4)
    assert torch.equal(~_rows(first), gone)


def test_excluded_layers_keep_their_outputs_and_lose_the_inputs_of_pruned_channels():
    torch.manual_seed(0)
    model = apply_methods(create_model("convnet"), _methods(sparsity=0.5, exclude=["3"]))
    prune_at(model, 4, 4)
    layers = _layers(model)
    assert _rows(layers["3"]).all()
    assert not _rows(layers["0"]).all()
    cols = layers["3"].parametrizations["weight"][0].mask.any(0).flatten(1).any(1)
    assert torch.equal(cols, _rows(layers["0"]))


def _run_config(tmp_path, methods, model=None, stages=None) -> str:
    config = {
        "name": "chan",
        "model": model or {"name": "convnet", "kwargs": {"width": 0.5}},
        "variants": [{"name": "snn-c", "methods": methods}],
        "train": {"epochs": 2},
        "output_dir": str(tmp_path),
        "stages": stages or ["train", "evaluate", "trace"],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_run_traces_reloads_and_exports_the_network_without_its_pruned_channels(tmp_path):
    from spikecim.pipeline.run import load_run

    path = _run_config(
        tmp_path, [{"name": "prune", "sparsity": 0.5, "granularity": "channel", "end_epoch": 1}]
    )
    assert main(["run", path]) == 0
    run = tmp_path / "chan"
    layers = {layer["name"]: layer for layer in json.loads((run / "workload.json").read_text())["layers"]}
    # convnet at width 0.5: 16 and 32 channels, 64 hidden units; half of each is left
    assert (layers["0"]["in_ch"], layers["0"]["out_ch"]) == (1, 8)
    assert (layers["3"]["in_ch"], layers["3"]["out_ch"]) == (8, 16)
    dense_macs = 4 * (
        64 * 8 * 1 * 9 + 64 * 16 * 8 * 9 + 16 * 16 * 32 + 32 * 10
    )  # T = 4, 8x8 maps, 4x4 pooled
    assert json.loads((run / "metrics.json").read_text())["trace"]["snn-c"]["dense_macs"] == pytest.approx(
        dense_macs
    )
    ctx = load_run(run)
    model = ctx.models["snn-c"]
    assert [m.weight.shape for m in _layers(model).values()] == [
        (8, 1, 3, 3),
        (16, 8, 3, 3),
        (32, 256),
        (10, 32),
    ]
    # the small network computes what the checkpoint's masked full network computes, on every test image
    from spikecim.pipeline.run import build_models, variant_input
    from spikecim.train.checkpoint import load_variant_weights

    masked = build_models(ctx.config, ctx.data)["snn-c"]
    load_variant_weights(masked, run / "checkpoint", "snn-c")
    x = variant_input(ctx.config, "snn-c", ctx.data).encode(ctx.data.x_test, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), masked.eval()(x), atol=1e-5)
    # the NIR graph is the deployed network's, read back by the nir library itself
    import nir

    assert main(["nir", "export", str(run), "-o", str(tmp_path / "c.nir"), "--variant", "snn-c"]) == 0
    nodes = nir.read(str(tmp_path / "c.nir")).nodes
    assert main(["nir", "export", str(run), "-o", str(tmp_path / "x.nir"), "--variant", "ann"]) != 0
    assert not (tmp_path / "x.nir").exists()
    assert [tuple(nodes[n].weight.shape) for n in ("0", "3", "8", "10")] == [
        (8, 1, 3, 3),
        (16, 8, 3, 3),
        (32, 256),
        (10, 32),
    ]


def test_the_dse_lower_bound_has_the_final_number_of_channels():
    from spikecim.config import RunConfig
    from spikecim.data import dataset_from_config
    from spikecim.dse.evaluate import structural_workload

    cfg = RunConfig.model_validate(
        {
            "model": {"name": "convnet", "kwargs": {"width": 0.5}},
            "variants": [
                {"name": "snn", "methods": [{"name": "prune", "sparsity": 0.75, "granularity": "channel"}]}
            ],
            "train": {"epochs": 4},
        }
    )
    wl = structural_workload(cfg, dataset_from_config(cfg.data))
    assert [(layer.kind, getattr(layer, "out_ch", None)) for layer in wl.layers][:2] == [
        ("conv2d", 4),
        ("conv2d", 8),
    ]


@pytest.mark.parametrize(
    ("model", "methods", "field"),
    [
        (
            {"name": "spikformer-tiny"},
            [{"name": "prune", "sparsity": 0.5, "granularity": "channel"}],
            "methods.prune.granularity",
        ),
        (
            None,
            [{"name": "prune", "sparsity": 0.5, "granularity": "channel", "scope": "global"}],
            "methods.prune.scope",
        ),
        (
            None,
            [{"name": "weight-qat", "bits": 4}, {"name": "prune", "sparsity": 0.5, "granularity": "channel"}],
            "methods.prune.granularity",
        ),
        (
            None,
            [{"name": "prune", "sparsity": 0.5, "granularity": "channel"}, {"name": "weight-qat", "bits": 4}],
            "methods.prune.granularity",
        ),
        (None, [{"name": "prune", "sparsity": 0.5, "granularity": "row"}], "methods.prune.granularity"),
    ],
)
def test_what_cannot_be_pruned_by_channel_is_refused_in_one_line_before_training(
    tmp_path, capsys, model, methods, field
):
    path = _run_config(tmp_path, methods, model=model)
    code = main(["run", path])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "chan" / "checkpoint").exists() or not any(
        (tmp_path / "chan" / "checkpoint").iterdir()
    )

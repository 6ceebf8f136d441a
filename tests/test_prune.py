"""The ``prune`` method: gradual magnitude pruning (Zhu and Gupta 2017) against torch's own
cubic schedule, brute-force magnitude orderings and hand counts of zero weights."""

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from spikecim.analog import to_analog
from spikecim.cli.main import main
from spikecim.data import load_dataset
from spikecim.errors import SpikecimError
from spikecim.methods import apply_methods, get_method
from spikecim.models import create_model
from spikecim.nn.prune import gradual_sparsity, magnitude_masks, prune_at
from spikecim.train import FitSpec, fit
from spikecim.variants import MethodConfig

prune = get_method("prune")


def _mlp(spiking: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", spiking=spiking, hidden=(32, 16))


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The synaptic layers' weights as the forward uses them, by layer name."""
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


@pytest.mark.parametrize(("start", "end"), [(0, 6), (2, 9), (3, 4)])
def test_the_schedule_is_torchs_cubic_sparsity_level(start, end):
    from torch.ao.pruning import CubicSL

    for b in range(12):
        want = CubicSL.sparsity_compute_fn(0.0, 0.85, b, start, 1, end - start, initially_zero=True)
        assert gradual_sparsity(b, 0.85, start, end) == pytest.approx(want, abs=1e-12), b


def test_a_one_shot_schedule_jumps_to_the_sparsity_at_its_start():
    assert [gradual_sparsity(b, 0.7, 3, 3) for b in range(6)] == [0, 0, 0, 0.7, 0.7, 0.7]


def test_the_masks_keep_the_largest_magnitudes_of_all_weights_together():
    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(5, 7, generator=gen), torch.randn(3, 2, 2, generator=gen)]
    masks = magnitude_masks(weights, [torch.ones_like(w, dtype=torch.bool) for w in weights], 0.6)
    flat = np.concatenate([w.numpy().ravel() for w in weights])
    k = round(0.6 * flat.size)
    threshold = np.sort(np.abs(flat))[k - 1]  # the k-th smallest magnitude goes, the rest stays
    kept = np.concatenate([m.numpy().ravel() for m in masks])
    assert kept.sum() == flat.size - k
    assert (kept == (np.abs(flat) > threshold)).all()


def test_a_pruned_weight_stays_pruned_however_large_it_is():
    w = torch.tensor([[5.0, 0.1, 0.2, 0.3, 4.0, 3.0]])
    masks = magnitude_masks([w], [torch.tensor([[False, True, True, True, True, True]])], 0.5)
    assert masks[0].tolist() == [[False, False, False, True, True, True]]  # 5.0 first, then 0.1, 0.2


def test_layer_scope_prunes_every_layer_to_its_own_rounded_fraction():
    model = prune(_mlp(), sparsity=0.7, end_epoch=0)
    prune_at(model, 0, epochs=5)
    for name, w in _weights(model).items():
        assert int((w == 0).sum()) == round(0.7 * w.numel()), name


def test_global_scope_prunes_the_smallest_magnitudes_over_all_layers():
    model = _mlp()
    before = _weights(model)
    prune(model, sparsity=0.8, scope="global", end_epoch=0)
    prune_at(model, 0, epochs=5)
    flat = torch.cat([w.flatten().abs() for w in before.values()])
    threshold = flat.sort().values[round(0.8 * flat.numel()) - 1]
    for name, w in _weights(model).items():
        assert torch.equal(w != 0, before[name].abs() > threshold), name
    counts = [float((w == 0).float().mean()) for w in _weights(model).values()]
    assert max(counts) - min(counts) > 0.05  # the layers end at different sparsities


def test_excluded_layers_stay_dense():
    model = prune(_mlp(), sparsity=0.9, exclude=["1", "[5-9]"], end_epoch=0)
    prune_at(model, 0, epochs=1)
    zeros = {name: int((w == 0).sum()) for name, w in _weights(model).items()}
    assert [z for z in zeros.values() if z] == [round(0.9 * 32 * 16)], zeros  # only the 32 -> 16 layer


def test_a_layer_number_read_by_yaml_names_that_layer():
    model = prune(_mlp(), sparsity=0.9, **yaml.safe_load("exclude: [1, 5]"), end_epoch=0)
    prune_at(model, 0, epochs=1)
    zeros = {name: int((w == 0).sum()) for name, w in _weights(model).items()}
    assert [z for z in zeros.values() if z] == [round(0.9 * 32 * 16)], zeros  # only the 32 -> 16 layer


def _fit(model, epochs, tmp_path=None, **kw):
    spec = FitSpec(epochs=epochs, batch_size=128, timesteps=2, lr=5e-3, device="cpu")
    return fit(model, load_dataset("digits"), spec, ckpt_dir=tmp_path, variant="p", **kw)


def test_training_follows_the_schedule_and_keeps_the_pruned_weights_exactly_zero():
    model = prune(_mlp(), sparsity=0.8, start_epoch=1, end_epoch=3)
    history = _fit(model, 4)["history"]
    sizes = [w.numel() for w in _weights(model).values()]
    for row in history:  # s(b) = 0.8 (1 - (1 - (b - 1)/2)^3) by hand: 0, 0.7, 0.8, 0.8
        s = {1: 0.0, 2: 0.7, 3: 0.8, 4: 0.8}[row["epoch"]]
        assert row["weight_sparsity"] == pytest.approx(sum(round(s * n) for n in sizes) / sum(sizes))
    for name, w in _weights(model).items():  # Adam moved every trained weight; the pruned ones are 0
        assert int((w == 0).sum()) == round(0.8 * w.numel()), name


def test_a_resumed_pruned_run_ends_with_the_weights_and_masks_of_an_uninterrupted_one(tmp_path):
    whole = prune(_mlp(), sparsity=0.75)
    _fit(whole, 4, tmp_path / "a")
    parts = prune(_mlp(), sparsity=0.75)
    _fit(parts, 4, tmp_path / "b", stop_after_epoch=2)
    parts = prune(_mlp(), sparsity=0.75)  # a fresh process builds the variant again
    _fit(parts, 4, tmp_path / "b")
    a, b = whole.state_dict(), parts.state_dict()
    assert any(k.endswith("mask") for k in a)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_an_untrained_run_is_pruned_at_its_initial_weights():
    model = _mlp()
    before = _weights(model)
    _fit(prune(model, sparsity=0.5), 0)
    for name, w in _weights(model).items():
        threshold = before[name].abs().flatten().sort().values[round(0.5 * w.numel()) - 1]
        assert torch.equal(w != 0, before[name].abs() > threshold), name


def test_the_crossbar_holds_the_pruned_weights_and_the_ideal_crossbar_equals_digital():
    model = prune(_mlp(spiking=False), sparsity=0.6, end_epoch=0)
    prune_at(model, 0, epochs=1)
    model.eval()
    analog = to_analog(model, "ideal")
    x = torch.rand(1, 9, 1, 8, 8)
    torch.testing.assert_close(analog(x), model(x), rtol=1e-5, atol=1e-5)
    digital = [w for w in _weights(model).values()]
    programmed = [
        m.weight
        for m in analog.modules()
        if hasattr(m, "weight") and m.weight is not None and m.weight.dim() == 2
    ]
    for w, p in zip(digital, programmed, strict=True):
        assert torch.equal(p == 0, w == 0)


@pytest.mark.parametrize("order", ["prune-first", "quant-first"])
def test_pruning_composes_with_weight_quantisation_in_either_order(order):
    methods = [MethodConfig(name="prune", sparsity=0.5, end_epoch=0), MethodConfig(name="weight-qat", bits=3)]
    model = apply_methods(_mlp(), methods if order == "prune-first" else methods[::-1])
    prune_at(model, 0, epochs=1)
    for name, w in _weights(model).items():
        levels = torch.unique(w)
        assert len(levels) <= 2**3 - 1, name  # symmetric 3-bit: -3..3 steps
        assert int((w == 0).sum()) >= round(0.5 * w.numel()), name


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"sparsity": 1.0}, "methods.prune.sparsity"),
        ({"sparsity": -0.1}, "methods.prune.sparsity"),
        ({"sparsity": 0.5, "start_epoch": 3, "end_epoch": 2}, "methods.prune.end_epoch"),
        ({"sparsity": 0.5, "scope": "row"}, "methods.prune.scope"),
        ({"sparsity": 0.5, "exclude": ["decoder.*"]}, "methods.prune.exclude"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_option(options, field):
    with pytest.raises(SpikecimError, match=rf"^{field}") as err:
        prune(_mlp(), **options)
    assert "\n" not in str(err.value)


def test_a_schedule_ending_after_training_is_refused_before_training():
    model = prune(_mlp(), sparsity=0.5, end_epoch=6)
    with pytest.raises(
        SpikecimError, match=r"^methods.prune.end_epoch: must be at most train.epochs \(4\), got 6$"
    ):
        _fit(model, 4)


def test_a_schedule_ending_after_training_is_refused_before_any_variant_trains(tmp_path, capsys):
    config = {
        "name": "late",
        "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
        "variants": [
            {"name": "snn"},
            {"name": "snn-p", "methods": [{"name": "prune", "sparsity": 0.5, "end_epoch": 3}]},
        ],
        "train": {"epochs": 2},
        "stages": ["train"],
    }
    code, err = _run(config, tmp_path, capsys)
    assert code != 0
    assert err.splitlines()[-1].endswith(
        "methods.prune.end_epoch: must be at most train.epochs (2), got 3"
    ), err
    assert not list((tmp_path / "late").glob("checkpoint/snn.*"))  # the variant listed first never trained


def _run(config: dict, tmp_path, capsys) -> tuple[int, str]:
    """``spikecim run`` of ``config`` (its output in ``tmp_path``): exit code and stderr."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**config, "output_dir": str(tmp_path)}))
    code = main(["run", str(path)])
    return code, capsys.readouterr().err.strip()


def test_a_run_refuses_a_bad_pruning_option_in_one_line(tmp_path, capsys):
    config = {
        "variants": [{"name": "snn"}, {"name": "snn-p", "methods": [{"name": "prune", "sparsity": 1.5}]}]
    }
    code, err = _run(config, tmp_path, capsys)
    assert code != 0
    assert len(err.splitlines()) == 1 and "prune.sparsity" in err, err


def test_a_pruned_run_traces_the_zero_weights_its_checkpoint_masks(tmp_path):
    from safetensors.torch import load_file

    config = {
        "name": "pruned",
        "model": {"name": "mlp", "kwargs": {"hidden": [32]}},
        "variants": [{"name": "snn-p", "methods": [{"name": "prune", "sparsity": 0.5, "end_epoch": 1}]}],
        "train": {"epochs": 1},
        "stages": ["train", "trace"],
        "output_dir": str(tmp_path),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "pruned"
    (weights,) = [p for p in (run / "checkpoint").glob("snn-p.epoch1.*.safetensors") if "optim" not in p.name]
    masks = {k.split(".")[0]: v for k, v in load_file(weights).items() if k.endswith(".mask")}
    layers = {layer["name"]: layer for layer in yaml.safe_load((run / "workload.json").read_text())["layers"]}
    assert masks.keys() == layers.keys()
    for name, mask in masks.items():
        assert layers[name]["operands"]["weight"]["sparsity"] == pytest.approx(float((~mask).float().mean()))
        assert sum(layers[name]["acs_nonzero_weights_per_step"]) < sum(layers[name]["acs_per_step"])
    totals = yaml.safe_load((run / "metrics.json").read_text())["trace"]["snn-p"]
    pruned = sum(int((~m).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert totals["weight_sparsity"] == pytest.approx(pruned)


def test_tt_after_prune_is_refused_and_prune_after_tt_prunes_the_cores():
    torch.manual_seed(0)
    with pytest.raises(SpikecimError, match=r"^methods.tt: the convolution '3' is parametrised") as err:
        apply_methods(
            create_model("convnet"),
            [MethodConfig(name="prune", sparsity=0.5), MethodConfig(name="tt", rank=2)],
        )
    assert "\n" not in str(err.value)
    model = apply_methods(
        create_model("convnet"),
        [MethodConfig(name="tt", rank=2), MethodConfig(name="prune", sparsity=0.5, end_epoch=0)],
    )
    prune_at(model, 0, epochs=1)
    cores = [m for n, m in model.named_modules() if n.startswith("3.") and isinstance(m, nn.Conv2d)]
    assert len(cores) == 4
    for core in cores:
        assert int((core.weight == 0).sum()) == round(0.5 * core.weight.numel())


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_the_masks_are_torchs_l1_unstructured_pruning_masks(scope):
    """torch.nn.utils.prune as the peer: l1_unstructured per layer, global_unstructured with
    L1Unstructured over all layers, at the same count of weights."""
    import copy

    from torch.nn.utils import prune as torch_prune

    peer = _mlp()
    model = prune(copy.deepcopy(peer), sparsity=0.6, scope=scope, end_epoch=0)
    prune_at(model, 0, epochs=1)
    layers = [(m, "weight") for m in peer.modules() if isinstance(m, nn.Linear)]
    if scope == "layer":
        for m, name in layers:
            torch_prune.l1_unstructured(m, name, amount=round(0.6 * m.weight.numel()))
    else:
        total = sum(m.weight.numel() for m, _ in layers)
        torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=round(0.6 * total))
    for (m, _), (name, w) in zip(layers, _weights(model).items(), strict=True):
        assert torch.equal(m.weight_mask.bool(), w != 0), name

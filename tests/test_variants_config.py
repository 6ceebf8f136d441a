"""Variants as data: the run config lists them, the models are built from them."""

from pathlib import Path

import pytest
import torch
import yaml

from spikecim.config import RunConfig, load_config
from spikecim.data import load_dataset
from spikecim.errors import SpikecimError
from spikecim.methods import _METHODS, register_method
from spikecim.pipeline.run import build_models
from spikecim.variants import workload_filename


def test_default_variants_are_the_snn_and_its_ann_twin_with_the_ann_as_baseline():
    cfg = RunConfig()
    assert [(v.name, v.spiking) for v in cfg.variants] == [("snn", True), ("ann", False)]
    assert cfg.baseline == "ann"
    assert [cfg.timesteps_for(v) for v in cfg.variants] == [cfg.data.timesteps, 1]
    assert [workload_filename(cfg.variants, v.name) for v in cfg.variants] == [
        "workload.json",
        "workload_ann.json",
    ]


def test_deprecated_ann_twin_false_drops_the_ann_variant_and_the_snn_becomes_baseline():
    cfg = load_config(overrides=["train.ann_twin=false"])
    assert [v.name for v in cfg.variants] == ["snn"] and cfg.baseline == "snn"
    assert "ann_twin" not in cfg.to_yaml()


def test_a_run_folder_config_without_variants_still_loads(tmp_path):
    old = RunConfig().model_dump(mode="json")
    del old["variants"], old["baseline"]
    old["train"]["ann_twin"] = True  # what older spikecim wrote
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = load_config(tmp_path / "config.yaml")
    assert [v.name for v in cfg.variants] == ["snn", "ann"] and cfg.baseline == "ann"


def test_timesteps_example_lists_three_snns_and_the_ann_baseline():
    cfg = load_config("examples/timesteps.yaml")
    assert [(v.name, cfg.timesteps_for(v)) for v in cfg.variants] == [
        ("snn-t2", 2),
        ("snn-t4", 4),
        ("snn-t8", 8),
        ("ann", 1),
    ]
    assert cfg.baseline == "ann"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["variants=[{name: a}, {name: a}]"], "config.variants: the name 'a' is used twice"),
        (["baseline=gpu"], "config.baseline: unknown variant 'gpu', allowed: snn, ann"),
        (["variants=[{name: ann, spiking: false, timesteps: 4}]"], "an ANN variant runs T = 1"),
        (["variants=[{name: s, neuron: {beta: 2.0}}]"], "config.variants.0.neuron.beta:"),
        (["variants=[{name: s, train: {lr: -1}}]"], "config.variants.0.train.lr:"),
        (["variants=[{name: s, methods: [nosuch]}]"], "unknown method 'nosuch'"),
        (["variants=[{name: 'a.b'}]"], "config.variants.0.name:"),
        (["hardware.variants=[gpu]"], "hardware.variants: unknown variant 'gpu'"),
    ],
)
def test_bad_variants_fail_with_one_line_naming_the_field(overrides, message):
    with pytest.raises(SpikecimError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_variant_settings_and_methods_shape_the_built_models():
    @register_method("zero-first-bias")
    def zero_first_bias(model, value=0.0):
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        with torch.no_grad():
            first.bias.fill_(value)
        return model

    try:
        cfg = load_config(
            overrides=[
                "model.name=mlp",
                (
                    "variants=[{name: plain}, {name: slow, neuron: {beta: 0.9}, "
                    "methods: [{name: zero-first-bias, value: 0.25}]}, {name: ann, spiking: false}]"
                ),
            ]
        )
        models = build_models(cfg, load_dataset("digits", limit=64))
    finally:
        del _METHODS["zero-first-bias"]
    betas = {
        name: [float(m.beta) for m in model.modules() if hasattr(m, "beta")] for name, model in models.items()
    }
    assert betas["plain"] and all(b == 0.5 for b in betas["plain"]) and betas["ann"] == []
    assert betas["slow"] and all(b == pytest.approx(0.9) for b in betas["slow"])
    first = {n: next(m for m in mdl.modules() if isinstance(m, torch.nn.Linear)) for n, mdl in models.items()}
    assert torch.all(first["slow"].bias == 0.25) and not torch.all(first["plain"].bias == 0.25)
    # Same seed, same topology: the variants start from the same weights.
    assert torch.equal(first["plain"].weight, first["slow"].weight)


def test_frame_data_refuses_a_variant_at_another_t_than_the_frames(tmp_path):
    from test_data_nmnist import write_nmnist

    write_nmnist(tmp_path / "N-MNIST", per_digit=(3, 2))
    cfg = load_config(
        overrides=[
            "data.name=nmnist",
            f"data.root={tmp_path / 'N-MNIST'}",
            "data.timesteps=3",
            "variants=[{name: s, timesteps: 5}]",
        ]
    )
    from spikecim.data import dataset_from_config

    with pytest.raises(SpikecimError, match="frame data sets take one T per run"):
        build_models(cfg, dataset_from_config(cfg.data))


EXAMPLE_CONFIGS = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_every_example_run_config_is_read_and_builds_every_variant_with_its_methods(path):
    """The shipped examples stay valid as the schema and the methods' options change."""
    cfg = load_config(path)
    if cfg.data.name != "digits":
        pytest.skip(f"{path.name} reads {cfg.data.name} files")
    models = build_models(cfg, load_dataset("digits"))
    assert list(models) == [v.name for v in cfg.variants]

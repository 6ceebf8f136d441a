"""Bad configs and CLI input: one line naming the field, exit code 2, no traceback."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from spikecim.cli.main import main
from spikecim.config import RunConfig, load_config
from spikecim.errors import SpikecimError


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("data.timesteps=-1", "config.data.timesteps", "greater than 0"),
        ("model.neuron.beta=1.5", "config.model.neuron.beta", "less than or equal to 1"),
        ("model.name=resnet1000", "config.model.name", "allowed: "),
        ("data.name=imagenet", "config.data.name", "allowed: "),
        ("train.epochs=three", "config.train.epochs", "integer"),
        ("train.optimizer=lion", "config.train.optimizer", "'adam', 'adamw' or 'sgd'"),
        ("colour=red", "config.colour", "unknown key"),
        ("stages=[train,fly]", "config.stages", "unknown stage 'fly'"),
        ("model.kwargs={num_classes: 10}", "config.model.kwargs", "num_classes: set by the data set"),
        (
            "stages=[train,evaluate,train]",
            "config.stages",
            "'train' is listed twice; each stage runs once per run",
        ),
        ("analog.overrides.tile_rows=-3", "config.analog", "tile_rows: Input should be greater than 0"),
        ("analog.preset=warp-drive", "config.analog.preset", "unknown preset 'warp-drive'"),
        ("hardware.archs=[tpu-v9]", "config.hardware.archs", "unknown architecture 'tpu-v9'"),
        # a switch is not a number, nor a number or a string a switch (pydantic's lax mode reads them as 1, False)
        ("train.epochs=true", "config.train.epochs", "must be a number, got true"),
        ("data.batch_size=true", "config.data.batch_size", "must be a number, got true"),
        ("seed=false", "config.seed", "must be a number, got false"),
        (
            "variants=[{name: snn, spiking: 'no'}]",
            "config.variants.0.spiking",
            "must be true or false, got 'no'",
        ),
        ("variants=[{name: snn, spiking: 1}]", "config.variants.0.spiking", "must be true or false, got 1"),
        ("stages=[]", "config.stages", "at least 1 item"),
        # a neuron's own arguments: only those its class declares, checked by building it
        (
            "model.neuron.alpha=0.5",
            "config.model.neuron",
            "alpha: not an argument of neuron 'lif' (its own: backend)",
        ),
        (
            "model.neuron={kind: synaptic, alpha: 1.5}",
            "config.model.neuron",
            "alpha: must be in [0, 1], got 1.5",
        ),
        (
            "model.neuron={kind: synaptic, alpha: true}",
            "config.model.neuron",
            "alpha: must be a number, got True",
        ),
        (
            "model.neuron={kind: synaptic, learn_alpha: 1}",
            "config.model.neuron",
            "learn_alpha: must be true or false",
        ),
        ("output_dir=~no-such-user-x/runs", "config.output_dir", "no home folder for ~no-such-user-x"),
        ("data.root=~no-such-user-x/data", "config.data.root", "no home folder for ~no-such-user-x"),
    ],
)
def test_bad_config_gives_one_line_naming_the_field(override, field, allowed, capsys):
    with pytest.raises(SpikecimError) as err:
        load_config(overrides=[override])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(field) and allowed in msg
    assert main(["run", "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"error: {msg}"]
    assert "Traceback" not in captured.err + captured.out


def test_yaml_config_file_is_validated(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochs: 2\nmodel:\n  neuron:\n    reset: sideways\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config.model.neuron.reset" in err and "'subtract' or 'zero'" in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_a_neurons_own_argument_reaches_every_neuron_of_the_model_and_of_a_variant():
    from spikecim.data import dataset_from_config
    from spikecim.nn import SynapticLIF
    from spikecim.pipeline.run import build_models

    cfg = load_config(
        overrides=[
            "model.neuron={kind: synaptic, alpha: 0.7, learn_alpha: true}",
            "variants=[{name: snn}, {name: slow, neuron: {alpha: 0.25}}, {name: ann, spiking: false}]",
        ]
    )
    models = build_models(cfg, dataset_from_config(cfg.data))
    for variant, alpha in (("snn", 0.7), ("slow", 0.25)):
        neurons = [m for m in models[variant].modules() if isinstance(m, SynapticLIF)]
        assert len(neurons) == 3, variant  # the convnet's three spiking layers
        assert all(
            isinstance(m.alpha, torch.nn.Parameter) and float(m.alpha) == pytest.approx(alpha)
            for m in neurons
        )


def test_yaml_config_and_overrides_resolve_to_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: mine\ntrain:\n  epochs: 2\ndata:\n  timesteps: 6\n")
    cfg = load_config(path, ["train.lr=0.01", "model.neuron.surrogate=fast_sigmoid(10)"])
    assert (cfg.name, cfg.train.epochs, cfg.data.timesteps, cfg.train.lr) == ("mine", 2, 6, 0.01)
    assert cfg.model.neuron.surrogate == "fast_sigmoid(10)"
    # The resolved YAML reloads to the same config.
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml())
    assert load_config(again) == cfg
    assert RunConfig().train.epochs == 15


def test_a_path_starting_with_a_tilde_is_in_the_home_folder_not_a_folder_named_tilde(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    config = work / "run.yaml"
    config.write_text("output_dir: ~/runs\nmodel: {name: mlp}\ntrain: {epochs: 0}\nstages: [train]\n")
    assert main(["run", str(config), "--name", "r"]) == 0
    assert (home / "runs" / "r" / "config.yaml").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["run.yaml"]
    assert load_config(overrides=["data.root=~/data"]).data.root == str(home / "data")


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "train", "evaluate", "trace", "report", "hw", "nir", "list"):
        assert cmd in out


def test_missing_run_folder_is_one_line_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--epochs", "many"],
        ["run", "--no-such-flag"],
        ["hw", "estimate"],
        ["nir", "inspect"],
        ["evaluate"],
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_bare_command_prints_help(capsys):
    assert main([]) == 0
    assert "run" in capsys.readouterr().out


@pytest.mark.parametrize("key", ["", ".epochs", "train.", "train..epochs"])
def test_a_set_key_with_an_empty_part_is_refused_naming_the_option(key, tmp_path, capsys):
    assert main(["run", "--set", f"output_dir={tmp_path}", "--set", f"{key}=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --set: '{key}' does not name a field (section.field=value)"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv,line",
    [
        (["--stages", ""], "--stages: a comma-separated list of stage names, got ''"),
        (
            ["--stages", "train,,evaluate"],
            "--stages: a comma-separated list of stage names, got 'train,,evaluate'",
        ),
        (["--name", ""], "name: must not be empty"),
        (["--model", ""], "model.name: must not be empty"),
        (["--dataset", ""], "data.name: must not be empty"),
    ],
)
def test_an_empty_option_value_is_refused_not_read_as_the_default(argv, line, tmp_path, capsys):
    assert main(["run", "--set", f"output_dir={tmp_path}", *argv]) == 2
    assert capsys.readouterr().err.strip() == f"error: {line}"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "fraction, split", [("0.999", "1 training and 1796 test"), ("0.001", "1795 training and 2 test")]
)
def test_a_digits_split_without_every_class_on_both_sides_is_refused(fraction, split, tmp_path, capsys):
    # 1797 images of 10 classes: each split needs 10 at least, ceil(f * 1797) of them test images
    assert main(["run", "--set", f"output_dir={tmp_path}", "--set", f"data.test_fraction={fraction}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: data.test_fraction: {fraction} leaves {split} images of 1797, and each split needs "
        "an image of each of the 10 classes; allowed: 0.0051 to 0.9944"
    )
    assert not any(tmp_path.iterdir())


def test_a_set_key_with_a_list_index_sets_that_item_or_says_how_to_set_the_list(tmp_path, capsys):
    """`variants.0.timesteps` was read as a mapping named "0" and refused as "config.variants:
    Input should be a valid list". An item of a list the config file gives is set; without a
    resolver, one the config does not list is one line saying to set the whole list (the run
    config's loader resolves it: tests/test_cli_bad_input_more.py)."""
    from spikecim.config import apply_overrides

    data = {"variants": [{"name": "snn"}, {"name": "ann", "spiking": False}]}
    assert apply_overrides(data, ["variants.1.timesteps=3"])["variants"][1] == {
        "name": "ann", "spiking": False, "timesteps": 3,
    }  # fmt: skip
    with pytest.raises(
        SpikecimError, match=r"^--set: 'variants.2.timesteps': variants has items 0 to 1, got '2'$"
    ):
        apply_overrides(data, ["variants.2.timesteps=3"])
    with pytest.raises(
        SpikecimError,
        match=r"^--set: 'variants.0.timesteps' indexes variants, which the config does not list; "
        r"set the whole list: --set 'variants=\[\.\.\.\]'$",
    ):
        apply_overrides({}, ["variants.0.timesteps=2"])
    assert main(["run", "--set", f"output_dir={tmp_path}", "--set", "variants.2.timesteps=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --set: 'variants.2.timesteps': variants has items 0 to 1, got '2'"
    )
    assert not any(tmp_path.iterdir())


def test_written_over_keeps_the_other_keys_of_a_nested_section_and_changes_neither_argument():
    from spikecim.config import written_over

    base = {"a": 1, "b": {"c": 1, "d": 2}, "g": 5}
    changes = {"b": {"c": 3}, "e": {"f": 1}, "g": {"h": 0}}
    assert written_over(base, changes) == {"a": 1, "b": {"c": 3, "d": 2}, "e": {"f": 1}, "g": {"h": 0}}
    assert base == {"a": 1, "b": {"c": 1, "d": 2}, "g": 5} and changes["b"] == {"c": 3}


def test_a_method_option_given_a_list_on_the_command_line_reaches_the_variant(tmp_path, capsys):
    """`--method` split its options at every comma, so a YAML list lost its items after the
    first. The list reaches the run's config.yaml and the method: of the mlp's programmed
    layers 1, 3, 5, only 3 gets a pruning mask."""
    spec = "prune:sparsity=0.5,exclude=['1', '5'],scope=global"
    args = [
        "run", "--set", f"output_dir={tmp_path}", "--name", "p", "--epochs", "0", "--stages", "train",
        "--set", "model.name=mlp", "--set", "data.limit=64", "--set", "variants=[{name: snn}]",
        "--method", spec,
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "p"
    variants = yaml.safe_load((run / "config.yaml").read_text())["variants"]
    assert [v["name"] for v in variants] == ["snn", "prune"]
    assert variants[1]["methods"] == [
        {"name": "prune", "sparsity": 0.5, "exclude": ["1", "5"], "scope": "global"}
    ]
    state = json.loads((run / "checkpoint" / "prune.state.json").read_text())
    weights = load_file(run / "checkpoint" / state["files"]["weights"]["name"])
    masked = {key.split(".")[0] for key in weights if key.endswith(".mask")}
    assert masked == {"3"}


@pytest.mark.parametrize(
    "value, problem",
    [
        ("['1', '5'", "expected ',' or ']', but got '<stream end>'"),
        ("['1', '5']]", "expected '<document start>', but found ']'"),
    ],
    ids=["unclosed", "one bracket too many"],
)
def test_a_method_option_that_is_not_yaml_is_refused_in_one_line_naming_it(value, problem, tmp_path, capsys):
    spec = f"prune:sparsity=0.5,scope=global,exclude={value}"
    assert main(["run", "--set", f"output_dir={tmp_path}", "--method", spec]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"error: --method prune: exclude={value}: not a YAML value ({problem})"
    ]
    assert "Traceback" not in captured.err + captured.out
    assert not any(tmp_path.iterdir())

"""Space files: a bad one fails with one line naming the field, before any trial runs; knob
values land at their dotted paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spikecim.cli.main import main
from spikecim.dse.space import build, check_space, load_space

BASE = {"model": {"name": "mlp"}, "train": {"epochs": 1}, "data": {"limit": 128}}


def _space(**over) -> dict:
    return {
        "name": "s",
        "base": BASE,
        "knobs": [{"path": "data.timesteps", "choices": [2, 4]}],
        "objectives": [{"metric": "accuracy"}, {"metric": "energy_uj"}],
        **over,
    }


BAD = {
    "unknown field": (
        _space(knobs=[{"path": "data.timestepz", "choices": [2, 4]}]),
        "data.timestepz: unknown key",
    ),
    "unknown space key": (_space(objective=[]), "objective: unknown key"),
    "empty range": (
        _space(knobs=[{"path": "data.timesteps", "low": 8, "high": 2}]),
        "empty range, low 8 > high 2",
    ),
    "empty choices": (_space(knobs=[{"path": "data.timesteps", "choices": []}]), "choices is empty"),
    "unknown objective": (_space(objectives=[{"metric": "speed"}]), "objectives: unknown metric 'speed'"),
    "constraint on an unknown metric": (
        _space(constraints=[{"metric": "power_w", "op": "<=", "bound": 1}]),
        "constraints: unknown metric 'power_w'",
    ),
    "accuracy bound in percent": (
        _space(constraints=[{"metric": "accuracy", "op": ">=", "bound": 90}]),
        "constraints.0.bound: accuracy is a fraction, allowed: 0 to 1",
    ),
    "analog accuracy bound above 1": (
        _space(
            constraints=[
                {"metric": "energy_uj", "op": "<=", "bound": 5},
                {"metric": "analog_accuracy", "op": ">=", "bound": 5.0},
            ]
        ),
        "constraints.1.bound: analog_accuracy is a fraction, allowed: 0 to 1",
    ),
    "negative bound on the analog accuracy's spread": (
        _space(constraints=[{"metric": "analog_accuracy_std", "op": "<=", "bound": -0.1}]),
        "constraints.0.bound: analog_accuracy_std is a fraction",
    ),
    "value out of range": (
        _space(knobs=[{"path": "data.timesteps", "low": 0, "high": 4}]),
        "knobs.data.timesteps = 0: data.timesteps: Input should be greater than 0",
    ),
    "invalid combination of methods": (
        _space(
            knobs=[
                {
                    "name": "quant",
                    "path": "variants.0.methods",
                    "choices": {"both": [{"name": "mint", "bits": 2}, {"name": "weight-qat", "bits": 4}]},
                }
            ]
        ),
        "lists 'mint' and 'weight-qat', which both change the weight-quant",
    ),
    "method that does not fit the model": (
        _space(
            base={**BASE, "model": {"name": "mlp", "kwargs": {"hidden": [16]}}},
            knobs=[
                {
                    "name": "q",
                    "path": "variants.0.methods",
                    "choices": {"mint": [{"name": "mint", "bits": 2}]},
                }
            ],
        ),
        "mint: the model has no synaptic layer followed by a neuron after its first layer",
    ),
    "condition on a later or unknown knob": (
        _space(knobs=[{"path": "data.timesteps", "choices": [2, 4], "when": {"bits": 4}}]),
        "when: 'bits' is not a knob listed before it",
    ),
    "condition on a value never taken": (
        _space(
            knobs=[
                {"path": "data.timesteps", "choices": [2, 4]},
                {"path": "train.lr", "low": 0.001, "high": 0.01, "when": {"data.timesteps": 3}},
            ]
        ),
        "data.timesteps never takes 3",
    ),
    "unknown architecture constant": (
        _space(knobs=[{"path": "arch.params.xbar_rowz", "choices": [64]}]),
        "xbar_rowz",
    ),
    "log range with a step": (
        _space(knobs=[{"path": "train.lr", "low": 0.001, "high": 0.01, "log": True, "step": 0.001}]),
        "knob 'train.lr': a log range takes no step, got step 0.001",
    ),
    "step that does not divide the range": (
        _space(knobs=[{"path": "data.timesteps", "low": 2, "high": 7, "step": 2}]),
        "knob 'data.timesteps': step 2 does not divide the range 2 to 7",
    ),
    "two knobs writing one path": (
        _space(
            knobs=[
                {"name": "t", "path": "data.timesteps", "choices": [2]},
                {"name": "u", "path": ["train.epochs", "data.timesteps"], "choices": [4]},
            ]
        ),
        "knobs.u: the path 'data.timesteps' is also written by knobs.t",
    ),
    "condition on a continuous knob": (
        _space(
            knobs=[
                {"path": "train.lr", "low": 0.001, "high": 0.01},
                {"path": "data.timesteps", "choices": [2, 4], "when": {"train.lr": 0.005}},
            ]
        ),
        "knobs.data.timesteps.when: 'train.lr' is a continuous range",
    ),
    "one quantity as two objectives": (
        _space(objectives=[{"metric": "energy_uj"}, {"metric": "energy_pj", "direction": "maximize"}]),
        "objectives.1: energy_pj measures what objectives.0 (energy_uj) does",
    ),
    "constraints that no design meets together": (
        _space(
            constraints=[
                {"metric": "area_mm2", "op": "<=", "bound": 1},
                {"metric": "area_um2", "op": ">=", "bound": 2e6},
            ]
        ),
        "constraints.1: area_um2 >= 2e+06 contradicts constraints.0 (area_mm2 <= 1): no design meets both",
    ),
    "baseline on an unknown knob": (
        _space(baseline={"timesteps": 4}),
        "baseline.timesteps: unknown knob, allowed: data.timesteps",
    ),
    "training metric in a hardware-only space": (
        _space(base=None, workload="w.yaml", knobs=[{"path": "arch.params.adc_bits", "choices": [4]}]),
        "unknown metric 'accuracy', a hardware-only space offers",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_space_fails_with_one_line_before_any_trial(case, tmp_path, capsys):
    space, message = BAD[case]
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "out"
    assert main(["dse", str(path), "--out", str(out), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: space: "), err
    assert message in err
    assert not out.exists()  # no study, no trial


def test_knob_values_land_at_their_paths_and_tied_paths_share_one_value():
    space = check_space(
        _space(
            knobs=[
                {"path": "data.timesteps", "choices": [2, 4]},
                {
                    "name": "xbar",
                    "path": ["analog.overrides.tile_rows", "arch.params.xbar_rows"],
                    "choices": [64, 256],
                },
                {
                    "name": "q",
                    "path": "variants.0.methods",
                    "choices": {"fp": [], "q4": [{"name": "weight-qat", "bits": 4}]},
                },
                {"path": "arch.technology_nm", "choices": [65, 22]},
            ]
        )
    )
    trial = build(space, {"data.timesteps": 4, "xbar": 256, "q": "q4", "arch.technology_nm": 22})
    assert trial.config["data"]["timesteps"] == 4
    assert trial.config["analog"]["overrides"]["tile_rows"] == 256
    assert trial.arch.params["xbar_rows"] == 256
    assert trial.config["variants"] == [
        {
            "name": "snn",
            "spiking": True,
            "timesteps": None,
            "neuron": {},
            "train": {},
            "methods": [{"name": "weight-qat", "bits": 4}],
        }
    ]  # the base's first spiking variant, alone
    # first-order node scaling: energies × 22/65 (the shipped table is at 65 nm)
    assert trial.arch.params["e_mux_pj"] == pytest.approx(0.094245 * 22 / 65)


def test_knobs_on_one_path_are_accepted_when_their_conditions_exclude_each_other():
    space = check_space(
        _space(
            knobs=[
                {
                    "name": "q",
                    "path": "variants.0.methods",
                    "choices": {"fp": [], "q4": [{"name": "weight-qat", "bits": 4}]},
                },
                {"name": "t_fp", "path": "data.timesteps", "choices": [1, 2], "when": {"q": "fp"}},
                {"name": "t_q4", "path": "data.timesteps", "choices": [4, 8], "when": {"q": ["q4"]}},
            ]
        )
    )
    assert build(space, {"q": "fp", "t_fp": 2}).config["data"]["timesteps"] == 2
    assert build(space, {"q": "q4", "t_q4": 8}).config["data"]["timesteps"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "give a SPACE file, or --out of an existing study"),
        (["--status", "--out", "{tmp}/none"], "holds no study"),
        (["{space}", "--trials", "0", "--out", "{tmp}/o"], "--trials: must be >= 1, got 0"),
        (["{space}", "--workers", "0", "--out", "{tmp}/o"], "--workers: must be >= 1, got 0"),
    ],
)
def test_bad_command_line_fails_with_one_line(args, message, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_space()))
    argv = ["dse", *(a.format(tmp=tmp_path, space=path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_dse_help_shows_plain_flags(capsys):
    assert main(["dse", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--random-baseline", "--resume", "--status"):
        rows = [ln for ln in text.splitlines() if flag in ln]
        assert rows and "<bool>" not in rows[0] and "--no-" not in rows[0], rows


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "examples" / "dse").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_space_is_read_with_every_knob_value_checked_on_its_base(path):
    space = load_space(path)
    assert space.knobs and space.objectives

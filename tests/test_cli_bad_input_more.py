"""Bad input the CLI reads as something else unless checked: an empty settings file, a weight
of the wrong rank in a .nir file, a count too large to fit, a study whose results cannot be
read, a report section that fails, an option that does not apply, a list index in ``--set``.

Each case checks what a user sees: the exit code, one line on stderr (never a traceback or a
raw Python warning) that names the file, field or option and what is allowed, and that
nothing is written where the input was refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from spikecim.cli.main import main
from spikecim.config import load_config
from spikecim.errors import SpikecimError
from test_fuzz_nir import small_graph

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = REPO / "examples" / "dse" / "digits-convnet-workload.json"  # a traced workload


def _one_line(capsys, argv: list[str], code: int = 2, prefix: str = "error: ") -> str:
    """Run the CLI: it exits ``code`` with exactly one line on stderr, which is returned."""
    capsys.readouterr()
    got = main([str(a) for a in argv])
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert got == code, (got, out.err)
    assert "Traceback" not in out.out + out.err and "Warning:" not in out.err, out.err
    assert len(lines) == 1 and lines[0].startswith(prefix), out.err
    return lines[0]


def _nir_folder(tmp_path: Path, meta: str) -> Path:
    """A ``nir import`` folder: ``model.nir`` and ``nir.yaml`` holding ``meta``."""
    folder = tmp_path / "imported"
    folder.mkdir()
    nir.write(folder / "model.nir", small_graph())
    (folder / "nir.yaml").write_text(meta)
    return folder


# ---- an empty settings file is refused, not read as the defaults --------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# a comment only\n", "null\n"])
@pytest.mark.parametrize("command", ["run", "train", "trex"])
def test_an_empty_run_config_is_refused_naming_the_file(command, text, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(text)
    line = _one_line(capsys, [command, config])
    assert (
        line == f"error: config: {config} is empty; write the run's settings in it, or {{}} for the defaults"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]  # no runs/ folder made


def test_a_run_config_of_braces_asks_for_the_defaults(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("{}\n")
    assert load_config(config) == load_config(None)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (lambda empty: ["hw", "estimate", WORKLOAD, "--arch", empty], "arch"),
        (lambda empty: ["hw", "estimate", empty], "workload"),
        (lambda empty: ["hw", "spikesim", empty], "layers"),
        (lambda empty: ["dse", empty, "--out", empty.parent / "study"], "space"),
        (lambda empty: ["evaluate", empty.parent / "no-run", "--analog", empty], "analog"),
    ],
    ids=["arch", "layer-list", "spikesim", "dse-space", "analog"],
)
def test_an_empty_settings_file_given_to_an_option_is_refused_naming_it(argv, field, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    line = _one_line(capsys, argv(empty))
    assert line.startswith(f"error: {field}: {empty} is empty; "), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml"]


def test_an_empty_base_config_of_a_dse_space_is_refused_naming_it(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("")
    space = tmp_path / "space.yaml"
    space.write_text(
        "base: base.yaml\n"
        "knobs: [{path: data.timesteps, choices: [2, 4]}]\n"
        "objectives: [{metric: accuracy, direction: maximize}]\n"
    )
    line = _one_line(capsys, ["dse", space, "--out", tmp_path / "study"])
    assert line == (
        f"error: space.base: {tmp_path / 'base.yaml'} is empty; "
        "write the run's settings in it, or {} for the defaults"
    )
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("command", [["nir", "inspect"], ["trace"], ["hw", "estimate"]])
def test_an_empty_nir_yaml_beside_an_imported_graph_is_refused_naming_it(command, tmp_path, capsys):
    folder = _nir_folder(tmp_path, "")
    line = _one_line(capsys, [*command, folder])
    assert line.startswith(f"error: nir import metadata: {folder / 'nir.yaml'} is empty; "), line
    assert sorted(p.name for p in folder.iterdir()) == ["model.nir", "nir.yaml"]


# ---- a .nir weight of the wrong rank ------------------------------------------------------


def _conv2d_graph_file(tmp_path: Path, weight_shape: tuple[int, ...]) -> Path:
    """A .nir file, written by the nir package, whose Conv2d 'conv' has a weight of
    ``weight_shape`` (nir refuses to build one of another rank, so a valid node's weight is
    replaced before it is written)."""
    conv = nir.Conv2d(
        input_shape=np.array([4, 4]),
        weight=np.ones((2, 1, 3, 3), np.float32),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(2, np.float32),
    )
    conv.weight = np.ones(weight_shape, np.float32)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
            "conv": conv,
            "output": nir.Output(output_type={"output": np.array([2, 2, 2])}),
        },
        edges=[("input", "conv"), ("conv", "output")],
        type_check=False,
    )
    path = tmp_path / "conv.nir"
    nir.write(path, graph)
    return path


@pytest.mark.parametrize("weight_shape", [(2, 3), (2, 1, 3), (2, 1, 1, 3, 3)])
@pytest.mark.parametrize("command", [["nir", "inspect"], ["nir", "import"], ["trace"], ["hw", "estimate"]])
def test_a_conv2d_weight_of_another_rank_is_refused_naming_node_and_shape(
    command, weight_shape, tmp_path, capsys
):
    path = _conv2d_graph_file(tmp_path, weight_shape)
    extra = ["-o", tmp_path / "imported"] if command == ["nir", "import"] else []
    line = _one_line(capsys, [*command, path, *extra])
    assert line == (
        f"error: node 'conv' (Conv2d): weight: must have 4 dimensions (out, in/groups, kH, kW), "
        f"got shape {weight_shape}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.nir"]


# ---- counts with an upper bound -----------------------------------------------------------


def test_trace_samples_above_the_bound_is_refused_before_tracing(tmp_path, capsys):
    path = tmp_path / "small.nir"
    nir.write(path, small_graph())
    line = _one_line(capsys, ["trace", path, "--samples", 10001])  # --help: 1 to 10000
    assert "'--samples'" in line and "less than or equal to 10000" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.nir"]  # no workload written

    from spikecim.pipeline.sources import MAX_SAMPLES, workload_from_model_file

    assert MAX_SAMPLES == 10000
    with pytest.raises(SpikecimError, match=rf"^samples: must be an integer from 1 to {MAX_SAMPLES}, got "):
        workload_from_model_file(tmp_path / "not-read.nir", samples=MAX_SAMPLES + 1)


def test_generate_tokens_above_the_bound_is_refused_before_generating(tmp_path, capsys):
    line = _one_line(
        capsys, ["generate", tmp_path, "--prompt", "a", "--tokens", 100001]
    )  # --help: 0 to 100000
    assert "'--tokens'" in line and "less than or equal to 100000" in line, line

    from spikecim.tasks.lm import MAX_TOKENS, generate

    assert MAX_TOKENS == 100_000

    class Bigram(torch.nn.Module):  # the next byte's logits depend on the last byte only
        def forward(self, x):
            return torch.zeros(*x.shape, 256)

    with pytest.raises(SpikecimError, match=rf"^tokens: must be an integer from 0 to {MAX_TOKENS}, got "):
        generate(Bigram(), "a", tokens=MAX_TOKENS + 1)
    assert generate(Bigram(), "a", tokens=3) == "\0\0\0"  # greedy: the first of equal logits


# ---- compare: a study whose dse.json cannot be read ---------------------------------------


def test_compare_index_lists_a_study_whose_dse_json_is_cut_short_with_the_reason(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "good").mkdir(parents=True)
    (runs / "good" / "metrics.json").write_text(json.dumps({"evaluate": {"snn": {"accuracy": 0.625}}}))
    (runs / "study").mkdir()
    (runs / "study" / "dse.json").write_text('{"objectives": [{"name": "acc')  # cut short
    assert main(["compare", str(runs)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(runs / "index.html") and "Traceback" not in out.err
    page = (runs / "index.html").read_text(encoding="utf-8")
    unreadable = re.findall(r'<section id="unreadable">.*?</section>', page, re.DOTALL)[0]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", unreadable)
    assert len(rows) == 1 and rows[0][0] == "study", rows
    assert rows[0][1].startswith(f"study: {runs / 'study' / 'dse.json'} is not valid JSON ("), rows
    assert '<section id="studies">' not in page  # not listed as a study


# ---- a report section that fails ----------------------------------------------------------


def test_a_failing_report_section_is_one_warning_line_and_the_report_is_still_written(
    tmp_path, monkeypatch, capsys
):
    import spikecim.report.core_sections  # noqa: F401  (registered before the registry is copied)
    from spikecim.report import render, sections

    monkeypatch.setattr(sections, "_SECTIONS", dict(sections._SECTIONS))
    monkeypatch.setattr(render, "_SECTION_MODULES", ())  # the core sections only

    @sections.register_section("broken-test", "Broken", order=5)
    def _broken(metrics: dict, run_dir: Path) -> str:
        raise KeyError("energy_pj\nsecond line")

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"evaluate": {"snn": {"accuracy": 0.5}}}))
    line = _one_line(capsys, ["report", run], code=0, prefix="warning: ")
    assert line == (
        "warning: report: section 'broken-test' is missing from the report (its place shows the error): "
        "KeyError: 'energy_pj\\nsecond line'"
    )
    assert "could not be rendered" in (run / "report.html").read_text(encoding="utf-8")


# ---- hw estimate --variant on a workload file ---------------------------------------------


def test_hw_estimate_variant_of_a_workload_file_is_refused(tmp_path, capsys):
    out = tmp_path / "cost.json"
    line = _one_line(capsys, ["hw", "estimate", WORKLOAD, "--variant", "ann", "--out", out])
    assert line == f"error: --variant: applies to a run folder only; {WORKLOAD} holds one network"
    assert not out.exists()


def test_load_workload_refuses_a_variant_of_a_workload_file():
    from spikecim.hw import load_workload

    with pytest.raises(SpikecimError, match="variant: applies to a run folder only"):
        load_workload(WORKLOAD, variant="ann")


# ---- --set with a list index --------------------------------------------------------------


@pytest.mark.parametrize(("value", "bound"), [(0, "greater than 0"), (10001, "less than or equal to 10000")])
def test_set_variant_timesteps_out_of_range_names_the_item_field_and_its_bound(
    value, bound, tmp_path, capsys
):
    line = _one_line(
        capsys, ["run", "--set", f"output_dir={tmp_path}", "--set", f"variants.0.timesteps={value}"]
    )
    assert line == f"error: config.variants.0.timesteps: Input should be {bound}"
    assert not any(tmp_path.iterdir())


def test_set_indexes_the_default_variants_when_the_config_lists_none():
    cfg = load_config(None, ["variants.0.timesteps=8"])
    assert [(v.name, v.spiking, v.timesteps) for v in cfg.variants] == [
        ("snn", True, 8),
        ("ann", False, None),
    ]
    assert cfg.baseline == "ann"
    # a model with only an ANN form has the one variant ann: index 0 is ann there
    lm = load_config(None, ["task=lm", "variants.0.timesteps=1"])
    assert [(v.name, v.spiking, v.timesteps) for v in lm.variants] == [("ann", False, 1)]

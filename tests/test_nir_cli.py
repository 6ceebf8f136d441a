"""``spikecim nir inspect | export | import`` and load_model on NIR files and folders."""

from pathlib import Path

import nir
import pytest
import torch
import yaml
from safetensors.torch import save_file

from spikecim.cli.main import main
from spikecim.config import RunConfig
from spikecim.interop import from_nir, load_model

DATA = Path(__file__).parents[2] / "shared" / "data" / "nir-paper"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")


@needs_data
def test_inspect_lists_every_node_with_type_and_shapes(capsys):
    assert main(["nir", "inspect", str(DATA / "braille_noDelay_bias_zero.nir")]) == 0
    out = capsys.readouterr().out
    graph = nir.read(DATA / "braille_noDelay_bias_zero.nir")
    for name, node in graph.nodes.items():
        assert name in out
        assert type(node).__name__ in out
    assert "lif1.w_rec (t-1)" in out  # the recurrent edge is shown as such
    assert "[38]" in out and "[12]" in out


@needs_data
def test_inspect_of_a_bad_file_exits_2_with_one_line(capsys):
    assert main(["nir", "inspect", str(DATA / "lif_norse.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "lif_norse.csv" in err


@needs_data
def test_import_writes_a_folder_that_load_model_runs(tmp_path, capsys):
    out = tmp_path / "sinabs"
    assert main(["nir", "import", str(DATA / "cnn_sinabs.nir"), "-o", str(out)]) == 0
    assert (out / "model.nir").read_bytes() == (DATA / "cnn_sinabs.nir").read_bytes()
    meta = yaml.safe_load((out / "nir.yaml").read_text())
    assert meta["input_shape"] == [2, 34, 34] and meta["output_shape"] == [10]
    assert meta["convention"] == "euler" and meta["dt"] == 1e-4
    x = (torch.rand(5, 2, 2, 34, 34) < 0.3).float()
    assert torch.equal(load_model(out)(x), from_nir(DATA / "cnn_sinabs.nir")(x))
    assert torch.equal(load_model(DATA / "cnn_sinabs.nir")(x), from_nir(DATA / "cnn_sinabs.nir")(x))


@needs_data
def test_import_keeps_the_chosen_convention(tmp_path):
    out = tmp_path / "lif"
    assert (
        main(["nir", "import", str(DATA / "lif_norse.nir"), "-o", str(out), "--convention", "snntorch"]) == 0
    )
    neuron = load_model(out)[1]
    assert neuron.threshold.item() == pytest.approx(2.5, abs=1e-5)  # docs/references.md#nir-paper-graphs


@needs_data
def test_import_into_a_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["nir", "import", str(DATA / "lif_norse.nir"), "-o", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err


def _run_folder(root: Path) -> tuple[Path, torch.nn.Module]:
    """A run folder as ``spikecim run`` writes it: config.yaml + checkpoint/snn.safetensors."""
    from spikecim.data import dataset_from_config
    from spikecim.pipeline.run import build_models

    cfg = RunConfig(name="nir-mlp", output_dir=str(root), model={"name": "mlp", "kwargs": {"hidden": [32]}})
    run = cfg.run_dir
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.yaml").write_text(cfg.to_yaml())
    model = build_models(cfg, dataset_from_config(cfg.data))["snn"]
    torch.manual_seed(3)
    for p in model.parameters():
        p.data.normal_(0, 0.5)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(run / "checkpoint" / "snn.safetensors"),
    )
    return run, model.eval()


def test_export_writes_the_trained_run_model(tmp_path, capsys):
    run, model = _run_folder(tmp_path)
    target = tmp_path / "mlp.nir"
    assert main(["nir", "export", str(run), "-o", str(target)]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "subtract reset" in captured.err  # the default neuron's reset is flagged, not changed
    again = from_nir(target)
    x = torch.rand(4, 3, 1, 8, 8) * 2
    torch.testing.assert_close(again(x), model(x), atol=1e-5, rtol=0)
    assert again(x).abs().sum() > 0


def test_export_never_overwrites_a_file_spikecim_did_not_write(tmp_path, capsys):
    run, _ = _run_folder(tmp_path)
    mine = tmp_path / "mine.nir"
    mine.write_text("my notes\n")
    assert main(["nir", "export", str(run), "-o", str(mine)]) == 2
    assert capsys.readouterr().err == (
        f"error: -o: {mine} exists and is not a NIR file spikecim exported; spikecim replaces only "
        "its own exports (choose a new file name)\n"
    )
    assert mine.read_text() == "my notes\n"
    assert main(["nir", "export", str(run), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: -o: {tmp_path} is a folder; give the .nir file's name\n"


def test_export_replaces_a_nir_file_it_exported_and_no_other(tmp_path, capsys):
    run, _ = _run_folder(tmp_path)
    target = tmp_path / "mlp.nir"
    assert main(["nir", "export", str(run), "-o", str(target), "--dt", "1e-4"]) == 0
    assert main(["nir", "export", str(run), "-o", str(target), "--dt", "2e-4"]) == 0
    assert float(nir.read(str(target)).metadata["dt"]) == 2e-4  # the nir package's own reader
    other = tmp_path / "other.nir"
    graph = nir.read(str(target))
    nir.write(str(other), nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={}, type_check=False))
    before = other.read_bytes()
    capsys.readouterr()
    assert main(["nir", "export", str(run), "-o", str(other)]) == 2
    assert "is not a NIR file spikecim exported" in capsys.readouterr().err
    assert other.read_bytes() == before


@needs_data
def test_import_into_a_path_that_is_a_file_is_refused_naming_the_option(tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_text("x")
    assert main(["nir", "import", str(DATA / "lif_norse.nir"), "-o", str(mine)]) == 2
    assert capsys.readouterr().err == f"error: -o: {mine} is a file; give the name of a folder to create\n"
    assert mine.read_text() == "x"

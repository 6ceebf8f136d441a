"""The reconstruction attack, its metrics, the leakage probe and the command's bad input."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from spikecim.analog import load_crossbar_config, to_analog
from spikecim.cli.main import main
from spikecim.data import load_dataset
from spikecim.security.attack import preprocess, psnr, reconstruct, ssim
from spikecim.security.config import AttackConfig, TraceConfig
from spikecim.security.leakage import probe_r2
from spikecim.security.measure import record_traces
from spikecim.security.traces import Periphery
from spikecim.train.evaluate import ModelInput
from test_reliability_run import TINY, run_args, the_line


def test_ssim_of_a_hand_case_with_one_window_over_the_image():
    x = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    y = torch.full_like(x, 0.5)
    # Wang et al. 2004, eq. 13 with population statistics over the 3×3 window:
    mu_x, mu_y, var_x, var_y, cov = 5 / 9, 0.5, 5 / 9 - 25 / 81, 0.0, 0.0
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    expected = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    got = ssim(x, y, 1.0, window=torch.ones(3, 3))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    assert float(ssim(x, x, 1.0)) == pytest.approx(1.0)


def test_ssim_of_a_colour_image_is_the_mean_of_its_channels_hand_cases():
    """scikit-image's ``channel_axis``: SSIM per channel, averaged. Channel 0 is the hand case
    above; channel 1 equals its reference (SSIM 1)."""
    x0 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    mu_x, mu_y, var_x = 5 / 9, 0.5, 5 / 9 - 25 / 81
    c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    first = ((2 * mu_x * mu_y + c1) * c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + c2))
    x = torch.stack([x0, torch.full_like(x0, 0.25)])[None]
    y = torch.stack([torch.full_like(x0, 0.5), torch.full_like(x0, 0.25)])[None]
    assert float(ssim(x, y, 1.0, window=torch.ones(3, 3))) == pytest.approx((first + 1.0) / 2, rel=1e-9)


def test_the_attack_reconstructs_colour_images_in_their_channels():
    """[N, 3, H, W] inputs: the inverse, the GAN's discriminator and the metrics take the three
    channels (a CIFAR-shaped run recorded its traces and then failed in the attack)."""
    g = torch.Generator().manual_seed(0)
    x_tr, x_te = torch.rand(64, 3, 8, 8, generator=g), torch.rand(16, 3, 8, 8, generator=g)
    mix = torch.rand(3 * 64, 20, generator=g).double().numpy()
    feats_tr, feats_te = x_tr.flatten(1).double().numpy() @ mix, x_te.flatten(1).double().numpy() @ mix
    cfg = AttackConfig(epochs=5, gan_epochs=2)
    result = reconstruct(feats_tr, x_tr, feats_te, x_te, cfg)
    assert result.reconstructions.shape == (16, 3, 8, 8) and result.inverse_only.shape == (16, 3, 8, 8)
    assert 0 < result.metrics["ssim_gan"] <= 1


def test_psnr_is_ten_log_range_squared_over_mse():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.full_like(x, 0.1)  # MSE = 0.01 -> 20 dB
    assert float(psnr(y, x)) == pytest.approx(20.0)


def test_linear_probe_reads_a_linear_mix_of_pixels_exactly():
    rng = np.random.default_rng(0)
    x = rng.random((400, 6))
    s = x @ rng.standard_normal((6, 10))  # every pixel is a linear function of the samples
    assert probe_r2(s[:300], x[:300], s[300:], x[300:]) == pytest.approx(1.0, abs=1e-3)
    assert probe_r2(rng.random((300, 10)), x[:300], rng.random((100, 10)), x[300:]) < 0.1


@pytest.fixture(scope="module")
def digits_victim():
    """A tiny convolutional victim (conv 1 -> 4, linear to 10 classes) trained on the digits
    (one thread: the model is far too small to gain from more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
        opt.step()
    yield data, model.eval()
    torch.set_num_threads(threads)


def test_attack_on_unprotected_first_layer_beats_the_mean_image(digits_victim):
    data, model = digits_victim
    cfg = load_crossbar_config({"preset": "ideal", "dac": {"enabled": True, "bits": 7}})
    analog = to_analog(model, cfg).eval()
    periphery = Periphery(0.05, 0.0, 4.0, "hand")
    traces = {
        side: record_traces(analog, x, ModelInput(None), cfg, TraceConfig(), periphery)
        for side, x in (("attacker", data.x_train), ("victim", data.x_test))
    }
    feats = {
        side: preprocess(t.sampled("read")[t.layers[0].name], t.layers[0].map_shape)
        for side, t in traces.items()
    }

    def accuracy(images):
        with torch.no_grad():
            return float((model(images).argmax(1) == data.y_test).float().mean())

    result = reconstruct(
        feats["attacker"],
        data.x_train,
        feats["victim"],
        data.x_test,
        AttackConfig(epochs=120, gan_epochs=5, hidden=128),
        traces["attacker"].layers[0].map_shape,
        accuracy,
    )
    m = result.metrics
    print({k: round(v, 3) for k, v in m.items()})
    assert m["ssim_inverse"] > m["ssim_mean_image"] + 0.25
    assert m["ssim_gan"] > m["ssim_mean_image"] + 0.25
    assert m["victim_accuracy_inverse"] > 0.5 > m["victim_accuracy_mean_image"]


def test_unknown_countermeasure_exits_2_naming_the_allowed_ones(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("name: x\n")
    code = main(["security", str(tmp_path), "--countermeasure", "moat"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "moat" in err and "noise_injection" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("option", "line"),
    [
        (
            ["--noise", "11"],
            "--noise: must be from 0 to 10 (a fraction of the max signal, 0.2: 20 %), got 11",
        ),
        (
            ["--noise", "nan"],
            "--noise: must be from 0 to 10 (a fraction of the max signal, 0.2: 20 %), got nan",
        ),
        (["--sampling", "window"], "--sampling: Input should be 'read', 'tile' or 'layer'"),
        (["--encoding", "rate"], "--encoding: Input should be 'amplitude' or 'bit_serial'"),
    ],
)
def test_a_bad_option_is_named_before_the_run_folder_is_read(option, line, tmp_path, capsys):
    assert main(["security", str(tmp_path / "nothing"), *option]) == 2
    assert capsys.readouterr().err == f"error: {line}\n"


def test_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["security", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_report_section_shows_the_written_results_and_is_empty_without_them(tmp_path):
    import json

    from spikecim.report.render import _load_section_modules
    from spikecim.report.sections import list_sections

    _load_section_modules()
    section = {s.name: s for s in list_sections()}["security"]
    assert section.fn({}, tmp_path) == ""
    row = {"noise": 0.2, "ssim_inverse": 0.812, "psnr_inverse": 15.5, "ssim_mean_image": 0.371}
    cm = {
        "metrics": {"ssim_inverse": 0.333},
        "leakage_first_layer": [{"probe_r2": 0.25, "max_corr": 0.5}],
        "overhead_fraction": {"energy": 0.019, "latency": 0.0, "area": 0.001},
    }
    leakage = {"0": [{"probe_r2": 0.75}, {"probe_r2": 0.5}], "3": [{"probe_r2": 0.25}, {"probe_r2": 0.125}]}
    results = {
        "config": {"trace": {"sampling": "read", "encoding": "amplitude"}, "countermeasure_noise": 0.2},
        "variants": {"snn": {"noise": [row], "countermeasures": {"shuffle": cm}, "leakage": leakage}},
        "countermeasure_names": ["shuffle"],
        "plots": {"noise": "a.png", "grid": "b.png", "leakage": "c.png", "countermeasures": "d.png"},
    }
    (tmp_path / "security").mkdir()
    (tmp_path / "security" / "results.json").write_text(json.dumps(results))
    html = section.fn({}, tmp_path)
    for cell in ("<td>0.812</td>", "<td>15.50</td>", "<td>shuffle</td>", "<td>0.333</td>", "<td>1.90%</td>"):
        assert cell in html
    # The interactive charts carry the results' numbers, not pictures of them.
    found = re.findall(r'data-chart="([^"]+)"[^>]*>.*?class="chart-spec">(.*?)</script>', html)
    charts = {name: json.loads(spec) for name, spec in found}
    assert set(charts) == {"security-noise", "security-countermeasures", "security-leakage-snn"}
    noise = {t["name"]: (t["x"], t["y"]) for t in charts["security-noise"]["data"]}
    assert noise == {"snn inverse": ([20.0], [0.812]), "mean image": ([20.0], [0.371])}
    bars = charts["security-countermeasures"]["data"][0]
    assert (bars["x"], bars["y"]) == (["none", "shuffle"], [0.812, 0.333])
    (heat,) = charts["security-leakage-snn"]["data"]
    assert heat["z"] == [[0.75, 0.5], [0.25, 0.125]] and heat["y"] == ["layer 0", "layer 3"]
    assert "data-file" not in html  # no PNG was written, so report.md links none


def test_an_interrupted_run_is_refused_unless_allow_partial_as_the_error_says(tmp_path, capsys):
    from spikecim.pipeline import folder

    # one epoch saved of the three the config asks for: what an interrupted run leaves (its
    # config.yaml written by spikecim, so recorded in the run folder's manifest)
    args = run_args(tmp_path, "p", *TINY, "--stages", "train,trace")
    assert main(args) == 0
    config = tmp_path / "p" / "config.yaml"
    folder.write_file(config, config.read_text().replace("\n  epochs: 1\n", "\n  epochs: 3\n").encode())
    capsys.readouterr()
    assert main(["security", str(tmp_path / "p"), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "the snn trained 1 of 3 epochs; run `spikecim run` again to finish, or pass --allow-partial"
    )
    assert main(["security", str(tmp_path / "p"), "--quick", "--allow-partial"]) == 0
    assert (tmp_path / "p" / "security" / "results.json").is_file()


def test_results_are_written_before_the_figures_so_a_failed_figure_loses_none(tmp_path, capsys):
    assert main(run_args(tmp_path, "f", *TINY, "--stages", "train,trace")) == 0
    (tmp_path / "f" / "plots").write_text("not a folder\n")  # no figure can be saved there
    capsys.readouterr()
    assert main(["security", str(tmp_path / "f"), "--quick"]) == 2
    assert the_line(capsys.readouterr().err) == f"error: {tmp_path / 'f' / 'plots'}: File exists"
    results = json.loads((tmp_path / "f" / "security" / "results.json").read_text())
    assert list(results["variants"]) == ["snn"]  # the one variant TINY trains
    assert (tmp_path / "f" / "plots").read_text() == "not a folder\n"

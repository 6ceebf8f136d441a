"""train.optimizer: adamw against the update of Loshchilov and Hutter; train.grad_clip against the
bound it puts on how far SGD can move the weights."""

import math

import pytest
import torch

from spikecim.cli.main import main
from spikecim.data import load_dataset
from spikecim.models import create_model
from spikecim.train import FitSpec, fit
from spikecim.train.trainer import make_optimizer


def test_adamw_decays_the_weights_apart_from_the_adaptive_step():
    # Loshchilov and Hutter (ICLR 2019), Algorithm 2, first step: m̂ = g, v̂ = g², so
    # w1 = w0 − lr·(g / (|g| + eps) + wd·w0); Adam's L2 adds wd·w0 to g instead.
    lr, wd, eps = 0.1, 0.5, 1e-8
    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 4.0]]))
    w0, g = model.weight.detach().clone(), torch.tensor([[0.3, 0.0, -1e-3]])
    for name, want in (
        ("adamw", w0 - lr * (g / (g.abs() + eps) + wd * w0)),
        ("adam", w0 - lr * (g + wd * w0) / ((g + wd * w0).abs() + eps)),
    ):
        m = torch.nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            m.weight.copy_(w0)
        opt, _ = make_optimizer(m, FitSpec(optimizer=name, lr=lr, weight_decay=wd, schedule="none"))
        m.weight.grad = g.clone()
        opt.step()
        torch.testing.assert_close(m.weight.detach(), want, rtol=1e-6, atol=1e-7, msg=name)


def test_clipped_sgd_moves_the_weights_at_most_steps_times_lr_times_the_clip():
    data = load_dataset("digits", limit=256)
    steps, lr, clip = math.ceil(256 / 64), 0.5, 1e-3
    moved = {}
    for grad_clip in (clip, None):
        torch.manual_seed(0)
        model = create_model("mlp", spiking=True, hidden=(16,))
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        spec = FitSpec(
            epochs=1,
            batch_size=64,
            timesteps=2,
            optimizer="sgd",
            momentum=0.0,
            lr=lr,
            schedule="none",
            grad_clip=grad_clip,
        )
        fit(model, data, spec, variant="snn")
        moved[grad_clip] = float(
            (torch.cat([p.detach().flatten() for p in model.parameters()]) - start).norm()
        )
    assert 0 < moved[clip] <= steps * lr * clip * (1 + 1e-5)  # each step: lr · (a gradient of norm ≤ clip)
    assert moved[None] > 10 * steps * lr * clip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.grad_clip=0", "config.train.grad_clip: Input should be greater than 0"),
        ("train.optimizer=lamb", "config.train.optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
    ],
)
def test_bad_optimizer_settings_are_one_line_naming_the_field(override, message, capsys):
    assert main(["run", "--set", override]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


@pytest.mark.parametrize("schedule", ["cosine", "none"])
def test_warmup_raises_the_learning_rate_linearly_then_follows_the_schedule(schedule, tmp_path):
    data = load_dataset("digits", limit=128)
    epochs, warmup, lr = 6, 2, 0.01

    def want(e):  # the rate of epoch e (from 0), written out: a linear rise, then the cosine
        if e < warmup:
            return lr * (e + 1) / (warmup + 1)
        return lr * (
            0.5 * (1 + math.cos(math.pi * (e - warmup) / (epochs - warmup))) if schedule == "cosine" else 1
        )

    def run(ckpt=None, stop=None):
        torch.manual_seed(0)
        model = create_model("mlp", spiking=True, hidden=(16,))
        spec = FitSpec(
            epochs=epochs, batch_size=64, timesteps=2, lr=lr, schedule=schedule, warmup_epochs=warmup
        )
        return model, fit(model, data, spec, ckpt_dir=ckpt, variant="snn", stop_after_epoch=stop)["history"]

    opt, _ = make_optimizer(
        create_model("mlp", spiking=True, hidden=(16,)),
        FitSpec(epochs=epochs, lr=lr, schedule=schedule, warmup_epochs=warmup),
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(want(0), abs=1e-15)  # the first epoch's rate
    model, history = run()
    # a row's lr is the rate set for the next epoch
    assert [row["lr"] for row in history] == pytest.approx([want(e) for e in range(1, epochs + 1)], abs=1e-12)
    run(tmp_path, stop=1)  # interrupted inside the warmup, then resumed
    resumed, _ = run(tmp_path)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)

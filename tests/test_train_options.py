"""train.optimizer: adamw against the update of Loshchilov and Hutter; train.grad_clip against the
bound it puts on how far SGD can move the weights."""

import math

import pytest
import torch

from spikecim.cli.main import main
from spikecim.data import load_dataset
from spikecim.errors import SpikecimError
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


def _smoothed_ce(logits, y, eps):
    # Szegedy et al. (CVPR 2016): cross-entropy against q = (1 − ε)·one-hot + ε/K, written out
    logp = torch.log_softmax(logits.double(), -1)
    k = logits.shape[-1]
    q = torch.full_like(logp, eps / k)
    q[torch.arange(len(y)), y] += 1 - eps
    return float(-(q * logp).sum(-1).mean())


@pytest.mark.parametrize("mode", ["mean", "per_step"])
def test_label_smoothing_is_the_cross_entropy_against_the_smoothed_targets(mode):
    from spikecim.train import classification_loss

    g = torch.Generator().manual_seed(8)
    logits, y, eps = (
        torch.randn(3, 5, 7, generator=g, dtype=torch.float64),
        torch.randint(0, 7, (5,), generator=g),
        0.1,
    )
    got = float(classification_loss(logits, y, mode, label_smoothing=eps))
    if mode == "mean":
        want = _smoothed_ce(logits.mean(0), y, eps)
    else:
        want = sum(_smoothed_ce(logits[t], y, eps) for t in range(3)) / 3
    assert got == pytest.approx(want, rel=1e-12)
    assert got != pytest.approx(float(classification_loss(logits, y, mode)), rel=1e-3)


def test_label_smoothing_of_the_language_model_loss():
    from spikecim.tasks.lm import lm_loss

    g = torch.Generator().manual_seed(9)
    logits, y = (
        torch.randn(2, 4, 11, generator=g, dtype=torch.float64),
        torch.randint(0, 11, (2, 4), generator=g),
    )
    got = float(lm_loss(logits, y, label_smoothing=0.2))
    assert got == pytest.approx(_smoothed_ce(logits.reshape(8, 11), y.reshape(8), 0.2), rel=1e-12)


def test_training_with_label_smoothing_lowers_the_confidence_it_ends_with():
    data = load_dataset("digits", limit=512)
    top = {}
    for eps in (0.0, 0.5):
        torch.manual_seed(0)
        model = create_model("mlp", spiking=False, hidden=(32,))
        fit(model, data, FitSpec(epochs=8, lr=1e-2, label_smoothing=eps), variant="ann")
        with torch.no_grad():
            top[eps] = float(torch.softmax(model(data.x_test.unsqueeze(0)).mean(0), -1).max(-1).values.mean())
    # with ε the loss is least where the right class has probability 1 − ε + ε/K (0.55), not 1
    assert top[0.5] < 0.55 + 0.05 < top[0.0], top


def test_label_smoothing_with_a_task_whose_loss_takes_none_is_refused_in_one_line(monkeypatch):
    from spikecim.tasks import _registry
    from spikecim.tasks.classification import Classification

    class Plain(Classification):  # a plug-in written before label smoothing existed
        name = "plain"

        def loss(self, out, y, mode):
            return super().loss(out, y, mode)

    monkeypatch.setitem(_registry._TASKS, "plain", Plain())
    model = create_model("mlp", spiking=True, hidden=(8,))
    spec = FitSpec(epochs=1, label_smoothing=0.1)
    with pytest.raises(SpikecimError) as err:
        fit(model, load_dataset("digits", limit=64), spec, task="plain")
    assert str(err.value) == "train.label_smoothing: the plain task's loss takes none; leave it at 0"
    fit(model, load_dataset("digits", limit=64), FitSpec(epochs=1), task="plain")  # without it: trains

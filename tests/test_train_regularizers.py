"""train.spike_reg (the spike-rate penalty, against snnTorch's L1 rate penalty) and train.tet_lambda
(TET's MSE term, against the TET authors' loss), on their own and in training."""

import hashlib
import json

import pytest
import torch
from torch import nn

from spikecim.cli.main import main
from spikecim.data import load_dataset
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.train import FitSpec, evaluate, fit
from spikecim.train.regularizers import spike_rate

T, B = 7, 3


def _mlp(spiking: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "mlp", spiking=spiking, num_classes=5, hidden=(16, 12), neuron_kw={"beta": 0.6, "threshold": 0.4}
    )


def test_penalty_and_its_gradient_equal_snntorch_l1_rate_sparsity_over_every_layer_stepped_by_hand():
    import snntorch as snn
    from snntorch import surrogate
    from snntorch.functional.reg import l1_rate_sparsity

    lam = 0.3
    model = _mlp().double().train()
    x = torch.rand(T, B, 1, 8, 8, dtype=torch.float64) * 2
    with spike_rate(model) as spikes:
        model(x)
        penalty = lam * spikes.take()
    penalty.backward()
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:2]  # the readout gets no gradient
    ours = [m.weight.grad.clone() for m in hidden]

    # the same network stepped with snnTorch Leaky neurons (delayed subtract reset, atan(2))
    fc = [m for m in _mlp().double().modules() if isinstance(m, nn.Linear)]
    neurons = [snn.Leaky(beta=0.6, threshold=0.4, spike_grad=surrogate.atan(2.0)).double() for _ in range(2)]
    mems = [torch.zeros(B, 16, dtype=torch.float64), torch.zeros(B, 12, dtype=torch.float64)]
    fired = []
    for t in range(T):
        h = x[t].reshape(B, 64)
        for i in range(2):
            s, mems[i] = neurons[i](fc[i](h), mems[i])
            fired.append(s.reshape(-1))
            h = s.to(torch.float64)
    every = torch.cat(fired)
    ref = l1_rate_sparsity(Lambda=lam / (T * B * (16 + 12)))(every)
    assert 0 < float(every.detach().mean()) < 1
    assert penalty.item() == pytest.approx(ref.item(), rel=1e-6)
    ref.backward()
    for got, want in zip(ours, [m.weight.grad for m in fc[:2]], strict=True):
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-9)
    assert ours[0].abs().sum() > 0  # the penalty reaches the first layer through the surrogate


def test_forwards_in_eval_mode_are_not_counted():
    model = _mlp().eval()
    with spike_rate(model) as spikes:
        model(torch.rand(T, B, 1, 8, 8))
    assert spikes.empty


def _fit(spiking: bool, spike_reg: float, tmp_path):
    data = load_dataset("digits")
    model = create_model("mlp", spiking=spiking, hidden=(32,))
    torch.manual_seed(0)
    for p in model.parameters():  # the same start for every run of the test
        nn.init.normal_(p, std=0.2)
    spec = FitSpec(epochs=2, batch_size=64, timesteps=4, spike_reg=spike_reg, lr=5e-3, device="cpu")
    history = fit(model, data, spec, variant=f"v{spike_reg}", console=None)["history"]
    return model, data, history


def test_training_with_the_penalty_fires_less_than_without(tmp_path):
    plain, data, h0 = _fit(True, 0.0, tmp_path)
    sparse, _, h1 = _fit(True, 2.0, tmp_path)
    rate = {
        name: sum(evaluate(m, data.x_test, data.y_test, 4)["spike_rates"].values())
        for name, m in (("plain", plain), ("sparse", sparse))
    }
    assert rate["sparse"] < 0.5 * rate["plain"], rate
    assert "train_spike_rate" not in h0[-1]
    assert 0.0 <= h1[-1]["train_spike_rate"] < h1[0]["train_spike_rate"]


def test_an_ann_twin_trains_exactly_as_without_the_penalty(tmp_path):
    a, _, _ = _fit(False, 0.0, tmp_path)
    b, _, hist = _fit(False, 2.0, tmp_path)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert "train_spike_rate" not in hist[-1]


def test_checkpoints_written_before_the_setting_existed_keep_their_fingerprint():
    spec = FitSpec()
    before = {  # FitSpec's fields and defaults before spike_reg, tet_*, grad_clip and augment
        "epochs": 15, "lr": 2e-3, "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0,
        "schedule": "cosine", "loss": "mean", "batch_size": 64, "timesteps": 4, "encoder": "direct",
        "seed": 0, "device": "auto",
    }  # fmt: skip
    want = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.fingerprint() == want
    assert FitSpec(spike_reg=0.1).fingerprint() != want
    assert FitSpec(loss="per_step", tet_lambda=0.1).fingerprint() != FitSpec(loss="per_step").fingerprint()


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf", "lots"])
def test_a_bad_penalty_weight_is_one_line_naming_the_field(value, capsys, tmp_path):
    code = main(["run", "--set", f"train.spike_reg={value}", "--set", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "train.spike_reg" in err, err


def test_a_spiking_model_without_a_neuron_layer_to_penalise_is_refused_in_one_line():
    model = nn.Sequential(nn.Flatten(2), nn.Linear(64, 10))  # takes [T, B, 1, 8, 8], no neuron
    model.spiking = True
    spec = FitSpec(epochs=1, spike_reg=0.5, device="cpu")
    with pytest.raises(SpikecimError, match=r"^train.spike_reg: the snn has no spiking neuron layer") as err:
        fit(model, load_dataset("digits"), spec, variant="snn")
    assert "\n" not in str(err.value)


def _tet_loss_as_its_authors_write_it(outputs, labels, means, lamb):
    # TET (Deng et al., ICLR 2022): functions.TET_loss of brain-intelligence-lab/temporal_efficient_training,
    # outputs [B, T, classes], criterion nn.CrossEntropyLoss()
    criterion, t_steps = nn.CrossEntropyLoss(), outputs.size(1)
    loss_es = sum(criterion(outputs[:, t, ...], labels) for t in range(t_steps)) / t_steps
    loss_mmd = nn.MSELoss()(outputs, torch.zeros_like(outputs).fill_(means))
    return (1 - lamb) * loss_es + lamb * loss_mmd


def test_per_step_loss_with_tet_mse_equals_the_tet_loss_and_its_gradient():
    from spikecim.train import classification_loss
    from spikecim.train.losses import with_tet_mse

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(T, 6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (6,), generator=g)
    ours = with_tet_mse(classification_loss(logits, y, "per_step"), logits, 0.2, 1.5)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    ref = _tet_loss_as_its_authors_write_it(logits.transpose(0, 1), y, 1.5, 0.2)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-12, atol=1e-15)


def test_training_with_tet_lambda_one_pulls_the_logits_to_tet_means():
    data = load_dataset("digits")
    mean_logit = {}
    for lamb in (0.0, 1.0):
        torch.manual_seed(0)
        model = create_model("mlp", spiking=True, hidden=(32,))
        spec = FitSpec(epochs=2, batch_size=64, loss="per_step", tet_lambda=lamb, tet_means=3.0, lr=5e-3)
        fit(model, data, spec, variant=f"tet{lamb}", console=None)
        with torch.no_grad():
            mean_logit[lamb] = float(
                model(data.x_test[:64].unsqueeze(0).expand(4, *data.x_test[:64].shape)).mean()
            )
    assert abs(mean_logit[1.0] - 3.0) < 0.3, mean_logit
    assert abs(mean_logit[0.0] - 3.0) > 1.0, mean_logit


def test_tet_lambda_without_the_per_step_loss_is_one_line_naming_the_field(capsys):
    assert main(["run", "--set", "train.tet_lambda=0.001"]) == 2
    err = capsys.readouterr().err.strip()
    want = (
        "error: config.train.tet_lambda: TET's MSE term goes with loss: per_step (its cross-entropy term), "
    )
    assert err.splitlines() == [want + "got loss: mean"]


def test_a_penalty_that_silences_the_network_is_warned_about():
    torch.manual_seed(0)
    model = create_model("mlp", spiking=True, hidden=(64, 32), neuron_kw={"beta": 0.5})
    spec = FitSpec(epochs=1, timesteps=1, spike_reg=5.0, lr=5e-3)
    with pytest.warns(UserWarning, match=r"^snn: no neuron fired in epoch 1 under train.spike_reg = 5.0"):
        history = fit(model, load_dataset("digits"), spec, variant="snn")["history"]
    assert history[0]["train_spike_rate"] == 0.0
    assert evaluate(model, *_test_split(), 1)["spike_rates"] == {"2": 0.0, "4": 0.0}  # silent indeed


def _test_split():
    d = load_dataset("digits")
    return d.x_test, d.y_test

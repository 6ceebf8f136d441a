"""Mixup and CutMix: the mixed inputs against their targets, λ's distribution against Beta(α, α),
and in training (soft targets in both losses, resumable, refused where they cannot apply)."""

import numpy as np
import pytest
import torch

from spikecim.cli.main import main
from spikecim.data import Dataset, load_dataset
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.train import FitSpec, classification_loss, fit
from spikecim.train.mixing import mix_batch

K = 10


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, 6, 7, generator=g)
    y = torch.arange(n)  # n even and at most K: the reversed batch pairs samples of other labels
    return x, y


def _lam_of(target, y):
    # the weight of each sample's own label in its soft target (its partner's label differs)
    return target[torch.arange(len(y)), y]


def test_mixup_blends_each_sample_with_the_reversed_batch_by_the_weight_of_its_targets():
    x, y = _batch()
    mixed, target = mix_batch(x, y, K, torch.Generator().manual_seed(1), mixup_alpha=0.4)
    lam = _lam_of(target, y)
    assert torch.allclose(lam, lam[0].expand_as(lam))  # one λ per batch
    torch.testing.assert_close(mixed, lam[0] * x + (1 - lam[0]) * x.flip(0))
    torch.testing.assert_close(target.sum(1), torch.ones(len(y)))
    torch.testing.assert_close(target[torch.arange(len(y)), y.flip(0)], 1 - lam)


def test_mixup_draws_lambda_from_beta_alpha_alpha():
    alpha, n = 0.4, 4000
    x, y = _batch(n=4)
    g = torch.Generator().manual_seed(2)
    lams = np.array([float(_lam_of(mix_batch(x, y, K, g, mixup_alpha=alpha)[1], y)[0]) for _ in range(n)])
    # Beta(α, α): mean 1/2, variance 1/(4(2α + 1)); within 5 standard errors
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(lams.mean() - 0.5) < 5 * (var / n) ** 0.5
    assert abs(lams.var() - var) < 5 * var * (2 / n) ** 0.5 * 2


def test_cutmix_pastes_one_box_of_the_partner_and_weighs_the_targets_by_its_area():
    x, y = _batch(n=6, seed=3)
    for seed in range(20):
        mixed, target = mix_batch(x, y, K, torch.Generator().manual_seed(seed), cutmix_alpha=1.0)
        from_partner = (mixed == x.flip(0)) & (mixed != x)  # pixels (of all samples) taken from x'
        box = from_partner[0, 0]
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        area = int(box.sum())
        if area:  # a rectangle, the same in every channel and sample
            assert area == len(rows) * len(cols) and int(rows[-1] - rows[0]) + 1 == len(rows)
            assert torch.equal(from_partner, box.expand_as(from_partner))
        lam = _lam_of(target, y)
        torch.testing.assert_close(lam, torch.full_like(lam, 1 - area / (6 * 7)))


def test_both_alphas_take_mixup_or_cutmix_per_batch():
    x, y = _batch(n=4)
    g, kinds = torch.Generator().manual_seed(4), set()
    for _ in range(40):
        mixed, target = mix_batch(x, y, K, g, mixup_alpha=1.0, cutmix_alpha=1.0)
        lam = float(_lam_of(target, y)[0])
        kinds.add("mixup" if torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0)) else "cutmix")
    assert kinds == {"mixup", "cutmix"}


@pytest.mark.parametrize("mode", ["mean", "per_step"])
def test_soft_targets_give_the_cross_entropy_against_the_target_distribution(mode):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, K, generator=g, dtype=torch.float64)
    target = torch.softmax(torch.randn(4, K, generator=g, dtype=torch.float64), -1)

    def ce(z):  # −Σ_k q_k log p_k, mean over the batch
        return float(-(target * torch.log_softmax(z, -1)).sum(-1).mean())

    want = ce(logits.mean(0)) if mode == "mean" else sum(ce(logits[t]) for t in range(3)) / 3
    assert float(classification_loss(logits, target, mode)) == pytest.approx(want, rel=1e-12)


def test_training_with_mixup_and_cutmix_resumes_exactly(tmp_path):
    data = load_dataset("digits", limit=128)

    def run(ckpt=None, stop=None):
        torch.manual_seed(0)
        model = create_model("mlp", spiking=True, hidden=(16,))
        spec = FitSpec(
            epochs=2, batch_size=64, timesteps=2, mixup_alpha=0.8, cutmix_alpha=1.0, loss="per_step"
        )
        fit(model, data, spec, ckpt_dir=ckpt, variant="snn", stop_after_epoch=stop)
        return model

    whole = run()
    run(tmp_path, stop=1)
    resumed = run(tmp_path)
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    plain = create_model("mlp", spiking=True, hidden=(16,))
    fit(plain, data, FitSpec(epochs=2, batch_size=64, timesteps=2, loss="per_step"), variant="snn")
    assert not all(torch.equal(a, b) for a, b in zip(whole.parameters(), plain.parameters(), strict=True))


def test_mixup_of_event_frames_and_of_text_is_refused_in_one_line(capsys):
    d = load_dataset("digits", limit=64)
    frames = Dataset(
        "frames", (d.x_train > 0.5).to(torch.uint8), d.y_train, (d.x_test > 0.5).to(torch.uint8), d.y_test, 10
    )
    with pytest.raises(SpikecimError) as err:
        fit(create_model("mlp", spiking=True, hidden=(8,)), frames, FitSpec(epochs=1, mixup_alpha=0.2))
    assert str(err.value) == (
        "train.mixup_alpha: mixup blends values; frames holds torch.uint8 event frames, "
        "which CutMix (train.cutmix_alpha) mixes without blending"
    )
    assert main(["run", "--task", "lm", "--set", "train.mixup_alpha=0.2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: config.train.mixup_alpha: the lm task reads text; mixup and CutMix are for images"
    ]

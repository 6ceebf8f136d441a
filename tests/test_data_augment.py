"""data.augment: crop, flip and cutout against brute-force searches of what each may produce,
and in training (applied, resumable, never to the test split, runs written before it resume)."""

import itertools

import numpy as np
import pytest
import torch
import yaml

from spikecim.cli.main import main
from spikecim.data import Dataset, load_dataset
from spikecim.data.augment import augment
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.pipeline import folder
from spikecim.train import FitSpec, evaluate, fit


def _images(n=64, c=2, h=6, w=7, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # no zero pixel


def _offsets_that_explain(out, x, pad):
    """Every (dy, dx) whose window of the zero-padded x is out (a search over all of them)."""
    h, w = x.shape[-2:]
    padded = np.pad(x.numpy(), [(0, 0)] * (x.dim() - 2) + [(pad, pad), (pad, pad)])
    return [
        (dy, dx)
        for dy, dx in itertools.product(range(2 * pad + 1), repeat=2)
        if np.array_equal(padded[..., dy : dy + h, dx : dx + w], out.numpy())
    ]


def test_crop_is_a_window_of_the_zero_padded_image_at_every_offset_alike():
    x, pad = _images(n=400), 2
    out = augment(x, ["crop"], torch.Generator().manual_seed(1), crop_padding=pad)
    assert out.shape == x.shape
    seen = set()
    for i in range(len(x)):
        found = _offsets_that_explain(out[i], x[i], pad)
        assert len(found) == 1, (i, found)  # no zero pixel in x: one offset only
        seen.add(found[0])
    assert seen == set(itertools.product(range(2 * pad + 1), repeat=2))  # all 25 offsets drawn


def test_event_frames_of_a_sample_share_one_crop_offset():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(32, 3, 2, 5, 5, generator=g) < 0.5).to(torch.uint8)
    x[..., 0, 0] = 1  # every frame has an event to locate
    out = augment(x, ["crop"], torch.Generator().manual_seed(3), crop_padding=1)
    assert out.dtype == torch.uint8
    for i in range(len(x)):
        assert _offsets_that_explain(out[i], x[i], 1), i  # one offset explains all T frames


def test_flip_mirrors_about_half_of_the_samples_and_leaves_the_rest():
    x = _images(n=2000, h=3, w=4)
    out = augment(x, ["flip"], torch.Generator().manual_seed(4))
    flipped = 0
    for i in range(len(x)):
        same, mirrored = torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))
        assert same != mirrored
        flipped += mirrored
    assert abs(flipped - 1000) < 5 * (2000 * 0.25) ** 0.5  # Binomial(2000, 1/2) within 5 sd


def test_cutout_zeroes_the_clipped_square_of_some_centre_as_devries_and_taylor_draw_it():
    h, w, size = 8, 9, 4
    x = torch.ones(300, 1, h, w)
    out = augment(x, ["cutout"], torch.Generator().manual_seed(5), cutout_size=size)
    clipped = 0
    for i in range(len(x)):
        holes = []
        for cy, cx in itertools.product(range(h), range(w)):  # Cutout(n_holes=1, length) of their code
            mask = np.ones((h, w), np.float32)
            y1, y2 = np.clip(cy - size // 2, 0, h), np.clip(cy + size // 2, 0, h)
            x1, x2 = np.clip(cx - size // 2, 0, w), np.clip(cx + size // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
            if np.array_equal(out[i, 0].numpy(), mask):
                holes.append((y2 - y1) * (x2 - x1))
        assert holes, i
        clipped += holes[0] < size * size
    assert 0 < clipped < len(x)  # centres near a border and away from it both drawn


def test_the_operations_run_in_the_order_listed_and_repeat_under_one_seed():
    x = _images(n=16, h=8, w=8)
    a = augment(x, ["crop", "cutout"], torch.Generator().manual_seed(6), crop_padding=2, cutout_size=4)
    b = augment(x, ["crop", "cutout"], torch.Generator().manual_seed(6), crop_padding=2, cutout_size=4)
    c = augment(x, ["cutout", "crop"], torch.Generator().manual_seed(6), crop_padding=2, cutout_size=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match=r"data.augment: unknown 'rotate', allowed: crop, flip, cutout"):
        augment(x, ["rotate"], torch.Generator())


def _digits():
    return load_dataset("digits", limit=256)


def _fit(data, tmp=None, stop=None, **kw):
    torch.manual_seed(0)
    model = create_model("mlp", spiking=True, hidden=(16,))
    spec = FitSpec(epochs=2, batch_size=64, timesteps=2, lr=5e-3, **kw)
    hist = fit(model, data, spec, ckpt_dir=tmp, variant="snn", stop_after_epoch=stop)["history"]
    return model, hist


def test_training_augments_the_training_batches_resumably_and_never_the_test_split(tmp_path):
    data = _digits()
    plain, _ = _fit(data)
    aug, hist = _fit(data, augment=("crop", "flip"), crop_padding=1)
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), aug.parameters(), strict=True))
    # the epoch's test accuracy is that of the unaugmented test split
    assert hist[-1]["test_acc"] == evaluate(aug, data.x_test, data.y_test, 2)["accuracy"]
    # interrupted after epoch 1 and resumed: the same weights as without the interruption
    _fit(data, tmp_path, stop=1, augment=("crop", "flip"), crop_padding=1)
    resumed, _ = _fit(data, tmp_path, augment=("crop", "flip"), crop_padding=1)
    for a, b in zip(aug.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_augmenting_flat_samples_is_refused_in_one_line():
    d = _digits()
    flat = Dataset("flat", d.x_train.flatten(1), d.y_train, d.x_test.flatten(1), d.y_test, 10)
    with pytest.raises(SpikecimError) as err:
        fit(create_model("mlp", spiking=True, hidden=(8,)), flat, FitSpec(epochs=1, augment=("flip",)))
    assert str(err.value) == (
        "data.augment: needs images [N, C, H, W] or event frames [N, T, C, H, W]; flat holds samples of shape [64]"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.augment=[crop,crop]",
            "config.data.augment: 'crop' is listed twice; each of crop, flip, cutout at most once",
        ),
        ("data.augment=[rotate]", "config.data.augment.0: Input should be 'crop', 'flip' or 'cutout'"),
        ("data.crop_padding=0", "config.data.crop_padding: Input should be greater than or equal to 1"),
    ],
)
def test_bad_augmentation_settings_are_one_line_naming_the_field(override, message, capsys):
    assert main(["run", "--set", override]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_a_run_written_before_augmentation_existed_resumes_and_refuses_augmenting_it(tmp_path, capsys):
    args = [
        "run",
        "--set",
        f"output_dir={tmp_path}",
        "--name",
        "old",
        "--stages",
        "train",
        "--set",
        "data.limit=128",
    ]
    assert main([*args, "--epochs", "1"]) == 0
    path = tmp_path / "old" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key in ("augment", "crop_padding", "cutout_size"):  # as an earlier spikecim wrote it
        del config["data"][key]
    del config["model"]["neuron"]["learn_threshold"]  # a nested field, as if added later too
    folder.write_file(path, yaml.safe_dump(config, sort_keys=False).encode())
    assert main([*args, "--epochs", "1"]) == 0, capsys.readouterr().err
    assert main([*args, "--epochs", "1", "--set", "data.augment=[flip]"]) == 2
    assert "holds a run with another 'data'" in capsys.readouterr().err

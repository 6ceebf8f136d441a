"""The data set registry, its common options, and the embedded digits data set."""

from types import SimpleNamespace

import pytest
import torch

from spikecim.data import Dataset, dataset_from_config, dataset_options, list_datasets, load_dataset
from spikecim.errors import SpikecimError


def test_all_published_formats_are_registered():
    assert list_datasets() == [
        "cifar10", "cifar100", "digits", "fashion-mnist", "mnist", "nmnist", "pydoc", "shakespeare", "text",
    ]  # fmt: skip


def test_digits_has_1797_samples_10_classes_and_a_25_percent_split():
    ds = load_dataset("digits")
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 450 and len(ds.x_train) == 1347  # ceil(0.25 * 1797) held out
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.num_classes == 10
    assert set(ds.y_train.tolist()) == set(range(10)) and set(ds.y_test.tolist()) == set(range(10))
    assert ds.x_train.min().item() == 0.0 and ds.x_train.max().item() == 1.0  # 0..16 scaled by 16


def test_digits_split_is_identical_across_calls():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_digits_split_is_a_stratified_partition_of_scikit_learns_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = load_dataset("digits")

    def rows(x, y):  # each sample as (label, 64 pixel values 0..16), as a sortable tuple
        pixels = (x.reshape(len(x), 64) * 16).round().to(torch.int64).tolist()
        return sorted((int(label), *p) for label, p in zip(y.tolist(), pixels))

    ours = rows(torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test]))
    theirs = sorted((int(label), *p) for label, p in zip(bunch.target, bunch.data.astype(int).tolist()))
    assert ours == theirs  # every image once, with its label, pixel for pixel
    # stratified: each class's share of the test split is 25 % of that class, to one sample
    for k in range(10):
        n_k = int((bunch.target == k).sum())
        assert abs(int((ds.y_test == k).sum()) - 0.25 * n_k) <= 1


def test_digits_test_fraction_changes_split_size():
    assert len(load_dataset("digits", test_fraction=0.5).x_test) == 899  # ceil(0.5 * 1797)


def test_limit_and_test_limit_cut_each_split():
    ds = load_dataset("digits", limit=100, test_limit=30)
    assert len(ds.x_train) == len(ds.y_train) == 100 and len(ds.x_test) == len(ds.y_test) == 30


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_limit_must_be_positive_integer(bad):
    with pytest.raises(SpikecimError, match=r"^data.limit: must be a positive integer or null"):
        load_dataset("digits", limit=bad)


def test_unknown_data_set_lists_registered_names():
    with pytest.raises(
        SpikecimError, match=r"^data.name: unknown 'imagenet', allowed: cifar10, cifar100, digits"
    ):
        load_dataset("imagenet")


def test_unknown_option_names_option_and_allowed_ones():
    with pytest.raises(
        SpikecimError,
        match=r"^data.timesteps: not an option of data set 'mnist', allowed: limit, test_limit$",
    ):
        load_dataset("mnist", root=".", timesteps=4)
    assert dataset_options("nmnist") == ["limit", "test_limit", "timesteps"]


def data_config(**kw):
    """The fields of spikecim.config.DataConfig that loading reads."""
    fields = {
        "name": "digits",
        "root": None,
        "encoder": "direct",
        "timesteps": 4,
        "test_fraction": 0.25,
        "limit": None,
    }
    return SimpleNamespace(**{**fields, **kw})


def test_dataset_from_config_passes_limit_and_test_fraction():
    ds = dataset_from_config(data_config(limit=40, test_fraction=0.5))
    assert len(ds.x_train) == 40 and len(ds.x_test) == 899


def test_dataset_from_config_gives_nmnist_the_configured_timesteps(tmp_path):
    for split in ("Train", "Test"):
        (tmp_path / split / "3").mkdir(parents=True)
        # One ON event at (x=1, y=2), t=0: bytes x, y, p<<7 | t[22:16], t[15:8], t[7:0].
        (tmp_path / split / "3" / "a.bin").write_bytes(bytes([1, 2, 0x80, 0, 0]))
    ds = dataset_from_config(data_config(name="nmnist", root=str(tmp_path), timesteps=6))
    assert ds.x_train.shape == (1, 6, 2, 34, 34) and ds.x_train[0, 0, 1, 2, 1].item() == 1


def test_dataset_with_mismatched_labels_is_rejected():
    x, y = torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(SpikecimError, match=r"train split has 3 samples but 2 labels"):
        Dataset("toy", x, y, x, torch.zeros(3, dtype=torch.int64), 2)

"""Every registered data set, loaded from a tiny file set in its published format, keeps the Dataset contract."""

import pytest
import torch

from spikecim.data import list_datasets, load_dataset
from spikecim.data.encode import get_encoder
from test_data_cifar import write_cifar10, write_cifar100
from test_data_mnist import write_mnist
from test_data_nmnist import write_nmnist

WRITERS = {
    "digits": lambda root: None,
    "mnist": lambda root: write_mnist(root / "MNIST" / "raw"),
    "fashion-mnist": lambda root: write_mnist(root, gz=True),
    "cifar10": lambda root: write_cifar10(root / "cifar-10-batches-bin"),
    "cifar100": lambda root: write_cifar100(root / "cifar-100-binary"),
    "nmnist": lambda root: write_nmnist(root),
}


TEXT = {"pydoc", "shakespeare", "text"}  # language-modelling corpora: their contract is in test_lm.py


def test_every_registered_data_set_has_a_contract_fixture():
    assert sorted(WRITERS) == sorted(set(list_datasets()) - TEXT)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_data_set_keeps_the_contract(tmp_path, name):
    WRITERS[name](tmp_path)
    ds = load_dataset(name, root=str(tmp_path), limit=2, test_limit=1)
    assert len(ds.x_train) == len(ds.y_train) == 2 and len(ds.x_test) == len(ds.y_test) == 1
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < ds.num_classes
        assert x.shape[1:] == ds.x_train.shape[1:]
        if ds.frames:
            assert x.dtype == torch.uint8 and set(x.unique().tolist()) <= {0, 1}
        else:
            assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    image = ds.sample_shape[1:] if ds.frames else ds.sample_shape
    assert (ds.in_channels, ds.input_size) == (image[0], image[-1])
    steps = ds.sample_shape[0] if ds.frames else 3
    encoded = get_encoder("direct", frames=ds.frames)(ds.x_test, steps)
    assert encoded.shape == (steps, 1, *image) and encoded.is_floating_point()
    for t in range(steps):  # direct: the image at every step; frames: frame t of the sample
        assert torch.equal(encoded[t, 0], ds.x_test[0, t].float() if ds.frames else ds.x_test[0])

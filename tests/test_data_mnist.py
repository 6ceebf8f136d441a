"""MNIST / Fashion-MNIST loaders read IDX files written here by hand (struct + gzip)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from spikecim.data import load_dataset
from spikecim.errors import SpikecimError

N_TRAIN, N_TEST = 5, 3


def write_idx(path, magic, array, gz=False):
    """IDX as published: big-endian magic, big-endian uint32 sizes, then the bytes."""
    raw = (
        struct.pack(">I", magic)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def make_split(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1], images[0, 0, 2] = 0, 255, 51  # hand-known: 0.0, 1.0, 0.2
    labels = np.arange(n, dtype=np.uint8) % 10
    return images, labels


def write_mnist(folder, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    tr, te = make_split(N_TRAIN, 1), make_split(N_TEST, 2)
    write_idx(folder / "train-images-idx3-ubyte", 0x803, tr[0], gz)
    write_idx(folder / "train-labels-idx1-ubyte", 0x801, tr[1], gz)
    write_idx(folder / "t10k-images-idx3-ubyte", 0x803, te[0], gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", 0x801, te[1], gz)
    return tr, te


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_reads_exact_pixels_scaled_by_255_and_labels(tmp_path, gz):
    (tr_img, tr_lab), (te_img, te_lab) = write_mnist(tmp_path, gz)
    ds = load_dataset("mnist", root=str(tmp_path))
    assert ds.x_train.shape == (N_TRAIN, 1, 28, 28) and ds.x_test.shape == (N_TEST, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), tr_img / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ds.x_test[:, 0].numpy(), te_img / 255.0, rtol=0, atol=1e-7)
    assert ds.x_train[0, 0, 0, :3].tolist() == pytest.approx([0.0, 1.0, 0.2])
    assert ds.y_train.tolist() == tr_lab.tolist() == [0, 1, 2, 3, 4]
    assert ds.y_test.tolist() == te_lab.tolist() == [0, 1, 2]
    assert ds.num_classes == 10 and not ds.frames


def test_fashion_mnist_found_in_torchvision_raw_subfolder(tmp_path):
    (tr_img, _), _ = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset("fashion-mnist", root=str(tmp_path))
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), tr_img / 255.0, rtol=0, atol=1e-7)


def test_mnist_found_in_mnist_raw_subfolder_with_plain_and_gz_mixed(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, gz=False)
    lab = raw / "train-labels-idx1-ubyte"
    lab.with_name(lab.name + ".gz").write_bytes(gzip.compress(lab.read_bytes()))
    lab.unlink()
    assert load_dataset("mnist", root=str(tmp_path)).y_train.tolist() == [0, 1, 2, 3, 4]


def test_limit_keeps_first_training_samples(tmp_path):
    (tr_img, _), _ = write_mnist(tmp_path)
    ds = load_dataset("mnist", root=str(tmp_path), limit=2, test_limit=1)
    assert len(ds.x_train) == 2 and len(ds.x_test) == 1
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), tr_img[:2] / 255.0, rtol=0, atol=1e-7)


def test_wrong_magic_number_is_one_line_error_naming_file(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", 0x801, np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(
        SpikecimError, match=r"train-images-idx3-ubyte has magic number 0x00000801, expected 0x00000803"
    ) as e:
        load_dataset("mnist", root=str(tmp_path))
    assert "\n" not in str(e.value)


def test_truncated_image_file_is_error_naming_file(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SpikecimError, match=r"t10k-images-idx3-ubyte is truncated") as e:
        load_dataset("mnist", root=str(tmp_path))
    assert "\n" not in str(e.value)


def test_truncated_gzip_is_error_naming_file(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(SpikecimError, match=r"train-labels-idx1-ubyte.gz is a damaged gzip file"):
        load_dataset("mnist", root=str(tmp_path))


def test_label_count_differing_from_image_count_is_error(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", 0x801, np.zeros(4, np.uint8))
    with pytest.raises(SpikecimError, match=r"holds 5 images but .*train-labels-idx1-ubyte 4 labels"):
        load_dataset("mnist", root=str(tmp_path))


def test_missing_file_error_names_the_file_and_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(SpikecimError) as e:
        load_dataset("mnist", root=str(tmp_path))
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg and "\n" not in msg
    assert "train-images-idx3-ubyte" not in msg  # only the absent file is named


def test_no_root_says_which_files_to_provide():
    with pytest.raises(SpikecimError, match=r"data.root: .*train-images-idx3-ubyte"):
        load_dataset("mnist")


@pytest.mark.parametrize("hw", [(10, 10), (28, 30), (0, 28)], ids=["10x10", "28x30", "0x28"])
def test_images_other_than_28x28_in_both_splits_are_refused_naming_the_files(tmp_path, hw):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", 0x803, rng.integers(0, 256, (n, *hw)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", 0x801, np.arange(n) % 10)
    with pytest.raises(SpikecimError) as e:
        load_dataset("mnist", root=str(tmp_path))
    assert str(e.value) == (
        f"data: {tmp_path / 'train-images-idx3-ubyte'} and {tmp_path / 't10k-images-idx3-ubyte'} "
        f"hold {hw[0]}x{hw[1]} images; mnist images are 28x28"
    )


def test_header_sizes_whose_product_passes_2_to_the_64_are_reported_exactly(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    # 2**21 * 2**21 * 2**22 = 2**64 elements: a 64-bit product wraps to 0 (16 bytes in all).
    path.write_bytes(raw[:4] + struct.pack(">3I", 2**21, 2**21, 2**22) + raw[16:])
    with pytest.raises(SpikecimError) as e:
        load_dataset("mnist", root=str(tmp_path))
    assert str(e.value) == (
        f"data: {path} is truncated: header says 2097152 x 2097152 x 4194304, "
        f"i.e. 18446744073709551632 bytes, file holds {16 + N_TRAIN * 784}"
    )

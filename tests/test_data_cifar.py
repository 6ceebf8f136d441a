"""CIFAR-10 / CIFAR-100 loaders read binary-version records written here with numpy."""

import gzip

import numpy as np
import pytest

from spikecim.data import load_dataset
from spikecim.errors import SpikecimError


def records(labels, seed):
    """Published record layout: label byte(s), then R, G, B planes of 32x32 row-major."""
    labels = np.atleast_2d(np.asarray(labels, dtype=np.uint8).T).T  # [N, label_bytes]
    pixels = np.random.default_rng(seed).integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1), pixels


def write_cifar10(folder, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    train_pixels = []
    for i in range(1, 6):
        rows, px = records([i, 9 - i], seed=i)  # two images per batch
        train_pixels.append(px)
        name = f"data_batch_{i}.bin"
        data = rows.tobytes()
        if gz:
            name, data = name + ".gz", gzip.compress(data)
        (folder / name).write_bytes(data)
    rows, test_px = records([3, 0, 7], seed=9)
    (folder / "test_batch.bin").write_bytes(rows.tobytes())
    return np.concatenate(train_pixels), test_px


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_cifar10_reads_records_in_batch_order_with_planar_rgb(tmp_path, gz):
    train_px, test_px = write_cifar10(tmp_path / "cifar-10-batches-bin", gz)
    ds = load_dataset("cifar10", root=str(tmp_path))
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.y_train.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert ds.y_test.tolist() == [3, 0, 7] and ds.num_classes == 10
    # Byte offsets in a record (after the label): red (0, 0) at 0, green (0, 0) at 1024, red (1, 0) at 32.
    assert ds.x_train[0, 0, 0, 0].item() == pytest.approx(train_px[0, 0] / 255.0)
    assert ds.x_train[0, 1, 0, 0].item() == pytest.approx(train_px[0, 1024] / 255.0)
    assert ds.x_train[0, 0, 1, 0].item() == pytest.approx(train_px[0, 32] / 255.0)
    np.testing.assert_allclose(ds.x_test.reshape(3, -1).numpy(), test_px / 255.0, rtol=0, atol=1e-7)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


def test_cifar10_truncated_batch_is_error_naming_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(
        SpikecimError, match=r"data_batch_2.bin holds 6145 bytes, not a whole number of 3073-byte"
    ):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar10_label_above_9_is_error(tmp_path):
    write_cifar10(tmp_path)
    rows, _ = records([12], seed=0)
    (tmp_path / "test_batch.bin").write_bytes(rows.tobytes())
    with pytest.raises(SpikecimError, match=r"test_batch.bin holds label 12, allowed 0..9"):
        load_dataset("cifar10", root=str(tmp_path))


def test_cifar10_missing_batch_is_named(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    with pytest.raises(SpikecimError, match=r"data.root: cifar10 file\(s\) data_batch_3.bin not found"):
        load_dataset("cifar10", root=str(tmp_path))


def write_cifar100(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows, px = records([[4, 40], [19, 99], [0, 1]], seed=3)  # (coarse, fine)
    (folder / "train.bin").write_bytes(rows.tobytes())
    rows, _ = records([[7, 70]], seed=4)
    (folder / "test.bin").write_bytes(rows.tobytes())
    return px


def test_cifar100_uses_fine_labels_by_default(tmp_path):
    px = write_cifar100(tmp_path / "cifar-100-binary")
    ds = load_dataset("cifar100", root=str(tmp_path))
    assert ds.y_train.tolist() == [40, 99, 1] and ds.y_test.tolist() == [70] and ds.num_classes == 100
    np.testing.assert_allclose(ds.x_train.reshape(3, -1).numpy(), px / 255.0, rtol=0, atol=1e-7)


def test_cifar100_coarse_labels_give_20_classes(tmp_path):
    write_cifar100(tmp_path)
    ds = load_dataset("cifar100", root=str(tmp_path), label="coarse")
    assert ds.y_train.tolist() == [4, 19, 0] and ds.y_test.tolist() == [7] and ds.num_classes == 20


@pytest.mark.parametrize("label", ["superclass", ["fine"]], ids=["unknown", "list"])
def test_cifar100_unknown_label_kind_is_error(tmp_path, label):
    write_cifar100(tmp_path)
    with pytest.raises(SpikecimError) as e:
        load_dataset("cifar100", root=str(tmp_path), label=label)
    assert str(e.value) == f"data.label: unknown '{label}', allowed: fine, coarse"


@pytest.mark.parametrize(
    ("labels", "kind", "expected"),
    [
        ([[4, 40], [25, 99]], "fine", "coarse label 25, allowed 0..19"),
        ([[4, 100]], "coarse", "fine label 100, allowed 0..99"),
    ],
    ids=["coarse-byte-read-for-fine", "fine-byte-read-for-coarse"],
)
def test_cifar100_label_byte_out_of_range_is_refused_whichever_label_is_read(
    tmp_path, labels, kind, expected
):
    write_cifar100(tmp_path)
    rows, _ = records(labels, seed=5)
    (tmp_path / "train.bin").write_bytes(rows.tobytes())
    with pytest.raises(SpikecimError) as e:
        load_dataset("cifar100", root=str(tmp_path), label=kind)
    assert str(e.value) == f"data: {tmp_path / 'train.bin'} holds {expected}; the file is corrupt"


def test_cifar100_missing_files_error_says_where(tmp_path):
    with pytest.raises(
        SpikecimError, match=r"train.bin, test.bin not found; place them .* in .*cifar-100-binary"
    ):
        load_dataset("cifar100", root=str(tmp_path))


def test_cifar10_limit_reads_only_the_batches_it_needs(tmp_path):
    train_px, _ = write_cifar10(tmp_path)
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x00" * 10)  # corrupt, but beyond the 3 samples asked for
    ds = load_dataset("cifar10", root=str(tmp_path), limit=3, test_limit=2)
    assert ds.y_train.tolist() == [1, 8, 2] and ds.y_test.tolist() == [3, 0]
    np.testing.assert_allclose(ds.x_train.reshape(3, -1).numpy(), train_px[:3] / 255.0, rtol=0, atol=1e-7)


def test_pickled_python_version_is_refused_with_a_pointer_to_the_binary_one(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not read")
    with pytest.raises(
        SpikecimError, match=r"cifar-10-batches-py is the pickled python version of cifar10"
    ) as e:
        load_dataset("cifar10", root=str(tmp_path))
    assert "cifar-10-batches-bin" in str(e.value) and "\n" not in str(e.value)


def test_root_pointing_at_a_file_says_to_name_the_folder(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(
        SpikecimError, match=r"data.root: .*test_batch.bin is a file; set data.root to the folder"
    ):
        load_dataset("cifar10", root=str(tmp_path / "test_batch.bin"))

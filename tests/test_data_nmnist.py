"""N-MNIST: 40-bit ATIS events packed here by hand, binned into frames, fed by the frames encoder."""

import numpy as np
import pytest
import torch

from spikecim.data import load_dataset
from spikecim.data.encode import get_encoder
from spikecim.errors import SpikecimError


def pack(events):
    """Published 5-byte event: x, y, polarity<<7 | t[22:16], t[15:8], t[7:0]."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def write_nmnist(root, per_digit=(2, 1), digits=range(10)):
    """Digit d's files each hold an ON event at x=d and an OFF event at x=33-d, 300 µs apart."""
    for split, n in zip(("Train", "Test"), per_digit):
        for d in digits:
            folder = root / split / str(d)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                (folder / f"{k:05d}.bin").write_bytes(pack([(d, 5 + k, 1, 1000), (33 - d, 7, 0, 1300)]))


def test_events_bin_into_hand_computed_frames(tmp_path):
    # Span t0=100 .. t1=399 (300 µs) with T=3: frame = (t - 100) * 3 // 300 -> 0, 0, 1, 2, 2.
    events = [(1, 2, 1, 100), (3, 4, 0, 199), (5, 6, 1, 200), (7, 8, 0, 300), (9, 10, 1, 399)]
    for split in ("Train", "Test"):
        (tmp_path / split / "4").mkdir(parents=True)
        (tmp_path / split / "4" / "a.bin").write_bytes(pack(events))
    ds = load_dataset("nmnist", root=str(tmp_path), timesteps=3)
    x = ds.x_train[0]
    assert x.shape == (3, 2, 34, 34) and x.dtype == torch.uint8
    expected = np.zeros((3, 2, 34, 34), np.uint8)
    for (ex, ey, p, _), frame in zip(events, [0, 0, 1, 2, 2]):
        expected[frame, p, ey, ex] = 1
    np.testing.assert_array_equal(x.numpy(), expected)
    assert ds.y_train.tolist() == [4] and ds.y_test.tolist() == [4]


def test_overflow_marker_adds_8192_us_to_later_events_and_is_dropped(tmp_path):
    # t: 0, marker (y=240), 0 + 8192. With T=2 the span is 8193 µs: frames 0 and 1.
    events = [(1, 1, 1, 0), (0, 240, 0, 0), (2, 2, 1, 0)]
    for split in ("Train", "Test"):
        (tmp_path / split / "0").mkdir(parents=True)
        (tmp_path / split / "0" / "a.bin").write_bytes(pack(events))
    x = load_dataset("nmnist", root=str(tmp_path), timesteps=2).x_train[0]
    assert x.sum().item() == 2  # the marker made no spike
    assert x[0, 1, 1, 1].item() == 1 and x[1, 1, 2, 2].item() == 1


def test_labels_come_from_digit_folders_and_shapes_are_frames(tmp_path):
    write_nmnist(tmp_path / "N-MNIST")
    ds = load_dataset("nmnist", root=str(tmp_path), timesteps=4)
    assert ds.frames and ds.x_train.shape == (20, 4, 2, 34, 34) and ds.x_test.shape == (10, 4, 2, 34, 34)
    assert ds.in_channels == 2 and ds.input_size == 34 and ds.num_classes == 10
    assert sorted(ds.y_train.tolist()) == sorted(list(range(10)) * 2)
    for x, d in zip(ds.x_train, ds.y_train.tolist()):
        on_columns = x[:, 1].nonzero()[:, 2].unique().tolist()
        off_columns = x[:, 0].nonzero()[:, 2].unique().tolist()
        assert on_columns == [d] and off_columns == [33 - d]
        # 300 µs span over T=4: first event in frame 0, last (t1) in frame 3.
        assert x[0, 1].sum() == 1 and x[3, 0].sum() == 1 and x.sum() == 2


def test_gzip_compressed_samples_count_beside_plain_ones_and_a_folder_named_bin_is_no_sample(tmp_path):
    """docs/data.md: any file may be stored gzip-compressed as <name>.gz, plain and compressed
    mixed. The listing took only *.bin: the .bin.gz samples were left out without a word."""
    import gzip

    write_nmnist(tmp_path / "N-MNIST")
    for d in range(10):  # each digit's second training sample compressed, and a folder named like a sample
        folder = tmp_path / "N-MNIST" / "Train" / str(d)
        (folder / "00001.bin").rename(folder / "00001.bin.tmp")
        (folder / "00001.bin.gz").write_bytes(gzip.compress((folder / "00001.bin.tmp").read_bytes()))
        (folder / "00001.bin.tmp").unlink()
        (folder / "notes.bin").mkdir()
    ds = load_dataset("nmnist", root=str(tmp_path), timesteps=4)
    assert ds.x_train.shape[0] == 20  # 10 plain + 10 compressed, by hand
    assert sorted(ds.y_train.tolist()) == sorted(list(range(10)) * 2)


def test_samples_are_shuffled_so_limit_mixes_classes(tmp_path):
    write_nmnist(tmp_path, per_digit=(3, 1))
    ds = load_dataset("nmnist", root=str(tmp_path), timesteps=2, limit=10)
    labels = ds.y_train.tolist()
    assert len(labels) == 10
    # The sorted file list would start 0,0,0,1,1,1,2,2,2,3: digits above 3 show the order is mixed.
    assert max(labels) > 3 and labels != sorted(labels)


def test_limit_is_a_prefix_of_the_full_order(tmp_path):
    write_nmnist(tmp_path, per_digit=(2, 2))
    full = load_dataset("nmnist", root=str(tmp_path), timesteps=2)
    part = load_dataset("nmnist", root=str(tmp_path), timesteps=2, limit=7, test_limit=3)
    assert torch.equal(part.x_train, full.x_train[:7]) and torch.equal(part.y_test, full.y_test[:3])


def test_frames_encoder_moves_time_first_as_float(tmp_path):
    write_nmnist(tmp_path)
    ds = load_dataset("nmnist", root=str(tmp_path), timesteps=4)
    batch = ds.x_train[:3]
    enc = get_encoder("direct", frames=ds.frames)
    out = enc(batch, 4)
    assert out.shape == (4, 3, 2, 34, 34) and out.dtype == torch.float32
    for t in range(4):
        for b in range(3):
            assert torch.equal(out[t, b], batch[b, t].float())
    with pytest.raises(
        SpikecimError, match=r"data.timesteps: the frames hold 4 steps per sample but 6 were asked"
    ):
        enc(batch, 6)


def test_truncated_event_file_is_error_naming_file(tmp_path):
    write_nmnist(tmp_path, digits=[1])
    bad = tmp_path / "Train" / "1" / "00001.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(SpikecimError, match=r"00001.bin holds 8 bytes, not a whole number of 5-byte events"):
        load_dataset("nmnist", root=str(tmp_path))


def test_event_outside_34x34_sensor_is_error_naming_file(tmp_path):
    write_nmnist(tmp_path, digits=[2])
    (tmp_path / "Test" / "2" / "00000.bin").write_bytes(pack([(40, 3, 1, 0)]))
    with pytest.raises(SpikecimError, match=r"Test/2/00000.bin has an event at x=40"):
        load_dataset("nmnist", root=str(tmp_path))


def test_event_outside_the_sensor_is_reported_with_its_own_coordinates(tmp_path):
    # x out of range in event 1 and y in event 2: the first bad event, (40, 3), is named.
    write_nmnist(tmp_path, digits=[2])
    bad = tmp_path / "Train" / "2" / "00001.bin"
    bad.write_bytes(pack([(1, 1, 0, 0), (40, 3, 1, 10), (5, 60, 0, 20)]))
    with pytest.raises(SpikecimError) as e:
        load_dataset("nmnist", root=str(tmp_path))
    assert str(e.value) == f"data: {bad} has an event at x=40, y=3 (event 1) outside the 34x34 sensor"


@pytest.mark.parametrize(
    "content", [b"", pack([(0, 240, 0, 0), (0, 240, 0, 0)])], ids=["empty", "overflow-markers-only"]
)
def test_sample_without_pixel_events_is_refused_naming_the_file(tmp_path, content):
    write_nmnist(tmp_path, digits=[6])
    bad = tmp_path / "Test" / "6" / "00000.bin"
    bad.write_bytes(content)
    with pytest.raises(SpikecimError) as e:
        load_dataset("nmnist", root=str(tmp_path))
    assert str(e.value) == (
        f"data: {bad} holds no pixel events ({len(content)} bytes); "
        "it is empty or truncated, replace it with a fresh copy"
    )


def test_missing_folders_error_says_what_to_place_where(tmp_path):
    with pytest.raises(
        SpikecimError, match=r"data.root: nmnist folders not found; place Train/<digit>/\*.bin"
    ) as e:
        load_dataset("nmnist", root=str(tmp_path))
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("timesteps", [0, True, 2.0], ids=["zero", "bool", "float"])
def test_bad_timesteps_is_error(timesteps):
    with pytest.raises(SpikecimError) as e:
        load_dataset("nmnist", root=".", timesteps=timesteps)
    assert str(e.value) == f"data.timesteps: must be a positive integer, got {timesteps!r}"


def nmnist_run_args(out, root, stages: str) -> list[str]:
    """``spikecim run`` of a quarter-width convnet on the N-MNIST files in ``root``, T = 3,
    one epoch, into ``out/ev``."""
    return [
        "run", "--set", f"output_dir={out}", "--name", "ev", "--dataset", "nmnist",
        "--set", f"data.root={root}", "--timesteps", "3", "--epochs", "1",
        "--set", "model.kwargs={width: 0.25}", "--stages", stages,
    ]  # fmt: skip

"""The digits split is scikit-learn's, whether made now or read from spikecim's cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikecim.data import load_dataset


def sklearns_split(test_fraction: float, seed: int):
    """What scikit-learn itself gives: its digits scaled by 16, its stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    return train_test_split(
        x, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )


def assert_is_sklearns_split(ds, test_fraction=0.25, seed=0):
    x_tr, x_te, y_tr, y_te = sklearns_split(test_fraction, seed)
    assert torch.equal(ds.x_train, torch.from_numpy(x_tr)) and torch.equal(ds.x_test, torch.from_numpy(x_te))
    assert ds.y_train.tolist() == y_tr.tolist() and ds.y_test.tolist() == y_te.tolist()


def cached_splits(root):
    return sorted((root / "data").glob("digits-split-*.json"))


@pytest.mark.parametrize(("test_fraction", "seed"), [(0.25, 0), (0.4, 7)])
def test_the_split_made_and_the_split_read_from_the_cache_are_scikit_learns(
    tmp_path, monkeypatch, test_fraction, seed
):
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path))
    made = load_dataset("digits", test_fraction=test_fraction, seed=seed)
    assert len(cached_splits(tmp_path)) == 1
    read = load_dataset("digits", test_fraction=test_fraction, seed=seed)
    assert_is_sklearns_split(made, test_fraction, seed)
    assert_is_sklearns_split(read, test_fraction, seed)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # cut short
        lambda text: json.dumps({"train": json.loads(text)["train"], "test": json.loads(text)["test"][:-1]}),
        lambda text: json.dumps({"train": [0] * 1347, "test": list(range(450))}),  # not a permutation
        lambda text: "[]",
    ],
)
def test_a_damaged_cached_split_is_made_again(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path))
    load_dataset("digits")
    (path,) = cached_splits(tmp_path)
    path.write_text(damage(path.read_text()))
    assert_is_sklearns_split(load_dataset("digits"))
    train, test = (json.loads(path.read_text())[k] for k in ("train", "test"))
    assert sorted(train + test) == list(range(1797))  # written again, whole


def test_a_cache_folder_that_cannot_be_written_still_gives_the_split(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # no folder can be made
    assert_is_sklearns_split(load_dataset("digits"))
    assert (tmp_path / "a-file").read_text() == ""


def test_a_process_that_finds_the_split_cached_does_not_import_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path))
    load_dataset("digits")
    code = "import sys; from spikecim.data import load_dataset; load_dataset('digits'); print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_where_scikit_learn_keeps_its_digits_file_elsewhere_its_load_digits_reads_them(tmp_path, monkeypatch):
    import importlib.util

    from spikecim.data import digits

    monkeypatch.setenv("SPIKECIM_CACHE_DIR", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        digits.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a),
    )
    assert_is_sklearns_split(load_dataset("digits"))

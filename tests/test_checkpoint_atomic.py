"""Checkpoints commit atomically: a save interrupted at any point loads as the complete
previous epoch or the complete new one, never a mix; the older fixed-name layout resumes.

A crash is simulated by making the save's writes (:func:`checkpoint_writes`, each through
:func:`write_durably`) up to a point, optionally leaving the next file half written under its
temporary name, and stopping there. A second test kills a process that saves in a loop with
SIGKILL at random moments. Each loaded checkpoint is compared with the model and optimizer
tensors held in memory when that epoch was saved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.train import FitSpec
from spikecim.train.checkpoint import (
    checkpoint_writes,
    load_checkpoint,
    load_variant_weights,
    remove_stale,
    save_checkpoint,
    weights_path,
    write_durably,
)
from spikecim.train.trainer import make_optimizer

SPEC = FitSpec(epochs=3, timesteps=2)


def _fresh():
    torch.manual_seed(0)
    model = create_model("mlp", hidden=(8,))
    opt, sched = make_optimizer(model, SPEC)
    return model, opt, sched


def _train_to(epochs: int):
    """A model, optimizer and scheduler after ``epochs`` one-step epochs, the state dict that
    names them, and copies of their tensors (what a correct load must give back)."""
    model, opt, sched = _fresh()
    g = torch.Generator().manual_seed(1)
    history = []
    for e in range(1, epochs + 1):
        x = torch.rand(2, 4, 64, generator=g)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(
            {
                "epoch": e,
                "loss": float(loss.detach()),
                "train_acc": 0.5,
                "test_acc": 0.5,
                "lr": 1e-3,
                "seconds": 0.1,
            }
        )
    state = {"epoch": epochs, "history": history, "fingerprint": SPEC.fingerprint()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {(pid, k): v.clone() for pid, s in opt.state_dict()["state"].items() for k, v in s.items()}
    return model, opt, sched, state, weights, moments


def _load(folder: Path):
    model, opt, sched = _fresh()
    state = load_checkpoint(folder, "snn", model, opt, sched, SPEC.epochs, SPEC.fingerprint())
    return state, model, opt


def _is_exactly(model, opt, weights, moments) -> bool:
    got_w = model.state_dict()
    got_m = {(pid, k): v for pid, s in opt.state_dict()["state"].items() for k, v in s.items()}
    return (
        got_w.keys() == weights.keys()
        and all(torch.equal(got_w[k], weights[k]) for k in weights)
        and got_m.keys() == moments.keys()
        and all(torch.equal(torch.as_tensor(got_m[k]), torch.as_tensor(moments[k])) for k in moments)
    )


@pytest.fixture(scope="module")
def epochs():
    return {e: _train_to(e) for e in (1, 2)}


def _crash_points(n_writes: int):
    """(writes completed, fraction of the next write left in its temporary file or None)."""
    for done in range(n_writes + 1):
        yield done, None
        if done < n_writes:
            for fraction in (0.0, 0.3, 1.0):  # 1.0: written but not yet renamed
                yield done, fraction


def test_save_interrupted_at_any_point_loads_the_whole_old_or_the_whole_new_epoch(epochs, tmp_path):
    m1, o1, s1, st1, w1, mo1 = epochs[1]
    m2, o2, s2, st2, w2, mo2 = epochs[2]
    base = tmp_path / "base"
    save_checkpoint(base, "snn", m1, o1, s1, st1)
    writes = checkpoint_writes("snn", m2, o2, s2, st2)
    assert [name for name, _ in writes][-1] == "snn.state.json"  # the commit is the last write
    seen = set()
    for i, (done, fraction) in enumerate(_crash_points(len(writes))):
        folder = tmp_path / f"crash{i}"
        shutil.copytree(base, folder)
        for name, data in writes[:done]:
            write_durably(folder / name, data)
        if fraction is not None:
            name, data = writes[done]
            (folder / f"{name}.tmp").write_bytes(data[: int(len(data) * fraction)])
        state, model, opt = _load(folder)
        expected = (w2, mo2) if done == len(writes) else (w1, mo1)
        assert state["epoch"] == (2 if done == len(writes) else 1), (done, fraction)
        assert _is_exactly(model, opt, *expected), (done, fraction)
        seen.add(state["epoch"])
        # The next save (training resumed) leaves exactly the three files of its epoch.
        model, opt, sched = _fresh()
        resumed = load_checkpoint(folder, "snn", model, opt, sched, SPEC.epochs, SPEC.fingerprint())
        save_checkpoint(folder, "snn", model, opt, sched, resumed)
        named = json.loads((folder / "snn.state.json").read_text())["files"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["snn.state.json", named["weights"]["name"], named["optimizer"]["name"]]
        ), (done, fraction)
    assert seen == {1, 2}


def test_cleanup_interrupted_after_the_commit_loads_the_new_epoch(epochs, tmp_path):
    m1, o1, s1, st1, _, _ = epochs[1]
    m2, o2, s2, st2, w2, mo2 = epochs[2]
    save_checkpoint(tmp_path, "snn", m1, o1, s1, st1)
    old = set(tmp_path.iterdir())
    for name, data in checkpoint_writes("snn", m2, o2, s2, st2):
        write_durably(tmp_path / name, data)
    stale = sorted(old - {tmp_path / "snn.state.json"})
    assert len(stale) == 2
    stale[0].unlink()  # the crash came after the first of the two removals
    state, model, opt = _load(tmp_path)
    assert state["epoch"] == 2 and _is_exactly(model, opt, w2, mo2)
    remove_stale(tmp_path, "snn")
    assert not stale[1].exists()


def test_other_variants_files_are_never_removed(epochs, tmp_path):
    m1, o1, s1, st1, _, _ = epochs[1]
    m2, o2, s2, st2, _, _ = epochs[2]
    save_checkpoint(tmp_path, "ann", m1, o1, s1, st1)
    ann_files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    save_checkpoint(tmp_path, "snn", m1, o1, s1, st1)
    save_checkpoint(tmp_path, "snn", m2, o2, s2, st2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ann.")} == ann_files


def test_saves_never_remove_weights_placed_by_hand(epochs, tmp_path):
    m1, o1, s1, st1, _, _ = epochs[1]
    m2, o2, s2, st2, _, _ = epochs[2]
    save_file({k: v.contiguous() for k, v in m1.state_dict().items()}, str(tmp_path / "snn.safetensors"))
    (tmp_path / "snn.optim.safetensors").write_bytes(b"placed by hand")
    placed = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    save_checkpoint(tmp_path, "snn", m1, o1, s1, st1)
    save_checkpoint(tmp_path, "snn", m2, o2, s2, st2)
    assert {name: (tmp_path / name).read_bytes() for name in placed} == placed


def _old_layout(folder: Path, model, opt, sched, state) -> None:
    """A checkpoint as spikecim wrote it before atomic checkpoints: fixed names, no hashes."""
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "snn.safetensors"))
    opt_state = opt.state_dict()
    tensors = {
        f"{pid}.{k}": v for pid, s in opt_state["state"].items() for k, v in s.items() if torch.is_tensor(v)
    }
    scalars = {
        f"{pid}.{k}": v
        for pid, s in opt_state["state"].items()
        for k, v in s.items()
        if not torch.is_tensor(v)
    }
    save_file(tensors, str(folder / "snn.optim.safetensors"))
    doc = dict(
        state,
        optimizer={"param_groups": opt_state["param_groups"], "scalars": scalars},
        scheduler=sched.state_dict(),
    )
    (folder / "snn.state.json").write_text(json.dumps(doc))


def test_checkpoint_of_the_older_fixed_name_layout_resumes_and_moves_to_the_new_one(epochs, tmp_path):
    m1, o1, s1, st1, w1, mo1 = epochs[1]
    folder = tmp_path / "checkpoint"
    _old_layout(folder, m1, o1, s1, st1)
    assert weights_path(folder, "snn") == folder / "snn.safetensors"
    state, model, opt = _load(folder)
    assert state["epoch"] == 1 and _is_exactly(model, opt, w1, mo1)
    fresh, _, _ = _fresh()
    load_variant_weights(fresh, folder, "snn")
    assert all(torch.equal(fresh.state_dict()[k], w1[k]) for k in w1)
    m2, o2, s2, st2, w2, mo2 = epochs[2]
    save_checkpoint(folder, "snn", m2, o2, s2, st2)
    assert not (folder / "snn.safetensors").exists() and not (folder / "snn.optim.safetensors").exists()
    state, model, opt = _load(folder)
    assert state["epoch"] == 2 and _is_exactly(model, opt, w2, mo2)


def test_tensor_file_swapped_for_another_valid_one_is_a_one_line_error_naming_it(epochs, tmp_path):
    m1, o1, s1, st1, _, _ = epochs[1]
    m2, o2, s2, st2, _, _ = epochs[2]
    save_checkpoint(tmp_path / "a", "snn", m1, o1, s1, st1)
    save_checkpoint(tmp_path / "b", "snn", m2, o2, s2, st2)
    # Epoch-2 weights copied over the file that the epoch-1 state names: valid, but not that epoch's.
    target = weights_path(tmp_path / "a", "snn")
    shutil.copyfile(weights_path(tmp_path / "b", "snn"), target)
    for load in (
        lambda: _load(tmp_path / "a"),
        lambda: load_variant_weights(_fresh()[0], tmp_path / "a", "snn"),
    ):
        with pytest.raises(SpikecimError) as err:
            load()
        assert str(target) in str(err.value) and "SHA-256" in str(err.value) and "\n" not in str(err.value)


_KILLER = textwrap.dedent(
    """
    import os, random, shutil, signal, sys, time
    from pathlib import Path
    import torch
    from spikecim.models import create_model
    from spikecim.train import FitSpec
    from spikecim.train.checkpoint import save_checkpoint
    from spikecim.train.trainer import make_optimizer

    folder, out, kills = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    spec = FitSpec(epochs=10**6, timesteps=2)
    model = create_model("mlp", hidden=(8,))
    opt, sched = make_optimizer(model, spec)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = random.Random(0)
    for i in range(kills):
        pid = os.fork()
        if pid == 0:  # the saver: epoch e holds the value e in every weight and Adam moment
            for e in range(40 * i + 1, 40 * (i + 1)):
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_(e)
                for p in params:
                    opt.state[p] = {"step": torch.tensor(float(e)), "exp_avg": torch.full_like(p, e),
                                    "exp_avg_sq": torch.full_like(p, e)}
                sched.last_epoch = e
                hist = [{"epoch": k, "loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "lr": 0.0,
                         "seconds": 0.0} for k in range(1, e + 1)]
                save_checkpoint(folder, "snn", model, opt, sched,
                                {"epoch": e, "history": hist, "fingerprint": spec.fingerprint()})
            os._exit(0)
        while not (folder / "snn.state.json").exists():  # the first commit (about 50 ms a save)
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if folder.exists():
            shutil.copytree(folder, out / f"kill{i:02d}")
    """
)


def test_process_killed_at_random_moments_while_saving_leaves_one_whole_epoch(
    tmp_path, python, subprocess_env
):
    kills = 16
    subprocess.run(
        [python, "-c", _KILLER, str(tmp_path / "checkpoint"), str(tmp_path), str(kills)],
        env=subprocess_env,
        check=True,
    )
    spec = FitSpec(epochs=10**6, timesteps=2)
    loaded = []
    for copy in sorted(tmp_path.glob("kill*")):
        model = create_model("mlp", hidden=(8,))
        opt, sched = make_optimizer(model, spec)
        state = load_checkpoint(copy, "snn", model, opt, sched, spec.epochs, spec.fingerprint())
        e = state["epoch"]
        assert all(bool((p == e).all()) for p in model.parameters()), (copy, e)
        moments = [torch.as_tensor(v) for s in opt.state_dict()["state"].values() for v in s.values()]
        assert moments and all(bool((m == e).all()) for m in moments), (copy, e)
        assert sched.last_epoch == e
        loaded.append(e)
    assert len(loaded) == kills

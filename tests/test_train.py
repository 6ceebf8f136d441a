"""Training: accuracy on digits, exact resume after a kill, data-parallel training under torchrun."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spikecim.data import load_dataset
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.train import FitSpec, classification_loss, evaluate, fit, load_weights
from spikecim.train.checkpoint import weights_path


def test_short_default_training_reaches_high_digits_accuracy():
    # The shortened default run (3 of 15 epochs); the full figure is in the README.
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("convnet", neuron_kw={"beta": 0.5})
    hist = fit(model, data, FitSpec(epochs=3, timesteps=4))
    # Independent check of the reported figure: count correct predictions by hand.
    with torch.no_grad():
        logits = model(data.x_test.unsqueeze(0).expand(4, *data.x_test.shape))
    acc = float((logits.mean(0).argmax(-1) == data.y_test).float().mean())
    assert acc == pytest.approx(hist["test_acc"])
    assert acc >= 0.95


def test_per_step_loss_is_mean_of_stepwise_cross_entropy():
    logits = torch.randn(3, 5, 4)
    y = torch.randint(0, 4, (5,))
    expected = sum(torch.nn.functional.cross_entropy(logits[t], y) for t in range(3)) / 3
    assert torch.allclose(classification_loss(logits, y, "per_step"), expected)
    assert torch.allclose(
        classification_loss(logits, y, "mean"), torch.nn.functional.cross_entropy(logits.mean(0), y)
    )


def test_evaluate_spike_rates_equal_direct_count():
    torch.manual_seed(1)
    data = load_dataset("digits")
    model = create_model("mlp", hidden=(16,), neuron_kw={"beta": 0.9, "threshold": 0.5})
    res = evaluate(model, data.x_test[:50], data.y_test[:50], steps=3)
    lif = model[2]
    with torch.no_grad():
        h = model[1](model[0](data.x_test[:50]))
        spikes = lif(h.unsqueeze(0).expand(3, *h.shape))
    assert res["spike_rates"]["2"] == pytest.approx(float(spikes.mean()))


def _train_cmd(python, out: Path, extra=()):
    return [
        python,
        "-m",
        "spikecim.cli.main",
        "train",
        "--set",
        f"output_dir={out}",
        "--set",
        "name=r",
        "--set",
        "variants=[{name: snn}]",
        "--set",
        "train.epochs=3",
        "--set",
        "data.limit=600",
        "--set",
        "model.name=convnet",
        *extra,
    ]


def test_killed_run_resumed_ends_with_identical_weights(tmp_path, python, subprocess_env):
    full, broken = tmp_path / "full", tmp_path / "broken"
    small = ["--set", "model.kwargs.width=0.25"]  # a quarter of the channels: the same code, shorter epochs
    subprocess.run(_train_cmd(python, full, small), check=True, env=subprocess_env, capture_output=True)
    proc = subprocess.Popen(
        _train_cmd(python, broken, small),
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = broken / "r" / "checkpoint" / "snn.state.json"
    while proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    interrupted_at = json.loads(state.read_text())["epoch"]
    subprocess.run(_train_cmd(python, broken, small), check=True, env=subprocess_env, capture_output=True)
    a = load_file(weights_path(full / "r" / "checkpoint", "snn"))
    b = load_file(weights_path(broken / "r" / "checkpoint", "snn"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert interrupted_at < 3 or pytest.skip("the run finished before it could be interrupted")


def _assert_torchrun_equals_one_process(tmp_path, python, env, extra) -> None:
    """The weights of two torchrun processes equal those of one process on the same settings."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(_train_cmd(python, single, extra), check=True, env=env, capture_output=True)
    r = subprocess.run(
        _torchrun_cmd(python, ddp, extra), check=False, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(weights_path(single / "r" / "checkpoint", "snn"))
    b = load_file(weights_path(ddp / "r" / "checkpoint", "snn"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def _torchrun_cmd(python, out: Path, extra):
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "spikecim",
    ] + _train_cmd(python, out, extra)[3:]


def test_torchrun_two_processes_equal_single_process_training_with_a_last_batch_split_unevenly(
    tmp_path, python, subprocess_env
):
    # 255 samples in batches of 64: three batches split 32 / 32 over the two processes and the
    # last, of 63, splits 32 / 31, whose gradients must count 32/63 and 31/63 (as one process's
    # mean over 63), not 1/2 each; the learning-rate schedule is the default one
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    extra = ["--set", "model.name=mlp", "--set", "data.limit=255", "--set", "train.epochs=2"]
    _assert_torchrun_equals_one_process(tmp_path, python, subprocess_env, extra)


def test_torchrun_two_processes_draw_the_random_transforms_of_one_process(tmp_path, python, subprocess_env):
    # a rate encoder, augmentation and mixup draw for the whole global batch in every process,
    # which keeps its share: the same draws as one process, so the same weights
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    extra = ["--set", "model.name=mlp", "--set", "data.limit=256", "--set", "train.epochs=1"]
    extra += [
        "--set",
        "data.encoder=rate",
        "--set",
        "data.augment=[crop,flip]",
        "--set",
        "data.crop_padding=1",
    ]
    extra += ["--set", "train.mixup_alpha=0.5", "--set", "train.cutmix_alpha=1.0"]
    _assert_torchrun_equals_one_process(tmp_path, python, subprocess_env, extra)


def test_torchrun_with_a_batch_smaller_than_the_processes_is_refused_in_one_line(
    tmp_path, python, subprocess_env
):
    # 257 samples in batches of 64 leave a last batch of 1: the second process would have no
    # share of it and the first would wait for its gradient for ever
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    extra = ["--set", "model.name=mlp", "--set", "data.limit=257", "--set", "train.epochs=1"]
    r = subprocess.run(
        _torchrun_cmd(python, tmp_path, extra),
        check=False,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=600,  # against a hang only
    )
    expected = (
        "error: data.batch_size: under torchrun each of the 2 processes takes a share of every batch, "
        "but batches of 64 leave a last batch of 1 of the 257 training samples; choose a batch_size "
        "that leaves at least 2 (or none) in the last batch"
    )
    assert r.returncode != 0
    # the processes and torchrun's agent share one stderr, so the agent's report of the exit
    # may be appended to the error's line: the error begins a line, whole
    lines = r.stderr.splitlines() + r.stdout.splitlines()
    assert any(line.startswith(expected) for line in lines), r.stderr[-2000:]
    assert not (tmp_path / "r" / "checkpoint").exists() or not any((tmp_path / "r" / "checkpoint").iterdir())


def test_checkpoint_that_is_not_safetensors_is_refused(tmp_path):
    bad = tmp_path / "snn.safetensors"
    torch.save({"w": torch.ones(1)}, bad)  # a pickle: must not be loaded
    with pytest.raises(SpikecimError, match="not a readable safetensors"):
        load_weights(create_model("mlp"), bad)


def test_cuda_device_without_gpu_is_one_line_error():
    from spikecim.train import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SpikecimError, match="train.device"):
        resolve_device("cuda")


def test_fit_spec_defaults_and_checks_are_the_run_configs():
    from spikecim.config import RunConfig, load_config

    assert FitSpec() == FitSpec.from_config(RunConfig())
    cfg = load_config(overrides=["train.lr=0.01", "data.timesteps=7", "seed=3", "train.loss=per_step"])
    spec = FitSpec.from_config(cfg)
    assert (spec.lr, spec.timesteps, spec.seed, spec.loss) == (0.01, 7, 3, "per_step")
    for bad, field in (({"optimizer": "lion"}, "train.optimizer"), ({"timesteps": 0}, "data.timesteps")):
        with pytest.raises(SpikecimError) as err:
            FitSpec(**bad)
        assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_fit_spec_keeps_values_as_the_run_config_reads_them():
    # the run config reads "0.1" as 0.1 and 16.0 as 16; fit then trains with numbers, not text
    spec = FitSpec(lr="0.1", batch_size=16.0, epochs="1", timesteps=2)
    assert (spec.lr, spec.batch_size, spec.epochs) == (0.1, 16, 1)
    assert spec.fingerprint() == FitSpec(lr=0.1, batch_size=16, epochs=1, timesteps=2).fingerprint()
    torch.manual_seed(0)
    hist = fit(create_model("mlp", hidden=(8,)), load_dataset("digits", limit=40), spec)
    assert hist["epochs"] == 1


@pytest.mark.parametrize("seed", [-1, 2**63, True])
def test_fit_spec_seed_outside_the_run_configs_range_is_one_line_error(seed):
    with pytest.raises(SpikecimError) as err:
        FitSpec(seed=seed)
    assert str(err.value) == f"seed: must be an integer from 0 to 2**63 - 1, got {seed!r}"


def test_largest_run_seed_trains(tmp_path, python, subprocess_env):
    # the shuffle of epoch e is seeded with (seed * 100003 + e) mod 2**63 (torch takes < 2**64)
    seed = 2**63 - 1
    from spikecim.train.batches import epoch_generator

    assert epoch_generator(seed, 1).initial_seed() == (seed * 100003 + 1) % 2**63
    assert epoch_generator(7, 2).initial_seed() == 7 * 100003 + 2  # seeds in use stay as they were
    extra = ["--set", "model.name=mlp", "--set", "data.limit=64", "--set", f"seed={seed}"]
    r = subprocess.run(
        _train_cmd(python, tmp_path, [*extra, "--set", "train.epochs=1"]),
        check=False,
        env=subprocess_env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "checkpoint" / "snn.state.json").read_text())["epoch"] == 1


def test_a_batch_that_needs_more_memory_than_there_is_is_one_line_naming_what_to_lower():
    from spikecim.errors import allocation_failed
    from spikecim.train.trainer import _refuse_allocation_failure

    try:
        torch.empty(2**58)  # 1 EiB of float32, past any address space: torch's CPU allocator refuses it
    except RuntimeError as e:
        refused = e
    assert allocation_failed(refused) == " (1.07e+09 GiB for one tensor)"  # 2**60 bytes / 2**30
    with pytest.raises(SpikecimError) as err:
        _refuse_allocation_failure(refused, "snn", 3, 15, saving=True)
    assert str(err.value) == (
        "train: the snn needs more memory than is available in epoch 3 of 15 (1.07e+09 GiB for one tensor); "
        "its checkpoint stays at epoch 2; lower data.batch_size (or data.context, data.timesteps, the model's size)"
    )
    assert allocation_failed(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == ""
    assert allocation_failed(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_torchrun_two_processes_prune_as_one_process(tmp_path, python, subprocess_env):
    # every process sets the masks from the same weights at each epoch boundary
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_gloo_available():
        pytest.skip("gloo backend not available")
    extra = ["--set", "model.name=mlp", "--set", "data.limit=256", "--set", "train.epochs=3"]
    extra += ["--set", "variants=[{name: snn, methods: [{name: prune, sparsity: 0.7, end_epoch: 2}]}]"]
    _assert_torchrun_equals_one_process(tmp_path, python, subprocess_env, extra)
    weights = load_file(weights_path(tmp_path / "ddp" / "r" / "checkpoint", "snn"))
    masks = [v for k, v in weights.items() if k.endswith(".mask")]
    assert len(masks) == 3  # the MLP's three linear layers, each pruned to round(0.7 n) of n
    assert all(int((~m).sum()) == round(0.7 * m.numel()) for m in masks)

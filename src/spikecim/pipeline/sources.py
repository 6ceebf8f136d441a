"""Model sources: a NIR file stands wherever a trained run does.

``spikecim evaluate``, ``trace`` and ``hw estimate`` accept a run folder (``config.yaml`` +
checkpoint), a ``.nir`` file, or a folder written by ``spikecim nir import``. A NIR model
has no data set of its own: it is traced on a named data set when one is given, otherwise
on Bernoulli spike trains of a stated rate (recorded in ``Workload.dataset``), so the
activity of every later layer still comes from the network's own dynamics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from spikecim.errors import SpikecimError

__all__ = [
    "MAX_SAMPLES",
    "dataset_batches",
    "is_model_file",
    "random_spike_batches",
    "workload_from_model_file",
]

MAX_SAMPLES = 10000  # samples a NIR model is traced on: a test set's size (MNIST, CIFAR-10, N-MNIST)


def is_model_file(path: str | Path) -> bool:
    """True for a ``.nir`` file or a ``nir import`` folder (not a ``spikecim run`` folder)."""
    path = Path(path)
    if path.suffix == ".nir":
        return True
    return path.is_dir() and (path / "model.nir").is_file() and not (path / "config.yaml").is_file()


def random_spike_batches(
    input_shape: tuple[int, ...], timesteps: int, samples: int, rate: float, seed: int = 0, batch: int = 64
) -> Iterator[torch.Tensor]:
    """Bernoulli(rate) spikes ``[T, B, *input_shape]``, ``samples`` in all, seeded."""
    if not 0.0 < rate <= 1.0:
        raise SpikecimError(f"input_rate: must be in (0, 1], got {rate}")
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < samples:
        b = min(batch, samples - done)
        yield torch.bernoulli(torch.full((timesteps, b, *input_shape), rate), generator=gen)
        done += b


def dataset_batches(data, timesteps: int, encoder: str, samples: int, seed: int = 0, batch: int = 64):
    """Encoded test batches of a :class:`~spikecim.data.Dataset` (at most ``samples``)."""
    from spikecim.train.batches import iterate_batches
    from spikecim.train.evaluate import ModelInput

    inputs = ModelInput(timesteps, encoder, True, data.frames)
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_test[:samples], data.y_test[:samples]
    for xb, _ in iterate_batches(x, y, batch):
        yield inputs.encode(xb, gen)


def _input_shape(model, path: Path) -> tuple[int, ...]:
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise SpikecimError(f"{path}: the graph does not declare its input shape (an Input node is needed)")
    return tuple(int(s) for s in shape)


def workload_from_model_file(
    path: str | Path,
    timesteps: int = 10,
    samples: int = 64,
    input_rate: float = 0.2,
    dataset: str | None = None,
    root: str | None = None,
    encoder: str = "direct",
    seed: int = 0,
):
    """Trace the model in ``path`` (NIR file or folder) on ``samples`` inputs, 1 to
    :data:`MAX_SAMPLES`, and return its Workload."""
    from spikecim import ops
    from spikecim.interop import load_model
    from spikecim.trace import trace

    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise SpikecimError(f"samples: must be an integer from 1 to {MAX_SAMPLES}, got {samples!r}")
    path = Path(path)
    model = load_model(path)
    shape = _input_shape(model, path)
    if not any(ops.find(m) is not None for m in model.modules()):
        raise SpikecimError(
            f"{path}: the graph has no synaptic layer (Affine, Linear, Conv1d or Conv2d) to trace and cost"
        )
    if dataset is not None:
        from spikecim.data import load_dataset

        data = load_dataset(dataset, root=root)
        if tuple(data.sample_shape[-len(shape) :]) != shape:
            raise SpikecimError(
                f"dataset: {dataset} samples are {list(data.sample_shape)}, the model takes {list(shape)}"
            )
        steps = data.sample_shape[0] if data.frames else timesteps
        inputs = dataset_batches(data, steps, encoder, samples, seed)
        source = dataset
    else:
        inputs = random_spike_batches(shape, timesteps, samples, input_rate, seed)
        source = f"bernoulli({input_rate:g})"
    with torch.no_grad():
        return trace(model, inputs, model_name=path.stem, dataset=source, spiking=True)

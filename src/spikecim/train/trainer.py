"""Training by backpropagation through time (BPTT).

:func:`fit` trains one model variant (the SNN or its ANN twin) with Adam, AdamW or SGD
(optionally clipping the gradients' norm), an optional warmup and cosine schedule, a loss
over mean logits or at every step and an optional spike-rate penalty
(:mod:`spikecim.train.regularizers`), sets the masks of a pruned model at every epoch
boundary (:mod:`spikecim.nn.prune`), shows rich progress bars, and checkpoints after every
epoch. Called again with the same arguments it resumes after the last completed epoch and
ends with the same weights as an uninterrupted run: the shuffle order, the augmentation and
the encoder's randomness of epoch ``e`` depend only on ``(seed, e)``, and the model,
optimizer and schedule states are restored exactly.

With ``epochs = 0`` the initial (untrained) weights are saved as the epoch-0 checkpoint, so
every later stage and command can use them. An epoch whose loss or weights are NaN or
infinite (training diverged) is an error before it is saved: the last good epoch stays the
committed checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from spikecim.data.augment import augment
from spikecim.errors import SpikecimError, allocation_failed, one_line_validation_error
from spikecim.nn.prune import check_schedule, prune_at
from spikecim.progress import progress_bar, warn
from spikecim.schema import MAX_INT
from spikecim.train.batches import epoch_generator, iterate_batches
from spikecim.train.checkpoint import load_checkpoint, refuse_weights_placed_by_hand, save_checkpoint
from spikecim.train.distributed import DistInfo, check_shares, init_distributed, share_weight
from spikecim.train.losses import with_tet_mse
from spikecim.train.mixing import mix_batch
from spikecim.train.regularizers import SpikeRate, spike_rate

__all__ = ["FitSpec", "check_fit", "fit", "lr_factor", "make_optimizer", "resolve_device"]

_EXTRA_METRICS = ("cross_entropy", "perplexity", "bits_per_char")  # a task's metrics kept per epoch
# settings added after checkpoints existed: at their defaults they leave the fingerprint as it was
_LATER = (
    "spike_reg", "tet_lambda", "tet_means", "grad_clip", "warmup_epochs", "label_smoothing",
    "mixup_alpha", "cutmix_alpha", "augment", "crop_padding", "cutout_size",
)  # fmt: skip


@dataclass(frozen=True)
class FitSpec:
    """What :func:`fit` needs besides the model and data: the ``train`` section of a run
    config, the data batching (``batch_size``, ``timesteps``, ``encoder``) and the seed.

    The defaults are the run config's; values are checked by the run config's own schema
    (:class:`~spikecim.config.TrainConfig`, :class:`~spikecim.config.DataConfig`, and ``seed``
    from 0 to 2**63 - 1), so a library call and a config file accept exactly the same
    settings, and are kept as that schema reads them (``lr="0.1"`` is the number 0.1).
    """

    epochs: int = 15
    lr: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float | None = None
    schedule: str = "cosine"
    warmup_epochs: int = 0
    loss: str = "mean"
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    spike_reg: float = 0.0
    tet_lambda: float = 0.0
    tet_means: float = 1.0
    batch_size: int = 64
    timesteps: int = 4
    encoder: str = "direct"
    augment: tuple[str, ...] = ()
    crop_padding: int = 4
    cutout_size: int = 16
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        from spikecim.config import DataConfig, TrainConfig

        values = self.__dict__
        for schema, section in ((TrainConfig, "train"), (DataConfig, "data")):
            try:
                read = schema.model_validate({k: v for k, v in values.items() if k in schema.model_fields})
            except ValidationError as e:
                raise SpikecimError(one_line_validation_error(e, prefix=f"{section}.")) from None
            for k in read.model_fields_set:
                object.__setattr__(self, k, getattr(read, k))
        object.__setattr__(self, "augment", tuple(self.augment))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < MAX_INT:
            raise SpikecimError(f"seed: must be an integer from 0 to 2**63 - 1, got {self.seed!r}")

    @classmethod
    def from_config(cls, cfg, variant: str | None = None) -> FitSpec:
        """The training settings of a :class:`~spikecim.config.RunConfig` for one of its
        variants (the first when None): its train overrides and timesteps applied."""
        v = cfg.variant(variant) if variant is not None else cfg.variants[0]
        src = {
            **cfg.data.model_dump(),
            **cfg.train_for(v).model_dump(),
            "seed": cfg.seed,
            "timesteps": cfg.timesteps_for(v),
        }
        return cls(**{f.name: src[f.name] for f in fields(cls)})

    @property
    def mixing(self) -> bool:
        """Whether training batches are mixed (mixup or CutMix)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def fingerprint(self) -> str:
        """A hash of the settings; a setting added later counts only away from its default,
        so checkpoints written before it existed still resume."""
        defaults = {f.name: f.default for f in fields(self)}
        settings = {k: v for k, v in self.__dict__.items() if not (k in _LATER and v == defaults[k])}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpikecimError(
            "train.device: 'cuda' requested but no CUDA device is available (use auto or cpu)"
        )
    return torch.device(name)


def make_optimizer(model: nn.Module, spec: FitSpec):
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    elif spec.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.warmup_epochs > 0:
        factor = functools.partial(
            lr_factor, epochs=spec.epochs, warmup=spec.warmup_epochs, cosine=spec.schedule == "cosine"
        )
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, spec.epochs))
        if spec.schedule == "cosine"
        else None
    )
    return opt, sched


def lr_factor(epoch: int, epochs: int, warmup: int, cosine: bool) -> float:
    """The learning rate of epoch ``epoch`` (from 0) over ``train.lr`` with a warmup: a linear
    rise ``(e + 1)/(W + 1)`` over the first W epochs, then ``½·(1 + cos(π·(e − W)/(E − W)))``
    over the other E − W (cosine; 1 with no schedule)."""
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if not cosine or epochs <= warmup:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def check_fit(model: nn.Module, data, spec: FitSpec) -> None:
    """Refuse, in one line, what :func:`fit` cannot train before it starts: augmentation or
    mixing of data that are not images or frames, mixup of event frames, a pruning schedule
    beyond ``spec.epochs``. A run checks every variant so before the first one trains."""
    if (spec.augment or spec.mixing) and data.x_train.dim() < 4:
        what = "data.augment" if spec.augment else "train.mixup_alpha and cutmix_alpha"
        raise SpikecimError(
            f"{what}: needs images [N, C, H, W] or event frames [N, T, C, H, W]; {data.name} holds "
            f"samples of shape {list(data.x_train.shape[1:])}"
        )
    if spec.mixup_alpha > 0 and not data.x_train.is_floating_point():
        raise SpikecimError(
            f"train.mixup_alpha: mixup blends values; {data.name} holds {data.x_train.dtype} event frames, "
            "which CutMix (train.cutmix_alpha) mixes without blending"
        )
    check_schedule(model, spec.epochs)


def fit(
    model: nn.Module,
    data,
    spec: FitSpec,
    ckpt_dir: Path | None = None,
    variant: str = "snn",
    console=None,
    stop_after_epoch: int | None = None,
    task: str = "classification",
) -> dict[str, Any]:
    """Train ``model`` on ``data`` (a :class:`~spikecim.data.Dataset`); returns the history.

    ``task`` (:mod:`spikecim.tasks`) gives the loss, the decisions counted in ``train_acc``
    and the evaluation whose ``accuracy`` is ``test_acc``; its other metrics (e.g. the
    language model's ``bits_per_char``) join each epoch's row as ``test_<metric>``.

    ``stop_after_epoch`` ends training early after that epoch (checkpoint written), as an
    interruption would; it exists for resume tests and for splitting long runs.

    With ``spec.epochs == 0`` the untrained weights are saved as the epoch-0 checkpoint. An
    epoch whose mean loss or weights are not finite stops training with a one-line
    :class:`SpikecimError` before that epoch is saved. Weights placed by hand in ``ckpt_dir``
    (``<variant>.safetensors`` without a ``state.json``) are refused before training starts.
    """
    device = resolve_device(spec.device)
    dist_info: DistInfo = init_distributed(device)
    check_shares(len(data.y_train), spec.batch_size, dist_info.world)
    check_fit(model, data, spec)
    spiking = bool(getattr(model, "spiking", True))
    model.to(device)
    prune_at(model, 0, spec.epochs)  # the masks of boundary 0; a resumed run restores its own below
    opt, sched = make_optimizer(model, spec)
    state: dict[str, Any] = {"epoch": 0, "history": [], "fingerprint": spec.fingerprint()}
    if ckpt_dir is not None:
        restored = load_checkpoint(ckpt_dir, variant, model, opt, sched, spec.epochs, spec.fingerprint())
        if restored is not None:
            state = restored
        else:
            refuse_weights_placed_by_hand(ckpt_dir, variant)
            if spec.epochs == 0 and dist_info.is_main:
                save_checkpoint(ckpt_dir, variant, model, opt, sched, state)
    train_model: nn.Module = model
    if dist_info.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model)
    from spikecim.tasks import get_task

    learn = get_task(task)
    if spec.label_smoothing and "label_smoothing" not in inspect.signature(learn.loss).parameters:
        raise SpikecimError(f"train.label_smoothing: the {task} task's loss takes none; leave it at 0")
    if spec.mixing and not learn.soft_targets:
        raise SpikecimError(
            f"train.mixup_alpha: the {task} task trains on hard targets; mixup and CutMix need soft ones"
        )
    inputs = learn.model_input(
        spec.timesteps if spiking else 1, spec.encoder, spiking, bool(getattr(data, "frames", False))
    )
    x_tr, y_tr = data.x_train, data.y_train
    n_batches = (len(y_tr) + spec.batch_size - 1) // spec.batch_size
    with (
        progress_bar(console, dist_info.is_main) as progress,
        _spike_penalty(model, spec.spike_reg) as spikes,
    ):
        ep_task = progress.add_task(f"{variant} epochs", total=spec.epochs, completed=state["epoch"], info="")
        for epoch in range(state["epoch"], spec.epochs):
            t0 = time.perf_counter()
            gen = epoch_generator(spec.seed, epoch)
            b_task = progress.add_task(f"  epoch {epoch + 1}", total=n_batches, info="")
            model.train()
            loss_sum, correct, seen, rate_sum, rate_n = 0.0, 0, 0, 0.0, 0
            batches = iterate_batches(x_tr, y_tr, spec.batch_size, gen)
            try:
                for step, (xb, yb) in enumerate(batches):
                    inp, yb, target = _model_batch(xb, yb, spec, inputs, gen, data.num_classes, dist_info)
                    inp, yb, target = inp.to(device), yb.to(device), target.to(device)
                    logits = train_model(inp)
                    loss, rate = _training_loss(learn, logits, target, spec, spikes, spiking, variant)
                    if rate is not None:
                        rate_sum, rate_n = rate_sum + rate * len(yb), rate_n + len(yb)
                    opt.zero_grad(set_to_none=True)
                    if dist_info.world > 1:
                        batch = min(spec.batch_size, len(y_tr) - step * spec.batch_size)
                        (loss * share_weight(len(yb), batch, dist_info.world)).backward()
                    else:
                        loss.backward()
                    if spec.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
                    opt.step()
                    right, decisions = learn.correct(logits, yb)
                    loss_sum += float(loss.detach()) * decisions
                    correct += right
                    seen += decisions
                    progress.update(
                        b_task, advance=1, info=f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f}"
                    )
            except (MemoryError, RuntimeError) as e:
                _refuse_allocation_failure(e, variant, epoch + 1, spec.epochs, ckpt_dir is not None)
                raise
            if sched is not None:
                sched.step()
            pruned = prune_at(model, epoch + 1, spec.epochs)
            progress.remove_task(b_task)
            _check_finite(
                model, loss_sum / max(1, seen), variant, epoch + 1, spec.epochs, ckpt_dir is not None
            )
            test = learn.evaluate(model, data.x_test, data.y_test, inputs, seed=spec.seed, device=device)
            row = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(1, seen),
                "train_acc": correct / max(1, seen),
                "test_acc": test["accuracy"],
                **{f"test_{k}": v for k, v in test.items() if k in _EXTRA_METRICS},
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            if pruned is not None:
                row["weight_sparsity"] = pruned
            if rate_n:
                row["train_spike_rate"] = rate_sum / rate_n  # the mean rate the penalty saw
                if rate_sum == 0.0:
                    warn(
                        console,
                        f"{variant}: no neuron fired in epoch {epoch + 1} under train.spike_reg = {spec.spike_reg}: "
                        "the network is silent and its gradients vanish; lower train.spike_reg",
                    )
            state["history"].append(row)
            state["epoch"] = epoch + 1
            if ckpt_dir is not None and dist_info.is_main:
                save_checkpoint(ckpt_dir, variant, model, opt, sched, state)
            progress.update(ep_task, advance=1, info=f"test acc {row['test_acc']:.3f}")
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                break
    model.eval()
    final = state["history"][-1]["test_acc"] if state["history"] else None
    return {"history": state["history"], "epochs": state["epoch"], "test_acc": final}


def _model_batch(xb, yb, spec: FitSpec, inputs, gen, num_classes: int, dist_info: DistInfo):
    """``(model input, labels, training targets)`` of this process's share of a global batch:
    augmented, mixed (soft targets) and encoded as ``spec`` says. Every process draws the
    transforms of the whole batch and keeps its share, so the draws are those of one process
    training alone."""
    if spec.augment:
        xb = augment(xb, spec.augment, gen, spec.crop_padding, spec.cutout_size)
    target = yb
    if spec.mixing:
        xb, target = mix_batch(xb, yb, num_classes, gen, spec.mixup_alpha, spec.cutmix_alpha)
    inp = inputs.encode(xb, gen)
    share = dist_info.share
    return share(inp, inputs.batch_dim), share(yb, 0), share(target, 0)


def _training_loss(learn, logits, yb, spec: FitSpec, spikes: SpikeRate, spiking: bool, variant: str):
    """The task's loss of one batch with the terms the spec adds (TET's MSE, the spike-rate
    penalty), and the spike rate penalised (None without the penalty)."""
    smoothing = {"label_smoothing": spec.label_smoothing} if spec.label_smoothing else {}
    loss = learn.loss(logits, yb, spec.loss, **smoothing)
    if spec.tet_lambda > 0:
        loss = with_tet_mse(loss, logits, spec.tet_lambda, spec.tet_means)
    if spiking and spec.spike_reg > 0 and spikes.empty:
        raise SpikecimError(
            f"train.spike_reg: the {variant} has no spiking neuron layer whose forward "
            "emits its spikes (spikecim.nn.is_spiking_neuron); set spike_reg to 0 for it"
        )
    if spikes.empty:
        return loss, None
    rate = spikes.take()
    return loss + spec.spike_reg * rate, float(rate.detach())


def _spike_penalty(model: nn.Module, spike_reg: float):
    """Hooks that keep the spikes of each training forward when ``train.spike_reg`` > 0
    (:mod:`spikecim.train.regularizers`); otherwise a meter that stays empty."""
    return spike_rate(model) if spike_reg > 0 else nullcontext(SpikeRate())


def _refuse_allocation_failure(
    err: BaseException, variant: str, epoch: int, epochs: int, saving: bool
) -> None:
    """A batch that needed more memory than there is: one line naming what makes it smaller."""
    size = allocation_failed(err)
    if size is None:
        return
    kept = ""
    if saving:
        kept = f"; its checkpoint stays at epoch {epoch - 1}" if epoch > 1 else "; no epoch of it is saved"
    raise SpikecimError(
        f"train: the {variant} needs more memory than is available in epoch {epoch} of {epochs}{size}{kept}; "
        "lower data.batch_size (or data.context, data.timesteps, the model's size)"
    ) from None


def _check_finite(model: nn.Module, loss: float, variant: str, epoch: int, epochs: int, saving: bool) -> None:
    """Refuse an epoch that diverged (its mean loss or a weight NaN or infinite) before it is saved."""
    if math.isfinite(loss):
        bad = next((n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if bad is None:
            return
        what = f"'{bad}' holds NaN or infinite values"
    else:
        what = f"the loss is {loss}, not a finite number"
    kept = ""
    if saving:
        kept = f"; its checkpoint stays at epoch {epoch - 1}" if epoch > 1 else "; no epoch of it is saved"
    raise SpikecimError(
        f"train: the {variant} diverged in epoch {epoch} of {epochs} ({what}){kept}",
        advice="lower train.lr or train.weight_decay and train again with --fresh or another --name",
    )

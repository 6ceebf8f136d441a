"""The autograd function shared by the fused LIF kernels; only the launcher differs.

A launcher runs the whole time loop on one device: ``forward`` fills the spikes, the
membrane and what the backward pass needs; ``backward`` runs the reverse-time surrogate
gradient and fills the gradients asked for. Tensors are contiguous, ``[T, *step]`` for
sequences and ``[*step]`` for per-neuron values; ``None`` stands for "not needed"; an
incoming gradient may instead be one value broadcast to the whole sequence (all strides
0, as the gradient of ``.sum()`` arrives), which the launcher reads as that value.

What the backward pass keeps (one float per neuron and step, never a float copy of the spikes):

=========================  =============================================================
delayed reset              the membrane output U (S[t] = U[t] > theta, R[t] = U[t-1] > theta)
same-step, subtract        U and the spikes as bytes (V - theta = U if S else U - theta); a
                           launcher with ``saves_v_minus_theta`` keeps V - theta alone instead
                           (S = V - theta > 0, exact for a float difference) unless beta is
                           learnt, as its gradient reads U[t-1]
same-step, zero            the pre-reset membrane V (S = V > theta, U = 0 if S else V)
=========================  =============================================================

The initial membrane is kept only when the backward pass reads it: for the gradients of
beta or theta (through U[-1]), and of the initial membrane itself under a delayed zero reset.
"""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["Launcher", "fused_lif", "fused_spikes", "memory_order", "supports"]


class Launcher(Protocol):
    """Runs the loops on one device (see the module docstring for the arguments)."""

    def forward(self, x, beta, th, m0, spk, mem, vsave, sbits, params) -> None: ...

    def backward(self, gs, gm, saved, sbits, beta, th, m0, gx, gbeta, gth, gm0, params) -> None: ...


def supports(x: torch.Tensor, params, mem0, device_type: str, dtypes, surrogates) -> bool:
    """Whether a fused kernel for ``device_type``/``dtypes``/``surrogates`` implements this call."""
    if x.device.type != device_type or x.dtype not in dtypes or x.dim() < 1 or x.shape[0] == 0:
        return False
    if params.surrogate.name not in surrogates:
        return False
    if getattr(params, "membrane_quant", None) is not None:  # a quantised membrane runs the reference loop
        return False
    for value in (params.beta, params.threshold):
        if isinstance(value, torch.Tensor):
            if value.device != x.device or not value.is_floating_point():
                return False
            # a non-scalar tensor of another dtype would promote the reference's result
            if value.dim() > 0 and value.dtype != x.dtype:
                return False
    return mem0 is None or (mem0.shape == x.shape[1:] and mem0.dtype == x.dtype and mem0.device == x.device)


def fused_lif(launcher: Launcher, x: torch.Tensor, params, mem0: torch.Tensor | None):
    """``(spikes, membrane)`` of the LIF over ``x[T, B, ...]``, same contract as the reference.
    A dense ``x`` whose dimensions lie in another order, time outermost (a channels-last
    layer output), is read as it lies (:func:`memory_order`); the results have its layout."""
    beta, th = _as_tensors(params, x)
    order = memory_order(x)
    if order is None:  # not one dense block: the kernel reads a contiguous copy
        return _FusedLIF.apply(x, beta, th, mem0, params, launcher, True)
    xp, beta, th, mem0 = _permuted(order, x, beta, th, mem0)
    spk, mem = _FusedLIF.apply(xp, beta, th, mem0, params, launcher, True)
    if xp is x:
        return spk, mem
    back = _inverse(order)
    return spk.permute(back), mem.permute(back)


def fused_spikes(
    launcher: Launcher, x: torch.Tensor, params, mem0: torch.Tensor | None, inplace: bool = False
) -> torch.Tensor:
    """The spikes of :func:`fused_lif` alone. A launcher with ``membrane_optional`` then writes
    no membrane sequence under a same-step reset, whose backward pass does not read it.

    ``inplace``: a launcher with ``writes_in_place`` writes the spikes over ``x`` (dense, in
    any order of its dimensions with time outermost) and returns ``x``, marked dirty for
    autograd (as ``relu_``); otherwise new spikes."""
    beta, th = _as_tensors(params, x)
    order = memory_order(x)
    if order is None:  # not one dense block: the kernel reads a contiguous copy
        return _FusedLIF.apply(x, beta, th, mem0, params, launcher, False)[0]
    xp, beta, th, mem0 = _permuted(order, x, beta, th, mem0)
    if inplace and getattr(launcher, "writes_in_place", False):
        spk = _FusedSpikesInPlace.apply(whole_base(x), beta, th, mem0, params, launcher, x.shape, order)
        return spk.view(x.shape)
    spk = _FusedLIF.apply(xp, beta, th, mem0, params, launcher, False)[0]
    return spk if xp is x else spk.permute(_inverse(order))


def memory_order(x: torch.Tensor) -> list[int] | None:
    """The order of ``x``'s dimensions in memory, time first (``x.permute(order)`` is
    contiguous), or ``None`` when ``x`` is not one dense block with time outermost. A
    channels-last layer output ``[T*B, C, H, W]`` seen as ``[T, B, C, H, W]`` has the order
    ``[0, 1, 3, 4, 2]``: the kernel runs over its memory as it lies, without a copy."""
    if x.is_contiguous():
        return list(range(x.dim()))
    order = [0, *sorted(range(1, x.dim()), key=lambda d: -x.stride(d))]
    return order if x.permute(order).is_contiguous() else None


def _inverse(order: list[int]) -> list[int]:
    back = [0] * len(order)
    for i, d in enumerate(order):
        back[d] = i
    return back


def _permuted(order: list[int], x, beta, th, mem0):
    """``x`` in memory order, and each per-neuron value (and ``mem0``) in the same order
    (all as given when the order is the dimensions' own)."""
    if order == sorted(order):
        return x, beta, th, mem0
    step = [d - 1 for d in order[1:]]

    def per_neuron(v):
        return v if v is None or v.dim() == 0 else v.expand(x.shape[1:]).permute(step)

    return x.permute(order), per_neuron(beta), per_neuron(th), None if mem0 is None else mem0.permute(step)


def whole_base(x: torch.Tensor) -> torch.Tensor:
    """The tensor an in-place write over ``x`` should modify: ``x``'s base when ``x`` is a
    view of all of it in the same layout (a time-major ``[T, B, ...]`` view of a ``[T*B,
    ...]`` layer output), else ``x``. Writing over the base itself spares autograd the replay of an
    in-place write through a view (a full-size scatter and copy in the backward pass)."""
    base = x._base
    if base is None or base.numel() != x.numel() or base.data_ptr() != x.data_ptr():
        return x
    try:
        same = base.view(x.shape).stride() == x.stride()
    except RuntimeError:  # base's layout cannot be read with x's shape
        return x
    return base if same else x


def _as_tensors(params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(
        v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=x.dtype)
        for v in (params.beta, params.threshold)
    )


def _per_neuron(value: torch.Tensor, x: torch.Tensor, launcher: Launcher) -> torch.Tensor:
    """``value`` as a contiguous tensor of one step's shape and x's dtype (a copy of M values),
    or one value when it is a scalar and the launcher reads one value for every neuron
    (``takes_scalars``): a fresh copy of M values costs as much as a pass of the kernel."""
    value = value.detach().to(device=x.device, dtype=x.dtype)
    if value.numel() == 1 and getattr(launcher, "takes_scalars", False):
        return value.reshape(1).contiguous()
    return value.expand(x.shape[1:]).contiguous()


def _broadcast_scalar(grad: torch.Tensor | None) -> bool:
    """Whether ``grad`` is one value expanded to the whole sequence (the gradient of ``.sum()``)."""
    return grad is not None and grad.numel() > 0 and all(s == 0 for s in grad.stride())


def _forward(ctx, x, beta, th, mem0, params, launcher, membrane: bool, spk=None):
    """Runs the loop; fills ``spk`` when given (the input itself, in place), else a new tensor.
    Returns ``(spikes, membrane or None)`` and saves what :func:`_backward` reads."""
    ctx.set_materialize_grads(False)
    x = x.contiguous()
    m0 = mem0.contiguous() if mem0 is not None else None
    _, need_beta, need_th, need_m0 = ctx.needs_input_grad[:4]
    training = need_beta or need_th or need_m0 or ctx.needs_input_grad[0]
    same_step, subtract = not params.reset_delay, params.reset == "subtract"
    sbits = vsave = None
    v_minus_theta = getattr(launcher, "saves_v_minus_theta", False) and not need_beta
    if training and same_step and subtract and not v_minus_theta:
        sbits = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    elif training and same_step:
        vsave = torch.empty_like(x)  # V - theta (subtract) or V (zero)
    # the membrane is written when returned, or when the backward pass reads it
    write_mem = membrane or (training and vsave is None) or not getattr(launcher, "membrane_optional", False)
    spk = torch.empty_like(x) if spk is None else spk
    mem = torch.empty_like(x) if write_mem else None
    b, h = (_per_neuron(v, x, launcher) for v in (beta, th))
    launcher.forward(x, b, h, m0, spk, mem, vsave, sbits, params)
    if training:
        keep_m0 = need_beta or need_th or (need_m0 and params.reset_delay and not subtract)
        # beta and theta are kept as given (a scalar stays a scalar), expanded again below
        saved = vsave if vsave is not None else mem
        ctx.save_for_backward(saved, sbits, beta, th, m0 if keep_m0 else None)
        ctx.params, ctx.launcher = params, launcher
    return spk, mem if membrane else None


def _backward(ctx, grad_spk, grad_mem, over_saved: bool = False):
    """``(grad x, grad beta, grad theta, grad mem0)`` from the reverse-time loop.

    ``over_saved``: the input gradient is written over the kept sequence (no fresh
    allocation), whose version is then bumped, so that a second backward pass through the
    same graph (``retain_graph=True``) fails with torch's in-place error instead of reading it."""
    saved, sbits, beta, th, m0 = ctx.saved_tensors
    if grad_spk is None and grad_mem is None:
        return None, None, None, None
    _, need_beta, need_th, need_m0 = ctx.needs_input_grad[:4]
    beta_full, th_full = (_per_neuron(v, saved, ctx.launcher) for v in (beta, th))
    gx = saved if over_saved else torch.empty_like(saved)
    # the parameter gradients are per neuron even for a scalar beta or theta (summed below)
    gbeta = torch.empty_like(saved[0]) if need_beta else None
    gth = torch.empty_like(saved[0]) if need_th else None
    gm0 = torch.empty_like(saved[0]) if need_m0 else None
    # a gradient broadcast from one value is passed as that value, not materialised
    grads = [g if g is None or _broadcast_scalar(g) else g.contiguous() for g in (grad_spk, grad_mem)]
    ctx.launcher.backward(*grads, saved, sbits, beta_full, th_full, m0, gx, gbeta, gth, gm0, ctx.params)
    if over_saved:
        torch.autograd.graph.increment_version(saved)
    if gbeta is not None:
        gbeta = gbeta.sum_to_size(beta.shape).to(beta.dtype)
    if gth is not None:
        gth = gth.sum_to_size(th.shape).to(th.dtype)
    return gx, gbeta, gth, gm0


class _FusedLIF(torch.autograd.Function):
    """Spikes and membrane (or the spikes and None when ``membrane`` is False)."""

    @staticmethod
    def forward(ctx, x, beta, th, mem0, params, launcher, membrane):
        return _forward(ctx, x, beta, th, mem0, params, launcher, membrane)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk, grad_mem):
        return *_backward(ctx, grad_spk, grad_mem), None, None, None


class _FusedSpikesInPlace(torch.autograd.Function):
    """The spikes written over ``target`` (contiguous, read as a sequence of ``shape``), which
    is returned and marked dirty. One output only: autograd rebases the history of a view
    modified in place only then. Its backward pass writes the input gradient over the kept
    sequence as well (a launcher with ``writes_in_place``): one backward pass per forward."""

    @staticmethod
    def forward(ctx, target, beta, th, mem0, params, launcher, shape, order):
        ctx.mark_dirty(target)
        ctx.shape, ctx.order = shape, order
        x = target.view(shape).permute(order)
        _forward(ctx, x, beta, th, mem0, params, launcher, False, spk=x)
        return target

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk):
        if grad_spk is None:
            return (None,) * 8
        grad = grad_spk.reshape(ctx.shape).permute(ctx.order)
        gx, gbeta, gth, gm0 = _backward(ctx, grad, None, over_saved=True)
        return (
            gx.permute(_inverse(ctx.order)).reshape(grad_spk.shape),
            gbeta,
            gth,
            gm0,
            None,
            None,
            None,
            None,
        )

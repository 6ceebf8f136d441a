"""Capture of a bare ``torch.matmul`` / ``a @ b`` / ``torch.bmm`` of two activations in ``trace``.

A model that multiplies two activations without the :class:`spikecim.ops.MatMul` module
(attention written as ``torch.matmul(q, k.transpose(-1, -2))`` and ``attn @ v``) has no module
for a forward hook to see. While ``trace`` runs the model, :class:`MatMulCapture` (a
``torch.overrides.TorchFunctionMode``) sees every such call and hands it to the tracer, which
records it as a ``matmul`` entry exactly as it records the module.

Which operands are activations: a tensor is *fixed* when it is a parameter or buffer of the
model, or was computed inside the forward from fixed tensors only (``self.w.t()``,
``torch.ones(...)``, a mask built from a buffer); everything else (the input and all that
depends on it) is an activation. A matmul is captured when neither operand is fixed; an
activation times a fixed matrix is a linear layer written by hand and is not recorded (use
``nn.Linear`` to have it traced). Calls inside a registered operator's own forward (the
``MatMul`` module) are left to that operator's hook.

Each call site is one entry, named after the innermost module running and the order in which
its sites are first reached: ``attn.matmul0``, ``attn.matmul1`` (``matmul0`` in the root
module's forward). Its neuron is not identified (``has_neuron`` is False); use the ``MatMul``
module where the neuron after it must be costed.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["MatMulCapture"]

_MATMULS = frozenset(
    {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}
)
_TORCH_DIR = str(Path(torch.__file__).parent)
_OPERAND_KEYWORDS = (("input", "self"), ("other", "mat2"))


class MatMulCapture(TorchFunctionMode):
    """While active, ``on_matmul(site, origin, a, b, out)`` is called for each matmul of two
    activations: ``site`` is the entry name, ``origin`` the ``file:line`` of the call.

    :meth:`hooks` must be registered on the model (after the tracer's own hooks) so the mode
    knows which module is running; :meth:`new_batch` forgets the tensors of the last call."""

    def __init__(self, model: nn.Module, on_matmul: Callable[..., None]):
        super().__init__()
        self._on_matmul = on_matmul
        self._model = model
        self._fixed_ids = {id(t) for t in (*model.parameters(), *model.buffers())}
        self._derived: dict[int, weakref.ref] = {}
        self._running: list[str] = []
        self._inside_op = 0
        self._sites: dict[tuple, str] = {}
        self._per_owner: dict[str, int] = {}

    def hooks(self, op_modules: Iterable[nn.Module]) -> list:
        """Forward hooks that keep the stack of running modules and skip operators' own calls."""
        ops = {id(m) for m in op_modules}
        handles = []
        for name, m in self._model.named_modules():
            is_op = id(m) in ops
            handles.append(m.register_forward_pre_hook(lambda mod, args, n=name, o=is_op: self._enter(n, o)))
            handles.append(
                m.register_forward_hook(lambda mod, args, out, o=is_op: self._leave(o), always_call=True)
            )
        return handles

    def new_batch(self) -> None:
        self._derived.clear()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _MATMULS and self._inside_op == 0:
            a, b = _operands(args, kwargs)
            if _is_tensor(a) and _is_tensor(b) and not self._is_fixed(a) and not self._is_fixed(b):
                site, origin = self._site()
                self._on_matmul(site, origin, a, b, out)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if _is_tensor(t)]
        fixed = all(self._is_fixed(t) for t in inputs)
        for t in tree_flatten(out)[0]:
            if not _is_tensor(t):
                continue
            if fixed:
                self._derived[id(t)] = weakref.ref(t)
            else:  # an in-place op may have written an activation into a fixed tensor
                self._derived.pop(id(t), None)
        return out

    # ---- helpers ---------------------------------------------------------------------
    def _enter(self, name: str, is_op: bool) -> None:
        self._running.append(name)
        self._inside_op += is_op

    def _leave(self, is_op: bool) -> None:
        if self._running:
            self._running.pop()
        self._inside_op -= is_op

    def _is_fixed(self, t: torch.Tensor) -> bool:
        if id(t) in self._fixed_ids:
            return True
        ref = self._derived.get(id(t))
        return ref is not None and ref() is t

    def _site(self) -> tuple[str, str]:
        frame = sys._getframe(2)
        while frame is not None and (
            frame.f_code.co_filename.startswith(_TORCH_DIR) or frame.f_code.co_filename == __file__
        ):
            frame = frame.f_back
        origin = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
        # the bytecode offset tells two matmuls on one line apart
        where = (id(frame.f_code), frame.f_lasti) if frame is not None else None
        owner = self._running[-1] if self._running else ""
        name = self._sites.get((owner, where))
        if name is None:
            k = self._per_owner.get(owner, 0)
            self._per_owner[owner] = k + 1
            name = f"{owner}.matmul{k}" if owner else f"matmul{k}"
            self._sites[(owner, where)] = name
        return name, origin


def _is_tensor(x) -> bool:
    return isinstance(x, torch.Tensor)


def _operands(args: tuple, kwargs: dict):
    found = []
    for i, names in enumerate(_OPERAND_KEYWORDS):
        if len(args) > i:
            found.append(args[i])
        else:
            found.append(next((kwargs[k] for k in names if k in kwargs), None))
    return found

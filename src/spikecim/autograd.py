"""An autograd function in ``torch.func``'s form whose call costs what an old-style one's does.

torch's :meth:`torch.autograd.Function.apply` binds every call's arguments to the signature
of ``forward`` (``inspect.signature``, ``bind``, ``apply_defaults``) when the function sets
up its context apart, the form ``torch.func``'s transforms need. That binding costs more
than the call itself (one call of the hardware-aware DAC: 18.8 µs here against 42.3 µs
through torch's ``apply``, ``benchmarks/bench_hwa_parts.py``, docs/speed.md), paid per time
step by a surrogate spike function and per tile by the hardware-aware converters. :class:`Function` binds only when it has something to do: a call
that passes every argument of ``forward`` by position, outside a transform and outside the
compiler, goes straight to torch's C++ apply, as an old-style function's call does. Any
other call (a transform running, ``torch.compile`` tracing, an argument left to its default
or passed by name) takes torch's own path. ``torch.compile`` does not call this ``apply``:
the compiler runs ``forward`` itself, as for torch's own functions, in one graph.
"""

from __future__ import annotations

import inspect

import torch

__all__ = ["Function"]

try:  # torch's own pieces of the path; without them (another torch) every call takes torch's path
    from torch._C import _are_functorch_transforms_active as _transforms_active
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
except ImportError:  # pragma: no cover - torch 2.13 has both
    _transforms_active = None


class Function(torch.autograd.Function):
    """:class:`torch.autograd.Function` with ``setup_context``; subclasses define ``forward``
    without ``ctx``, ``setup_context`` and ``backward`` as torch documents, and are called as
    ``Sub.apply(*args)``."""

    _arity: int | None = None  # forward's parameter count, read once per subclass

    @classmethod
    def apply(cls, *args, **kwargs):
        arity = cls.__dict__.get("_arity")
        if arity is None:
            arity = len(inspect.signature(cls.forward).parameters)
            cls._arity = arity
        if (
            kwargs
            or len(args) != arity
            or _transforms_active is None
            or _transforms_active()
            or torch.compiler.is_compiling()
        ):
            return super().apply(*args, **kwargs)
        # torch's Function.apply ends so: its parent's apply (C++) on the unwrapped arguments
        return super(torch.autograd.Function, cls).apply(*_unwrap_dead_wrappers(args))

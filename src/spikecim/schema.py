"""One rule for every number a user gives spikecim: finite, and within a stated range.

Every pydantic schema that reads user input (run config, crossbar config, device models,
architecture tables and their estimator parameters, layer lists) derives from
:class:`Schema`:

- unknown keys are refused (``extra="forbid"``);
- ``nan``, ``inf`` and ``-inf`` are refused on every float field (``allow_inf_nan=False``);
- every number inside every field (also inside lists, tuples and free-form mappings such as
  ``model.kwargs`` or an architecture's ``params``) must be finite, a float at most
  :data:`MAX_FLOAT` = 1e12 in magnitude and an integer below :data:`MAX_INT` = 2**63 in
  magnitude (what a 64-bit integer and ``torch.manual_seed`` hold).

Fields with a tighter physical range say so with ``le``/``lt`` and in their description
(a learning rate is at most :data:`MAX_LR` = 10, a seed below 2**63). The rule lives here
once, so a field added later is covered without further code.
"""

from __future__ import annotations

import math
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["MAX_FLOAT", "MAX_INT", "MAX_LR", "RANGE_RULE", "Schema", "check_number", "check_numbers"]

MAX_FLOAT = 1e12
MAX_INT = 2**63
MAX_LR = 10.0
RANGE_RULE = "a finite number, |x| <= 1e12 (integers |n| < 2**63)"


class Schema(BaseModel):
    """Base of spikecim's input schemas: unknown keys and non-finite or huge numbers refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v: Any, info: ValidationInfo) -> Any:
        """``true`` is not a number and ``1`` or ``"no"`` not a switch: pydantic's lax mode
        would read them as 1 and False."""
        annotation = cls.model_fields[info.field_name].annotation
        kind = _scalar_kind(annotation)
        if kind == "number" and isinstance(v, bool):
            raise ValueError(f"must be a number, got {str(v).lower()}")
        words = _words_or_number(annotation)
        if words is not None and isinstance(v, bool):  # a number or a word (adc.range: "max" or 1.5)
            raise ValueError(f"must be {' '.join(words)}, got {str(v).lower()}")
        if kind == "bool" and v is not None and not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v

    @field_validator("*", mode="after")
    @classmethod
    def _finite_numbers(cls, v: Any) -> Any:
        problem = check_numbers(v)
        if problem is not None:
            raise ValueError(problem)
        return v


def _scalar_kind(annotation: Any) -> str | None:
    """``"number"`` for an int or float field, ``"bool"`` for a bool field (either optional),
    None for anything else (unions of other types, lists, nested schemas, literals)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "number"
    return None


def _words_or_number(annotation: Any) -> list[str] | None:
    """For a field that takes one of some words or a number (``Literal["max", "calibrated"] |
    float``), the allowed values as a phrase (``'max', 'calibrated' or a number``); else None."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) not in (Union, UnionType):
        return None
    args = [a for a in get_args(annotation) if a is not type(None)]
    words = [repr(w) for a in args if get_origin(a) is Literal for w in get_args(a)]
    if not words or bool in args or not any(a in (int, float) for a in args):
        return None
    return [*(f"{w}," for w in words[:-1]), words[-1], "or a number"]


def check_number(v: Any) -> str | None:
    """Why the number ``v`` breaks the rule (module docstring), or None when it is fine."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int):
        return None if abs(v) < MAX_INT else f"must be below 2**63 in magnitude, got {v:.3g}"
    if not math.isfinite(v):
        return f"must be a finite number, got {v}"
    if abs(v) > MAX_FLOAT:
        return f"must be at most 1e12 in magnitude, got {v:g}"
    return None


def check_numbers(v: Any, path: str = "") -> str | None:
    """The first number inside ``v`` (lists, tuples, mappings walked) that breaks the rule,
    as ``key.path: why``; None when all are fine. Nested schemas checked themselves."""
    if isinstance(v, BaseModel):
        return None
    if isinstance(v, dict):
        items = ((f"{path}.{k}" if path else str(k), x) for k, x in v.items())
    elif isinstance(v, (list, tuple)):
        items = ((f"{path}.{i}" if path else str(i), x) for i, x in enumerate(v))
    else:
        problem = check_number(v)
        return None if problem is None else (f"{path}: {problem}" if path else problem)
    for sub, x in items:
        problem = check_numbers(x, sub)
        if problem is not None:
            return problem
    return None

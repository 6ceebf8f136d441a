"""Where a transformer's time, energy and area go: the rows of a CostReport grouped by part.

Parts: ``projections`` (the linear layers of attention: Q, K, V and the output projection),
``dynamic products`` (the products of two activations: Q·Kᵀ, A·V, Kᵀ·V, without their
writes), ``writes`` (the write energy of their operands, the ``write`` component),
``softmax/LN/GELU`` (the digital unit's rows), ``MLP`` (the linear layers of the MLP block)
and ``other`` (patch embedding, classifier, convolutions, the exit test).

A linear layer's part is read from its module name: ``mlp``, ``ffn`` or ``feed_forward``
in its path, or a last part ``fc1``/``fc2``, is MLP; ``attn``/``attention``/``ssa`` in its
path, or a last part ``q``, ``k``, ``v``, ``qkv``, ``o``, ``proj``, ``out_proj``,
``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, is a projection.
"""

from __future__ import annotations

__all__ = ["PARTS", "by_part", "part_of"]

PARTS = ("projections", "dynamic products", "writes", "softmax/LN/GELU", "MLP", "other")
_DIGITAL = ("softmax", "layernorm", "gelu")
_MLP_PATH = ("mlp", "ffn", "feed_forward")
_MLP_LAST = ("fc1", "fc2")
_ATTN_PATH = ("attn", "attention", "ssa")
_PROJ_LAST = ("q", "k", "v", "qkv", "o", "proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj")


def part_of(name: str, kind: str) -> str:
    """The part of a CostReport row (module docstring); ``writes`` is split off by :func:`by_part`."""
    if kind in _DIGITAL:
        return "softmax/LN/GELU"
    if kind == "matmul":
        return "dynamic products"
    if kind != "linear":
        return "other"
    path = name.lower().split(".")
    if any(p in _MLP_PATH for p in path) or path[-1] in _MLP_LAST:
        return "MLP"
    if any(p in _ATTN_PATH for p in path) or path[-1] in _PROJ_LAST:
        return "projections"
    return "other"


def by_part(report) -> dict[str, dict[str, float]]:
    """``{part: {"energy_pj", "latency_ns", "area_um2"}}`` for the parts with a row, in
    :data:`PARTS` order; a dynamic product's ``write`` energy goes to ``writes``."""
    out = {p: {"energy_pj": 0.0, "latency_ns": 0.0, "area_um2": 0.0} for p in PARTS}
    seen = set()
    for row in report.layers:
        part = part_of(row.name, row.kind)
        seen.add(part)
        write = row.energy_pj.get("write", 0.0) if part == "dynamic products" else 0.0
        if write:
            out["writes"]["energy_pj"] += write
            seen.add("writes")
        out[part]["energy_pj"] += row.total_energy_pj - write
        out[part]["latency_ns"] += row.latency_ns
        out[part]["area_um2"] += row.total_area_um2
    return {p: v for p, v in out.items() if p in seen}

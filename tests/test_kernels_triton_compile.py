"""The Triton LIF kernels compile to GPU machine code for NVIDIA targets (no GPU needed).

Triton's CPU interpreter checks what the kernels compute but not that they lower: this
compiles every forward variant and every reset × surrogate × detach backward variant ahead
of time (Triton's own front end, LLVM and ``ptxas``) for sm_80 (A100) and sm_90 (H100).
Skipped where Triton is not installed (it is not a dependency of spikecim).
"""

from __future__ import annotations

import itertools

import pytest

triton = pytest.importorskip("triton", reason="Triton is not installed")
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from spikecim.nn.kernels import _triton_kernels as kernels
from spikecim.nn.kernels.triton_lif import BLOCK, SURROGATE_IDS

TARGETS = [GPUTarget("cuda", 80, 32), GPUTarget("cuda", 90, 32)]


@pytest.fixture(autouse=True)
def fresh_triton_cache(tmp_path, monkeypatch):
    """Compile for real: an empty kernel cache, so no earlier build is reused."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))


FP32 = "*fp32"


def _compile(fn, arg_types: dict[str, str], constexprs: dict[str, object], target) -> bytes:
    signature = {**arg_types, **{name: "constexpr" for name in constexprs}}
    names = list(signature)
    source = ASTSource(
        fn=fn, signature=signature, constexprs={(names.index(k),): v for k, v in constexprs.items()}
    )
    compiled = triton.compile(source, target=target, options={"enable_fp_fusion": False})
    assert f".entry {fn.__name__}" in compiled.asm["ptx"]
    return compiled.asm["cubin"]


FORWARD_ARGS = {
    **{n: FP32 for n in ("x_ptr", "beta_ptr", "th_ptr", "m0_ptr", "spk_ptr", "mem_ptr", "v_ptr")},
    "sb_ptr": "*u8",
    "T": "i32",
    "M": "i32",
}
BACKWARD_ARGS = {
    **{n: FP32 for n in ("gs_ptr", "gm_ptr", "saved_ptr")},
    "sb_ptr": "*u8",
    **{n: FP32 for n in ("beta_ptr", "th_ptr", "m0_ptr", "gx_ptr", "gb_ptr", "gt_ptr", "gm0_ptr")},
    "T": "i32",
    "M": "i32",
    **{n: "fp32" for n in ("p", "c_atan", "p_half")},
}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"sm{t.arch}")
def test_every_forward_variant_compiles_to_a_cubin(target):
    for has_m0, delayed, subtract, save in itertools.product([False, True], repeat=4):
        flags = {"HAS_M0": has_m0, "DELAYED": delayed, "SUBTRACT": subtract, "SAVE": save, "BLOCK": BLOCK}
        assert len(_compile(kernels.forward_kernel, FORWARD_ARGS, flags, target)) > 0


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"sm{t.arch}")
def test_every_reset_surrogate_and_detach_backward_variant_compiles_to_a_cubin(target):
    for delayed, subtract, detach, sg in itertools.product(
        [False, True], [False, True], [False, True], sorted(set(SURROGATE_IDS.values()))
    ):
        flags = {
            "HAS_GS": True,
            "HAS_GM": True,
            "GS_SCALAR": False,
            "GM_SCALAR": False,
            "HAS_M0": True,
            "DELAYED": delayed,
            "SUBTRACT": subtract,
            "DETACH": detach,
            "SG": sg,
            "NEED_B": True,
            "NEED_T": True,
            "NEED_M0": True,
            "BLOCK": BLOCK,
        }
        assert len(_compile(kernels.backward_kernel, BACKWARD_ARGS, flags, target)) > 0


def test_backward_compiles_without_optional_inputs_and_with_scalar_gradients():
    """The flags the launcher sets for a plain ``s.sum()`` (scalar, expanded gradient), no
    membrane gradient, no initial state and no parameter gradients."""
    for gs_scalar, has_gm in itertools.product([False, True], [False, True]):
        flags = {
            "HAS_GS": True,
            "HAS_GM": has_gm,
            "GS_SCALAR": gs_scalar,
            "GM_SCALAR": has_gm and gs_scalar,
            "HAS_M0": False,
            "DELAYED": False,
            "SUBTRACT": True,
            "DETACH": False,
            "SG": 0,
            "NEED_B": False,
            "NEED_T": False,
            "NEED_M0": False,
            "BLOCK": BLOCK,
        }
        assert len(_compile(kernels.backward_kernel, BACKWARD_ARGS, flags, TARGETS[1])) > 0

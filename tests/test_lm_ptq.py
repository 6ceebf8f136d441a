"""Post-training quantisation of the language models: their reconstruction blocks chain into
the model's output, and the ``ptq`` stage of an lm run reports perplexity equal to exp of the
mean next-token cross-entropy computed here from the quantised model's logits."""

import copy
import json
import math

import pytest
import torch
from torch import nn

from conftest import group_rtn
from spikecim.config import load_config
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.pipeline.run import run
from spikecim.quant.blocks import reconstruction_blocks
from spikecim.quant.groupwise import WeightQuantSpec, quantizable_layers
from spikecim.quant.tesseraq import ReconstructionConfig, post_training_quantize

TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # 900 bytes


@pytest.mark.parametrize(
    ("name", "spiking"),
    [
        ("transformer-tiny", False),
        ("matmulfree-tiny", False),
        ("spikegpt-tiny", True),
        ("spikegpt-tiny", False),
    ],
)
def test_lm_reconstruction_blocks_chain_into_the_model_output(name, spiking):
    torch.manual_seed(0)
    model = create_model(name, spiking=spiking, num_classes=256, input_size=8, d_model=8, layers=2).eval()
    tokens = torch.randint(0, 256, (8, 3))
    blocks = reconstruction_blocks(model)
    assert [n for n, _ in blocks] == ["embed", "blocks.0", "blocks.1", "head"]
    x = tokens
    with torch.no_grad():
        for _, block in blocks:
            x = block(x)
        assert torch.equal(x, model(tokens))
    # the blocks share the model's weights: every weight of the model sits in one block
    owned = {id(p) for _, b in blocks for p in b.parameters()}
    assert owned == {id(p) for p in model.parameters()}


def test_bitlinear_layers_are_left_out_of_post_training_quantisation():
    mmf = create_model("matmulfree-tiny", spiking=False, num_classes=256, input_size=8, d_model=8, layers=1)
    assert quantizable_layers(mmf) == {}
    gpt = create_model("spikegpt-tiny", num_classes=256, input_size=8, d_model=8, layers=1)
    # per block: time mix k, v, r, o and channel mix k, v, r; then the head
    assert len(quantizable_layers(gpt)) == 7 + 1


@pytest.mark.parametrize("name", ["transformer-tiny", "matmulfree-tiny", "spikegpt-tiny"])
def test_the_registry_says_which_language_model_has_weights_to_quantise_post_training(name):
    from spikecim.models import has_float_weights

    model = create_model(name, spiking=False, num_classes=256, input_size=8, d_model=8, layers=1)
    assert has_float_weights(name) == bool(quantizable_layers(model))


def _hand_perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """exp of the mean of −log softmax(logits)[target] over every token, written out."""
    with torch.no_grad():
        logits = model.eval()(x.t()).transpose(0, 1).double()  # [B, L, V]
    log_z = logits.exp().sum(-1).log()
    nll = log_z - logits.gather(-1, y[..., None]).squeeze(-1)
    return math.exp(float(nll.mean()))


@pytest.fixture(scope="module")
def lm_ptq_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmptq")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    cfg = load_config(
        None,
        [
            f"output_dir={root}", "name=lmptq", "task=lm", "model.name=transformer-tiny", "data.name=text",
            f"data.root={corpus}", "data.context=8", "model.kwargs={d_model: 32, layers: 1, heads: 2}",
            "stages=[train, ptq, report]", "train.epochs=1", "ptq.bits=[2, 4]", "ptq.steps=2",
            "ptq.thresholds=[0.5, 0.0]", "ptq.calibration_samples=16", "ptq.batch_size=8",
        ],
    )  # fmt: skip
    return cfg, run(cfg)


def test_lm_ptq_reports_perplexity_equal_to_exp_of_the_hand_cross_entropy(lm_ptq_run):
    cfg, ctx = lm_ptq_run
    result = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]
    assert result["metric"] == "perplexity"
    (variant,) = result["variants"]
    model, data = ctx.models[variant], ctx.data
    stage = result["variants"][variant]
    assert stage["full_precision"]["perplexity"] == pytest.approx(
        _hand_perplexity(model, data.x_test, data.y_test), rel=1e-6
    )  # float32 logits
    calib = data.x_train[:16].t()
    for bits in (2, 4):
        rc = ReconstructionConfig(
            method="tesseraq", thresholds=(0.5, 0.0), steps=2, batch_size=8, seed=cfg.seed
        )
        q = post_training_quantize(model, WeightQuantSpec(bits, 32), "tesseraq", calib, rc, batch_dim=1).model
        run_ = next(r for r in stage["runs"] if r["method"] == "tesseraq" and r["bits"] == bits)
        expected = _hand_perplexity(q, data.x_test, data.y_test)
        assert run_["metrics"]["perplexity"] == pytest.approx(expected, rel=1e-6)  # float32 logits
        assert run_["metrics"]["bits_per_char"] == pytest.approx(
            math.log2(expected), rel=1e-6
        )  # float32 logits
        # blocks.0 and the head hold weight layers; the embedding holds none
        assert len(run_["block_mse"]) == 2


def test_lm_ptq_rtn_perplexity_equals_the_model_quantised_with_torch_fake_quantiser(lm_ptq_run):
    cfg, ctx = lm_ptq_run
    stage = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]["variants"]
    (variant,) = stage
    for bits in (2, 4):
        q = copy.deepcopy(ctx.models[variant])
        with torch.no_grad():
            for m in q.modules():
                if isinstance(m, nn.Linear):
                    fan_in = m.weight.shape[1]
                    group = 32 if fan_in > 32 and fan_in % 32 == 0 else fan_in
                    m.weight.copy_(group_rtn(m.weight, bits, group))
        rtn = next(r for r in stage[variant]["runs"] if r["method"] == "rtn" and r["bits"] == bits)
        assert rtn["metrics"]["perplexity"] == pytest.approx(
            _hand_perplexity(q, ctx.data.x_test, ctx.data.y_test), rel=1e-6
        )  # float32 logits


def test_lm_ptq_refuses_matmulfree_in_one_line_before_training(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    base = [
        f"output_dir={tmp_path}", "task=lm", "data.name=text", f"data.root={corpus}", "data.context=8",
        "model.kwargs={d_model: 8, layers: 1}", "train.epochs=1", "ptq.bits=[4]", "ptq.methods=[rtn]",
    ]  # fmt: skip
    with pytest.raises(SpikecimError, match="ternary already") as err:
        load_config(None, [*base, "model.name=matmulfree-tiny", "stages=[train, ptq]"])
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [corpus]  # refused when the config is read: nothing trained

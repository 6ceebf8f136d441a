"""`spikecim run --model vit-tiny`: the whole pipeline on a one-encoder transformer (tiny),
both variants, with the attention products in the traced Workload as dynamic matmuls."""

import json

from spikecim.cli.main import main
from spikecim.trace import Workload

TINY = [
    "--model", "vit-tiny", "--epochs", "1",
    "--set", "data.limit=64",
    "--set", "model.kwargs={width: 0.25, depth: 1}",
    "--set", "analog.n_seeds=1",
    "--set", "analog.drift_times_s=[1.0]",
    "--set", "analog.adc_bits_sweep=[6]",
    "--set", "analog.max_samples=32",
    "--set", "analog.hwa=false",
    "--set", "analog.bn_finetune=false",
]  # fmt: skip


def test_vit_tiny_runs_every_stage_and_traces_attention_products_as_dynamic_matmuls(tmp_path, capsys):
    assert main(["run", "--set", f"output_dir={tmp_path}", "--name", "vit", *TINY]) == 0
    run = tmp_path / "vit"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"train", "evaluate", "trace", "analog", "hardware", "report"}
    for v in ("snn", "ann"):
        assert metrics["analog"]["variants"][v]["analog"]["mean"] is not None
        assert metrics["hardware"]["variants"][v]
    assert (run / "report.html").is_file()

    # width 0.25: D = 4 heads x 4; 8x8 digits in 2x2 patches: 16 tokens (mean pooling, no class token)
    heads, d, tokens = 4, 4, 16
    for path, bits in ((run / "workload.json", 1), (run / "workload_ann.json", 8)):
        w = Workload.load(path)
        mm = {l.name.rsplit(".", 1)[-1]: l for l in w.layers if l.kind == "matmul"}
        assert sorted(mm) == ["av", "qk"]
        qk, av = mm["qk"], mm["av"]
        assert (qk.batch, qk.m, qk.k, qk.n) == (heads, tokens, d, tokens)  # Q [N, d] · Kᵀ [d, N]
        assert (av.batch, av.m, av.k, av.n) == (heads, tokens, tokens, d)  # A [N, N] · V [N, d]
        assert qk.macs == heads * tokens * d * tokens
        # the spiking form's K and V are spikes (1 bit); the ViT's are real (8-bit inputs)
        for op in (qk, av):
            assert op.operands["b"].kind == "dynamic" and op.operands["b"].bits == bits
    capsys.readouterr()

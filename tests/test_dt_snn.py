"""Dynamic timesteps (DT-SNN, Li et al., DAC 2023): exits, tracing over running samples, costs."""

import json
import math

import pytest
import torch

from spikecim.cli.main import main
from spikecim.config import add_method_variants, load_config
from spikecim.errors import SpikecimError
from spikecim.hw import estimate
from spikecim.methods import apply_methods
from spikecim.models import create_model
from spikecim.nn import DynamicTimesteps
from spikecim.nn.dynamic import exit_steps, normalised_entropy, running_mean
from spikecim.trace import Workload, trace
from spikecim.train import evaluate
from spikecim.variants import MethodConfig

T = 4


def _mlp(seed: int = 0):
    torch.manual_seed(seed)
    return create_model(
        "mlp", spiking=True, num_classes=10, in_channels=1, input_size=8, hidden=(32, 16)
    ).eval()


def _x(batch: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 8, 8, generator=g) * 4


def _hand_entropy(f: list[float]) -> float:
    e = [math.exp(v) for v in f]
    p = [v / sum(e) for v in e]
    return -sum(q * math.log(q) for q in p) / math.log(len(f))


# ---- the exit rules --------------------------------------------------------------------------


def test_entropy_rule_at_threshold_zero_runs_every_step_and_equals_the_static_snn():
    model = _mlp()
    dt = DynamicTimesteps(model, "entropy", 0.0).eval()
    x = _x().unsqueeze(0).repeat(T, 1, 1, 1, 1)
    out, steps = dt.forward_with_exits(x)
    assert steps.tolist() == [T] * 16
    assert torch.equal(out, model(x))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(2))
    static, dynamic = evaluate(model, _x(), y, T), evaluate(dt, _x(), y, T)
    assert dynamic["accuracy"] == static["accuracy"]
    assert dynamic["average_steps"] == T and dynamic["running_per_step"] == [1.0] * T


def test_normalised_entropy_of_the_running_mean_matches_a_hand_computation():
    h = [  # [T = 3][B = 2][K = 3] per-step logits
        [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]],
        [[4.0, 1.0, -1.0], [9.0, 0.0, 0.0]],
    ]
    logits = torch.tensor(h, dtype=torch.float64)
    got = normalised_entropy(running_mean(logits))
    for b in range(2):
        sums = [0.0, 0.0, 0.0]
        for t in range(3):
            sums = [s + v for s, v in zip(sums, h[t][b])]
            f = [s / (t + 1) for s in sums]  # the mean of the per-step logits so far
            assert float(got[t, b]) == pytest.approx(_hand_entropy(f), abs=1e-12)
    # sample 0: H = 0.607, 0.888, 0.612; sample 1: H = 1, 0.757 (f = [1.5, 0, 0]), 0.162 (f = [4, 0, 0])
    for theta, want in ((0.65, [1, 3]), (0.8, [1, 2]), (0.5, [3, 3]), (0.0, [3, 3])):
        assert exit_steps(logits, "entropy", theta).tolist() == want, theta


def test_confidence_rule_stops_at_the_first_step_whose_top_probability_reaches_the_threshold():
    ln9, ln19 = math.log(9.0), math.log(19.0)
    h = torch.tensor(
        [  # [T = 3][B = 3][K = 2]
            [[0.0, 0.0], [ln19, 0.0], [0.0, 0.0]],
            [[2 * ln9, 0.0], [0.0, 0.0], [0.0, 0.0]],
            [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
        ],
        dtype=torch.float64,
    )
    # top probability of the running mean: sample 0: 0.5 then e^ln9/(e^ln9 + 1) = 0.9;
    # sample 1: 19/20 = 0.95 at step 1; sample 2: 0.5 at every step
    assert exit_steps(h, "confidence", 0.85).tolist() == [2, 1, 3]
    assert exit_steps(h, "confidence", 0.92).tolist() == [3, 1, 3]

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return h

    out, _ = DynamicTimesteps(Fixed(), "confidence", 0.85).eval().forward_with_exits(torch.zeros(3, 3))
    # the mean over T of what it returns is each sample's output at its exit step
    assert out.mean(0)[0].tolist() == pytest.approx([ln9, 0.0])
    assert out.mean(0)[1].tolist() == pytest.approx([ln19, 0.0])
    assert out.mean(0)[2].tolist() == pytest.approx([0.0, 0.0])


def test_confidence_rule_without_a_threshold_waits_for_a_top_probability_of_0_9():
    """SEENN's default. The entropy rule's 0.1 would stop every sample at its first step: a
    top probability over K classes is at least 1/K."""
    k = 10
    a, c = math.log(0.8 * (k - 1) / 0.2), math.log(0.95 * (k - 1) / 0.05)
    h = torch.zeros(3, 1, k, dtype=torch.float64)
    h[0, 0, 0] = h[1, 0, 0] = a  # the running mean's top probability: 0.8, 0.8, then 0.95
    h[2, 0, 0] = 3 * c - 2 * a  # by hand: softmax of (c, 0, ..., 0) has top probability 0.95
    model = apply_methods(_mlp(), [MethodConfig(name="dt-snn", rule="confidence")])
    assert model.threshold == 0.9

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return h

    assert DynamicTimesteps(Fixed(), "confidence").eval().forward_with_exits(
        torch.zeros(3, 1)
    ).steps.tolist() == [3]
    assert DynamicTimesteps(Fixed(), "entropy").threshold == 0.1


def test_dt_snn_method_wraps_the_model_and_trains_at_every_step_unless_the_variant_says_otherwise():
    model = apply_methods(_mlp(), [MethodConfig(name="dt-snn", rule="confidence", threshold=0.9)])
    assert isinstance(model, DynamicTimesteps) and (model.rule, model.threshold) == ("confidence", 0.9)
    with pytest.raises(
        SpikecimError, match=r"methods.dt-snn: unknown option 'theta', allowed: rule, threshold"
    ):
        apply_methods(_mlp(), [MethodConfig(name="dt-snn", theta=0.1)])
    with pytest.raises(SpikecimError, match=r"dt-snn.threshold: must be a number in \[0, 1\], got 2"):
        apply_methods(_mlp(), [MethodConfig(name="dt-snn", threshold=2)])
    variants = "[{name: snn}, {name: dt, methods: [dt-snn]}, {name: dt-mean, methods: [dt-snn], train: {loss: mean}}]"
    cfg = load_config(None, [f"variants={variants}"])
    assert [cfg.train_for(v).loss for v in cfg.variants] == ["mean", "per_step", "mean"]


def test_method_flag_adds_a_variant_named_after_the_method_from_the_first_spiking_one():
    cfg = load_config(None, ["variants=[{name: ann, spiking: false}, {name: s2, timesteps: 2}]"])
    cfg = add_method_variants(cfg, ["dt-snn:threshold=0.2,rule=confidence", "dt-snn"])
    added = [v.model_dump() for v in cfg.variants[2:]]
    assert [v["name"] for v in added] == ["dt-snn", "dt-snn-2"]
    assert added[0]["timesteps"] == 2 and added[0]["spiking"] is True
    assert added[0]["methods"] == [{"name": "dt-snn", "threshold": 0.2, "rule": "confidence"}]
    with pytest.raises(SpikecimError, match=r"unknown method 'nope', allowed: dt-snn"):
        add_method_variants(cfg, ["nope:x=1"])


# ---- tracing counts only the samples still running -------------------------------------------


def test_traced_activity_is_the_mean_over_the_samples_still_running_at_each_step():
    model = _mlp()
    x = _x(12).unsqueeze(0).repeat(T, 1, 1, 1, 1)
    with torch.no_grad():
        h1 = normalised_entropy(model(x)[0])  # entropy after step 1
    theta = float(h1.median())  # about half stop after step 1
    dt = DynamicTimesteps(model, "entropy", theta).eval()
    steps = dt.forward_with_exits(x).steps.tolist()
    assert len(set(steps)) > 1  # the check below needs samples that stop at different steps
    w = trace(dt, [x])
    # brute force: each sample alone, run statically for exactly the steps it ran
    alone = [trace(model, [x[:e, b : b + 1]]) for b, e in enumerate(steps)]
    for t in range(T):
        ran = [b for b, e in enumerate(steps) if e > t]
        assert w.running_per_step[t] == pytest.approx(len(ran) / len(steps))
        for i, layer in enumerate(w.layers):
            want = sum(alone[b].layers[i].in_nonzero_per_step[t] for b in ran) / len(ran) if ran else 0.0
            assert layer.in_nonzero_per_step[t] == pytest.approx(want), (layer.name, t)
            want = sum(alone[b].layers[i].acs_per_step[t] for b in ran) / len(ran) if ran else 0.0
            assert layer.acs_per_step[t] == pytest.approx(want), (layer.name, t)
    assert w.exit_test.rule == "entropy" and w.exit_test.classes == 10
    # per sample, the expected work is the sum over the steps each one ran
    total = sum(sum(a.layers[0].acs_per_step) for a in alone) / len(steps)
    assert w.metrics()["effective_acs"] >= total  # every layer's, so at least the first's
    first = sum(w.running(t) * w.layers[0].acs_per_step[t] for t in range(T))
    assert first == pytest.approx(total)


def test_traced_accumulates_on_nonzero_weights_are_the_mean_over_the_samples_still_running():
    model = _mlp()
    with torch.no_grad():  # magnitude pruning by hand: the smaller half of every weight is zeroed
        for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
            layer.weight.mul_(layer.weight.abs() >= layer.weight.abs().median())
    x = _x(12).unsqueeze(0).repeat(T, 1, 1, 1, 1)
    with torch.no_grad():
        theta = float(normalised_entropy(model(x)[0]).median())
    dt = DynamicTimesteps(model, "entropy", theta).eval()
    steps = dt.forward_with_exits(x).steps.tolist()
    assert len(set(steps)) > 1
    w = trace(dt, [x])
    alone = [trace(model, [x[:e, b : b + 1]]) for b, e in enumerate(steps)]
    for t in range(T):
        ran = [b for b, e in enumerate(steps) if e > t]
        for i, layer in enumerate(w.layers):
            want = (
                sum(alone[b].layers[i].acs_nonzero_weights_per_step[t] for b in ran) / len(ran)
                if ran
                else 0.0
            )
            assert layer.acs_nonzero_weights_per_step[t] == pytest.approx(want), (layer.name, t)
    assert any(sum(a.acs_nonzero_weights_per_step) < sum(a.acs_per_step) for a in w.layers)


# ---- costs: per-step survival and the exit unit, by hand ---------------------------------------

RUNNING = [1.0, 0.5, 0.25]
NNZ2 = [3.0, 2.0, 1.0]  # non-zero spikes into the second layer, per running sample
ACS2 = [6.0, 4.0, 2.0]  # their accumulates (2 outputs each)


def _two_layers(running=RUNNING, exit_test=True) -> Workload:
    def layer(name, n_in, n_out, spiking_input, nnz, acs, neuron):
        return {
            "kind": "linear", "name": name, "in_ch": n_in, "out_ch": n_out, "timesteps": 3,
            "input_bits": 1 if spiking_input else 8, "spiking_input": spiking_input, "has_neuron": neuron,
            "neuron_kind": "LIF" if neuron else None, "operands": {"weight": {"kind": "static", "bits": 32}},
            "in_nonzero_per_step": nnz, "acs_per_step": acs,
        }  # fmt: skip

    return Workload(
        timesteps=3,
        running_per_step=running,
        exit_test={"rule": "entropy", "threshold": 0.1, "classes": 2} if exit_test else None,
        layers=[
            layer("fc1", 4, 3, False, [4.0] * 3, [12.0] * 3, True),
            layer("fc2", 3, 2, True, NNZ2, ACS2, False),
        ],
    )


# exit unit (hw/tables/units/exit-unit-45nm.yaml): one entropy test over K = 2 classes is
# 4K-1 = 7 add, 2K = 4 mult, K = 2 compare, 2 exp, 1 log, 1 div
E_TEST_PJ = 7 * 0.9 + 4 * 3.7 + 2 * 0.9 + 2 * 18.4 + 18.4 + 20.3
CYCLES_TEST = 7 + 4 + 2 + 2 * 8 + 8 + 7
TESTS = RUNNING[0] + RUNNING[1]  # after every step a sample runs but the last


def test_naive_energy_with_survival_is_the_hand_sum_over_steps_plus_the_exit_tests():
    r = estimate(_two_layers(), "naive-45nm")
    # naive-45nm: e_mac 4.6 pJ (fc1, real-valued input, 12 MACs), e_ac 0.9 pJ (fc2, spikes)
    per_step = [RUNNING[t] * (12 * 4.6 + ACS2[t] * 0.9) for t in range(3)]
    assert r.energy_pj == pytest.approx(sum(per_step) + TESTS * E_TEST_PJ)
    exit_row = r.layers[-1]
    assert exit_row.name == "exit-test" and exit_row.energy_pj == {
        "exit_unit": pytest.approx(TESTS * E_TEST_PJ)
    }
    assert r.latency_ns == 0.0  # naive models no latency, so the unit's is not added either
    static = estimate(_two_layers([1.0] * 3, exit_test=False), "naive-45nm")
    assert static.energy_pj == pytest.approx(3 * 12 * 4.6 + sum(ACS2) * 0.9)


def test_imc_crossbar_energy_and_exit_latency_follow_the_running_fraction():
    r = estimate(_two_layers(), "imc-rram-65nm")
    fc2 = r.layers[1]
    # imc-rram-65nm: 1-bit cells, weights stored at 8 bits = 8 columns each, so 2·8 = 16 columns;
    # one MVM per step, the active rows (NNZ2[t] of 3) read all 16 columns at 4.3072e-4 pJ a cell
    assert fc2.energy_pj["crossbar"] == pytest.approx(
        sum(RUNNING[t] * NNZ2[t] * 16 * 4.3072e-4 for t in range(3))
    )
    # the exit unit runs one operation per cycle at 250 MHz (4 ns)
    assert r.layers[-1].latency_ns == pytest.approx(TESTS * CYCLES_TEST * 4.0)


# ---- a run ----------------------------------------------------------------------------------------


def test_run_with_the_method_flag_evaluates_traces_costs_and_sweeps_the_dt_variant(tmp_path, capsys):
    args = [
        "run", "--set", f"output_dir={tmp_path}", "--name", "dt", "--epochs", "1",
        "--set", "data.limit=128", "--set", "model.name=mlp",
        "--set", "hardware.archs=[naive-45nm, imc-rram-65nm]",
        "--stages", "train,evaluate,trace,hardware,dt-sweep,report",
        "--method", "dt-snn:threshold=0.1",
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "dt"
    metrics = json.loads((run / "metrics.json").read_text())
    ev = metrics["evaluate"]["dt-snn"]
    # E[steps] = Σ_t P(a sample runs step t)
    assert ev["average_steps"] == pytest.approx(sum(ev["running_per_step"]))
    assert 1.0 <= ev["average_steps"] <= T and len(ev["exit_steps"]) == ev["samples"] == 450
    w = Workload.load(run / "workload_dt-snn.json")
    # the trace sees the same 450 test samples: the same exits as the evaluation
    assert w.running_per_step == pytest.approx(ev["running_per_step"])
    cost = json.loads((run / "hardware" / "dt-snn_imc-rram-65nm.json").read_text())
    exit_row = next(x for x in cost["layers"] if x["name"] == "exit-test")
    k = 10  # one entropy test over 10 classes: 39 add, 20 mult, 10 compare, 10 exp, 1 log, 1 div
    e_test = 39 * 0.9 + 20 * 3.7 + 10 * 0.9 + 10 * 18.4 + 18.4 + 20.3
    assert w.exit_test.classes == k
    assert exit_row["energy_pj"]["exit_unit"] == pytest.approx(sum(w.running_per_step[:-1]) * e_test)
    sweep = metrics["dt-sweep"]["variants"]["dt-snn"]
    zero = next(p for p in sweep["points"] if p["threshold"] == 0.0)
    assert zero["average_steps"] == T and zero["accuracy"] == sweep["static"]["accuracy"]
    own = next(p for p in sweep["points"] if p["threshold"] == 0.1)
    assert own["accuracy"] == ev["accuracy"] and own["average_steps"] == ev["average_steps"]
    assert sweep["reference"]["variant"] == "snn"
    assert (run / "plots" / "dt_snn.png").is_file()
    assert "Dynamic timesteps (DT-SNN)" in (run / "report.html").read_text()


def test_per_step_loss_is_the_cross_entropy_term_of_tet_as_its_authors_code_sums_it():
    # TET (Deng et al., ICLR 2022) as SEENN's utils.TET_loss computes it with lamb = 0: a loop
    # over t of the batch-mean cross-entropy of step t's outputs, divided by T.
    from spikecim.train import classification_loss

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(T, 6, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=g)
    tet = sum(torch.nn.functional.cross_entropy(logits[t], y) for t in range(T)) / T
    assert float(classification_loss(logits, y, "per_step")) == pytest.approx(float(tet), rel=1e-12)
    rate = torch.nn.functional.cross_entropy(logits.sum(0) / T, y)
    assert float(classification_loss(logits, y, "mean")) == pytest.approx(float(rate), rel=1e-12)
    assert float(classification_loss(logits, y, "per_step")) != pytest.approx(float(rate), rel=1e-3)

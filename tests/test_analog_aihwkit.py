"""The ``pcm-aihwkit`` preset against aihwkit 1.1's pure-torch inference tile (docs/references.md#pcm).

Same layer (32 inputs × 512 outputs, one tile, max|W| = 1), same inputs; the output error
y − x·Wᵀ over 6 programmings is compared in standard deviation and mean absolute value.
With 32 inputs no output reaches the ADC bound (±12), so aihwkit's iterative bound
management (which halves the input scale of the whole batch when any output clips) stays
idle; spikecim clips instead and has no batch-wide retry.
"""

import pytest
import torch

from spikecim.analog import drift, program, to_analog

aihwkit_configs = pytest.importorskip(
    "aihwkit.simulator.configs", reason="aihwkit 1.1 (its TorchInferenceRPUConfig tile) is not installed"
)
aihwkit_nn = pytest.importorskip("aihwkit.nn", reason="aihwkit.nn does not import with this torch")

N_PROGRAMMINGS = 6


def _layer_and_inputs():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(512, 32, generator=g) * 2 - 1
    w[0, 0] = 1.0
    x = torch.rand(1000, 32, generator=g) * 2 - 1
    return w, x


def _spikecim_errors(w, x, t_s):
    lin = torch.nn.Linear(32, 512, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    am = to_analog(lin, "pcm-aihwkit")
    errs = []
    for s in range(N_PROGRAMMINGS):
        program(am, s)
        drift(am, t_s)
        torch.manual_seed(1000 + s)
        with torch.no_grad():
            errs.append(am(x) - x @ w.T)
    return torch.stack(errs)


def _aihwkit_errors(w, x, t_s):
    layer = aihwkit_nn.AnalogLinear(32, 512, bias=False, rpu_config=aihwkit_configs.TorchInferenceRPUConfig())
    layer.set_weights(w)
    layer.eval()
    errs = []
    for s in range(N_PROGRAMMINGS):
        torch.manual_seed(2000 + s)
        layer.program_analog_weights()
        layer.drift_analog_weights(t_s)
        with torch.no_grad():
            errs.append(layer(x) - x @ w.T)
    return torch.stack(errs)


@pytest.mark.parametrize("t_s", [0.0, 3600.0, 86400.0 * 30])
def test_pcm_aihwkit_preset_output_error_statistics_match_aihwkit_within_5_percent(t_s):
    w, x = _layer_and_inputs()
    ours, theirs = _spikecim_errors(w, x, t_s), _aihwkit_errors(w, x, t_s)
    print(f"t={t_s:g}s error std spikecim {ours.std():.4f} aihwkit {theirs.std():.4f}")
    assert float(ours.std()) == pytest.approx(float(theirs.std()), rel=0.05)
    assert float(ours.abs().mean()) == pytest.approx(float(theirs.abs().mean()), rel=0.05)

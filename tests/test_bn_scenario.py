"""BatchNorm fine-tuning on the crossbar where the crossbar costs accuracy, and what each
mitigation costs (trained parameters, calibration samples, seconds) in the analog result."""

import json

import torch
from torch import nn

from spikecim.analog import bn_finetune, to_analog
from spikecim.analog.convert import drift, program
from spikecim.analog.evaluate import accuracy
from spikecim.analog.mitigation import bn_parameters, bn_running_stats
from spikecim.config import RunConfig
from spikecim.models import create_model
from spikecim.pipeline.results import AnalogResult, result_json
from spikecim.pipeline.stages import RunContext, get_stage
from spikecim.train.seeding import seeded
from test_analog_stage import tiny_dataset, trained_mlp

# A year of RRAM relaxation with ν = 0.1 and no drift compensation: every conductance loses
# a factor (3.15e7 / 1 s)^-0.1 ≈ 0.18, a gain error the BatchNorm statistics no longer match.
_DRIFTING = {"device": {"name": "rram", "drift_nu": 0.1}, "drift_compensation": {"enabled": False}}
_YEAR_S = 3.15e7


def test_bn_finetune_trains_two_affine_parameters_per_convnet_batchnorm_channel():
    model = create_model("convnet", spiking=True, num_classes=10)
    # convnet: conv(1→32)-BN(32), conv(32→64)-BN(64); γ and β per channel
    assert sum(p.numel() for p in bn_parameters(model)) == 2 * 32 + 2 * 64
    # running mean and variance per channel, re-estimated, not trained
    assert bn_running_stats(model) == 2 * 32 + 2 * 64


def test_bn_finetune_recovers_accuracy_lost_to_uncompensated_drift():
    data = tiny_dataset(256, 200)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.x_train), data.y_train).backward()
        opt.step()
    model.eval()
    assert accuracy(model, data.x_test, data.y_test, None) == 1.0
    am = drift(program(to_analog(model, _DRIFTING), 0), _YEAR_S)
    with seeded(0):
        before = accuracy(am, data.x_test, data.y_test, None)
        bn_finetune(am, data.x_train[:64], data.y_train[:64], 3, 1e-2, None, seed=0)
        after = accuracy(am, data.x_test, data.y_test, None)
    assert before <= 0.75  # the drift costs at least a quarter of the test set
    assert after >= before + 0.2


def _stage(tmp_path, models, data, **analog):
    cfg = RunConfig(
        data={"timesteps": 2},
        analog={
            "preset": "rram-65nm",
            "overrides": _DRIFTING,
            "t_inference_s": _YEAR_S,
            "n_seeds": 2,
            "drift_times_s": [],
            "adc_bits_sweep": [],
            "hwa_epochs": 1,
            "bn_epochs": 1,
            **analog,
        },
    )
    ctx = RunContext(config=cfg, run_dir=tmp_path, data=data, models=models)
    return get_stage("analog").fn(ctx)


def test_analog_stage_reports_mitigation_costs_and_round_trips_metrics_json(tmp_path):
    data = tiny_dataset()
    torch.manual_seed(0)
    convnet = create_model("convnet", spiking=False, num_classes=2, width=0.25)
    models = {"ann": convnet, "snn": trained_mlp(True, data, 2)}
    result = _stage(tmp_path, models, data, calibration_samples=24)
    bn = result.variants["ann"].bn_finetune
    # width 0.25: BN(8) and BN(16), 2 affine parameters and 2 running statistics per channel
    assert bn.trained_params == 2 * 8 + 2 * 16 and bn.running_stats == 2 * 8 + 2 * 16
    assert bn.calibration_samples == 24 and bn.epochs == 1
    assert len(bn.accuracies) == 2 and bn.seconds > 0
    hwa = result.variants["ann"].hwa
    assert hwa.trained_params == sum(p.numel() for p in convnet.parameters())
    assert hwa.train_samples == len(data.x_train) and hwa.seconds > 0
    assert result.variants["snn"].bn_finetune is None  # no BatchNorm: nothing to fine-tune
    text = json.dumps(result_json(result), allow_nan=False)  # metrics.json is strict JSON
    assert AnalogResult.model_validate(json.loads(text)) == result
    rows = dict(result.summary_rows())
    assert "bn_finetune" in rows["ann"] and "24 samples" in rows["ann"]


def test_bn_calibration_samples_are_capped_by_the_training_set(tmp_path):
    data = tiny_dataset(n_train=40)
    torch.manual_seed(0)
    models = {"ann": create_model("convnet", spiking=False, num_classes=2, width=0.25)}
    result = _stage(tmp_path, models, data, calibration_samples=256, hwa=False)
    assert result.variants["ann"].bn_finetune.calibration_samples == 40

"""ADC range calibration: the percentile its observer takes equals numpy's (linear interpolation)."""

import numpy as np
import pytest
import torch
from torch import nn

from spikecim.analog import calibrate_adc, to_analog
from spikecim.errors import SpikecimError
from spikecim.quant.observers import percentile as _percentile


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 100_001])
@pytest.mark.parametrize("pct", [0.0, 50.0, 99.9, 99.99, 100.0])
def test_percentile_by_selection_equals_numpy_percentile(n, pct):
    vals = np.random.default_rng(n).random(n).astype(np.float32)
    expected = float(np.percentile(vals.astype(np.float64), pct))
    assert _percentile(vals.copy(), pct) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_calibration_on_non_finite_outputs_is_refused_not_set_to_one(value):
    """Before: a NaN or inf percentile failed ``bound > 0`` and the ADC silently took the
    all-zero fallback range of 1.0."""
    am = to_analog(nn.Linear(8, 4), {"adc": {"enabled": True, "range": "calibrated"}})
    with pytest.raises(SpikecimError) as e:
        calibrate_adc(am, [torch.full((2, 8), value)])
    assert str(e.value) == (
        "calibrate_adc: the column outputs on the calibration inputs are not finite (NaN or inf); "
        "check the calibration inputs"
    )


@pytest.mark.parametrize("batches", [[], [torch.zeros(0, 8)]], ids=["no-batch", "empty-batch"])
def test_calibration_without_inputs_is_a_one_line_error(batches):
    am = to_analog(nn.Linear(8, 4), {"adc": {"enabled": True, "range": "calibrated"}})
    with pytest.raises(SpikecimError) as e:
        calibrate_adc(am, batches)
    assert str(e.value) == "calibrate_adc: no calibration inputs (the batches are empty)"

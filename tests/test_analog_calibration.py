"""ADC range calibration: the percentile its observer takes equals numpy's (linear interpolation)."""

import numpy as np
import pytest

from spikecim.quant.observers import percentile as _percentile


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 100_001])
@pytest.mark.parametrize("pct", [0.0, 50.0, 99.9, 99.99, 100.0])
def test_percentile_by_selection_equals_numpy_percentile(n, pct):
    vals = np.random.default_rng(n).random(n).astype(np.float32)
    expected = float(np.percentile(vals.astype(np.float64), pct))
    assert _percentile(vals.copy(), pct) == expected

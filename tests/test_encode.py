"""Spike encoders checked against hand counts and binomial bounds."""

import math

import pytest
import torch

from spikecim.data import encode
from spikecim.data.encode import get_encoder
from spikecim.errors import SpikecimError


def test_direct_repeats_the_input_exactly_at_every_step():
    x = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    out = encode.direct(x, 3)
    assert out.shape == (3, 2, 2)
    for t in range(3):
        assert out[t].tolist() == [[0.0, 0.25], [0.5, 1.0]]


def test_rate_is_reproducible_for_a_seed_and_differs_across_seeds():
    x = torch.full((4, 16), 0.5)
    a = encode.rate(x, 20, torch.Generator().manual_seed(7))
    b = encode.rate(x, 20, torch.Generator().manual_seed(7))
    c = encode.rate(x, 20, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_rate_mean_over_many_steps_is_within_binomial_bound():
    probs = [0.0, 0.1, 0.5, 0.9, 1.0]
    steps = 4000
    x = torch.tensor([probs, probs[::-1]])
    mean = encode.rate(x, steps, torch.Generator().manual_seed(0)).mean(0)
    for i, row in enumerate(x.tolist()):
        for j, p in enumerate(row):
            bound = 5 * math.sqrt(p * (1 - p) / steps)  # 5 standard deviations of a Binomial(T, p) / T
            assert abs(mean[i, j].item() - p) <= bound + 1e-12


@pytest.mark.parametrize(
    "value, step",
    [(1.0, 0), (0.75, 1), (0.5, 2), (0.25, 3), (0.1, 4)],  # round((1 - x) * 4) with T = 5, by hand
)
def test_latency_first_spike_step_matches_hand_computation(value, step):
    out = encode.latency(torch.tensor([value]), 5)
    assert out[:, 0].tolist() == [1.0 if t == step else 0.0 for t in range(5)]


def test_latency_zero_never_fires_and_positive_inputs_fire_exactly_once():
    x = torch.tensor([[0.0, 0.01, 0.3], [0.6, 0.99, 0.0]])
    counts = encode.latency(x, 8).sum(0)
    assert counts.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


def test_get_encoder_returns_each_static_encoder_by_name():
    assert get_encoder("direct") is encode.direct
    assert get_encoder("rate") is encode.rate
    assert get_encoder("latency") is encode.latency


def test_get_encoder_unknown_name_lists_allowed_ones():
    with pytest.raises(SpikecimError, match=r"^data.encoder: 'poisson' .* allowed: direct, rate, latency$"):
        get_encoder("poisson")


def test_get_encoder_refuses_frames_for_static_images_and_rate_for_frames():
    with pytest.raises(SpikecimError, match=r"allowed: direct, rate, latency"):
        get_encoder("frames")
    with pytest.raises(SpikecimError, match=r"'rate' .* frames data set .* allowed: frames, direct"):
        get_encoder("rate", frames=True)
    assert get_encoder("frames", frames=True) is encode.frames
    assert get_encoder("direct", frames=True) is encode.frames


def test_frames_encoder_transposes_batch_and_time():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # [B=2, T=3, F=4]
    out = encode.frames(x, 3)
    assert out.shape == (3, 2, 4)
    assert out[2, 1].tolist() == [20.0, 21.0, 22.0, 23.0]  # x[b=1, t=2] starts at 1*12 + 2*4


@pytest.mark.parametrize("name", ["direct", "rate", "latency", "frames"])
@pytest.mark.parametrize("steps", [0, -1, 2.0, True])
def test_each_encoder_refuses_a_step_count_that_is_not_a_positive_integer(name, steps):
    # expand(-1, ...) would keep the size 1: one step instead of an error.
    x = torch.zeros(2, 3, 4)
    with pytest.raises(SpikecimError) as e:
        encode.ENCODERS[name](x, steps)
    assert str(e.value) == f"data.timesteps: must be a positive integer, got {steps!r}"

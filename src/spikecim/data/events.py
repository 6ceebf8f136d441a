"""ATIS address-event files (N-MNIST, N-Caltech101) and their binning into spike frames.

Format (Orchard et al., "Converting Static Image Datasets to Spiking Neuromorphic Datasets
Using Saccades", Front. Neurosci. 9:437, 2015; the data set's ``Read_Ndataset.m``): every
event is 40 bits = 5 bytes::

    byte 0: x (8 bits)   byte 1: y (8 bits)
    byte 2: polarity (bit 7) and timestamp bits 22..16   bytes 3, 4: timestamp bits 15..0

Timestamps are in microseconds. An event with ``y == 240`` is not a pixel event but a
timestamp-overflow marker: it and every later event get 2**13 µs added, and it is dropped.

Binning: a sample's events span ``[t0, t1]`` (its earliest and latest timestamp); the event at
time ``t`` falls in frame ``floor((t - t0) * T / (t1 - t0 + 1))`` of ``T``. The frame holds
1 at ``[polarity, y, x]`` when at least one event of that polarity hit pixel (x, y) in that
time bin, else 0 (channel 0 = OFF, 1 = ON).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from spikecim.data._files import read_bytes
from spikecim.errors import SpikecimError

__all__ = ["Events", "events_to_frames", "read_atis_events"]

_OVERFLOW_Y = 240
_OVERFLOW_US = 2**13


class Events(NamedTuple):
    """One sample's events, each field a 1-D array of the same length."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t_us: np.ndarray


def read_atis_events(path: Path) -> Events:
    """Decode one ``.bin`` file of 40-bit events; a partial event is a one-line error."""
    buf = read_bytes(path)
    if len(buf) % 5:
        raise SpikecimError(
            f"data: {path} holds {len(buf)} bytes, not a whole number of 5-byte events; it is truncated"
        )
    raw = np.frombuffer(buf, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == _OVERFLOW_Y
    t = t + _OVERFLOW_US * np.cumsum(overflow)
    keep = ~overflow
    return Events(x[keep], y[keep], p[keep], t[keep])


def events_to_frames(
    events: Events, steps: int, height: int, width: int, source: Path | str = "events"
) -> np.ndarray:
    """Bin events into ``uint8`` frames ``[steps, 2, height, width]`` holding 0/1 spikes."""
    frames = np.zeros((steps, 2, height, width), dtype=np.uint8)
    if len(events.t_us) == 0:
        return frames
    outside = np.flatnonzero((events.x >= width) | (events.y >= height))
    if len(outside):
        i = outside[0]
        raise SpikecimError(
            f"data: {source} has an event at x={events.x[i]}, y={events.y[i]} (event {i}) outside the "
            f"{width}x{height} sensor"
        )
    t0 = events.t_us.min()
    span = events.t_us.max() - t0 + 1
    step = (events.t_us - t0) * steps // span
    frames[step, events.p, events.y, events.x] = 1
    return frames

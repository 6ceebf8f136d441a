"""Settings of the converters in the hardware-aware training forward (pydantic only, so the
run config reads them without importing torch); the forward itself is
:mod:`spikecim.analog.hwa`.

Each field is one knob of aihwkit-lightning 2.1's ``TorchInferenceRPUConfig``
(``aihwkit_lightning/simulator/parameters/{io,pre_post,mapping,inference}.py``):

| field | aihwkit-lightning | meaning |
| --- | --- | --- |
| ``dac_bits`` | ``forward.inp_res = 2**bits - 2`` | input DAC: 2^(b−1)−1 levels each side of 0 over ±input range |
| ``adc_bits`` | ``forward.out_res = 2**bits - 2`` | output ADC: the same grid over ±output bound (needs ``out_bound``) |
| ``out_bound`` | ``forward.out_bound`` | output bound = out_bound · input range · max\\|W\\| of the tile; outputs clipped to it |
| ``input_range`` | ``pre_post.input_range`` | ``learned`` (one range per tile, initialised from data, inputs clipped to it) or ``abs-max`` (``dynamic``: each input vector's abs-max) |
| ``tile_rows`` | ``mapping.max_input_size`` | inputs per tile; a longer input is split into equal tiles, each with its own range, DAC, ADC and bound, the tiles' outputs summed digitally |
| ``weight_clip_sigma`` | ``clip.type = LAYER_GAUSSIAN``, ``clip.sigma`` | after each optimiser step every programmed weight is clipped to ±σ·std(W) |

Everything is off by default: hardware-aware training then injects weight noise only, as
before these settings existed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spikecim.schema import Schema

__all__ = ["HwaConverters"]


class HwaConverters(Schema):
    dac_bits: int | None = Field(None, ge=2, le=16, description="input DAC bits, 2 to 16 (None: no DAC)")
    adc_bits: int | None = Field(
        None, ge=2, le=16, description="output ADC bits, 2 to 16 (None: no ADC); needs out_bound"
    )
    out_bound: float | None = Field(
        None, gt=0, description="output bound in units of input range x max|W| (None: unbounded)"
    )
    input_range: Literal["learned", "abs-max"] | None = Field(
        None,
        description="range of the inputs: 'learned' or 'abs-max' (per input vector); "
        "None: learned when a DAC or an output bound is on, else none",
    )
    tile_rows: int | None = Field(None, gt=0, description="inputs per tile (None: one tile per layer)")
    weight_clip_sigma: float | None = Field(
        None, gt=0, description="clip weights to ±sigma·std(W) after each step (None: no clipping)"
    )
    range_init: float = Field(3.0, gt=0, description="learned input range before any data")
    range_init_batches: int = Field(100, ge=0, description="batches that initialise the learned range")
    range_init_std: float = Field(
        3.0, gt=0, description="the learned range starts at this many std of the input"
    )
    range_decay: float = Field(
        0.001, ge=0, description="shrinking of the learned range while few inputs clip"
    )
    range_min_unclipped: float = Field(
        0.95, ge=0, le=1, description="the range shrinks while more than this fraction of inputs is inside it"
    )

    @model_validator(mode="after")
    def _needs(self) -> HwaConverters:
        if self.adc_bits is not None and self.out_bound is None:
            raise ValueError("adc_bits needs out_bound (the ADC's full scale, in input range x max|W|)")
        if self.input_range is None and (self.dac_bits is not None or self.out_bound is not None):
            self.input_range = "learned"
        return self

    @property
    def in_forward(self) -> bool:
        """Whether the training forward differs from the digital one (a range, converter or tiles)."""
        return self.input_range is not None or self.tile_rows is not None

"""The accuracy side of in-memory computing: trained networks on simulated crossbars.

``to_analog(model, config)`` maps every Linear/Conv2d onto tiled crossbars described by a
:class:`CrossbarConfig` (a preset name, a YAML file or fields); ``program(model, seed)``
writes them once, ``drift(model, t_s)`` sets the time since programming, every forward is
one read. ``evaluate_analog`` gives Monte-Carlo accuracy over programming seeds;
``hwa_train`` and ``bn_finetune`` mitigate. ``circuit.solve_crossbar`` solves IR drop exactly.
"""

from spikecim.analog.config import CrossbarConfig, list_presets, load_crossbar_config
from spikecim.analog.convert import analog_layers, calibrate_adc, drift, program, to_analog, to_digital
from spikecim.analog.devices import DEVICES, DeviceModel, register_device
from spikecim.analog.evaluate import accuracy, evaluate_analog
from spikecim.analog.layers import AnalogConv2d, AnalogLinear
from spikecim.analog.mitigation import WeightModifier, bn_finetune, hwa_train, modify_weight

__all__ = [
    "DEVICES",
    "AnalogConv2d",
    "AnalogLinear",
    "CrossbarConfig",
    "DeviceModel",
    "WeightModifier",
    "accuracy",
    "analog_layers",
    "bn_finetune",
    "calibrate_adc",
    "drift",
    "evaluate_analog",
    "hwa_train",
    "list_presets",
    "load_crossbar_config",
    "modify_weight",
    "program",
    "register_device",
    "to_analog",
    "to_digital",
]

"""The accuracy side of in-memory computing: trained networks on simulated crossbars.

``to_analog(model, config)`` maps every Linear/Conv2d onto tiled crossbars described by a
:class:`CrossbarConfig` (a preset name, a YAML file or fields); ``program(model, seed)``
writes them once, ``drift(model, t_s)`` sets the time since programming, every forward is
one read. ``evaluate_analog`` gives Monte-Carlo accuracy over programming seeds;
``hwa_train`` and ``bn_finetune`` mitigate. A product of two activations (attention's
``MatMul``) becomes an ``AnalogMatMul`` written at every call when the config's ``dynamic``
section says so (docs/transformers.md). ``circuit.solve_crossbar`` solves IR drop exactly.

The names below are imported on first use, so ``spikecim.analog.stage_config`` (the run
config's ``analog`` section) is read without importing torch.
"""

from spikecim._lazy import lazy_exports

_EXPORTS = {
    "CrossbarConfig": "config",
    "list_presets": "config",
    "load_crossbar_config": "config",
    "analog_layers": "convert",
    "calibrate_adc": "convert",
    "calibrate_operands": "convert",
    "drift": "convert",
    "program": "convert",
    "to_analog": "convert",
    "to_digital": "convert",
    "DEVICES": "devices",
    "DeviceModel": "devices",
    "register_device": "devices",
    "accuracy": "evaluate",
    "evaluate_analog": "evaluate",
    "AnalogMatMul": "dynamic",
    "dynamic_layers": "dynamic",
    "AnalogConv2d": "layers",
    "AnalogLinear": "layers",
    "WeightModifier": "mitigation",
    "bn_finetune": "mitigation",
    "hwa_train": "mitigation",
    "modify_weight": "mitigation",
}
__all__ = list(_EXPORTS)  # the names above, imported on first use

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

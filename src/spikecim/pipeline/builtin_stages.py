"""The stages spikecim ships, in their default order: name, implementation (a module path,
imported only when the stage runs), config section and result type (a path, imported when a
result is read).

Everything imported here is light (pydantic only), so the run config knows its stages and
sections without importing torch.
"""

from __future__ import annotations

from spikecim.analog.stage_config import AnalogStageConfig
from spikecim.hw.stage_config import HardwareStageConfig
from spikecim.pipeline.ptq_config import PtqStageConfig
from spikecim.pipeline.stages import register_stage
from spikecim.report.stage_config import ReportConfig

__all__ = ["DEFAULT_STAGES"]

_CORE = "spikecim.pipeline.core_stages"
_RESULTS = "spikecim.pipeline.results"

register_stage(
    "train",
    f"{_CORE}:train_stage",
    description="train every variant of the run (resumable)",
    result=f"{_RESULTS}:TrainResult",
)
register_stage(
    "evaluate",
    f"{_CORE}:evaluate_stage",
    requires=("train",),
    description="test accuracy and per-layer activity",
    result=f"{_RESULTS}:EvaluateResult",
)
register_stage(
    "trace",
    f"{_CORE}:trace_stage",
    requires=("train",),
    description="record the Workload of each variant",
    result=f"{_RESULTS}:TraceResult",
)
register_stage(
    "ptq",
    "spikecim.pipeline.stage_ptq:ptq_stage",
    requires=("train",),
    description="post-training weight quantisation (RTN, AdaRound-style, TesseraQ) of every variant, scored",
    config=PtqStageConfig,
    result=f"{_RESULTS}:PtqResult",
)
register_stage(
    "analog",
    "spikecim.pipeline.stage_analog:analog_stage",
    requires=("train",),
    description="accuracy (lm: perplexity) on simulated crossbars (Monte-Carlo, drift, ADC bits, mitigation)",
    config=AnalogStageConfig,
    result=f"{_RESULTS}:AnalogResult",
)
register_stage(
    "hardware",
    "spikecim.pipeline.stage_hardware:hardware_stage",
    requires=("trace",),
    description="energy, latency and area on hardware models",
    config=HardwareStageConfig,
    result=f"{_RESULTS}:HardwareResult",
)
register_stage(
    "methods",
    "spikecim.pipeline.stage_methods:methods_stage",
    description="one table and plot of the variants' methods: accuracy, timesteps, footprint, cost",
    result=f"{_RESULTS}:MethodsResult",
)
register_stage(
    "dt-sweep",
    "spikecim.pipeline.dt_stage:dt_sweep_stage",
    requires=("train",),
    description="dynamic timesteps: accuracy, average steps and EDP over a threshold sweep",
    result=f"{_RESULTS}:DtSweepResult",
)
register_stage(
    "report",
    "spikecim.pipeline.stage_report:report_stage",
    description="write report.html and report.md",
    config=ReportConfig,
    result=f"{_RESULTS}:ReportResult",
)

DEFAULT_STAGES = ["train", "evaluate", "trace", "analog", "hardware", "methods", "dt-sweep", "report"]

"""Typed results of the stages of ``spikecim run``: what each stage hands the summary, the
report and ``metrics.json``.

A stage returns one of these; the run loop stores it under the stage's name and writes
``metrics.json`` with ``model_dump(mode="json")``, so the file keeps the JSON shape it always
had. Reading is lenient: every result keeps keys it does not declare (``extra="allow"``) and
every figure may be missing, so a ``metrics.json`` written by an older spikecim still reads
(the older ``hardware`` layout is rewritten into today's by :class:`HardwareResult`).

Each result gives :meth:`summary_rows`: the ``(variant, text)`` rows of the console summary,
in the number formats of :mod:`spikecim.report.fmt`. This module is pydantic only (no torch).
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from spikecim.report.fmt import (
    MISSING,
    count,
    energy,
    energy_unit,
    metric_label,
    metric_spread,
    metric_text,
    pct,
    pct_spread,
    ratio,
)

__all__ = [
    "AnalogEvaluation",
    "AnalogResult",
    "AnalogVariant",
    "ArchCost",
    "BnFinetuneResult",
    "EvaluateResult",
    "EvaluateVariant",
    "HardwareResult",
    "HwaResult",
    "MethodCost",
    "MethodRow",
    "MethodsResult",
    "PtqResult",
    "PtqRun",
    "PtqVariant",
    "ReportResult",
    "SeedAccuracy",
    "StageResult",
    "TraceResult",
    "TraceVariant",
    "TrainResult",
    "TrainVariant",
    "metric_text",
    "result_json",
]


def _num(v: float | None) -> str:
    """A ratio or total with 4 significant digits; ``n/a`` where it is undefined."""
    return "n/a" if v is None else f"{v:.4g}"


def _fig(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4g}"


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]  # an accuracy, a sparsity
Amount = Annotated[float, Field(ge=0.0)]  # an energy, a latency, an area, a count, a ratio of two


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class StageResult(_Lenient):
    """Base of a stage's result (also the result type of a stage registered without one:
    its dict is kept as it is)."""

    def summary_rows(self) -> list[tuple[str, str]]:
        """``(variant, text)`` rows of the console summary; none by default."""
        return []


V = TypeVar("V", bound=BaseModel)


class _PerVariant(RootModel[dict[str, V]], Generic[V]):
    """``{variant: result}`` in the config's order (the JSON shape of train, evaluate, trace)."""

    @property
    def variants(self) -> dict[str, V]:
        return self.root

    def summary_rows(self) -> list[tuple[str, str]]:
        return [(v, r.summary()) for v, r in self.root.items()]


def result_json(result: Any) -> Any:
    """A result as ``metrics.json`` holds it: ``model_dump(mode="json")`` of the fields that
    were set (so an analog variant without HWA has no ``hwa`` key, as before); anything that
    is not a result is returned as it is."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_unset=True)
    return result


# ---- train ----------------------------------------------------------------------------------
class Epoch(_Lenient):
    epoch: int
    loss: float | None = None
    train_acc: Fraction | None = None
    test_acc: Fraction | None = None
    lr: Amount | None = None
    seconds: Amount | None = None
    train_spike_rate: Fraction | None = None  # with train.spike_reg: the mean rate it penalised
    weight_sparsity: Fraction | None = None  # with the prune method: the pruned share of its layers


class TrainVariant(_Lenient):
    history: list[Epoch] = Field(default_factory=list)
    epochs: int | None = None
    test_acc: Fraction | None = None

    def summary(self) -> str:
        pruned = self.history[-1].weight_sparsity if self.history else None
        return f"accuracy {pct(self.test_acc)}" + (f", {pct(pruned)} of weights pruned" if pruned else "")


class TrainResult(_PerVariant[TrainVariant]):
    """``train``: per variant the epoch history, epochs done and the final test accuracy."""


# ---- evaluate -------------------------------------------------------------------------------
class EvaluateVariant(_Lenient):
    accuracy: Fraction | None = None
    samples: int | None = None
    spike_rates: dict[str, float] = Field(default_factory=dict)

    def summary(self) -> str:
        steps = getattr(self, "average_steps", None)  # early exit (DT-SNN)
        bpc = getattr(self, "bits_per_char", None)  # language modelling (task lm)
        if bpc is not None:
            return f"{bpc:.3f} bits/char, perplexity {_perplexity(self.perplexity)}, next-byte accuracy {pct(self.accuracy)}"
        return f"accuracy {pct(self.accuracy)}" + (
            f", {steps:.2f} steps on average" if steps is not None else ""
        )


class EvaluateResult(_PerVariant[EvaluateVariant]):
    """``evaluate``: per variant the test accuracy, samples and mean activity per layer."""


# ---- trace ----------------------------------------------------------------------------------
class TraceVariant(_Lenient):
    """:meth:`~spikecim.trace.Workload.metrics` of one variant's traced workload."""

    dense_macs: Amount | None = None
    effective_acs: Amount | None = None
    effective_acs_on_nonzero_weights: Amount | None = None  # traces before it: None
    activation_sparsity: float | None = None  # 1 − nonzero/inputs: may round a hair below 0
    weight_sparsity: Fraction | None = None  # zero programmed weights / all; traces before it: None
    params: Amount | None = None
    weight_bytes: Amount | None = None
    membrane_bytes: Amount | None = None
    footprint_bytes: Amount | None = None
    footprint_reduction_vs_fp32: float | None = None
    neurons: Amount | None = None

    def summary(self) -> str:
        on_nonzero = self.effective_acs_on_nonzero_weights
        skipped = (
            on_nonzero is not None and self.effective_acs and on_nonzero < self.effective_acs * (1 - 1e-9)
        )
        return (
            f"{_fig(self.dense_macs)} dense MACs, {_fig(self.effective_acs)} effective ACs"
            + (f" ({_fig(on_nonzero)} on non-zero weights)" if skipped else "")
            + f", sparsity {pct(self.activation_sparsity)}"
        )


class TraceResult(_PerVariant[TraceVariant]):
    """``trace``: per variant the totals of its traced workload."""


# ---- analog ---------------------------------------------------------------------------------
class SeedAccuracy(_Lenient):
    """A task metric over programming seeds: mean, sample standard deviation, each seed's
    value (``accuracies``: the name metrics.json has always used; for a language model the
    values are perplexities, see :attr:`AnalogResult.metric`)."""

    mean: float | None = None
    std: float | None = None
    accuracies: list[float] = Field(default_factory=list)
    ideal: float | None = None  # the digital value (after HWA training: of the trained copy)

    def text(self, n_seeds: int | None, metric: str = "accuracy") -> str:
        return metric_spread(metric, self.mean, self.std, n_seeds)


class HwaResult(SeedAccuracy):
    """Accuracy after hardware-aware training of a copy, and its cost: the parameters the
    optimiser updates (every trainable parameter), the training samples per epoch, the
    epochs and the wall time of the training (once; every programming seed reuses it)."""

    trained_params: int | None = None
    train_samples: int | None = None
    epochs: int | None = None
    seconds: float | None = None

    def cost(self) -> str:
        return f"{count(self.trained_params)} params, {_seconds(self.seconds)}"


class BnFinetuneResult(SeedAccuracy):
    """Accuracy after BatchNorm fine-tuning on the programmed crossbar, and its cost: the
    BatchNorm affine parameters trained (γ and β, 2 per channel), the running statistics
    re-estimated on the way (mean and variance, 2 per channel, not trained), the
    calibration samples, the epochs and the wall time of one crossbar's fine-tuning (mean
    over the programming seeds; each programmed crossbar is fine-tuned on its own)."""

    trained_params: int | None = None
    running_stats: int | None = None
    calibration_samples: int | None = None
    epochs: int | None = None
    seconds: float | None = None

    def cost(self) -> str:
        return (
            f"{count(self.trained_params)} params, {count(self.calibration_samples)} samples, "
            f"{_seconds(self.seconds)}"
        )


def _seconds(v: float | None) -> str:
    return MISSING if v is None else f"{v:.3g} s"


class Sweep(_Lenient):
    mean: list[float] = Field(default_factory=list)
    std: list[float] = Field(default_factory=list)


class DriftSweep(Sweep):
    t_s: list[float] = Field(default_factory=list)


class AdcSweep(Sweep):
    bits: list[int] = Field(default_factory=list)


class WriteNoiseCurve(Sweep):
    training: str = "plain"  # 'plain', or 'hwa' after hardware-aware training
    clipformer: bool = False


class WriteNoiseSweep(_Lenient):
    """Accuracy against the write-noise factor γ of the written K/V crossbars."""

    gamma: list[float] = Field(default_factory=list)
    curves: list[WriteNoiseCurve] = Field(default_factory=list)


class AnalogVariant(_Lenient):
    """One variant on the crossbar, every figure in the result's ``metric`` (digital ``ideal``,
    ``analog`` over the seeds, the sweeps, the mitigations); ``metrics`` holds every scalar
    metric of the task at the headline read time: digital (``ideal``) and per seed."""

    timesteps: int | None = None
    ideal: float | None = None
    analog: SeedAccuracy | None = None
    metrics: dict[str, SeedAccuracy] = Field(default_factory=dict)
    drift: DriftSweep | None = None
    adc_bits: AdcSweep | None = None
    hwa: HwaResult | None = None
    bn_finetune: BnFinetuneResult | None = None
    write_noise: WriteNoiseSweep | None = None


class AnalogResult(StageResult):
    """``analog``: per variant digital and analog scores, the sweeps and the mitigations, in
    the task's ``metric`` (accuracy for classification, perplexity for a language model)."""

    enabled: bool = True
    metric: str = "accuracy"
    preset: str | None = None
    crossbar: dict[str, Any] = Field(default_factory=dict)
    n_seeds: int | None = None
    t_inference_s: float | None = None
    variants: dict[str, AnalogVariant] = Field(default_factory=dict)
    plots: list[str] = Field(default_factory=list)
    seconds: float | None = None

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = []
        for v, r in self.variants.items():
            k = self.metric
            lead = "" if k == "accuracy" else f"{metric_label(k)}: "
            text = (
                f"{lead}ideal {metric_text(k, r.ideal)}, analog {r.analog.text(self.n_seeds, k)}"
                if r.analog
                else ""
            )
            bpc = r.metrics.get("bits_per_char")
            if bpc is not None and bpc.mean is not None:
                text += f"; {metric_label('bits_per_char', False)} {metric_text('bits_per_char', bpc.ideal)} → {bpc.text(self.n_seeds, 'bits_per_char')}"
            for name in ("hwa", "bn_finetune"):
                m = getattr(r, name)
                if m is not None and m.mean is not None:
                    text += f", {name} {m.text(self.n_seeds, k)} [{m.cost()}]"
            rows.append((v, f"{text} ({self.preset}, t = {_fig(self.t_inference_s)} s)"))
        return rows


class AnalogEvaluation(RootModel[dict[str, SeedAccuracy]]):
    """``spikecim evaluate RUN --analog``: per variant :func:`~spikecim.analog.evaluate_analog`."""

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = []
        for v, r in self.root.items():
            metric = getattr(r, "metric", None) or "accuracy"  # older results hold no name: accuracy
            label = "accuracy" if metric == "accuracy" else metric_label(metric)
            rows.append((v, f"{label} {r.text(len(r.accuracies) or None, metric)}"))
        return rows


# ---- hardware -------------------------------------------------------------------------------
class ArchCost(_Lenient):
    """:meth:`~spikecim.hw.CostReport.summary` of one variant on one architecture."""

    estimator: str | None = None
    energy_pj: Amount | None = None
    latency_ns: Amount | None = None
    area_um2: Amount | None = None
    edp_pj_ns: Amount | None = None
    tops_per_w: Amount | None = None
    energy_by_component_pj: dict[str, float] = Field(default_factory=dict)
    energy_by_layer_pj: dict[str, float] = Field(default_factory=dict)

    def largest_share(self) -> str:
        """The component with the largest energy and its share, e.g. ``adc 41.00%``."""
        total = sum(self.energy_by_component_pj.values())
        if not total:
            return ""
        name, value = max(self.energy_by_component_pj.items(), key=lambda kv: kv[1])
        return f"{name} {pct(value / total)}"


class CostRatio(_Lenient):
    energy_pj: Amount | None = None
    latency_ns: Amount | None = None
    edp_pj_ns: Amount | None = None


class HardwareFiles(_Lenient):
    reports: dict[str, dict[str, str]] = Field(default_factory=dict)
    plots: list[str] = Field(default_factory=list)


class HardwareResult(StageResult):
    """``hardware``: each variant's cost per architecture and its ratios to the baseline.

    ``ratios["<variant>_over_<baseline>"][arch]``. Older runs kept the variants at the top
    level beside ``snn_over_ann``; that layout is read as ratios against ``ann``.
    """

    enabled: bool = True
    baseline: str | None = None
    variants: dict[str, dict[str, ArchCost]] = Field(default_factory=dict)
    ratios: dict[str, dict[str, CostRatio]] = Field(default_factory=dict)
    mode: str | None = None
    archs: list[str] = Field(default_factory=list)
    files: HardwareFiles = Field(default_factory=HardwareFiles)

    @model_validator(mode="before")
    @classmethod
    def _older_layout(cls, m: Any) -> Any:
        if not isinstance(m, dict) or "variants" in m or m.get("enabled") is False:
            return m
        variants = {k: m.pop(k) for k in ("snn", "ann") if isinstance(m.get(k), dict)}
        older = m.pop("snn_over_ann", None)
        return {
            **m,
            "baseline": "ann",
            "variants": variants,
            "ratios": {"snn_over_ann": older} if older else {},
        }

    def energy_unit(self) -> tuple[str, float]:
        """The one energy unit of this result's tables (:func:`~spikecim.report.fmt.energy_unit`)."""
        return energy_unit(r.energy_pj for per_arch in self.variants.values() for r in per_arch.values())

    def summary_rows(self) -> list[tuple[str, str]]:
        """Energy per architecture, then each variant's energy ratio to the baseline (``snn/ann``)."""
        if not self.enabled or not self.variants:
            return []
        unit = self.energy_unit()[0]
        rows = [
            (v, ", ".join(f"{a}: {energy(r.energy_pj, unit)} {unit}" for a, r in per_arch.items()))
            for v, per_arch in self.variants.items()
        ]
        for key, per_arch in self.ratios.items():
            v = key.split("_over_")[0]
            text = ", ".join(f"{a}: {ratio(r.energy_pj)} energy" for a, r in per_arch.items())
            rows.append((f"{v}/{self.baseline}", text))
        return rows


# ---- methods --------------------------------------------------------------------------------
class MethodCost(_Lenient):
    """One variant on one architecture: the cost and its ratio to the baseline variant's cost
    on the same architecture (None where either is missing or the baseline's is 0)."""

    energy_pj: Amount | None = None
    latency_ns: Amount | None = None
    area_um2: Amount | None = None
    edp_pj_ns: Amount | None = None
    energy_ratio: Amount | None = None
    latency_ratio: Amount | None = None
    area_ratio: Amount | None = None
    edp_ratio: Amount | None = None


class MethodRow(_Lenient):
    """One variant of a method comparison (:func:`spikecim.pipeline.compare.compare_methods`)."""

    methods: list[str] = Field(default_factory=list)
    timesteps: float | None = None  # the average with early exit, else the variant's T
    early_exit: bool = False
    accuracy: float | None = None
    analog_mean: float | None = None
    analog_std: float | None = None
    params: float | None = None
    footprint_bytes: float | None = None
    footprint_reduction_vs_fp32: float | None = None
    footprint_ratio: float | None = None  # footprint / the baseline's
    weight_sparsity: float | None = None  # zero programmed weights / all (pruning, quantisation)
    hardware: dict[str, MethodCost] = Field(default_factory=dict)

    def summary(self, n_seeds: int | None, archs: list[str]) -> str:
        steps = MISSING if self.timesteps is None else f"{self.timesteps:.3g}"
        text = f"{' + '.join(self.methods) or 'no method'}: accuracy {pct(self.accuracy)}"
        if self.analog_mean is not None:
            text += f" (analog {pct_spread(self.analog_mean, self.analog_std, n_seeds)})"
        text += f", T {steps}, footprint {count(self.footprint_bytes)} B"
        if self.weight_sparsity:
            text += f", zero weights {pct(self.weight_sparsity)}"
        ratios = [f"{a} {_num(self.hardware[a].energy_ratio)}" for a in archs if a in self.hardware]
        return text + (f", energy ×baseline: {', '.join(ratios)}" if ratios else "")


class MethodsResult(StageResult):
    """``methods``: per variant its methods, accuracy, timesteps, footprint and cost per
    architecture with the ratios to the baseline (one table of the method comparison)."""

    baseline: str | None = None
    archs: list[str] = Field(default_factory=list)
    n_seeds: int | None = None
    variants: dict[str, MethodRow] = Field(default_factory=dict)
    plots: list[str] = Field(default_factory=list)

    def summary_rows(self) -> list[tuple[str, str]]:
        return [(v, r.summary(self.n_seeds, self.archs)) for v, r in self.variants.items()]


# ---- report ---------------------------------------------------------------------------------
class ReportResult(StageResult):
    """``report``: the files written (names in the run folder; None when switched off)."""

    html: str | None = None
    markdown: str | None = None
    plots: list[str] = Field(default_factory=list)


# ---- dt-sweep -------------------------------------------------------------------------------
class DtSweepResult(StageResult):
    """``dt-sweep``: per early-exit variant the static network, the threshold sweep and the
    lowest-EDP threshold at the static accuracy (:mod:`spikecim.pipeline.dt_stage`)."""

    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    files: dict[str, Any] = Field(default_factory=dict)

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = []
        for v, r in self.variants.items():
            best = r.get("at_static_accuracy")
            text = f"static T = {r['timesteps']}: accuracy {pct(r['static']['accuracy'])}; "
            if best:
                edp = best["saved"][r["arch"]]["edp_pj_ns"]
                text += (
                    f"θ = {best['threshold']:g}: {best['average_steps']:.2f} steps, accuracy "
                    f"{pct(best['accuracy'])}, EDP saved {pct(edp)} on {r['arch']}"
                )
            else:
                text += "no θ reaches the static accuracy"
            rows.append((v, text))
        return rows


# ---- ptq ------------------------------------------------------------------------------------
class PtqRun(_Lenient):
    """One quantised model: its method and bits, the task's metrics (test split), the
    reconstruction's output MSE per block (final hard rounding; RTN's beside it), the
    seconds taken and, with ``ptq.analog``, its accuracy on the crossbar over seeds."""

    method: str
    bits: int
    metrics: dict[str, float] = Field(default_factory=dict)
    block_mse: list[float] = Field(default_factory=list)
    block_rtn_mse: list[float] = Field(default_factory=list)
    seconds: float | None = None
    analog: SeedAccuracy | None = None


class PtqVariant(_Lenient):
    full_precision: dict[str, float] = Field(default_factory=dict)
    analog_full_precision: SeedAccuracy | None = None
    runs: list[PtqRun] = Field(default_factory=list)

    def run(self, method: str, bits: int) -> PtqRun | None:
        return next((r for r in self.runs if r.method == method and r.bits == bits), None)


class PtqResult(StageResult):
    """``ptq``: per variant the full-precision metrics and one :class:`PtqRun` per method and
    bit width; ``metric`` names the headline metric of the task (accuracy today)."""

    enabled: bool = True
    metric: str = "accuracy"
    methods: list[str] = Field(default_factory=list)
    bits: list[int] = Field(default_factory=list)
    group_size: int | None = None
    symmetric: bool | None = None
    calibration_samples: int | None = None
    batch_size: int | None = None
    steps: int | None = None
    thresholds: list[float] = Field(default_factory=list)
    n_seeds: int | None = None
    variants: dict[str, PtqVariant] = Field(default_factory=dict)
    seconds: float | None = None

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = []
        for v, r in self.variants.items():
            parts = [
                f"{self.metric} {metric_text(self.metric, r.full_precision.get(self.metric))} full precision"
            ]
            for b in self.bits:
                cells = [
                    f"{m} {metric_text(self.metric, run.metrics.get(self.metric))}"
                    for m in self.methods
                    if (run := r.run(m, b)) is not None
                ]
                parts.append(f"W{b}: " + ", ".join(cells))
            rows.append((v, "; ".join(parts)))
        return rows


def _perplexity(value: float) -> str:
    """Two decimals, as a language model's perplexity is quoted; a diverged model's (e^349 is
    a number of 152 digits) in scientific notation."""
    return f"{value:.2f}" if value < 1e6 else f"{value:.4g}"

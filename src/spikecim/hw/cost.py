"""The CostReport: energy, latency and area of one workload on one architecture.

Per layer, energy (pJ) and area (µm²) are split by hardware component; area that no layer
owns (a shared PE array, shared tiles, global buffers) is kept in ``shared_area_um2``.
Totals and figures of merit are derived, never stored separately:

- ``energy_pj = Σ_layers Σ_components``, ``latency_ns = Σ_layers latency``
  (an estimator that overlaps layers reports each layer's share of the critical path),
  ``area_um2 = Σ_layers Σ_components + Σ shared``
- latency in two modes (as NeuroSim and SpikeSim report): ``latency_ns`` runs the layers
  in sequence (one frame at a time); in the **pipelined** mode every layer works on its own
  tiles concurrently on successive frames, so a frame leaves every ``stage_latency_ns = max
  over layers of latency`` (the slowest stage): ``frames_per_s = 1e9 / stage_latency_ns``,
  and one frame takes ``pipelined_latency_ns = stages · stage_latency_ns``;
  ``frames_per_s_sequential = 1e9 / latency_ns``. EDP, EDAP and TOPS/mm² use ``latency_ns``
- ``edp_pj_ns = energy · latency``; ``edap_pj_ns_mm2 = edp · area in mm²``
- ``ops``: dense-equivalent operations, 2 per MAC at every timestep (the accelerator
  literature's convention, so an SNN and its ANN twin are measured on the same scale)
- ``tops_per_w = ops / energy_pj`` (1 op/pJ = 1 TOPS/W);
  ``tops_per_mm2 = ops / latency_ns / 1e3 / area_mm2``
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping

__all__ = ["CostReport", "LayerCost"]

NS_PER_S = 1e9
_S_PER_YEAR = 365 * 24 * 3600.0


class LayerCost(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    kind: str = "conv2d"
    energy_pj: dict[str, float] = Field(default_factory=dict, description="per component")
    latency_ns: float = 0.0
    area_um2: dict[str, float] = Field(default_factory=dict, description="per component")
    ops: float = Field(0.0, description="dense-equivalent operations (2 per MAC, every step)")
    skipped: bool = Field(False, description="the estimator does not cost this kind of layer")

    @computed_field
    @property
    def total_energy_pj(self) -> float:
        return float(sum(self.energy_pj.values()))

    @computed_field
    @property
    def total_area_um2(self) -> float:
        return float(sum(self.area_um2.values()))


class CostReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    estimator: str
    architecture: str
    workload: str = "unknown"
    spiking: bool = True
    timesteps: int = 1
    mode: str = Field("event", description="'event' (activity-aware) or 'dense' (upper bound)")
    layers: list[LayerCost]
    shared_area_um2: dict[str, float] = Field(default_factory=dict)
    extras: dict[str, float] = Field(default_factory=dict, description="estimator-specific counts")
    notes: list[str] = Field(default_factory=list)

    # ---- totals ------------------------------------------------------------------------
    @computed_field
    @property
    def energy_pj(self) -> float:
        return float(sum(layer.total_energy_pj for layer in self.layers))

    @computed_field
    @property
    def latency_ns(self) -> float:
        return float(sum(layer.latency_ns for layer in self.layers))

    @computed_field
    @property
    def stage_latency_ns(self) -> float:
        """Pipelined mode: the slowest layer, which sets the rate at which frames leave."""
        return float(max((layer.latency_ns for layer in self.layers if not layer.skipped), default=0.0))

    @computed_field
    @property
    def pipelined_latency_ns(self) -> float:
        """Pipelined mode: one frame through every stage, each paced by the slowest."""
        return self.stage_latency_ns * sum(1 for layer in self.layers if not layer.skipped)

    @computed_field
    @property
    def frames_per_s(self) -> float | None:
        """Pipelined throughput: 1e9 / stage_latency_ns (None where latency is not modelled)."""
        return NS_PER_S / self.stage_latency_ns if self.stage_latency_ns > 0 else None

    @computed_field
    @property
    def frames_per_s_sequential(self) -> float | None:
        """Throughput with the layers in sequence: 1e9 / latency_ns."""
        return NS_PER_S / self.latency_ns if self.latency_ns > 0 else None

    @computed_field
    @property
    def area_um2(self) -> float:
        return float(sum(layer.total_area_um2 for layer in self.layers) + sum(self.shared_area_um2.values()))

    @computed_field
    @property
    def ops(self) -> float:
        return float(sum(layer.ops for layer in self.layers))

    @computed_field
    @property
    def energy_by_component_pj(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for layer in self.layers:
            for k, v in layer.energy_pj.items():
                out[k] = out.get(k, 0.0) + v
        return out

    @computed_field
    @property
    def area_by_component_um2(self) -> dict[str, float]:
        out: dict[str, float] = dict(self.shared_area_um2)
        for layer in self.layers:
            for k, v in layer.area_um2.items():
                out[k] = out.get(k, 0.0) + v
        return out

    # ---- figures of merit (None where latency or area is not modelled) ---------------------
    @computed_field
    @property
    def edp_pj_ns(self) -> float | None:
        return self.energy_pj * self.latency_ns if self.latency_ns > 0 else None

    @computed_field
    @property
    def edap_pj_ns_mm2(self) -> float | None:
        edp = self.edp_pj_ns
        return edp * self.area_um2 / 1e6 if edp is not None and self.area_um2 > 0 else None

    @computed_field
    @property
    def tops_per_w(self) -> float | None:
        return self.ops / self.energy_pj if self.energy_pj > 0 else None

    @computed_field
    @property
    def tops_per_mm2(self) -> float | None:
        if self.latency_ns <= 0 or self.area_um2 <= 0:
            return None
        return self.ops / self.latency_ns / 1e3 / (self.area_um2 / 1e6)

    # ---- output ------------------------------------------------------------------------
    def summary(self) -> dict:
        """Totals and figures of merit as a flat dict (what ``metrics.json`` holds)."""
        keys = (
            "estimator",
            "architecture",
            "mode",
            "energy_pj",
            "latency_ns",
            "stage_latency_ns",
            "pipelined_latency_ns",
            "frames_per_s",
            "frames_per_s_sequential",
            "area_um2",
            "ops",
            "edp_pj_ns",
            "edap_pj_ns_mm2",
            "tops_per_w",
            "tops_per_mm2",
        )
        out = {k: getattr(self, k) for k in keys}
        out["energy_by_component_pj"] = self.energy_by_component_pj
        out["area_by_component_um2"] = self.area_by_component_um2
        out["energy_by_layer_pj"] = {layer.name: layer.total_energy_pj for layer in self.layers}
        out.update(self.extras)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the report as JSON (parent folders made; in a run folder, recorded in its
        manifest: :func:`spikecim.pipeline.folder.write_file`)."""
        from spikecim.pipeline import folder

        return folder.write_file(Path(path), self.model_dump_json(indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> CostReport:
        """A report written by :meth:`save`; missing, broken or invalid files are one-line errors."""
        data = read_mapping(path, "cost report", "with 'layers'")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SpikecimError(one_line_validation_error(e, prefix=f"cost report {path}: ")) from None

    def table(self) -> str:
        """A Markdown table: one row per layer, then the totals. Latency and area read "n/a"
        where the estimator models none (every layer's is 0: ``naive``)."""
        comps = list(self.energy_by_component_pj)
        head = ["layer", "energy_pj", "latency_ns", "area_um2"] + [f"{c}_pj" for c in comps]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        latency = _fmt if self.latency_ns > 0 else lambda _: "n/a"
        area = _fmt if self.area_um2 > 0 else lambda _: "n/a"
        for layer in self.layers:
            cells = [
                layer.name + (" (not costed)" if layer.skipped else ""),
                _fmt(layer.total_energy_pj),
                latency(layer.latency_ns),
                area(layer.total_area_um2),
            ]
            cells += [_fmt(layer.energy_pj.get(c, 0.0)) for c in comps]
            rows.append("| " + " | ".join(cells) + " |")
        total = ["**total**", _fmt(self.energy_pj), latency(self.latency_ns), area(self.area_um2)]
        total += [_fmt(self.energy_by_component_pj[c]) for c in comps]
        rows.append("| " + " | ".join(total) + " |")
        lines = [f"{self.estimator} on {self.architecture} ({self.mode}), workload {self.workload}", ""]
        lines += rows
        lines += [
            "",
            (
                f"EDP {_fmt(self.edp_pj_ns)} pJ·ns, EDAP {_fmt(self.edap_pj_ns_mm2)} pJ·ns·mm², "
                f"{_fmt(self.tops_per_w)} TOPS/W, {_fmt(self.tops_per_mm2)} TOPS/mm²"
            ),
            (
                f"layers in sequence: {_fmt(self.frames_per_s_sequential)} frames/s; pipelined (layers on "
                f"their own tiles): {_fmt(self.frames_per_s)} frames/s, slowest stage "
                f"{latency(self.stage_latency_ns)} ns, frame latency {latency(self.pipelined_latency_ns)} ns"
            ),
        ]
        if any(layer.kind in ("matmul", "softmax", "layernorm", "gelu") for layer in self.layers):
            lines += ["", "by part (energy_pj, latency_ns, area_um2):"]
            lines += [
                f"  {part}: {_fmt(v['energy_pj'])}, {_fmt(v['latency_ns'])}, {_fmt(v['area_um2'])}"
                for part, v in self.by_part().items()
            ]
        if "writes_per_cell_per_inference" in self.extras:
            life = self.extras.get("lifetime_s")
            lines.append(
                f"written cells: {_fmt(self.extras['writes_per_cell_per_inference'])} writes per cell per "
                "inference; lifetime "
                + (
                    f"{_fmt(life / _S_PER_YEAR)} years"
                    if life is not None
                    else "unlimited (no endurance limit)"
                )
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def by_part(self) -> dict[str, dict[str, float]]:
        """Energy, latency and area per part of a transformer (:mod:`spikecim.hw.breakdown`)."""
        from spikecim.hw.breakdown import by_part

        return by_part(self)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-2:
        return f"{v:.4g}"
    return f"{v:,.2f}"

"""Recurrent state traffic per token: the Workload records the MLGRU's ``h`` and WKV's ``a, b,
p``, the estimators cost them as SRAM reads and writes, and a Workload without the field loads."""

import json

import pytest
import torch

from spikecim.hw.estimate import estimate
from spikecim.models import create_model
from spikecim.trace import Workload, trace

D, L, LAYERS = 8, 8, 2


@pytest.fixture(scope="module")
def workloads():
    torch.manual_seed(0)
    tokens = torch.randint(0, 256, (L, 3))
    out = {}
    for name, spiking in (("spikegpt-tiny", True), ("matmulfree-tiny", False)):
        model = create_model(name, spiking=spiking, num_classes=256, input_size=L, d_model=D, layers=LAYERS)
        out[name] = trace(model, [tokens], model_name=name)
    return out


def test_workload_records_the_recurrent_state_of_each_layer(workloads):
    wkv = workloads["spikegpt-tiny"].recurrent_state
    assert [(s.kind, s.elements, s.bits, s.timesteps) for s in wkv] == [("wkv", 3 * D, 32, L)] * LAYERS
    mlgru = workloads["matmulfree-tiny"].recurrent_state
    assert [(s.kind, s.elements, s.bits, s.timesteps) for s in mlgru] == [("mlgru", D, 32, L)] * LAYERS


def test_state_traffic_is_costed_as_sram_reads_and_writes_per_token(workloads):
    w = workloads["spikegpt-tiny"]
    # by hand: a, b, p (3·d float32 values) read and written at each of the L tokens
    bits = 2 * 3 * D * 32 * L
    systolic = estimate(w, "systolic-sata")  # 1.95 pJ per 16-bit SRAM access
    imc = estimate(w, "imc-rram-65nm")  # 0.121875 pJ per SRAM bit
    for report, per_bit in ((systolic, 1.95 / 16), (imc, 0.121875)):
        rows = [r for r in report.layers if r.kind == "wkv state"]
        assert len(rows) == LAYERS
        assert all(r.energy_pj == {"state_sram": pytest.approx(bits * per_bit)} for r in rows)


def test_a_workload_without_recurrent_state_loads_and_costs_as_before(workloads):
    data = json.loads(workloads["spikegpt-tiny"].model_dump_json())
    data.pop("recurrent_state")
    old = Workload.model_validate(data)
    assert old.recurrent_state == []
    with_state = estimate(workloads["spikegpt-tiny"], "systolic-sata")
    without = estimate(old, "systolic-sata")
    state = sum(r.total_energy_pj for r in with_state.layers if r.kind == "wkv state")
    assert without.energy_pj == pytest.approx(with_state.energy_pj - state)

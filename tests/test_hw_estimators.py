"""Every estimator on a tiny hand-built workload equals a hand calculation written out here."""

import pytest
import yaml

from spikecim.hw import estimate, load_architecture
from spikecim.hw.estimators.imc import adc_energy_pj
from spikecim.trace.workload import LayerWorkload, LinearWorkload, Workload


def layer_fc(**kw):
    """Linear 4 -> 3, spike input, T = 2: 2 then 1 input spikes (fan-out 3 each)."""
    base = {
        "name": "fc",
        "kind": "linear",
        "in_ch": 4,
        "out_ch": 3,
        "params": 12,
        "weight_bits": 4,
        "input_bits": 1,
        "timesteps": 2,
        "spiking_input": True,
        "has_neuron": True,
        "macs": 12,
        "in_nonzero_per_step": [2.0, 1.0],
        "acs_per_step": [6.0, 3.0],
        "out_spikes_per_step": [1.0, 0.0],
    }
    base.update(kw)
    return LayerWorkload(**base)


def layer_in(T=2):
    """Linear 2 -> 4 on real-valued 8-bit input (the first layer of an SNN, or an ANN layer)."""
    return LayerWorkload(
        name="in",
        kind="linear",
        in_ch=2,
        out_ch=4,
        params=8,
        weight_bits=4,
        input_bits=8,
        timesteps=T,
        spiking_input=False,
        has_neuron=True,
        macs=8,
        in_nonzero_per_step=[2.0] * T,
        acs_per_step=[8.0] * T,
    )


def snn(*layers):
    return Workload(model="tiny", spiking=True, timesteps=2, layers=list(layers))


def two_states(layer):
    """``layer`` after a neuron with two state variables (the synaptic neuron's current and membrane)."""
    return LinearWorkload.model_validate({**layer.model_dump(), "neuron_states": 2})


def pruned_fc(measured=(4.0, 1.0)):
    """layer_fc with half its weights zero and the accumulates on non-zero weights measured:
    4 of the 6 triggered at step 0, 1 of the 3 at step 1 (not the 3 and 1.5 the sparsity gives)."""
    fc = layer_fc(weight_sparsity=0.5)
    return LinearWorkload.model_validate({**fc.model_dump(), "acs_nonzero_weights_per_step": list(measured)})


IMC = {  # round numbers so the hand calculation stays readable
    "device": "rram",
    "xbar_rows": 4,
    "xbar_cols": 8,
    "bits_per_cell": 2,
    "max_weight_bits": 4,
    "max_input_bits": 8,
    "adc_bits": 3,
    "cols_per_adc": 2,
    "xbars_per_pe": 2,
    "pes_per_tile": 1,
    "membrane_bits": 8,
    "clock_mhz": 1000,
    "t_adc_bit_ns": 1,
    "e_cell_read_pj": 0.5,
    "adc_power_per_bit_uw": 100,
    "adc_power_offset_uw": 200,
    "adc_column_power_uw": 0,
    "e_mux_pj": 0.25,
    "e_shift_add_pj": 0.125,
    "e_neuron_update_pj": 1,
    "e_activation_pj": 0.5,
    "e_sram_bit_pj": 0.01,
    "e_htree_bit_pj": 0.1,
    "e_fetch_bit_pj": 0.02,
    "a_cell_um2": 1,
    "a_adc_nmos_um2": 1,
    "a_adc_pmos_um2": 0,
    "adc_nmos_count": 269,
    "adc_nmos_count_per_bit": 109,
    "adc_pmos_count": 209,
    "adc_pmos_count_per_bit": 73,
    "a_mux_um2": 10,
    "a_shift_add_um2": 100,
    "a_neuron_module_um2": 1000,
    "a_tile_buffer_um2": 50,
    "a_htree_um2": 20,
    "a_sram_bit_um2": 0.5,
}
SYSTOLIC = {
    "pe_rows": 2,
    "pe_cols": 2,
    "clock_mhz": 1000,
    "word_bits": 8,
    "membrane_bits": 8,
    "weight_buffer_kb": 1,
    "input_buffer_kb": 1,
    "output_buffer_kb": 1,
    "e_mul_pj": 1,
    "e_acc_pj": 0.5,
    "e_add_pj": 0.1,
    "e_and_pj": 0.05,
    "e_cmp_pj": 0.2,
    "e_mux_pj": 0.01,
    "e_reg_pj": 0.02,
    "e_shift_pj": 0.03,
    "e_dram_pj": 10,
    "e_sram_pj": 2,
    "e_spad_pj": 0.25,
    "a_pe_um2": 100,
    "a_sram_bit_um2": 0.001,
}


def table(tmp_path, name, estimator, params):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "estimator": estimator, "params": params}))
    return load_architecture(path)


def test_naive_first_layer_macs_then_triggered_accumulates():
    r = estimate(snn(layer_in(), layer_fc()), "naive-45nm")
    # 4.6 pJ · 8 MACs · 2 steps  +  0.9 pJ · (6 + 3) triggered ACs   (docs/references.md#naive-energy)
    assert r.layers[0].total_energy_pj == pytest.approx(4.6 * 8 * 2)
    assert r.layers[1].total_energy_pj == pytest.approx(0.9 * 9)
    assert r.energy_pj == pytest.approx(73.6 + 8.1)
    assert r.latency_ns == 0 and r.area_um2 == 0 and r.edp_pj_ns is None


def test_naive_sparse_counts_operations_on_nonzero_weights_only():
    sparse_weight = {"weight": {"kind": "static", "bits": 4, "sparsity": 0.25}}
    first = LinearWorkload.model_validate({**layer_in().model_dump(), "operands": sparse_weight})
    w = snn(first, pruned_fc())
    # naive-45nm-sparse (docs/references.md#naive-energy): 4.6 pJ · 8 MACs · 2 steps · 0.75 of
    # the weights non-zero, then 0.9 pJ · (4 + 1) accumulates on non-zero weights
    r = estimate(w, "naive-45nm-sparse")
    assert r.layers[0].total_energy_pj == pytest.approx(4.6 * 8 * 2 * 0.75)
    assert r.layers[1].total_energy_pj == pytest.approx(0.9 * (4 + 1))
    # dense mode: every input non-zero, 12 MACs · 2 steps · 0.5 of the weights non-zero
    dense = estimate(w, "naive-45nm-sparse", dense=True)
    assert dense.layers[1].total_energy_pj == pytest.approx(0.9 * 12 * 2 * 0.5)
    assert dense.layers[0].total_energy_pj == pytest.approx(4.6 * 8 * 2 * 0.75)
    # half the samples still running at step 1: 4 + 0.5 · 1
    late = estimate(w.model_copy(update={"running_per_step": [1.0, 0.5]}), "naive-45nm-sparse")
    assert late.layers[1].total_energy_pj == pytest.approx(0.9 * (4 + 0.5 * 1))
    # naive-45nm counts zero weights too: 4.6 · 8 · 2 and 0.9 · (6 + 3)
    full = estimate(w, "naive-45nm")
    assert [x.total_energy_pj for x in full.layers] == pytest.approx([4.6 * 8 * 2, 0.9 * 9])


def test_naive_ann_twin_is_mac_energy_times_macs():
    ann = Workload(
        model="tiny",
        spiking=False,
        timesteps=1,
        layers=[
            layer_in(T=1),
            layer_fc(
                timesteps=1,
                spiking_input=False,
                input_bits=8,
                in_nonzero_per_step=[4.0],
                acs_per_step=[12.0],
                out_spikes_per_step=None,
            ),
        ],
    )
    assert estimate(ann, "naive-45nm").energy_pj == pytest.approx(4.6 * (8 + 12))


def test_imc_spiking_layer_energy_latency_area_by_hand(tmp_path):
    arch = table(tmp_path, "tiny-imc", "imc", IMC)
    r = estimate(snn(layer_fc()), arch)
    e = r.layers[0].energy_pj
    # ADC (NeuroSim form): (100·3 + 200 + 0) µW · (3 + 1) · 1 ns = 2000 µW·ns = 2.0 pJ
    assert adc_energy_pj(arch.p) == pytest.approx(2.0)
    # mapping: 4 rows; 3 outputs × ⌈4 bits / 2 bits per cell⌉ = 6 columns: one 4×8 crossbar
    # activity a = 2/4 then 1/4; active cells = a·4·6 -> 12 + 6
    assert e["crossbar"] == pytest.approx(18 * 0.5)
    # conversions = 6 columns · (1 − (1 − a)^4): 6·0.9375 + 6·0.68359375 = 9.7265625
    conv = 6 * (1 - 0.5**4) + 6 * (1 - 0.75**4)
    assert e["adc"] == pytest.approx(conv * 2.0)
    assert e["mux"] == pytest.approx(conv * 0.25)
    assert e["shift_add"] == pytest.approx(conv * 0.125)
    assert e["neuron"] == pytest.approx(3 * 2 * 1.0)  # 3 neurons, 2 steps
    assert e["membrane"] == pytest.approx(3 * 2 * 8 * 2 * 0.01)  # read + write of 8 bits
    assert e["input_buffer"] == pytest.approx(4 * 2 * 0.01)  # 4 one-bit inputs, 2 steps
    assert e["output_buffer"] == pytest.approx(3 * 2 * 0.01)
    assert e["interconnect"] == pytest.approx((8 + 6) * 0.1)
    assert e["mem_fetch"] == pytest.approx(8 * 0.02)
    # latency: read 1 ns + 2 columns per ADC · (3 + 1) ns = 9 ns per MVM, skipped when no input spikes
    assert r.latency_ns == pytest.approx(9 * (1 - 0.5**4) + 9 * (1 - 0.75**4))
    # area: 1 tile = 1 PE = 2 crossbar slots of 4×8 cells; 2·8/2 = 8 ADCs of 269 + 109·2 NMOS
    # (NeuroSim SAR ADC: 269 + 109·(bits − 1) NMOS and 209 + 73·(bits − 1) PMOS; PMOS area 0 here)
    a = r.layers[0].area_um2
    assert a == pytest.approx(
        {
            "crossbar": 64,
            "adc": 8 * 487,
            "mux": 80,
            "shift_add": 4 * 100,
            "tile_buffer": 50,
            "interconnect": 20,
            "neuron": 1000,
            "membrane": 3 * 8 * 0.5,
            "input_buffer": 2,
        }
    )
    assert r.extras["tiles"] == 1


def test_imc_stores_and_moves_every_state_variable_of_a_neuron(tmp_path):
    arch = table(tmp_path, "tiny-imc", "imc", IMC)
    r = estimate(snn(two_states(layer_fc())), arch)
    # the synaptic neuron: current and membrane, each read and written at every step
    assert r.layers[0].energy_pj["membrane"] == pytest.approx(3 * 2 * 2 * 8 * 2 * 0.01)
    assert r.layers[0].area_um2["membrane"] == pytest.approx(3 * 2 * 8 * 0.5)


def test_imc_ann_layer_streams_8_input_bits_serially(tmp_path):
    arch = table(tmp_path, "tiny-imc", "imc", IMC)
    ann = Workload(model="tiny", spiking=False, timesteps=1, layers=[layer_in(T=1)])
    r = estimate(ann, arch)
    e = r.layers[0].energy_pj
    # 2 rows × (4 outputs · 2 slices = 8 columns), 8 input-bit cycles, all inputs non-zero
    assert e["crossbar"] == pytest.approx(8 * 2 * 8 * 0.5)
    assert e["adc"] == pytest.approx(8 * 8 * 2.0)  # 64 conversions
    assert e["neuron"] == pytest.approx(4 * 0.5)  # ReLU, no membrane
    assert "membrane" not in e
    assert e["interconnect"] == pytest.approx((2 * 8 + 4 * 8) * 0.1)
    assert r.energy_pj == pytest.approx(64 + 128 + 16 + 8 + 2 + 0.16 + 0.32 + 4.8 + 0.32)
    assert r.latency_ns == pytest.approx(8 * 9)


def test_systolic_spike_layer_by_hand(tmp_path):
    arch = table(tmp_path, "tiny-sys", "systolic", SYSTOLIC)
    r = estimate(snn(layer_fc()), arch)
    e = r.layers[0].energy_pj
    # add + cmp + 2 mux + 3 reg + shift (docs/references.md#sata-energies)
    lif = 0.1 + 0.2 + 2 * 0.01 + 3 * 0.02 + 0.03
    assert e["compute"] == pytest.approx(9 * (0.5 + 0.05))  # 9 triggered ACs · (acc + AND)
    assert e["spad"] == pytest.approx(9 * 0.25)
    assert e["neuron"] == pytest.approx(3 * 2 * lif)
    # inputs: ⌈4 bits / 8⌉ = 1 word · ⌈3/2⌉ = 2 column folds · 2 steps
    assert e["input_sram"] == pytest.approx(1 * 2 * 2 * 2)
    # outputs: read + write · 3 neurons · ⌈4/2⌉ = 2 row folds · 2 steps
    assert e["output_sram"] == pytest.approx(2 * 3 * 2 * 2 * 2)
    # weights: ⌈12·4 / 8⌉ = 6 words from SRAM every step; from DRAM once (48 bits fit 1 KB)
    assert e["weight_sram"] == pytest.approx(6 * 2 * 2)
    assert e["dram"] == pytest.approx(6 * 10)
    # cycles: ⌈6/4⌉ + ⌈3/2⌉ = 4, then ⌈3/4⌉ + ⌈3/2⌉ = 3, at 1 GHz
    assert r.latency_ns == pytest.approx(7)
    assert r.area_um2 == pytest.approx(4 * 100 + 3 * 8192 * 0.001)


def test_systolic_spills_a_neurons_states_that_overflow_the_output_buffer(tmp_path):
    arch = table(tmp_path, "tiny-sys", "systolic", SYSTOLIC)
    wide = {"out_ch": 600, "params": 2400, "macs": 2400, "weight_bits": 1}  # 2400 weight bits fit 1 KB
    # one 8-bit membrane per neuron: 4800 bits fit the 8192-bit output buffer; the weights come
    # from DRAM once (300 words)
    assert estimate(snn(layer_fc(**wide)), arch).layers[0].energy_pj["dram"] == pytest.approx(300 * 10)
    # two states (current and membrane): 9600 bits spill, written and read back at both steps
    two = estimate(snn(two_states(layer_fc(**wide))), arch).layers[0].energy_pj["dram"]
    assert two == pytest.approx((300 + 2 * (9600 // 8) * 2) * 10)


def test_dual_sparse_skips_zero_weights_and_reads_weights_once(tmp_path):
    arch = table(tmp_path, "tiny-ds", "dual_sparse", SYSTOLIC)
    r = estimate(snn(layer_fc(weight_sparsity=0.5)), arch)
    e = r.layers[0].energy_pj
    ops = 9 * 0.5
    assert e["compute"] == pytest.approx(ops * 0.55)
    assert e["spad"] == pytest.approx(ops * 0.25)
    assert e["input_sram"] == pytest.approx(1 * 2 * 2)  # ⌈4·2 bits/8⌉ word, 2 column folds, once
    assert e["output_sram"] == pytest.approx(1 * 2)  # ⌈3·2 bits/8⌉ word of output spikes
    # bitmap 12 bits + 6 non-zero weights · 4 bits = 36 bits -> 5 words, once
    assert e["weight_sram"] == pytest.approx(5 * 2)
    assert e["dram"] == pytest.approx(5 * 10)
    assert r.latency_ns == pytest.approx(2 + 3)  # ⌈4.5/4⌉ + ⌈3·2/2⌉ cycles


def test_dual_sparse_counts_the_measured_accumulates_on_nonzero_weights(tmp_path):
    arch = table(tmp_path, "tiny-ds", "dual_sparse", SYSTOLIC)
    r = estimate(snn(pruned_fc()), arch)
    e = r.layers[0].energy_pj
    ops = 4 + 1  # measured, not (6 + 3) · 0.5
    assert e["compute"] == pytest.approx(ops * (0.5 + 0.05))  # accumulate + AND
    assert e["spad"] == pytest.approx(ops * 0.25)
    assert r.latency_ns == pytest.approx(2 + 3)  # ⌈5/4⌉ + ⌈3·2/2⌉ cycles at 1 GHz
    late = estimate(snn(pruned_fc()).model_copy(update={"running_per_step": [1.0, 0.5]}), arch)
    assert late.layers[0].energy_pj["compute"] == pytest.approx((4 + 0.5 * 1) * 0.55)
    # dense mode keeps macs · T · (1 − weight sparsity): 12 · 2 · 0.5
    dense = estimate(snn(pruned_fc()), arch, dense=True)
    assert dense.layers[0].energy_pj["compute"] == pytest.approx(12 * 2 * 0.5 * 0.55)


def test_imc_adc_energy_at_65nm_is_about_027_pj_for_5_bits():
    # docs/references.md#neurosim-adc: NeuroSim SAR formula gives about 0.27 pJ per 5-bit conversion at 65 nm
    assert adc_energy_pj(load_architecture("imc-rram-65nm").p) == pytest.approx(0.27, rel=0.03)


def test_cost_report_figures_of_merit_follow_their_definitions():
    r = estimate(snn(layer_in(), layer_fc()), "imc-rram-65nm")
    assert r.edp_pj_ns == pytest.approx(r.energy_pj * r.latency_ns)
    assert r.edap_pj_ns_mm2 == pytest.approx(r.energy_pj * r.latency_ns * r.area_um2 / 1e6)
    assert r.ops == 2 * (8 + 12) * 2  # 2 ops per MAC, every step
    assert r.tops_per_w == pytest.approx(r.ops / r.energy_pj)
    assert r.tops_per_mm2 == pytest.approx(r.ops / (r.latency_ns * 1e-9) / 1e12 / (r.area_um2 / 1e6))
    assert r.energy_pj == pytest.approx(sum(r.energy_by_component_pj.values()))


def test_cost_report_json_round_trip_keeps_totals(tmp_path):
    from spikecim.hw import CostReport

    r = estimate(snn(layer_in(), layer_fc()), "systolic-sata")
    back = CostReport.load(r.save(tmp_path / "r.json"))
    assert back.energy_pj == r.energy_pj and back.area_um2 == r.area_um2 and back.layers == r.layers

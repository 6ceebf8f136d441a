"""Stages own their config sections and typed results; ``import spikecim.config`` stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import Field

from spikecim.config import RunConfig, load_config
from spikecim.errors import SpikecimError
from spikecim.pipeline import stages
from spikecim.pipeline.results import AnalogResult, HardwareResult, TraceResult, result_json
from spikecim.pipeline.stages import read_result, register_stage
from spikecim.schema import Schema


def test_importing_the_config_does_not_import_torch():
    code = "import spikecim.config, sys; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stage_names_and_sections_are_known_without_importing_the_stage_modules():
    code = (
        "import sys\n"
        "from spikecim.pipeline import list_stages\n"
        "from spikecim.pipeline.stages import stage_sections\n"
        "assert list_stages() == ['train', 'evaluate', 'trace', 'ptq', 'analog', 'hardware', 'methods', 'dt-sweep', 'report'], list_stages()\n"
        "assert sorted(stage_sections()) == ['analog', 'hardware', 'ptq', 'report']\n"
        "assert not any(m.startswith('spikecim.pipeline.stage_') or m in ('spikecim.pipeline.core_stages', 'spikecim.pipeline.dt_stage')"
        " for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class ProbeConfig(Schema):
    level: int = Field(2, ge=0, le=9)


@pytest.fixture
def probe_stage():
    register_stage("probe", lambda ctx: {"level": ctx.config.probe.level}, config=ProbeConfig)
    yield
    stages._STAGES.pop("probe", None)


def test_a_stage_registered_later_brings_its_config_section(probe_stage):
    assert load_config(overrides=["probe.level=7", "stages=[probe]"]).probe.level == 7
    assert RunConfig().model_dump()["probe"] == {"level": 2}  # its default, written to config.yaml
    with pytest.raises(SpikecimError, match=r"probe\.level: Input should be less than or equal to 9"):
        load_config(overrides=["probe.level=10"])


def test_a_section_of_no_registered_stage_is_refused_naming_it():
    with pytest.raises(SpikecimError, match=r"^config\.probe: unknown key$"):
        load_config(overrides=["probe.level=7"])


def test_an_older_hardware_entry_reads_as_ratios_against_the_ann():
    older = {
        "snn": {"naive": {"energy_pj": 2.0e6}, "imc": {"energy_pj": 5.0e5}},
        "ann": {"naive": {"energy_pj": 4.0e6}, "imc": {"energy_pj": 1.0e6}},
        "snn_over_ann": {"naive": {"energy_pj": 0.5}, "imc": {"energy_pj": 0.5}},
    }
    rows = read_result("hardware", older).summary_rows()
    # 2e6 pJ is the largest value: the table is in µJ (1e6 pJ), 4 significant digits.
    assert rows == [
        ("snn", "naive: 2 µJ, imc: 0.5 µJ"),
        ("ann", "naive: 4 µJ, imc: 1 µJ"),
        ("snn/ann", "naive: 0.5× energy, imc: 0.5× energy"),
    ]


def test_results_dump_to_the_json_shape_they_were_read_from():
    analog = {
        "enabled": True,
        "preset": "ideal",
        "n_seeds": 2,
        "t_inference_s": 3600.0,
        "variants": {
            "snn": {"ideal": 0.9, "analog": {"mean": 0.85, "std": 0.01, "accuracies": [0.84, 0.86]}}
        },
        "plots": [],
        "a_key_of_a_later_version": [1, 2],
    }
    assert result_json(AnalogResult.model_validate(analog)) == analog
    trace = {"snn": {"dense_macs": 10.0, "effective_acs": 4.0, "activation_sparsity": 0.6}}
    assert result_json(TraceResult.model_validate(trace)) == trace
    assert result_json(HardwareResult(enabled=False)) == {"enabled": False}


def test_summary_rows_use_the_report_number_formats():
    analog = AnalogResult.model_validate(
        {
            "preset": "ideal",
            "n_seeds": 3,
            "t_inference_s": 3600.0,
            "variants": {"snn": {"ideal": 0.9, "analog": {"mean": 0.85, "std": 0.012}}},
        }
    )
    assert analog.summary_rows() == [
        ("snn", "ideal 90.00%, analog 85.00% ± 1.20% (3 seeds) (ideal, t = 3600 s)")
    ]
    trace = TraceResult.model_validate(
        {"snn": {"dense_macs": 12345.0, "effective_acs": 10.0, "activation_sparsity": 0.5}}
    )
    assert trace.summary_rows() == [("snn", "1.234e+04 dense MACs, 10 effective ACs, sparsity 50.00%")]

"""Every user file (config, crossbar, architecture, layer list, workload) fails the same way."""

import pytest

from spikecim.analog import load_crossbar_config
from spikecim.config import load_config
from spikecim.errors import SpikecimError
from spikecim.hw import load_architecture
from spikecim.hw.cost import CostReport
from spikecim.trace import Workload

LOADERS = [
    ("config", lambda p: load_config(p)),
    ("analog", lambda p: load_crossbar_config(p)),
    ("arch", lambda p: load_architecture(p)),
    ("workload", lambda p: Workload.load(p)),
    ("cost report", lambda p: CostReport.load(p)),
]


@pytest.mark.parametrize("field, load", LOADERS, ids=[f for f, _ in LOADERS])
def test_missing_broken_and_non_mapping_files_are_one_line_errors_naming_the_field(tmp_path, field, load):
    cases = {
        "missing.yaml": (None, "file not found"),
        # made as a folder below; a workload's folder is a run folder, read for its workload.json
        "folder.yaml": (
            "/",
            "file not found" if field == "workload" else "folder.yaml is a folder, not a file",
        ),
        "broken.yaml": ("a: [1, 2\nb: 3\n", "is not valid YAML (line 2, column "),  # the list is not closed
        "list.yaml": ("- 1\n- 2\n", "must hold a mapping"),
        # PyYAML alone keeps the last of two equal keys: half of what was written would be ignored
        "twice.yaml": ("name: a\nname: b\n", "(line 2, column 1: key 'name' given twice)"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        if text == "/":
            path.mkdir()
        elif text is not None:
            path.write_text(text)
        with pytest.raises(SpikecimError) as err:
            load(path)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"{field}: ") and expected in msg, msg


def test_broken_json_workload_names_the_line(tmp_path):
    path = tmp_path / "w.json"
    path.write_text('{"layers": [\n  1,\n}')
    with pytest.raises(SpikecimError, match=r"workload: .* is not valid JSON \(.*line 3\)"):
        Workload.load(path)


def test_cost_report_with_invalid_content_is_a_one_line_error_naming_the_field(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"layers": "not a list"}')
    with pytest.raises(SpikecimError) as err:
        CostReport.load(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cost report ") and "layers" in msg, msg


def test_a_merge_key_may_be_overridden_without_counting_as_a_key_given_twice(tmp_path):
    from spikecim.readers import read_document

    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  x: 3\n")
    assert read_document(path, "t") == {"base": {"x": 1, "y": 2}, "run": {"x": 3, "y": 2}}

"""Every Python example in the README and docs/ runs as written.

A page's ```` ```python ```` blocks run in order in one fresh interpreter and one namespace, as
a reader pastes them one after the other, in a folder that holds what the pages say is there
(:func:`workspace`): ``runs/digits-convnet`` (``spikecim run`` of the default config, one
epoch, the stages the examples read), the NIR paper's graphs, and MNIST files under ``~/data``. A failing block is reported
with the page and line of the statement that raised. A block fenced ```` ```python notest ````
is a fragment by design (an interface's outline): it is compiled, not run.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, one_thread_env
from spikecim.cache import cache_root

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STAGES = "train,evaluate,trace,hardware,report"  # what the pages' examples read from the run folder
RUNNER = """
import json, sys, traceback
ns = {"__name__": "__main__"}
for page, line, code, run in json.load(sys.stdin):
    block = compile("\\n" * (line - 1) + code, page, "exec")  # tracebacks name the page's lines
    if not run:
        continue
    try:
        exec(block, ns)
    except BaseException:
        print(f"{page}:{line}: the block starting here raised", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def _blocks(page: Path) -> list[tuple[str, int, str, bool]]:
    """``(page, first code line, code, run)`` of every Python block of ``page``."""
    blocks, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```python"):
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            code = "\n".join(lines[i + 1 : j]) + "\n"
            blocks.append((str(page.relative_to(ROOT)), i + 2, code, "notest" not in fence.split()))
            i = j
        i += 1
    return blocks


PAGES_WITH_CODE = [p for p in PAGES if _blocks(p)]


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's format: magic 0x0000 0x08 ndim, big-endian sizes, uint8 data)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The folder the pages' examples run in, and their environment (HOME: its parent)."""
    home = tmp_path_factory.mktemp("docs-home")
    work = home / "work"
    work.mkdir()
    # another HOME, the same kernel cache: the examples do not compile the kernels again
    env = dict(one_thread_env(), HOME=str(home), SPIKECIM_CACHE_DIR=str(cache_root()))
    run = subprocess.run(
        [sys.executable, "-m", "spikecim", "run", "--epochs", "1", "--stages", STAGES],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    for graph in (SHARED_DATA / "nir-paper").glob("*.nir"):
        shutil.copy(graph, work)
    data, rng = home / "data", np.random.default_rng(0)
    data.mkdir()
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(data / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    return work, env


def test_the_pages_hold_examples_that_run():
    runnable = sum(run for p in PAGES for *_, run in _blocks(p))
    assert runnable >= 20  # the check below is not vacuous


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[p.name for p in PAGES_WITH_CODE])
def test_every_example_of_the_page_runs(page, workspace):
    work, env = workspace
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        check=False,
        input=json.dumps(_blocks(page)),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(result.stderr[-3000:], pytrace=False)

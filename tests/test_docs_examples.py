"""Every Python example in the README, BENCHMARKS.md and docs/ runs as written.

A page's ```` ```python ```` blocks run in order in one fresh interpreter and one namespace, as
a reader pastes them one after the other, in a folder that holds what the pages say is there
(:func:`workspace`): ``runs/digits-convnet`` (``spikecim run`` of the default config, one
epoch, the stages the examples read), the NIR paper's graphs, docs/hardware.md's SpikeSim network
as ``vgg9.yaml``, and MNIST files under ``~/data``. A failing block is reported
with the page and line of the statement that raised. A block fenced ```` ```python notest ````
is a fragment by design (an interface's outline): it is compiled, not run. Every
```` ```yaml KIND ```` block is read as the file it shows: a run config, a crossbar, a design
space, a layer list, a SpikeSim network or lines of a shipped architecture table (``KINDS``).
Every ``spikecim ...`` line of a bash or console block parses: its command and options exist
and take their values, and ``run`` and ``train`` build their run config. A console block's
command shown with its output runs there and prints that output. Every ``python
benchmarks/...`` command the pages give is parsed by that script's own argument parser
(and not run).
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SHARED_DATA, one_thread_env
from spikecim.analog import load_crossbar_config
from spikecim.cache import cache_root
from spikecim.cli import main
from spikecim.cli.pipeline import command_config
from spikecim.config import load_config
from spikecim.dse.space import load_space
from spikecim.hw.arch import TABLES_DIR
from spikecim.hw.layers import load_workload, spikesim_from_spec

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
READS_SHARED_DATA = {"nir.md"}  # its examples open a graph of ../shared/data/nir-paper
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


def _fenced(page: Path, language: str) -> list[tuple[str, int, str, list[str]]]:
    """``(page, first code line, code, the fence's words after the language)`` of every block
    of ``language`` on ``page``."""
    blocks, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        words = lines[i].strip().removeprefix("```").split()
        if lines[i].strip().startswith("```") and words[:1] == [language]:
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            code = "\n".join(lines[i + 1 : j]) + "\n"
            blocks.append((str(page.relative_to(ROOT)), i + 2, code, words[1:]))
            i = j
        i += 1
    return blocks


def _blocks(page: Path) -> list[tuple[str, int, str, bool]]:
    """``(page, first code line, code, run)`` of every Python block of ``page``."""
    return [(name, line, code, "notest" not in words) for name, line, code, words in _fenced(page, "python")]


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
    for graph in (SHARED_DATA / "nir-paper").glob("*.nir"):  # none where ../shared is absent
        shutil.copy(graph, work)
    # the SpikeSim network docs/hardware.md shows, under the name its commands give it
    ((_, _, network, _),) = [
        b for b in _fenced(ROOT / "docs" / "hardware.md", "yaml") if b[3] == ["spikesim"]
    ]
    (work / "vgg9.yaml").write_text(network)
    data, rng = home / "data", np.random.default_rng(0)
    data.mkdir()
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(data / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    return work, env


def _skip_without_shared_data(page_name: str) -> None:
    if Path(page_name).name in READS_SHARED_DATA and not (SHARED_DATA / "nir-paper").is_dir():
        pytest.skip(f"{page_name}'s examples read the NIR paper's graphs from {SHARED_DATA / 'nir-paper'}")


def test_the_pages_hold_examples_that_run():
    runnable = sum(run for p in PAGES for *_, run in _blocks(p))
    assert runnable >= 20  # the check below is not vacuous


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[p.name for p in PAGES_WITH_CODE])
def test_every_example_of_the_page_runs(page, workspace):
    _skip_without_shared_data(page.name)
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


# -- every ```yaml KIND block is a valid file of that kind ---------------------------------


def _file(code: str, folder: Path) -> Path:
    path = folder / "block.yaml"
    path.write_text(code)
    return path


def _table_excerpt(code: str, folder: Path) -> None:
    """Lines of a shipped architecture table: each value is the table's."""
    excerpt = yaml.safe_load(code)
    table = yaml.safe_load((TABLES_DIR / f"{excerpt['name']}.yaml").read_text())

    def within(part: dict, whole: dict, where: str) -> None:
        for key, value in part.items():
            assert key in whole, f"{where}{key}: not in the table"
            if isinstance(value, dict):
                within(value, whole[key], f"{where}{key}.")
            else:
                assert whole[key] == value, f"{where}{key}: {value} here, {whole[key]} in the table"

    within(excerpt, table, "")


KINDS = {
    "config": lambda code, folder: load_config(_file(code, folder)),  # spikecim run FILE.yaml
    "crossbar": lambda code, folder: load_crossbar_config(yaml.safe_load(code)),  # analog.preset / --analog
    "space": lambda code, folder: load_space(_file(code, folder)),  # spikecim dse FILE.yaml
    "layers": lambda code, folder: load_workload(_file(code, folder)),  # spikecim hw estimate FILE.yaml
    "spikesim": lambda code, folder: spikesim_from_spec(yaml.safe_load(code)),  # spikecim hw spikesim
    "table-excerpt": _table_excerpt,
}
YAML_BLOCKS = [block for page in PAGES for block in _fenced(page, "yaml")]


def test_every_yaml_block_names_its_kind():
    assert len(YAML_BLOCKS) >= 15  # the check below is not vacuous
    for page, line, _, words in YAML_BLOCKS:
        assert words[:1] and words[0] in KINDS, (
            f"{page}:{line - 1}: fence it ```yaml KIND, KIND one of {list(KINDS)}"
        )


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in YAML_BLOCKS])
def test_every_yaml_block_is_a_valid_file_of_its_kind(block, tmp_path):
    _, _, code, words = block
    KINDS[words[0]](code, tmp_path)


# -- every `spikecim ...` line of a bash or console block parses ---------------------------


def _command_lines() -> list[tuple[str, int, list[str]]]:
    """``(page, line, argv after "spikecim")`` of every spikecim command in the pages' bash and
    console blocks (also ``python -m spikecim`` under torchrun): comments dropped, continued
    lines joined, the ``[optional]`` parts of a synopsis left out."""
    found = []
    for page in PAGES:
        for language in ("bash", "console"):
            for name, first, code, _ in _fenced(page, language):
                lines, k = code.splitlines(), 0
                while k < len(lines):
                    start, text = k, lines[k]
                    while text.rstrip().endswith("\\"):
                        k += 1
                        text = text.rstrip()[:-1] + " " + lines[k]
                    k += 1
                    words = shlex.split(text.strip().removeprefix("$ "), comments=True)
                    if "spikecim" not in words:
                        continue
                    at = words.index("spikecim")
                    if at > 0 and words[at - 1] != "-m":
                        continue
                    found.append((name, first + start, _required(words[at + 1 :])))
    return found


def _required(words: list[str]) -> list[str]:
    """``words`` without the ``[optional]`` parts of a synopsis."""
    kept, optional = [], False
    for word in words:
        optional = optional or word.startswith("[")
        if not optional:
            kept.append(word)
        optional = optional and not word.endswith("]")
    return kept


COMMANDS = _command_lines()


def test_the_pages_hold_commands():
    assert len(COMMANDS) >= 60  # the check below is not vacuous


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{p}:{n}" for p, n, _ in COMMANDS])
def test_every_command_of_the_pages_parses(command):
    """Each command's options exist and take its values; ``run`` and ``train`` also build
    their run config (every ``--set`` field and ``--method``, on the config file where it
    ships with spikecim)."""
    page, line, argv = command
    if argv == ["--version"]:
        return
    # Typer re-exports click or vendors it: its commands and errors are matched by what they
    # have (a group has sub-commands, a usage error formats its message), as spikecim.cli.main does
    leaf, rest, path = main._register(), list(argv), []
    while hasattr(leaf, "commands"):
        path.append(rest.pop(0))
        leaf = leaf.get_command(leaf.context_class(leaf), path[-1])
        assert leaf is not None, f"{page}:{line}: no command 'spikecim {' '.join(path)}'"
    try:
        ctx = leaf.make_context(" ".join(path), rest)
    except Exception as e:
        if not callable(getattr(e, "format_message", None)):
            raise
        pytest.fail(f"{page}:{line}: spikecim {' '.join(argv)}: {e.format_message()}", pytrace=False)
    if path in (["run"], ["train"]):
        p = dict(ctx.params)
        config = p.pop("config")
        config = ROOT / config if config is not None and (ROOT / config).exists() else None
        if path == ["train"]:
            p["stages"] = "train"
        p.pop("fresh")
        command_config(config, p.pop("set_"), **p)


# -- console transcripts: a command shown with its output prints that output ---------------


def _transcripts() -> list[tuple[str, int, str, list[str]]]:
    """``(page, line, command, shown output lines)`` of every ``$ spikecim ...`` of a console
    block that the page shows output for."""
    found = []
    for page in PAGES:
        for name, first, code, _ in _fenced(page, "console"):
            lines = code.splitlines()
            for k, text in enumerate(lines):
                if not text.startswith("$ "):
                    continue
                shown = []
                for after in lines[k + 1 :]:
                    if after.startswith("$ "):
                        break
                    shown.append(after)
                if shown:
                    found.append((name, first + k, text[2:].split("  #")[0].strip(), shown))
    return found


TRANSCRIPTS = _transcripts()


def test_the_pages_hold_transcripts():
    assert len(TRANSCRIPTS) >= 4  # the check below is not vacuous


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[f"{p}:{n}" for p, n, *_ in TRANSCRIPTS])
def test_a_command_shown_with_its_output_prints_that_output(transcript, workspace):
    """Run in the examples' folder, the command prints each line the page shows, in that
    order (``...`` stands for anything); an ``error:`` line is a non-zero exit."""
    page, line, command, shown = transcript
    _skip_without_shared_data(page)
    work, env = workspace
    argv = shlex.split(command)
    assert argv[0] == "spikecim"
    result = subprocess.run(  # one stream, unbuffered: the lines in the order a terminal shows them
        [sys.executable, "-m", "spikecim", *argv[1:]],
        check=False,
        cwd=work,
        env=dict(env, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = result.stdout.splitlines()
    at = 0
    for want in shown:
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("...")))
        while at < len(printed) and not pattern.fullmatch(printed[at].strip()):
            at += 1
        if at == len(printed):
            pytest.fail(
                f"{page}:{line}: `{command}` did not print `{want}`; it printed:\n{result.stdout}",
                pytrace=False,
            )
        at += 1
    failed = any(w.startswith("error:") for w in shown)
    assert (result.returncode != 0) == failed, f"{page}:{line}: `{command}` exited {result.returncode}"


# -- every `python benchmarks/...` command of the pages parses -----------------------------

SCRIPT_RUNNER = """
import argparse, contextlib, io, json, os, runpy, sys

class Parsed(Exception):
    pass

parse_args = argparse.ArgumentParser.parse_args

def parse_and_stop(self, args=None, namespace=None):  # the script's own parser, then no run
    parse_args(self, args, namespace)
    raise Parsed

argparse.ArgumentParser.parse_args = parse_and_stop
results = []
for script, args in json.load(sys.stdin):
    sys.argv, said = [script, *args], io.StringIO()
    sys.path[0] = os.path.dirname(script)  # as `python benchmarks/x.py` sets it
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            runpy.run_path(script, run_name="__main__")
        results.append("ran without parsing its arguments")
    except Parsed:
        results.append(None)
    except SystemExit as e:
        results.append(f"exit {e.code}: {said.getvalue().strip()}")
print(json.dumps(results))
"""


def _script_commands() -> list[tuple[str, str, list[str]]]:
    """``(page, script, arguments)`` of every ``python benchmarks/...`` command the pages give
    in code spans or bash blocks, each once; ``[optional]`` parts left out."""
    texts = []
    for page in PAGES:
        text = page.read_text()
        texts += [(page.name, span) for span in re.findall(r"`([^`]*python\s+benchmarks/[^`]*)`", text)]
        texts += [(page.name, line) for *_, code, _ in _fenced(page, "bash") for line in code.splitlines()]
    found = {}
    for name, text in texts:
        command = re.search(r"python\s+(benchmarks/\w+\.py)(.*)", " ".join(text.split()))
        if command:
            args = tuple(_required(shlex.split(command.group(2), comments=True)))
            found.setdefault((command.group(1), args), name)
    return [(name, script, list(args)) for (script, args), name in found.items()]


SCRIPTS = _script_commands()


@pytest.fixture(scope="module")
def script_results() -> list[str | None]:
    """What each of SCRIPTS's parsers said, from one interpreter (None: it took the arguments)."""
    commands = [(str(ROOT / script), args) for _, script, args in SCRIPTS]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT_RUNNER],
        check=False,
        input=json.dumps(commands),
        cwd=ROOT,
        env=one_thread_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_pages_hold_benchmark_commands():
    assert len(SCRIPTS) >= 25  # the check below is not vacuous


@pytest.mark.parametrize("index", range(len(SCRIPTS)), ids=[f"{p}:{s} {' '.join(a)}" for p, s, a in SCRIPTS])
def test_every_benchmark_command_of_the_pages_parses(index, script_results):
    page, script, args = SCRIPTS[index]
    said = script_results[index]
    assert said is None, f"{page}: python {script} {' '.join(args)}: {said}"

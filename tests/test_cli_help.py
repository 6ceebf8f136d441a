"""The help pages: every command's one-line summary in `spikecim --help` is one line of its
docstring, and no flag is labelled as taking a value.

Typer's rich help prints a command's first docstring paragraph in the command list with its
hard line breaks, so a summary written over several lines wraps raggedly there.
"""

import itertools

from spikecim.cli import main


def _commands(group, prefix: str = ""):
    # Typer may vendor click, so a group is whatever holds sub-commands
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if getattr(cmd, "commands", None):
            yield from _commands(cmd, f"{prefix}{name} ")


def test_every_command_summary_is_a_single_line():
    root = main._register()  # the command tree `spikecim` parses with
    found = list(_commands(root))
    assert {"hw estimate", "nir import"} <= {n for n, _ in found}  # sub-apps included
    for name, cmd in found:
        summary = (cmd.short_help or cmd.help or "").strip().split("\n\n")[0]
        assert summary, f"{name}: no help text"
        assert "\n" not in summary, f"{name}: summary spans lines: {summary!r}"


def test_calling_main_again_registers_no_command_twice(capsys):
    # Typer keeps every registration: registering at each call made every later call slower
    for _ in range(3):
        assert main.main(["list", "tasks"]) == 0
    names = [c.name or c.callback.__name__ for c in main.app.registered_commands]
    groups = [g.name for g in main.app.registered_groups]
    assert len(names) == len(set(names)) and len(groups) == len(set(groups)) == 2  # hw, nir


def test_no_flag_is_labelled_as_taking_a_value(capsys):
    # A flag (--fresh, --json, --help) takes no value, so its help row shows no type label;
    # Typer's rich help writes `<bool>` for a flag without a metavar.
    root = main._register()
    for name, cmd in [("", root), *_commands(root)]:
        assert main.main([*name.split(), "--help"]) == 0
        page = capsys.readouterr().out
        assert "--help" in page, name
        assert "<bool>" not in page, f"{name or 'spikecim'} --help labels a flag <bool>"


def test_every_description_paragraph_wraps_at_the_page_width(capsys, monkeypatch):
    # Greedy wrapping ends a line only where the next word would not fit: a line that breaks
    # earlier is a hard line break of the docstring, kept by Typer's rich help.
    monkeypatch.setenv("COLUMNS", "80")
    root = main._register()
    for name, _ in _commands(root):
        main.main([*name.split(), "--help"])
        page = capsys.readouterr().out.splitlines()
        start = next(i for i, line in enumerate(page) if "Usage:" in line) + 1
        end = next(i for i, line in enumerate(page) if line.lstrip().startswith("╭"))
        lines = [line.strip() for line in page[start:end]]
        for line, after in itertools.pairwise(lines):
            if line and after:  # two lines of one paragraph
                assert len(line) + 1 + len(after.split()[0]) > 70, f"{name}: breaks early at {line!r}"


def test_python_dash_m_spikecim_runs_the_command_line():
    import subprocess
    import sys

    import spikecim

    out = subprocess.run(
        [sys.executable, "-m", "spikecim", "--version"], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout.strip()) == (0, f"spikecim {spikecim.__version__}")

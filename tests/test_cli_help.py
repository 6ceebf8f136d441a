"""Every command's one-line summary in `spikecim --help` is one line of its docstring.

Typer's rich help prints a command's first docstring paragraph in the command list with its
hard line breaks, so a summary written over several lines wraps raggedly there.
"""

import click
import typer

from spikecim.cli import main


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")


def test_every_command_summary_is_a_single_line():
    main._register()  # what `spikecim` does before parsing
    root = typer.main.get_command(main.app)
    found = list(_commands(root))
    assert len(found) > 10  # the whole tree, sub-apps included
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

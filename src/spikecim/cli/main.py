"""``spikecim``: the command-line entry point.

Every sub-command is a thin shell over a library function. Bad input raises
:class:`~spikecim.errors.SpikecimError`, printed here as one line on stderr with exit
code 2 (never a traceback).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import typer

from spikecim.errors import RunInterrupted, SpikecimError
from spikecim.memory import keep_freed_memory

app = typer.Typer(
    name="spikecim",
    help="Train spiking networks and their ANN twins, run them on simulated crossbars, "
    "and measure energy, latency and area from real spike activity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("spikecim")
    except PackageNotFoundError:
        from spikecim import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        print(f"spikecim {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        metavar="",
        help="Print the version and exit.",
    ),
) -> None:
    pass


_command = None  # the click command tree, built once per process by _register()


def _register():
    """Add the sub-commands to ``app`` and build its command tree, once per process: Typer
    keeps every registration, so registering again at each :func:`main` call would make every
    later call slower. Returns the tree :func:`main` runs."""
    global _command
    if _command is not None:
        return _command
    from spikecim.cli import bench, compare, dse, hw, nir, pipeline, security, trex

    pipeline.register(app)
    compare.register(app)
    app.add_typer(hw.app, name="hw")
    app.add_typer(nir.app, name="nir")
    bench.register(app)
    security.register(app)
    trex.register(app)
    dse.register(app)
    _command = typer.main.get_command(app)
    _tidy_help(_command)
    return _command


def _tidy_help(command, parent=None) -> None:
    """Reflow every paragraph of each command's description, and give every flag (``--help``
    included) an empty metavar: Typer's rich help keeps a docstring's hard line breaks after
    its first paragraph, so those paragraphs wrapped raggedly, and it labels a flag without a
    metavar ``<bool>``, though a flag takes no value."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)
    ctx = command.context_class(command, info_name=command.name, parent=parent)
    flags = [p for p in command.params if getattr(p, "is_flag", False)]
    for option in [*flags, command.get_help_option(ctx)]:
        if option is not None:
            option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub, ctx)


def _option_of(filename, argv: list[str]) -> str | None:
    """The option of ``argv`` whose path value is ``filename``, lies inside it (``-o
    bad/afile/w.json`` for ``bad/afile``) or holds it (``--set output_dir=bad/afile`` for
    ``bad/afile/run``), to name it in the error; None if none does."""
    if not filename:
        return None
    failed = Path(os.fsdecode(filename))
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if not arg.startswith("-"):
            continue
        if not eq:
            if i + 1 >= len(argv):
                continue
            value = argv[i + 1]
        if name == "--set":  # --set key=value: the key is the field
            key, _, value = value.partition("=")
            name = f"--set {key}"
        given = Path(value)
        if value and (given == failed or failed in given.parents or given in failed.parents):
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    keep_freed_memory()  # the process is spikecim's: no page faults for reused tensors
    command = _register()
    try:
        # Without standalone mode click hands back the code of an Exit (130 after Ctrl-C).
        code = command(args=argv, standalone_mode=False)
    except RunInterrupted as e:
        print(e, file=sys.stderr)
        return 130
    except SpikecimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written (permissions, no space, ...)
        where = f"{e.filename}: " if e.filename else ""
        option = _option_of(e.filename, sys.argv[1:] if argv is None else argv)
        print(f"error: {option + ': ' if option else ''}{where}{e.strerror or e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except SystemExit as e:  # typer/click exits (--help)
        return int(e.code or 0)
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        # Typer either re-exports click or vendors it, so match click's exception
        # protocol instead of importing the click module.
        code = getattr(e, "exit_code", None)
        if not (isinstance(code, int) and callable(getattr(e, "format_message", None))):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `spikecim` / `spikecim hw`
            print(e.format_message())
            return 0
        msg = " ".join(str(e.format_message()).split())
        print(f"error: {msg}", file=sys.stderr)
        return code
    if code == 130:
        print("interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())

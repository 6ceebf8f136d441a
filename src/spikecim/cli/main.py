"""``spikecim``: the command-line entry point.

Every sub-command is a thin shell over a library function. Bad input raises
:class:`~spikecim.errors.SpikecimError`, printed here as one line on stderr with exit
code 2 (never a traceback).
"""

from __future__ import annotations

import sys

import typer

from spikecim.errors import SpikecimError

app = typer.Typer(
    name="spikecim",
    help="Train spiking networks and their ANN twins, run them on simulated crossbars, "
    "and measure energy, latency and area from real spike activity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from spikecim.cli import bench, hw, nir, pipeline

    pipeline.register(app)
    app.add_typer(hw.app, name="hw")
    app.add_typer(nir.app, name="nir")
    bench.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except SpikecimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written (permissions, no space, ...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: completed epochs and stages are saved; run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except SystemExit as e:  # typer/click exits (--help)
        return int(e.code or 0)
    except typer.Abort:
        return 130
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

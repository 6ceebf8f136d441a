"""``python -m spikecim``: the command line, as the ``spikecim`` script runs it (and as
``torchrun -m spikecim train`` starts it)."""

from spikecim.cli.main import main

if __name__ == "__main__":  # not on import (a walk over the package imports every module)
    raise SystemExit(main())

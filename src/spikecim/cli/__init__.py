"""The ``spikecim`` command: thin shells over the library functions."""

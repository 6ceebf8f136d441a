"""spikecim: spiking neural networks on simulated in-memory-computing hardware.

The pipeline (see README): data -> model -> trace -> analog / hardware -> report.
"""

__version__ = "0.1.0"

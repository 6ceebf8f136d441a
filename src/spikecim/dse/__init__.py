"""Design-space exploration: algorithm × device × circuit × architecture search with Optuna.

    from spikecim.dse import explore, load_space
    study = explore(load_space("examples/dse/hardware.yaml"), "dse-out", trials=2000)

A space (:mod:`spikecim.dse.space`) lists knobs at dotted config paths, objectives and
constraints over the metrics of :mod:`spikecim.dse.objectives`; each trial
(:mod:`spikecim.dse.evaluate`) costs the design's hardware first and trains only when a
hardware constraint can still be met; the study (:mod:`spikecim.dse.study`) lives in a
journal file and resumes; :mod:`spikecim.dse.workers` spreads trials over processes or Ray
tasks; :mod:`spikecim.dse.outputs` writes the output folder. See docs/dse.md.
"""

from spikecim.dse.space import Space, load_space

__all__ = ["Space", "explore", "load_space"]


def explore(space, out_dir, **kwargs):
    """Run (or continue) the study of ``space`` in ``out_dir`` and write its output folder;
    returns the ``dse.json`` document. Keywords: :func:`spikecim.dse.workers.explore`
    (``trials``, ``workers``, ``ray_address``, ``random_baseline``, ``url``, ``progress``)."""
    from spikecim.dse.workers import explore as _explore

    return _explore(space, out_dir, **kwargs)

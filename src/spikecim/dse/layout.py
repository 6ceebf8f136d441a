"""The files of a study's output folder (``spikecim dse --out DIR``), named once for the
modules that write them (:mod:`spikecim.dse.study`, :mod:`~spikecim.dse.evaluate`,
:mod:`~spikecim.dse.outputs`, ``spikecim dse``) and those that read them
(:mod:`spikecim.report.study`, :mod:`spikecim.report.compare`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CACHE", "JOURNAL", "LOCK", "OUTPUTS", "RESULTS", "SPACE", "in_cache", "is_study"]

JOURNAL = "study.journal"  # Optuna's journal: the study itself, appended trial by trial
RESULTS = "dse.json"  # the summary written when the study ends (outputs.write_outputs)
CACHE = "cache"  # the networks trained for the designs, one run folder per key: CACHE/<key>/
SPACE = "space.yaml"  # the space as the command read it, kept to continue the study
LOCK = "dse.lock"  # held by the one command that drives the folder
# what a study writes beside RESULTS when it ends (outputs.write_outputs, report.study)
OUTPUTS = ("summary.md", "pareto.json", "pareto.csv", "trials.csv", "pareto.png", "hypervolume.png",
           "importance.png", "study.html")  # fmt: skip


def is_study(folder: str | Path) -> bool:
    """Whether ``folder`` holds a study: its journal (running or interrupted) or its results."""
    folder = Path(folder)
    return (folder / JOURNAL).is_file() or (folder / RESULTS).is_file()


def in_cache(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a network a study trained for its designs (``<study>/CACHE/<key>``)."""
    cache = Path(run_dir).parent
    return cache.name == CACHE and is_study(cache.parent)

"""The power side channel of analog crossbars: traces, leakage, attack, countermeasures.

``record_traces`` measures the supply energy of every crossbar read of a model
(:mod:`~spikecim.security.traces`, :mod:`~spikecim.security.measure`); ``leakage`` scores
it without an attacker; ``attack`` reconstructs inputs from it; ``countermeasures`` hide
it at a hardware cost; ``analysis.analyse_run`` does all of it for a run folder
(``spikecim security RUN_DIR``). Threat model: docs/security.md.
"""

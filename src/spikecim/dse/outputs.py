"""The output folder of ``spikecim dse``: the study read back as files.

- ``dse.json``: objectives (name, direction, unit), constraints, the baseline design,
  every trial that ran or runs (number, state, params, values of every metric computed,
  feasible, pareto; a design still waiting in the queue is not listed),
  the hypervolume after each trial (search, and random search at the same budget when run),
  the reference point it is measured from, and the knobs' importance
- ``pareto.csv`` / ``pareto.json``: the feasible Pareto front; ``trials.csv``: every trial
- ``pareto.png`` (2-D, or pairwise for more objectives, baseline marked), ``hypervolume.png``,
  ``importance.png`` and ``summary.md``
- ``study.html``: the interactive page (:func:`spikecim.report.study.write_study_page`): every
  trial hoverable on the Pareto plot, the baseline marked, hypervolume over trials, importance

The hypervolume is Optuna's own (``optuna._hypervolume.compute_hypervolume``, on the
objectives turned to minimisation): the volume dominated by the feasible front up to a
reference point, the worst feasible value of each objective over both studies plus a tenth
of its range (stated in ``dse.json`` as ``reference_point``, in the objectives' own signs).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from spikecim.dse.layout import RESULTS
from spikecim.dse.objectives import METRICS
from spikecim.dse.space import Space
from spikecim.dse.study import directions

__all__ = [
    "feasible",
    "hypervolume",
    "hypervolume_history",
    "pareto_numbers",
    "reference_point",
    "summarise",
    "write_outputs",
]


def feasible(t: FrozenTrial) -> bool:
    """A finished trial that meets every constraint (Optuna's rule: every value <= 0)."""
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


def _losses(trials: list[FrozenTrial], dirs: list[str]) -> np.ndarray:
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in dirs])
    if not trials:
        return np.zeros((0, len(dirs)))
    return np.array([t.values for t in trials], dtype=float) * sign


def pareto_numbers(trials: list[FrozenTrial], dirs: list[str]) -> set[int]:
    """Numbers of the feasible trials no other feasible trial dominates (a trial that reused
    an earlier one's result is a copy of it, not another design on the front)."""
    ok = [t for t in trials if feasible(t) and "reused_from" not in t.user_attrs]
    loss = _losses(ok, dirs)
    out = set()
    for i, t in enumerate(ok):
        le = np.all(loss <= loss[i], axis=1)
        lt = np.any(loss < loss[i], axis=1)
        if not np.any(le & lt):
            out.add(t.number)
    return out


def reference_point(studies: list[list[FrozenTrial]], dirs: list[str]) -> np.ndarray | None:
    """The reference point in minimisation form (see the module docstring); None without a
    feasible trial."""
    loss = np.concatenate([_losses([t for t in ts if feasible(t)], dirs) for ts in studies])
    if len(loss) == 0:
        return None
    worst, best = loss.max(axis=0), loss.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return worst + 0.1 * span


def hypervolume_history(trials: list[FrozenTrial], dirs: list[str], ref: np.ndarray | None) -> list[float]:
    """The hypervolume of the feasible trials among the first k, for k = 1, 2, …"""
    from optuna._hypervolume import compute_hypervolume

    out, front, hv = [], np.zeros((0, len(dirs))), 0.0
    for t in sorted(trials, key=lambda t: t.number):
        if ref is not None and feasible(t):
            p = _losses([t], dirs)[0]
            covered = len(front) and np.any(np.all(front <= p, axis=1))
            if np.all(p < ref) and not covered:
                front = np.vstack([front[~np.all(p <= front, axis=1)], p])
                hv = float(compute_hypervolume(front, ref))
        out.append(hv)
    return out


def hypervolume(trials: list[FrozenTrial], dirs: list[str], ref: np.ndarray | None) -> float:
    """The hypervolume of the feasible trials of ``trials`` (0 without one)."""
    from optuna._hypervolume import compute_hypervolume

    if ref is None:
        return 0.0
    loss = _losses([t for t in trials if feasible(t)], dirs)
    loss = loss[np.all(loss < ref, axis=1)]
    return float(compute_hypervolume(loss, ref)) if len(loss) else 0.0


def summarise(
    study: optuna.Study,
    space: Space,
    random: optuna.Study | None = None,
    baseline: dict | None = None,
    importance: bool = True,
) -> dict[str, Any]:
    """The ``dse.json`` document of a study (see the module docstring)."""
    dirs = directions(space)
    # a design waiting in the queue (a grid's rest, a rerun not started) is no trial yet
    ran = [s for s in TrialState if s != TrialState.WAITING]
    trials = study.get_trials(deepcopy=False, states=ran)
    rtrials = random.get_trials(deepcopy=False, states=ran) if random is not None else []
    front = pareto_numbers(trials, dirs)
    ref = reference_point([trials, rtrials], dirs)
    hv = hypervolume_history(
        [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)], dirs, ref
    )
    rhv = hypervolume_history(
        [t for t in rtrials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)], dirs, ref
    )
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in dirs])
    doc: dict[str, Any] = {
        "study": study.study_name,
        "sampler": _sampler_name(space, study),
        "objectives": [
            {"name": o.metric, "direction": d, "unit": METRICS[o.metric].unit}
            for o, d in zip(space.objectives, dirs)
        ],
        "constraints": [{"metric": c.metric, "op": c.op, "bound": float(c.bound)} for c in space.constraints],
        "baseline": baseline,
        "trials": [_trial(t, front) for t in trials],
        "hypervolume": [
            {"trial": i, "search": h, "random": rhv[i] if i < len(rhv) else None} for i, h in enumerate(hv)
        ],
        "reference_point": None if ref is None else [float(x) for x in ref * sign],
        "importance": _importance(study, space) if importance else {},
    }
    if random is not None:
        doc["random_trials"] = [_trial(t, set()) for t in rtrials]
    return doc


def _trial(t: FrozenTrial, front: set[int]) -> dict[str, Any]:
    out = {
        "number": t.number,
        "state": t.state.name,
        "params": dict(t.params),
        "values": {k: float(v) for k, v in (t.user_attrs.get("values") or {}).items()},
        "feasible": feasible(t),
        "pareto": t.number in front,
        "constraints": dict(t.constraints),
    }
    for key in ("bounds", "skipped", "reused_from", "rerun_of", "trained", "error"):
        if key in t.user_attrs:
            out[key] = t.user_attrs[key]
    return out


def _importance(study: optuna.Study, space: Space) -> dict[str, float]:
    """fANOVA importance of the knobs for the first objective (empty when too few trials)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2 or len({tuple(t.values) for t in done}) < 2:
        return {}
    try:
        imp = optuna.importance.get_param_importances(
            study, target=lambda t: t.values[0], evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (ValueError, RuntimeError):
        return {}
    return {k: float(v) for k, v in imp.items()}


def write_outputs(doc: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the output folder from a :func:`summarise` document; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / RESULTS]
    paths[0].write_text(json.dumps(doc, indent=1, allow_nan=False, default=float))
    front = [t for t in doc["trials"] if t["pareto"]]
    (out / "pareto.json").write_text(json.dumps(front, indent=1, allow_nan=False))
    paths.append(out / "pareto.json")
    paths += [_csv(front, out / "pareto.csv"), _csv(doc["trials"], out / "trials.csv")]
    paths += _plots(doc, out)
    paths.append(_markdown(doc, out / "summary.md"))
    from spikecim.report.study import write_study_page

    paths.append(write_study_page(out))
    return paths


def _csv(trials: list[dict], path: Path) -> Path:
    params = sorted({k for t in trials for k in t["params"]})
    metrics = sorted({k for t in trials for k in t["values"]})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "feasible", "pareto", *params, *metrics, "error"])
        for t in trials:
            w.writerow(
                [t["number"], t["state"], t["feasible"], t["pareto"]]
                + [t["params"].get(p, "") for p in params]
                + [t["values"].get(m, "") for m in metrics]
                + [t.get("error", "")]  # why a failed trial failed
            )
    return path


def _plots(doc: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    objs = [o["name"] for o in doc["objectives"]]
    label = {o["name"]: f"{o['name']} ({o['unit']})" if o["unit"] else o["name"] for o in doc["objectives"]}
    done = [t for t in doc["trials"] if t["state"] == "COMPLETE" and all(o in t["values"] for o in objs)]
    base = (doc.get("baseline") or {}).get("values") or {}
    pairs = [(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :]] or [(objs[0], None)]
    n = len(pairs)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        if b is None:
            ax.plot([t["number"] for t in done], [t["values"][a] for t in done], ".", color="0.6")
            ax.set_xlabel("trial")
            ax.set_ylabel(label[a])
            continue
        groups = (
            (
                "infeasible",
                [t for t in done if not t["feasible"]],
                {"marker": "x", "color": "tab:red", "alpha": 0.4},
            ),
            (
                "feasible",
                [t for t in done if t["feasible"] and not t["pareto"]],
                {"marker": ".", "color": "0.6"},
            ),
            ("Pareto front", [t for t in done if t["pareto"]], {"marker": "o", "color": "tab:blue"}),
        )
        for name, ts, style in groups:
            if ts:
                ax.scatter(
                    [t["values"][a] for t in ts], [t["values"][b] for t in ts], label=name, s=18, **style
                )
        if a in base and b in base:
            ax.scatter(
                [base[a]], [base[b]], marker="*", s=200, color="tab:orange", label="baseline", zorder=5
            )
        ax.set_xlabel(label[a])
        ax.set_ylabel(label[b])
        for m, scale in ((a, ax.set_xscale), (b, ax.set_yscale)):
            vals = [t["values"][m] for t in done]
            if vals and min(vals) > 0 and max(vals) > 100 * min(vals):  # spans two decades
                scale("log")
        ax.legend(fontsize=7)
    fig.suptitle(f"{doc.get('study', 'dse')}: {len(done)} trials")
    fig.tight_layout()
    paths.append(out / "pareto.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    hv = doc["hypervolume"]
    ax.plot([h["trial"] + 1 for h in hv], [h["search"] for h in hv], label=doc.get("sampler", "search"))
    rand = [h for h in hv if h["random"] is not None]
    if rand:
        ax.plot([h["trial"] + 1 for h in rand], [h["random"] for h in rand], label="RandomSampler", ls="--")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "hypervolume.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if doc["importance"]:
        fig, ax = plt.subplots(figsize=(5, 0.5 + 0.4 * len(doc["importance"])))
        names = list(doc["importance"])[::-1]
        ax.barh(names, [doc["importance"][k] for k in names])
        ax.set_xlabel(f"importance for {objs[0]} (fANOVA)")
        fig.tight_layout()
        paths.append(out / "importance.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _markdown(doc: dict, path: Path) -> Path:
    objs = [o["name"] for o in doc["objectives"]]
    trials = doc["trials"]
    front = [t for t in trials if t["pareto"]]
    lines = [
        f"# Design-space exploration: {doc.get('study', 'dse')}",
        "",
        (
            f"Sampler {doc.get('sampler')}; {len(trials)} trials, "
            f"{sum(t['state'] == 'COMPLETE' for t in trials)} complete, "
            f"{sum(t['state'] == 'PRUNED' for t in trials)} not trained (a hardware bound failed a constraint), "
            f"{sum(t['feasible'] for t in trials)} feasible, {len(front)} on the Pareto front."
        ),
        "",
        "Objectives: "
        + ", ".join(
            f"{o['name']} ({o['direction']}{', ' + o['unit'] if o['unit'] else ''})"
            for o in doc["objectives"]
        )
        + ".",
    ]
    if doc["constraints"]:
        lines.append(
            "Constraints: "
            + ", ".join(f"{c['metric']} {c['op']} {c['bound']:g}" for c in doc["constraints"])
            + "."
        )
    hv = doc["hypervolume"]
    if hv:
        last = hv[-1]
        text = f"Hypervolume after {len(hv)} trials: {last['search']:.6g}"
        rand = [h for h in hv if h["random"] is not None]
        if rand:
            text += f"; random search at the same budget: {rand[-1]['random']:.6g}"
        lines += ["", text + f" (reference point {doc['reference_point']}, Optuna's hypervolume)."]
    if doc.get("baseline"):
        b = doc["baseline"]
        lines += [
            "",
            "Baseline design "
            + ", ".join(f"{k}={v}" for k, v in b["params"].items())
            + ": "
            + (
                f"not evaluated ({b['error']})"
                if "error" in b
                else ", ".join(f"{m} {_fmt(b['values'].get(m))}" for m in objs if m in b["values"])
            )
            + ".",
        ]
    params = sorted({k for t in front for k in t["params"]})
    lines += [
        "",
        "## Pareto front",
        "",
        "| trial | " + " | ".join(params + objs) + " |",
        "|" + "---|" * (1 + len(params) + len(objs)),
    ]
    for t in sorted(front, key=lambda t: t["values"].get(objs[0], 0)):
        cells = [str(t["number"])] + [_fmt(t["params"].get(p, "")) for p in params]
        cells += [_fmt(t["values"].get(m, "")) for m in objs]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [t for t in trials if "error" in t]
    if failed:
        lines += ["", "## Failed trials", "", "| trial | design | why it failed |", "|---|---|---|"]
        for t in failed:
            design = ", ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items())
            why = t["error"].replace("|", "\\|")  # a | would end the cell
            lines.append(f"| {t['number']} | {design} | {why} |")
    if doc["importance"]:
        lines += ["", f"## Knob importance for {objs[0]} (fANOVA)", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in doc["importance"].items()]
    lines += [
        "",
        "Files: study.html, dse.json, pareto.csv, pareto.json, trials.csv, pareto.png, hypervolume.png"
        + (", importance.png" if doc["importance"] else "")
        + ".",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sampler_name(space, study) -> str:
    """The search's sampler as the space names it: a grid study enqueues its designs and
    draws with Optuna's RandomSampler, which is not what it searched by."""
    if space.sampler.name == "grid" and not study.study_name.endswith("-random"):
        return "grid (each design once)"
    return type(study.sampler).__name__

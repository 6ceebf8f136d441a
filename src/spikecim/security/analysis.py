"""``analyse_run``: the side-channel analysis of a finished run, written to ``RUN_DIR/security/``.

For every variant (the spiking model and its ANN twin): the analog model on the run's
crossbar (the ``analog`` stage's preset and overrides, programmed with its seed), its
clean traces on the attacker's inputs (the training split) and on the victim's (the test
split, never seen by the attacker), then

1. the attack on the first layer against measurement noise (``noise_levels``), with and
   without GAN refinement, and the mean-image baseline;
2. the model-free leakage of every layer and timestep;
3. each countermeasure: the attack and the leakage again, at ``countermeasure_noise``, and
   its energy, latency and area overhead on the ``imc`` table, against the run's traced
   workload costed on the same table.

Files: ``results.json`` (every number), ``traces_<variant>.npz/.json`` (the victim's clean
traces and their metadata), and ``RUN_DIR/plots/security_*.png``; the report section reads them
(:mod:`spikecim.security.report`). Each file it replaces must be one spikecim wrote, checked
before the analysis starts (:func:`spikecim.pipeline.folder.check_replaceable`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from spikecim.errors import SpikecimError
from spikecim.security.attack import preprocess, reconstruct
from spikecim.security.config import COUNTERMEASURES, CountermeasureConfig, SecurityConfig
from spikecim.security.countermeasures import overhead
from spikecim.security.leakage import leakage_map
from spikecim.security.measure import record_traces
from spikecim.security.traces import measure_noise, periphery_from_arch
from spikecim.train.seeding import seeded

__all__ = ["analyse_run"]

IMC_ACTIVITY = ("crossbar", "adc", "mux", "shift_add")  # the imc components a read costs
GRID_SAMPLES = 8


def analyse_run(run_dir: str | Path, scfg: SecurityConfig, console=None, allow_partial: bool = False) -> dict:
    """Run the analysis (module docstring); returns what ``results.json`` holds. Torch runs
    on one thread meanwhile: the attacker's networks and a digits model are far too small to
    gain from more, and on a busy machine extra threads only wait for each other. A run whose
    training was interrupted is refused unless ``allow_partial``
    (:func:`spikecim.pipeline.run.load_run`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _analyse(run_dir, scfg, console, allow_partial)
    finally:
        torch.set_num_threads(threads)


def _analyse(run_dir: str | Path, scfg: SecurityConfig, console, allow_partial: bool) -> dict:
    from spikecim.analog import to_analog
    from spikecim.hw.arch import load_architecture
    from spikecim.hw.estimate import estimate
    from spikecim.pipeline import folder
    from spikecim.pipeline.run import load_run, variant_input
    from spikecim.pipeline.stage_analog import crossbar_config_for_run
    from spikecim.security import plots

    start = time.perf_counter()
    run_dir = Path(run_dir)
    ctx = load_run(run_dir, console, allow_partial=allow_partial)
    xbar = crossbar_config_for_run(ctx.config.analog)
    arch = load_architecture(scfg.trace.arch)
    data = ctx.data
    limit = scfg.max_samples
    att_x, vic_x, vic_y = data.x_train[:limit], data.x_test[:limit], data.y_test[:limit]
    if data.frames or att_x.dim() != 4:
        raise SpikecimError("security: the attack needs image inputs [N, C, H, W] (not event frames)")
    out_dir = run_dir / "security"
    traces_files = [out_dir / f"traces_{v}{suffix}" for v in ctx.models for suffix in (".npz", ".json")]
    plot_files = [run_dir / "plots" / name for name in plots.FILES.values()]
    folder.check_replaceable([out_dir / "results.json", *traces_files, *plot_files], "security")
    names = scfg.countermeasures.names or list(COUNTERMEASURES)
    results: dict = {"config": scfg.model_dump(mode="json"), "variants": {}, "countermeasure_names": names}
    grids = {}
    for variant, model in ctx.models.items():
        if variant not in ctx.workloads:
            raise SpikecimError(
                f"security: {run_dir} has no traced workload of '{variant}'; run the trace stage first"
            )
        _say(console, f"security: {variant}")
        mi = variant_input(ctx.config, variant, data)
        with seeded(ctx.config.analog.seed):  # programming's readouts draw read noise
            analog = to_analog(model, xbar, seed=ctx.config.analog.seed).eval()
        periphery = periphery_from_arch(scfg.trace.arch, mi.spiking)
        imc = estimate(ctx.workloads[variant], arch)

        def accuracy(images: torch.Tensor, model=model, mi=mi) -> float:
            from spikecim.train.evaluate import evaluate

            return evaluate(model, images, vic_y, mi)["accuracy"]

        def traces(cm: CountermeasureConfig, analog=analog, mi=mi, periphery=periphery):
            a = record_traces(analog, att_x, mi, xbar, scfg.trace, periphery, cm, seed=scfg.seed + 1)
            v = record_traces(analog, vic_x, mi, xbar, scfg.trace, periphery, cm, seed=scfg.seed + 2)
            return a, v

        att, vic = traces(CountermeasureConfig())
        vic.save(out_dir / f"traces_{variant}", scfg.trace.sampling)
        sweep, grid = _noise_sweep(att, vic, att_x, vic_x, scfg, accuracy)
        grids[variant] = grid
        entry = {
            "timesteps": int(att.layers[0].reads_pj.shape[1]),
            "noise": sweep,
            "leakage": _leakage(att, vic, att_x, vic_x, scfg, 0.0),
            "imc": {"energy_pj": imc.energy_pj, "latency_ns": imc.latency_ns, "area_um2": imc.area_um2},
            "countermeasures": {},
        }
        imc_layers = {layer.name: layer for layer in imc.layers}
        for name in names:
            _say(console, f"security: {variant}, countermeasure {name}")
            cm = scfg.countermeasures.model_copy(update={"names": [name]})
            c_att, c_vic = traces(cm)
            level = scfg.countermeasure_noise
            metrics, _ = _attack(c_att, c_vic, att_x, vic_x, scfg, level, accuracy)
            layers = [_cost_inputs(lt, imc_layers) for lt in c_vic.layers]
            cost = overhead(name, layers, arch.p, cm)
            entry["countermeasures"][name] = {
                "metrics": metrics,
                "leakage_first_layer": _leakage(c_att, c_vic, att_x, vic_x, scfg, level)[
                    c_vic.layers[0].name
                ],
                "overhead": cost,
                "overhead_fraction": {
                    "energy": cost["energy_pj"] / imc.energy_pj if imc.energy_pj > 0 else None,
                    "latency": cost["latency_ns"] / imc.latency_ns if imc.latency_ns > 0 else None,
                    "area": cost["area_um2"] / imc.area_um2 if imc.area_um2 > 0 else None,
                },
                "trace_energy_ratio": sum(lt.info["mean_pj"] for lt in c_vic.layers)
                / max(sum(lt.info["mean_pj"] for lt in vic.layers), 1e-30),
            }
        results["variants"][variant] = entry
    results["seconds"] = time.perf_counter() - start
    results["plots"] = dict(plots.FILES)
    try:
        text = json.dumps(results, indent=1, allow_nan=False, default=float)
    except ValueError:
        raise SpikecimError("security: a result is not finite (NaN or inf); nothing written") from None
    # before the figures: a failed figure loses no result
    folder.write_file(out_dir / "results.json", text.encode())
    plots.write_all(results, grids, vic_x[:GRID_SAMPLES], run_dir / "plots")
    return results


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text, markup=False, highlight=False)


def _first(traces, sampling: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The first layer's samples and, unless one sample spans the layer step, its map."""
    from spikecim.security.traces import sample

    lt = traces.layers[0]
    return sample(lt.reads_pj, sampling), None if sampling == "layer" else lt.map_shape


def _attack(att, vic, att_x, vic_x, scfg, level, accuracy):
    """The attack on the first layer's reads at probe noise ``level``."""
    gen = np.random.default_rng(scfg.seed + 3)
    s_att, map_shape = _first(att, scfg.trace.sampling)
    s_vic, _ = _first(vic, scfg.trace.sampling)
    full = float(s_att.max())  # the attacker calibrates the probe on their own traces
    bits = scfg.trace.probe_bits
    f_att = preprocess(measure_noise(s_att, level, gen, bits, full), map_shape)
    f_vic = preprocess(measure_noise(s_vic, level, gen, bits, full), map_shape)
    result = reconstruct(f_att, att_x, f_vic, vic_x, scfg.attack, map_shape, accuracy)
    return result.metrics, result


def _noise_sweep(att, vic, att_x, vic_x, scfg, accuracy):
    rows, grid = [], {}
    for level in scfg.noise_levels:
        metrics, result = _attack(att, vic, att_x, vic_x, scfg, level, accuracy)
        rows.append({"noise": level, **metrics})
        grid[level] = result.reconstructions[:GRID_SAMPLES].detach()
    return rows, grid


def _leakage(att, vic, att_x, vic_x, scfg, level) -> dict:
    """Probe R² and max |corr| per layer and timestep, samples under probe noise ``level``."""
    gen = np.random.default_rng(scfg.seed + 4)
    s_att, s_vic = att.sampled(scfg.trace.sampling), vic.sampled(scfg.trace.sampling)
    if level > 0:
        for name in s_att:
            full = float(s_att[name].max())
            s_att[name] = measure_noise(s_att[name], level, gen, scfg.trace.probe_bits, full)
            s_vic[name] = measure_noise(s_vic[name], level, gen, scfg.trace.probe_bits, full)
    return leakage_map(s_att, att_x.numpy(), s_vic, vic_x.numpy())


def _cost_inputs(lt, imc_layers) -> dict:
    """A layer's trace facts and its imc energy and latency (0 when the table skips it)."""
    cost = imc_layers.get(lt.name)
    energy = sum(cost.energy_pj.get(k, 0.0) for k in IMC_ACTIVITY) if cost is not None else 0.0
    return {
        **lt.info,
        "reads": lt.info["reads"],
        "imc_energy_pj": energy,
        "imc_latency_ns": cost.latency_ns if cost is not None else 0.0,
    }

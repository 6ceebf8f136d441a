"""``spikecim hw``: hardware cost estimates (see spikecim.hw).

spikecim hw list
spikecim hw estimate runs/digits-convnet --arch imc-rram-65nm [--variant ann] [--dense] [--json]
spikecim hw estimate layers.yaml --arch my_chip.yaml --set xbar_rows=256 --out cost.json
spikecim hw spikesim vgg9.yaml --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from spikecim.errors import SpikecimError
from spikecim.readers import read_settings

app = typer.Typer(help="Cost a workload on hardware models: energy, latency, area.", no_args_is_help=True)


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SpikecimError(f"--set: expected key=value, got '{item}'")
        k, v = (x.strip() for x in item.split("=", 1))
        if not k:
            raise SpikecimError(f"--set: expected key=value, got '{item}'")
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise SpikecimError(f"--set {k}: '{v}' is not a YAML value") from None
    return out


def _report_output(path: Path) -> None:
    """``path`` may be written: a new file, or a CostReport spikecim saved before (replaced).
    Any other existing file is the user's and is never overwritten."""
    from spikecim.hw import CostReport
    from spikecim.readers import loads, replaceable

    replaceable(
        path,
        loads(CostReport.load),
        "--out",
        "is a folder; give the CostReport JSON's file name",
        "is not a CostReport JSON; spikecim replaces only its own reports (choose a new file name)",
    )


@app.command("list")
def list_cmd() -> None:
    """List the shipped architecture tables and the estimators."""
    from spikecim.hw import list_architectures, list_estimators, load_architecture
    from spikecim.hw.estimators import get_estimator

    print("architectures:")
    for name in list_architectures():
        a = load_architecture(name)
        print(f"  {name:22s} {a.estimator:12s} {a.description}")
    print("estimators:")
    for name in list_estimators():
        print(f"  {name:12s} {get_estimator(name).description}")


@app.command("estimate")
def estimate_cmd(
    workload: Annotated[
        Path,
        typer.Argument(
            help="run folder, traced workload JSON/YAML, YAML layer list, .nir model or `nir import` folder"
        ),
    ],
    arch: Annotated[
        str,
        typer.Option(
            "--arch", "-a", help="a shipped table name (`spikecim hw list`) or the path of a YAML table"
        ),
    ] = "imc-rram-65nm",
    variant: Annotated[
        str | None,
        typer.Option(
            help="in a run folder: the variant to cost (its config's names; default: the first spiking one); "
            "a workload file or a .nir model holds one network and takes no --variant"
        ),
    ] = None,
    dense: Annotated[
        bool, typer.Option("--dense", metavar="", help="ignore the traced activity (upper bound)")
    ] = False,
    node_nm: Annotated[
        float | None,
        typer.Option(
            "--node-nm", help="scale the table to this technology node in nm, 1 to 10000 (first order)"
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="override one table constant (a key under params:, e.g. adc_bits=4), applied after "
            "--node-nm scaling, so the value is kept as given; repeatable",
        ),
    ] = None,
    dynamic_products: Annotated[
        str | None,
        typer.Option(
            "--dynamic-products",
            help="cost the products of two activations (attention's Q·Kᵀ, A·V) on another table "
            "(e.g. imc-sram-65nm: SRAM compute-in-memory) or on the digital unit ('digital')",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print the CostReport as JSON")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="also save the CostReport JSON here (a new file, or a CostReport spikecim saved before)"
        ),
    ] = None,
    timesteps: Annotated[
        int | None, typer.Option(help="for a .nir model: steps to trace, 1 to 10000 (default 10)")
    ] = None,
    input_rate: Annotated[
        float | None,
        typer.Option(
            help="for a .nir model without --dataset: Bernoulli input spike probability per step, "
            "in (0, 1] (default 0.2)"
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="for a .nir model: trace on this data set (`spikecim list datasets`)")
    ] = None,
    root: Annotated[str | None, typer.Option(help="folder of the --dataset files")] = None,
) -> None:
    """Energy, latency and area of one workload on one architecture.

    A transformer's products of two activations are costed with their crossbar writes
    (energy, latency, wear and lifetime of the written cells), softmax, LayerNorm and GELU on
    the digital unit, and the report ends with the cost by part.

    A .nir model (or a `spikecim nir import` folder) is traced first: on
    --dataset when given, else on Bernoulli spike trains at --input-rate.
    """
    from spikecim.hw import estimate, load_architecture, load_workload
    from spikecim.hw.layers import MAX_TIMESTEPS
    from spikecim.pipeline.sources import is_model_file

    if out is not None:
        _report_output(out)
    if timesteps is not None and not 1 <= timesteps <= MAX_TIMESTEPS:
        raise SpikecimError(f"--timesteps: must be from 1 to {MAX_TIMESTEPS}, got {timesteps}")
    if variant is not None and (is_model_file(workload) or workload.is_file()):
        raise SpikecimError(f"--variant: applies to a run folder only; {workload} holds one network")
    if is_model_file(workload):
        from spikecim.pipeline.sources import workload_from_model_file

        if input_rate is not None and dataset is not None:
            raise SpikecimError(
                "--input-rate: applies without --dataset only (the data set's samples are the input)"
            )
        wl = workload_from_model_file(
            workload,
            10 if timesteps is None else timesteps,
            input_rate=0.2 if input_rate is None else input_rate,
            dataset=dataset,
            root=root,
        )
    else:
        for flag, value in {
            "timesteps": timesteps,
            "input-rate": input_rate,
            "dataset": dataset,
            "root": root,
        }.items():
            if value is not None:
                raise SpikecimError(
                    f"--{flag}: applies to a .nir model only; {workload} is a traced workload, "
                    "whose steps and activity were measured"
                )
        wl = load_workload(workload, variant=variant)
    a = load_architecture(arch, node_nm=node_nm, **_parse_sets(set_ or []))
    if dynamic_products is not None:
        if dynamic_products != "digital":
            try:
                load_architecture(dynamic_products)  # a bad name fails here, in one line
            except SpikecimError as e:
                raise SpikecimError(f"--dynamic-products: {e}") from None
        a = a.model_copy(update={"dynamic_products": dynamic_products})
    report = estimate(wl, a, dense=dense)
    if out is not None:
        report.save(out)
    if as_json:
        print(report.model_dump_json(indent=1))
    else:
        print(report.table())


@app.command("spikesim")
def spikesim_cmd(
    layers: Annotated[
        Path,
        typer.Argument(help="YAML: xbar_size, pe_per_tile, timesteps, clock_mhz, device, kernel, layers"),
    ],
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print one JSON object")] = False,
) -> None:
    """The public SpikeSim energy/latency/area script, reproduced (quirks included)."""
    from spikecim.hw import estimate, spikesim_from_spec

    spec = read_settings(
        layers, "layers", "with xbar_size, ..., layers", "write the network and its layers in it"
    )
    wl, arch = spikesim_from_spec(spec, source=str(layers))
    r = estimate(wl, arch)
    result = {
        "energy_pj": r.energy_pj,
        "area_um2": r.area_um2,
        "latency_ns": r.latency_ns,
        "tiles": int(r.extras["tiles"]),
        "pes": int(r.extras["pes"]),
        "per_layer_energy_pj": [layer.total_energy_pj for layer in r.layers],
    }
    if as_json:
        print(json.dumps(result))
    else:
        print(r.table())
        print(f"PEs {result['pes']}, tiles {result['tiles']}")

"""Costing speed: a VGG-16 and a ResNet-19 workload (CIFAR-10 size, T = 4) on every shipped table.

    .venv/bin/python benchmarks/bench_hw.py [--repeat 5] [--json]

The workloads are built by hand as layer lists (no model, no torch), with the spike and
weight sparsity LoAS reports for these networks at T = 4 (Yin et al., MICRO 2024;
docs/references.md#loas): VGG16 82.3 % / 98.2 %, ResNet19 68.7 % / 96.9 %. Prints, per
network, the median wall time of costing the workload on all tables, and the energy /
latency / area each table gives.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from spikecim.hw import estimate, list_architectures, load_architecture, workload_from_layers


def conv(cin, cout, k=3, stride=1, pool=1, name=None):
    return {
        "kind": "conv2d",
        "in_ch": cin,
        "out_ch": cout,
        "kernel": k,
        "stride": stride,
        "padding": k // 2,
        "pool": pool,
        **({"name": name} if name else {}),
    }


def vgg16(timesteps=4):
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, cin = [], 3
    for i, c in enumerate(cfg):
        if c == "M":
            layers[-1]["pool"] = 2
            continue
        layers.append(conv(cin, c, name=f"conv{len(layers) + 1}"))
        cin = c
    layers += [
        {"kind": "linear", "in_ch": 512, "out_ch": 4096, "name": "fc1"},
        {"kind": "linear", "in_ch": 4096, "out_ch": 4096, "name": "fc2"},
        {"kind": "linear", "in_ch": 4096, "out_ch": 10, "has_neuron": False, "name": "fc3"},
    ]
    return {
        "model": "vgg16",
        "timesteps": timesteps,
        "in_hw": 32,
        "activity": 1 - 0.823,
        "layers": [{**l, "weight_sparsity": 0.982} for l in layers],
    }


def resnet19(timesteps=4):
    layers = [conv(3, 128, name="stem")]
    hw, cin = 32, 128
    for stage, (c, blocks) in enumerate([(128, 3), (256, 3), (512, 2)]):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            layers.append({**conv(cin, c, stride=stride, name=f"s{stage}b{b}a"), "in_hw": hw})
            hw = hw // stride
            layers.append({**conv(c, c, name=f"s{stage}b{b}b"), "in_hw": hw})
            if stride == 2 or cin != c:
                layers.append(
                    {**conv(cin, c, k=1, stride=stride, name=f"s{stage}b{b}sc"), "in_hw": hw * stride}
                )
            cin = c
    layers[-1]["pool"] = 8  # global average pool over 8×8
    layers += [
        {"kind": "linear", "in_ch": 512, "out_ch": 256, "name": "fc1"},
        {"kind": "linear", "in_ch": 256, "out_ch": 10, "has_neuron": False, "name": "fc2"},
    ]
    return {
        "model": "resnet19",
        "timesteps": timesteps,
        "in_hw": 32,
        "activity": 1 - 0.687,
        "layers": [{**l, "weight_sparsity": 0.969} for l in layers],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    archs = [load_architecture(a) for a in list_architectures()]
    results = {}
    for spec in (vgg16(), resnet19()):
        wl = workload_from_layers(spec)
        for a in archs:  # warm-up: import the estimators once
            estimate(wl, a)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            reports = [estimate(wl, a) for a in archs]
            times.append(time.perf_counter() - t0)
        results[spec["model"]] = {
            "layers": len(wl.layers),
            "all_tables_s_median": statistics.median(times),
            "costs": {
                r.architecture: {
                    "energy_uj": r.energy_pj / 1e6,
                    "latency_us": r.latency_ns / 1e3,
                    "area_mm2": r.area_um2 / 1e6,
                }
                for r in reports
            },
        }
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for model, res in results.items():
        print(
            f"\n{model}: {res['layers']} layers, {len(archs)} tables, "
            f"median {res['all_tables_s_median'] * 1e3:.1f} ms for all tables"
        )
        print(f"  {'table':22s} {'energy (µJ)':>12s} {'latency (µs)':>13s} {'area (mm²)':>11s}")
        for arch, c in res["costs"].items():
            print(f"  {arch:22s} {c['energy_uj']:12.2f} {c['latency_us']:13.1f} {c['area_mm2']:11.2f}")


if __name__ == "__main__":
    main()

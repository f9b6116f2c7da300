"""3x3 convolutions as im2col products and as tap accumulations, timed by one model in one run.

Every layer is compiled three times on each target: with `einsum-to-taps` disabled (the im2col
product over the convolution's window, the only mapping before the rule existed), with
`einsum-to-bmm` disabled (the sum over the filter taps of products on shifted views of the
input), and with every rule (the cost model's choice between them). Same cost model, heuristic
schedule and timing model, so the ratio is the alternative's effect alone. The layers are
MobileNet's and ResNet's full 3x3 convolutions (ImageNet ResNet-18 and the CIFAR ResNets), in
NHWC with HWIO weights (neither mapping moves a layout) and in NCHW with OIHW weights (the taps'
weights need a re-layout to [tap, C, K] that im2col's [C*R*S, K] does not).

Run: python benchmarks/tap_accumulation.py [--targets gemmini nnp] [--out benchmarks/reports/...]
Writes report.md and report.json to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import isamap
from isamap.ir import builders
from isamap.ir.kernel import Kernel

TAPS, IM2COL = "einsum-to-taps", "einsum-to-bmm"

#: (network, layer, C, H (= W), K, stride): 3x3 convolutions with "same" padding of 1.
LAYERS: list[tuple[str, str, int, int, int, int]] = [
    ("MobileNet v1/v2", "conv1", 3, 224, 32, 2),
    ("ResNet-18", "conv2_x", 64, 56, 64, 1),
    ("ResNet-18", "conv3_1", 64, 56, 128, 2),
    ("ResNet-18", "conv3_x", 128, 28, 128, 1),
    ("ResNet-18", "conv4_x", 256, 14, 256, 1),
    ("ResNet-18", "conv5_x", 512, 7, 512, 1),
    ("CIFAR ResNet", "conv1", 3, 32, 16, 1),
    ("CIFAR ResNet", "stage1", 16, 32, 16, 1),
    ("CIFAR ResNet", "stage2_1", 16, 32, 32, 2),
    ("CIFAR ResNet", "stage2", 32, 16, 32, 1),
    ("CIFAR ResNet", "stage3", 64, 8, 64, 1),
]


def nhwc(c: int, hw: int, k: int, stride: int, dtype: str) -> Kernel:
    """A 3x3 convolution padded by 1, NHWC input, HWIO weights."""
    return isamap.parse_kernel(
        f"tensor X[1, {hw}, {hw}, {c}] {dtype} pad(0, 1, 1, 0)\n"
        f"tensor W[3, 3, {c}, {k}] {dtype}\n"
        f"O[n, h, w, k] += X[n, {stride}*h + r - 1, {stride}*w + s - 1, c] * W[r, s, c, k]\n",
        name=f"conv3x3_nhwc_c{c}_k{k}_{hw}_s{stride}",
    )


def nchw(c: int, hw: int, k: int, stride: int) -> Kernel:
    """The same layer as the frameworks write it: NCHW input, OIHW weights."""
    return builders.conv2d(1, c, hw, hw, k, 3, 3, stride=stride, padding=1)


def _uses_taps(result: isamap.CompileResult) -> bool:
    return any(n.attrs.get("taps") for n in result.mapping.instruction_calls())


def _row(label: str, kernel: Kernel, target: isamap.Target) -> dict[str, object]:
    t0 = time.perf_counter()
    both = isamap.compile(kernel, target)
    seconds = time.perf_counter() - t0
    im2col = isamap.compile(kernel, target, disabled_rules=[TAPS])
    taps = isamap.compile(kernel, target, disabled_rules=[IM2COL])
    return {
        "layer": label,
        "macs": both.report.macs,
        "im2col_cycles": im2col.report.cycles,
        "taps_cycles": taps.report.cycles,
        "chosen_cycles": both.report.cycles,
        "chosen": "taps" if _uses_taps(both) else "im2col",
        "taps_over_im2col": im2col.report.cycles / taps.report.cycles,
        "compile_seconds": seconds,
        "taps_calls": [n.describe() for n in taps.mapping.instruction_calls()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", nargs="+", default=["gemmini", "nnp"])
    parser.add_argument("--out", default="benchmarks/reports/tap-accumulation")
    args = parser.parse_args()
    results: dict[str, list[dict[str, object]]] = {}
    for name in args.targets:
        target = isamap.load_target(name)
        dtype = target.input_dtype
        rows = results.setdefault(name, [])
        for network, layer, c, hw, k, stride in LAYERS:
            where = f"{network} {layer} {c}->{k} @{hw} s{stride}"
            rows.append(_row(f"{where} NHWC", nhwc(c, hw, k, stride, dtype), target))
            rows.append(_row(f"{where} NCHW", nchw(c, hw, k, stride), target))
            print(name, rows[-2]["layer"], rows[-2]["chosen"], rows[-1]["chosen"], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"targets": results}, indent=1))
    targets = " ".join(args.targets)
    lines = [
        "# Tap accumulation against im2col (3x3 convolutions)",
        "",
        f"Command: `python benchmarks/tap_accumulation.py --targets {targets}`. Cycles of the",
        f"im2col mapping (`{TAPS}` disabled), of the tap accumulation (`{IM2COL}` disabled)",
        "and of the cost model's choice with every rule; same cost model (latency), heuristic",
        "schedule and timing model, one run. `ratio` is im2col cycles over taps cycles (above 1:",
        "taps are faster).",
    ]
    for name, rows in results.items():
        wins = sum(1 for r in rows if r["chosen"] == "taps")
        ratios = [float(str(r["taps_over_im2col"])) for r in rows]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines += [
            "",
            f"## {name}",
            "",
            f"Taps chosen for {wins} of {len(rows)} layers; geomean im2col/taps {geo:.2f}x.",
            "",
            "| layer | im2col cycles | taps cycles | ratio | chosen | chosen cycles |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['layer']} | {float(str(r['im2col_cycles'])):,.0f} | "
                f"{float(str(r['taps_cycles'])):,.0f} | {float(str(r['taps_over_im2col'])):.2f}x"
                f" | {r['chosen']} | {float(str(r['chosen_cycles'])):,.0f} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

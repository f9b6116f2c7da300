"""Whole networks from ONNX graphs compiled on a target: compile time, cycles, MACs, reports.

    python benchmarks/onnx_models.py [--target gemmini] [--out benchmarks/reports/onnx-gemmini]

Builds MobileNetV2 (224x224), a GRU layer (hidden 512, 50 steps) and a transformer encoder block
(sequence 128, width 256, 4 heads) with random weights, compiles each with `isamap.compile`
(wall time measured around it, in this process) and writes each model's report (report.md,
report.json, layers.png) under --out, plus a summary table in --out/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import isamap
from isamap.frontend import model_from_proto, models
from isamap.model_report import write_model_report

MODELS = {
    "mobilenet_v2": lambda: models.mobilenet_v2(224),
    "gru_h512_t50": lambda: models.gru_model(),
    "transformer_encoder": lambda: models.transformer_encoder(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="gemmini")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path("benchmarks/reports") / f"onnx-{args.target}"
    target = isamap.load_target(args.target)
    rows = [
        "| model | layers | kernels | compile (s) | MACs | cycles | % of roofline | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, build in MODELS.items():
        model = model_from_proto(build(), f"<{name}>")
        t0 = time.perf_counter()
        result = isamap.compile(model, target)
        seconds = time.perf_counter() - t0
        r = result.report
        command = f"python benchmarks/onnx_models.py --target {args.target}"
        write_model_report(result, out / name, command)
        rows.append(
            f"| {name} | {len(r.layers)} | {r.kernels} | {seconds:.1f} | {r.macs:,} | "
            f"{r.cycles:,.0f} | {r.percent_of_roofline:.1f}% | {r.speedup:.2f}x |"
        )
        print(rows[-1], flush=True)
    head = f"# ONNX models on {target.name}\n\n`{command}` (compile: wall seconds, 1 process)\n\n"
    (out / "README.md").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Benchmark workloads from ONNX graphs: a model file (`isamap bench MODEL.onnx`) and the MobileNet
suites, built as ONNX graphs (`isamap.frontend.models`) instead of from the CSV of layer shapes.

Each fused layer of the model is one report row (one kernel, its text the spec, so identical layers
compile once). For MobileNet the CSV stays the check: every row's layers are named after the CSV's
layers, and its expected MACs are the CSV's, so a layer whose shape or MAC count disagrees with the
published table shows up as a mismatch (tests/bench/test_onnx_suites.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from isamap.bench.suites import KernelSpec, Part, Workload, _rows, suite_workloads
from isamap.frontend import load_onnx, model_from_proto
from isamap.frontend.fuse import fuse
from isamap.frontend.models import mobilenet_v1, mobilenet_v2
from isamap.ir.model import Layer, Model, kernel_macs

__all__ = ["MOBILENET_SUITES", "model_workloads", "onnx_mobilenet", "workloads"]

MOBILENET_SUITES = ("mobilenet-v1", "mobilenet-v2")


def _spec(layer: Layer) -> KernelSpec:
    text = str(layer.kernel)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    shape = "x".join(str(d) for d in layer.kernel.shapes[layer.kernel.inputs()[0]])
    return KernelSpec(f"{layer.kernel.name} {shape} #{digest}", text=text)


def model_workloads(
    model: Model, suite: str, csv: dict[str, dict[str, str]] | None = None
) -> list[Workload]:
    """One workload per fused layer of `model`; with `csv` (layer name -> CSV row), each row's
    layers are the CSV layers it covers and its expected MACs theirs."""
    out: list[Workload] = []
    for layer in fuse(model).layers():
        covered = tuple(n for n in layer.nodes if csv is not None and n in csv)
        expected: int | None = kernel_macs(layer.kernel)
        kind = layer.kind
        if csv is not None:
            expected = sum(int(csv[n]["macs"]) for n in covered)
            rows = [csv[n] for n in covered]
            kind = rows[0]["op"] if len(rows) == 1 else "dw_separable"
            if len(rows) > 1 and any(r.get("residual_add") == "1" for r in rows):
                kind = "dw_separable+residual"
        name = " + ".join(covered) if covered else layer.name
        out.append(
            Workload(
                suite,
                name,
                kind,
                (Part(kind, _spec(layer)),),
                expected,
                covered,
                {"op": layer.op, "nodes": len(layer.nodes)},
            )
        )
    return out


def onnx_mobilenet(version: int, resolution: int = 224) -> list[Workload]:
    """MobileNet v1 or v2 (batch 1) from its ONNX graph, checked against the CSV's layers."""
    csv = {r["layer"]: r for r in _rows(f"mobilenet_v{version}_layers.csv")}
    proto = (mobilenet_v1 if version == 1 else mobilenet_v2)(resolution)
    model = model_from_proto(proto, f"<mobilenet_v{version}>")
    return model_workloads(model, f"mobilenet-v{version}", csv)


def workloads(suite: str, limit: int | None = None) -> list[Workload]:
    """The workloads of `suite`: a path to an ONNX file, the MobileNets from their ONNX graphs,
    or any other named suite (`isamap.bench.suites`)."""
    if suite.endswith(".onnx"):
        found = model_workloads(load_onnx(suite), Path(suite).stem)
    elif suite in MOBILENET_SUITES:
        found = onnx_mobilenet(int(suite[-1]))
    else:
        return suite_workloads(suite, limit)
    return found[:limit] if limit is not None else found

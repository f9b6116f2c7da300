"""The benchmark suites: DeepBench GEMMs and GRU layers, MobileNet v1 and v2, as kernels to compile.

A suite is a list of `Workload`s (one report row each: a GEMM, a GRU layer, a MobileNet layer or
block). A workload is made of `Part`s, each a kernel compiled once and counted `count` times: a
GRU layer is its batched input projection once plus its recurrent step `timesteps` times.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources

from isamap.hardware.target import Target
from isamap.ir import Kernel, parse_kernel
from isamap.ir.builders import conv2d, dw_separable, matmul, pointwise
from isamap.ir.dtypes import is_integer
from isamap.quantize import hardware_kernel, integer_only_target

__all__ = [
    "SUITES",
    "KernelSpec",
    "Part",
    "Workload",
    "gru_projection_text",
    "gru_step_text",
    "suite_workloads",
]


@dataclass(frozen=True)
class KernelSpec:
    """How to build one kernel: a module-level builder and its arguments, or kernel text.

    Picklable, so worker processes build the kernel themselves; `key` names identical kernels,
    which are compiled once per run.
    """

    key: str
    builder: Callable[..., Kernel] | None = None
    args: tuple[int | str, ...] = ()
    kwargs: tuple[tuple[str, int | bool], ...] = ()
    text: str | None = None
    integer_text: str | None = None  # the kernel as declared for an integer-only target

    def build(self, target: Target | None = None) -> Kernel:
        """The checked kernel, in f32; for a `target`, declared in the types its matrix
        instruction computes in, as the vendor library's users declare their tensors
        (`quantize.hardware_kernel`: int8 tensors and int32 accumulators on gemmini, a product
        feeding another cast to int8 between them; bf16 on nnp), or on an integer-only target
        as `integer_text` says where it has one (a GRU step: int8 GEMMs, int32 projections, the
        gates in float on the host)."""
        name = re.sub(r"\W", "_", self.key.split()[0])
        integer = target is not None and integer_only_target(target)
        if integer and self.integer_text is not None:
            return parse_kernel(self.integer_text, filename=f"<{self.key}>", name=name)
        if self.text is not None:
            kernel = parse_kernel(self.text, filename=f"<{self.key}>", name=name)
        else:
            assert self.builder is not None, "a KernelSpec needs a builder or text"
            kernel = self.builder(*self.args, **dict(self.kwargs))
        return kernel if target is None else hardware_kernel(kernel, target)


@dataclass(frozen=True)
class Part:
    """A kernel of a workload and how many times it runs (a GRU step runs once per timestep)."""

    role: str
    spec: KernelSpec
    count: int = 1


@dataclass(frozen=True)
class Workload:
    """One report row: its parts, what it stands for, and the MACs its source data states."""

    suite: str
    name: str
    kind: str
    parts: tuple[Part, ...]
    expected_macs: int | None = None
    layers: tuple[str, ...] = ()
    info: dict[str, int | str] = field(default_factory=dict)


def _rows(*path: str) -> Iterator[dict[str, str]]:
    data = resources.files("isamap").joinpath("data", *path)
    with data.open(encoding="utf-8") as f:
        yield from csv.DictReader(f)


# --- DeepBench GEMM ------------------------------------------------------------------------------


def deepbench_gemm() -> list[Workload]:
    """Every row of DeepBench's gemm.csv as `C = op(A) op(B)`, transposes honoured."""
    out = []
    for r in _rows("deepbench", "gemm.csv"):
        m, n, k = int(r["M"]), int(r["N"]), int(r["K"])
        ta, tb = r["a_transpose"] == "T", r["b_transpose"] == "T"
        key = f"matmul {m}x{n}x{k} {r['a_transpose']}{r['b_transpose']}"
        spec = KernelSpec(key, matmul, (m, n, k), (("transpose_a", ta), ("transpose_b", tb)))
        name = f"{r['list']}/{r['index_in_list']} {m}x{n}x{k} {r['a_transpose']}{r['b_transpose']}"
        out.append(
            Workload(
                "deepbench-gemm",
                name,
                "gemm",
                (Part("gemm", spec),),
                expected_macs=int(r["flops_2MNK"]) // 2,
                info={"M": m, "N": n, "K": k, "list": r["list"]},
            )
        )
    return out


# --- DeepBench GRU -------------------------------------------------------------------------------


def gru_projection_text(rows: int, hidden: int, dtype: str = "f32") -> str:
    """The input projections of every timestep at once: X[T*batch, hidden] times Wz, Wr, Wh.

    Three GEMMs sharing X, so the fusion rule makes them one [T*batch x hidden].[hidden x 3*hidden]
    product (DeepBench's GRUs have input size = hidden). `dtype`: the element type of X and the
    weights (an integer type: the projections are inferred at int32).
    """
    return "\n".join(
        [
            f"tensor X[{rows}, {hidden}] {dtype}",
            *(f"tensor W{g}[{hidden}, {hidden}] {dtype}" for g in "zrh"),
            *(f"P{g}[t, j] += X[t, k] * W{g}[k, j]" for g in "zrh"),
        ]
    )


def gru_step_text(batch: int, hidden: int, dtype: str = "f32") -> str:
    """One recurrent GRU step (cuDNN form, linear before reset) on precomputed projections.

    The three recurrent GEMMs share H (fusable into one H.[Uz|Ur|Uh]); Pz, Pr, Ph are this
    timestep's input projections; the epilogues are the gates and the blend. `dtype`: the
    element type of H and the weights; an integer type makes the projections int32 (as the
    projection kernel leaves them) and the gates and Hn float.
    """
    bh = f"[{batch}, {hidden}]"
    proj = "i32" if is_integer(dtype) else dtype
    return "\n".join(
        [
            f"tensor H{bh} {dtype}",
            *(f"tensor U{g}[{hidden}, {hidden}] {dtype}" for g in "zrh"),
            *(f"tensor P{g}{bh} {proj}" for g in "zrh"),
            *(f"G{g}[b, j] += H[b, k] * U{g}[k, j]" for g in "zrh"),
            "Z[b, j] = sigmoid(Pz[b, j] + Gz[b, j])",
            "R[b, j] = sigmoid(Pr[b, j] + Gr[b, j])",
            "N[b, j] = tanh(Ph[b, j] + R[b, j] * Gh[b, j])",
            "Hn[b, j] = (1 - Z[b, j]) * N[b, j] + Z[b, j] * H[b, j]",
        ]
    )


def deepbench_gru() -> list[Workload]:
    """Every GRU row of rnn.csv as a whole layer: projection + timesteps x recurrent step."""
    out = []
    for r in _rows("deepbench", "rnn.csv"):
        if r["cell"] != "gru":
            continue
        hidden, batch, steps = int(r["hidden"]), int(r["batch"]), int(r["timesteps"])
        rows = steps * batch
        proj = KernelSpec(
            f"gru-projection {rows}x{hidden}",
            text=gru_projection_text(rows, hidden),
            integer_text=gru_projection_text(rows, hidden, "i8"),
        )
        step = KernelSpec(
            f"gru-step b{batch} h{hidden}",
            text=gru_step_text(batch, hidden),
            integer_text=gru_step_text(batch, hidden, "i8"),
        )
        out.append(
            Workload(
                "deepbench-gru",
                f"{r['list']}/{r['index_in_list']} h{hidden} b{batch} t{steps}",
                "gru-layer",
                (Part("input projection", proj), Part("recurrent step", step, steps)),
                # 3 gates, input and recurrent GEMMs, every timestep
                expected_macs=2 * 3 * hidden * hidden * batch * steps,
                info={"hidden": hidden, "batch": batch, "timesteps": steps, "list": r["list"]},
            )
        )
    return out


# --- MobileNet -----------------------------------------------------------------------------------


def avgpool_text(channels: int, h: int, w: int) -> str:
    """Global average pooling: a reduction over the window, then the 1/(h*w) scale."""
    return "\n".join(
        [
            f"tensor X[1, {channels}, {h}, {w}] f32",
            "S[n, c] += X[n, c, h, w]",
            f"Y[n, c] = {1.0 / (h * w):.9f} * S[n, c]",
        ]
    )


def dw_separable_residual_text(
    c: int, h: int, w: int, k: int, stride: int, pad: int, dtype: str = "f32"
) -> str:
    """A 3x3 depthwise-separable block whose linear projection adds the block's input (v2).

    `dtype` an integer type: the depthwise result is cast back to it (`D_q`, as the library's
    mvout narrows it) before the pointwise product, as `quantize.integer_kernel` does."""
    oh, ow = (h + 2 * pad - 3) // stride + 1, (w + 2 * pad - 3) // stride + 1
    s = f"{stride}*" if stride > 1 else ""
    cast = is_integer(dtype)
    d = "D_q" if cast else "D"
    return "\n".join(
        [
            f"tensor X[1, {c}, {h}, {w}] {dtype} pad(0, 0, {pad}, {pad})",
            f"tensor F[{c}, 3, 3] {dtype}",
            f"tensor P[{k}, {c}] {dtype}",
            f"tensor Res[1, {k}, {oh}, {ow}] {dtype}",
            *([f"tensor D_q[1, {c}, {oh}, {ow}] {dtype}"] if cast else []),
            f"D[n, c, h, w] += X[n, c, {s}h + r - {pad}, {s}w + s - {pad}] * F[c, r, s]",
            *(["D_q[n, c, h, w] = 1.0 * D[n, c, h, w]"] if cast else []),
            f"Y[n, k, h, w] += {d}[n, c, h, w] * P[k, c]",
            "O[n, k, h, w] = Y[n, k, h, w] + Res[n, k, h, w]",
        ]
    )


def _block_spec(dw: dict[str, str], pw: dict[str, str]) -> KernelSpec:
    c, h, w = int(dw["in_C"]), int(dw["in_H"]), int(dw["in_W"])
    k, stride, pad = int(pw["out_C"]), int(dw["stride"]), int(dw["pad"])
    if pw.get("residual_add") == "1":
        key = f"dw_separable+residual c{c} {h}x{w} k{k} s{stride}"
        text = dw_separable_residual_text(c, h, w, k, stride, pad)
        integer = dw_separable_residual_text(c, h, w, k, stride, pad, "i8")
        return KernelSpec(key, text=text, integer_text=integer)
    key = f"dw_separable c{c} {h}x{w} k{k} s{stride}"
    kw = int(dw["kernel_h"]), int(dw["kernel_w"])
    opts = (("stride", stride), ("padding", pad))
    return KernelSpec(key, dw_separable, (1, c, h, w, k, *kw), opts)


def _layer_spec(r: dict[str, str]) -> KernelSpec:
    op = r["op"]
    c, h, w, k = int(r["in_C"]), int(r["in_H"]), int(r["in_W"]), int(r["out_C"])
    if op == "conv":
        kh, kw, st, pad = int(r["kernel_h"]), int(r["kernel_w"]), int(r["stride"]), int(r["pad"])
        args = (1, c, h, w, k, kh, kw)
        key = f"conv2d c{c} {h}x{w} k{k} {kh}x{kw} s{st}"
        return KernelSpec(key, conv2d, args, (("stride", st), ("padding", pad)))
    if op in ("pointwise", "pointwise_expand", "pointwise_project_linear", "conv1x1"):
        return KernelSpec(f"pointwise c{c} {h}x{w} k{k}", pointwise, (1, c, h, w, k))
    if op == "avgpool":
        return KernelSpec(f"avgpool c{c} {h}x{w}", text=avgpool_text(c, h, w))
    if op == "fc":
        return KernelSpec(f"matmul 1x{k}x{c} NN", matmul, (1, k, c))
    raise ValueError(f"no kernel for MobileNet op {op!r} (layer {r['layer']})")


def mobilenet(version: int) -> list[Workload]:
    """Every layer of MobileNet v1 or v2 (batch 1); a depthwise row and the pointwise or project
    row after it in the same block are one depthwise-separable kernel."""
    suite = f"mobilenet-v{version}"
    rows = list(_rows(f"mobilenet_v{version}_layers.csv"))
    out: list[Workload] = []
    i = 0
    while i < len(rows):
        r = rows[i]
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if r["op"] == "depthwise" and nxt is not None and nxt["block"] == r["block"]:
            spec, kind, covered = _block_spec(r, nxt), "dw_separable", [r, nxt]
            if nxt.get("residual_add") == "1":
                kind = "dw_separable+residual"
            i += 2
        else:
            spec, kind, covered = _layer_spec(r), r["op"], [r]
            i += 1
        names = tuple(x["layer"] for x in covered)
        out.append(
            Workload(
                suite,
                " + ".join(names),
                kind,
                (Part(kind, spec),),
                expected_macs=sum(int(x["macs"]) for x in covered),
                layers=names,
                info={"block": r["block"]},
            )
        )
    return out


SUITES: dict[str, Callable[[], list[Workload]]] = {
    "deepbench-gemm": deepbench_gemm,
    "deepbench-gru": deepbench_gru,
    "mobilenet-v1": lambda: mobilenet(1),
    "mobilenet-v2": lambda: mobilenet(2),
}


def suite_workloads(suite: str, limit: int | None = None) -> list[Workload]:
    """The workloads of a named suite (the first `limit` of them when given)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    workloads = SUITES[suite]()
    return workloads[:limit] if limit is not None else workloads

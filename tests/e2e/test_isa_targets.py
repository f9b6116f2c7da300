"""The target files of examples/isa/, written from public manuals, map the contraction kernels.

On each target (Intel AMX, AVX-512 VNNI's per-lane `vpdpbusd`, Arm SME, TVM's VTA, Google's TPU
v1, an NVIDIA `mma.sync` fragment, NVDLA's direct-convolution core) every contraction kernel below
must be compiled onto that target's own contraction instructions — every contraction statement in
an instruction call, none on the host — and compute what numpy computes. On NVDLA every
convolution must be a direct-convolution call (its input read in place, no im2col window), and
every GEMM a call of the same instruction read as a 1x1 convolution. The host is ruled out for
contractions (`NoHostContractions`): under the plain latency model a CPU host or a padded 256x256
array can be cheaper for kernels this small, and the point here is that the rules find a complete
mapping.

The kernels are small (convolutions over 13x13-ish planes): what is checked — every contraction
on the target's own instructions, the program equal to numpy — does not depend on the plane's
size, and the functional run of a per-lane target (AVX-512 VNNI's `vpdpbusd`) costs one
simulated instruction per lane block, so it grows with every output pixel. Each plane still
spans several array tiles with a partial edge tile (its pixel count, 81 to 169, is a multiple
of no block), and each convolution keeps its stride, padding, groups or dilation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import isamap
from isamap.egraph.target_rules import matrix_instructions
from isamap.hardware.machine import trace_program
from isamap.ir import builders
from tests.e2e.test_map_kernels import NoHostContractions, host_contractions
from tests.typed import check_outputs, typed_for

ISA = Path(__file__).resolve().parents[2] / "examples" / "isa"
TARGET_FILES = ("amx", "vnni", "sme", "vta", "tpu_v1", "mma", "nvdla")
#: Targets with a direct-convolution instruction: every convolution must map onto it.
DIRECT_CONV = ("nvdla",)

TEXT_KERNELS = {
    "attention_scores": """
        tensor Q[2, 4, 24, 32] f32
        tensor K[2, 4, 20, 32] f32
        S[b, h, i, j] += Q[b, h, i, d] * K[b, h, j, d]
    """,
    "fc_bias_relu": """
        tensor X[24, 64] f32
        tensor W[64, 40] f32
        tensor bias[40] f32
        T[b, j] += X[b, k] * W[k, j]
        Y[b, j] = relu(T[b, j] + bias[j])
    """,
    "pointwise_nhwc": """
        tensor X[1, 13, 13, 32] f32
        tensor W[32, 48] f32
        Y[n, h, w, k] += X[n, h, w, c] * W[c, k]
    """,
}

BUILT_KERNELS = {
    "gemm": lambda: builders.matmul(48, 40, 56),
    "gemm_at_b": lambda: builders.matmul(40, 36, 48, transpose_a=True),
    "gemm_a_bt": lambda: builders.matmul(36, 44, 40, transpose_b=True),
    "batched_gemm": lambda: builders.batched_matmul(3, 24, 20, 32),
    "conv_strided": lambda: builders.conv2d(1, 16, 17, 17, 32, 3, 3, stride=2, padding=1),
    "conv_padded": lambda: builders.conv2d(1, 16, 13, 13, 24, 3, 3, padding="same"),
    "conv_grouped": lambda: builders.conv2d(1, 32, 13, 13, 32, 3, 3, padding=1, groups=4),
    "conv_dilated": lambda: builders.conv2d(1, 16, 15, 15, 24, 3, 3, dilation=2),
    "dw_separable": lambda: builders.dw_separable(1, 16, 13, 13, 32),
    "gru_cell": lambda: builders.gru_cell(20, 40, 48),
}


def _kernels() -> dict[str, isamap.Kernel]:
    out = {name: isamap.parse_kernel(text, name=name) for name, text in TEXT_KERNELS.items()}
    out.update({name: build() for name, build in BUILT_KERNELS.items()})
    return out


KERNELS = _kernels()
TARGETS = {name: isamap.load_target(str(ISA / f"{name}.toml")) for name in TARGET_FILES}

#: Every (target, kernel) pair: none is left out (each maps onto the target's instructions).
PAIRS = [(t, k) for t in TARGET_FILES for k in sorted(KERNELS)]


_check = check_outputs


def test_every_target_file_loads_with_a_contraction_instruction() -> None:
    for name, target in TARGETS.items():
        assert target.name == name
        assert matrix_instructions(target), name


@pytest.mark.parametrize(("target_name", "name"), PAIRS)
def test_contractions_map_to_the_targets_instructions(target_name: str, name: str) -> None:
    target = TARGETS[target_name]
    kernel = typed_for(KERNELS[name], target)  # integer tensors on an integer-only target
    result = isamap.compile(kernel, target, cost=NoHostContractions(target, kernel))
    calls = result.mapping.instruction_calls()
    contractions = sum(1 for s in kernel.statements if s.accumulate and len(s.accesses()) == 2)
    assert calls, f"{name} on {target_name}: no instruction call in\n{result.mapping}"
    assert {c.attrs["instruction"] for c in calls} <= set(matrix_instructions(target))
    host = host_contractions(result.mapping)
    assert not host, f"{name} on {target_name}: contractions on the host\n{result.mapping}"
    assert len(calls) <= contractions
    assert result.report.cycles >= result.report.roofline_cycles > 0
    if target_name in DIRECT_CONV:  # every convolution read in place, none as an im2col GEMM
        convs = sum(1 for s in kernel.statements if any(not a.is_plain() for a in s.accesses()))
        direct = [c for c in calls if c.op == "instr_conv"]
        assert len(direct) == convs, f"{name}: im2col products on {target_name}\n{result.mapping}"
        assert not [n for n in result.mapping.nodes if n.op == "window"], result.mapping

    inputs = isamap.random_inputs(kernel, seed=7)
    _check(result.run(inputs), kernel, inputs)  # the scheduled program, through the memories


NVDLA_EPILOGUES = {
    "conv_bias_relu": """
        tensor X[1, 16, 12, 12] i8 pad(0, 0, 1, 1)
        tensor W[24, 16, 3, 3] i8
        tensor bias[24] i32
        O[n, k, h, w] += X[n, c, h + r - 1, w + s - 1] * W[k, c, r, s]
        Y[n, k, h, w] = relu(O[n, k, h, w] + bias[k])
    """,
    "fc_bias_relu": """
        tensor X[24, 64] i8
        tensor W[64, 40] i8
        tensor bias[40] i32
        T[b, j] += X[b, k] * W[k, j]
        Y[b, j] = relu(T[b, j] + bias[j])
    """,
}


@pytest.mark.parametrize("name", sorted(NVDLA_EPILOGUES))
def test_nvdla_runs_bias_and_relu_in_its_sdp(name: str) -> None:
    """NVDLA's SDP adds a per-channel bias and applies ReLU on the way out of CACC: a
    convolution (a direct-convolution call) or a GEMM (its 1x1 reading) with both is one call,
    no statement, add or function left on the host, and it equals numpy."""
    target = TARGETS["nvdla"]
    kernel = isamap.parse_kernel(NVDLA_EPILOGUES[name], name=name)
    result = isamap.compile(kernel, target)
    (call,) = result.mapping.instruction_calls()
    assert call.attrs.get("bias") and call.attrs["epilogue"] == "relu", result.mapping
    assert call.op == ("instr_conv" if name.startswith("conv") else "instr")
    assert not result.mapping.host_ops(), result.mapping
    if call.op == "instr_conv":
        assert "sdp_bias bias[b, j0 kernels]" in result.program.listing()
    inputs = isamap.random_inputs(kernel, seed=5)
    _check(result.run(inputs), kernel, inputs)
    # the biases move once per output-channel tile: timing model and machine count the same
    run = trace_program(result.program, result.mapping, kernel, target, inputs)
    assert run.counts["sdp_bias"] == result.report.instruction_counts["sdp_bias"] > 0

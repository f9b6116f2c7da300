"""A per-column bias fused into a matrix call: Gemmini's bias row preloaded into the accumulator
(mvin_bias, `repeating_bias`), an instruction whose semantics chains a bias, and what each costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import derive_rules
from isamap.hardware.machine import trace_program
from isamap.hardware.target_file import target_path
from isamap.hardware.timing import ArrayModel, call_timing
from isamap.ir.errors import IsamapError
from isamap.ir.program import MatmulCall
from isamap.soundness import check_rules

FC = (
    "tensor A[{m}, 40] i8\ntensor B[40, {n}] i8\ntensor c[{n}] {bias}\n"
    "T[i, j] += A[i, k] * B[k, j]\nY[i, j] = relu(T[i, j] + c[j])\n"
)
# a pointwise convolution in NCHW, as the ONNX frontend writes it: the bias is per output channel
PW = (
    "tensor X[1, 12, 6, 5] i8\ntensor W[20, 12] i8\ntensor B[20] i32\n"
    "O[n, k, h, w] += X[n, k2, h, w] * W[k, k2]\nY[n, k, h, w] = O[n, k, h, w] + B[k]\n"
    "Z[n, k, h, w] = relu(Y[n, k, h, w])\n"
)


def _calls(result: isamap.CompileResult) -> list[isamap.MapNode]:
    return [n for n in result.mapping.nodes if n.op == "instr"]


def _inputs(kernel: isamap.Kernel, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in kernel.inputs():
        shape = kernel.shapes[name]
        big = kernel.dtype(name) == "i32"
        out[name] = rng.integers(-5000 if big else -128, 5000 if big else 128, shape)
    return out


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.mark.parametrize("text", [FC.format(m=33, n=24, bias="i32"), PW], ids=["fc", "nchw-conv"])
def test_gemmini_accumulates_onto_the_bias_bit_exact(gemmini: isamap.Target, text: str) -> None:
    kernel = isamap.parse_kernel(text)
    result = isamap.compile(kernel, gemmini)
    (call,) = _calls(result)
    assert call.attrs["bias"] and call.attrs["epilogue"] == "relu"
    assert not [n for n in result.mapping.nodes if n.unit == "host"]  # no host pass is left
    x = _inputs(kernel)
    want = isamap.evaluate(kernel, x)
    out = kernel.outputs()[-1]
    assert np.array_equal(result.run(x)[out], want[out])
    run = trace_program(result.program, result.mapping, kernel, gemmini, x)  # the call machine
    assert np.array_equal(run.outputs[out], want[out])
    sc = result.program.calls[0]
    blocks = sc.call.blocks[0] * sc.call.blocks[1]  # one bias row per accumulator block
    assert run.counts["mvin_bias"] == blocks
    timing = call_timing(
        ArrayModel.for_instruction(gemmini, sc.call.instruction), sc.call, sc.schedule
    )
    assert timing.counts["mvin_bias"] == blocks


def test_the_bias_costs_one_row_per_c_tile(gemmini: isamap.Target) -> None:
    model = ArrayModel.for_instruction(gemmini, "compute_preloaded")
    plain = MatmulCall(0, "compute_preloaded", 1, 64, 48, 32, model.block)
    biased = MatmulCall(0, "compute_preloaded", 1, 64, 48, 32, model.block, bias=True)
    from isamap.schedule.registry import strategy

    s = strategy("heuristic")(model, plain, gemmini)
    a, b = call_timing(model, plain, s), call_timing(model, biased, s)
    c_tiles = -(-64 // (s.tile_i * 16)) * -(-48 // (s.tile_j * 16))
    assert b.bytes["dram"] - a.bytes["dram"] == pytest.approx(c_tiles * s.tile_j * 16 * 4)
    assert b.cycles >= a.cycles


def test_a_float_bias_does_not_go_into_an_int32_accumulator(gemmini: isamap.Target) -> None:
    kernel = isamap.parse_kernel(FC.format(m=16, n=16, bias="f32"))
    result = isamap.compile(kernel, gemmini)
    assert not any(n.attrs.get("bias") for n in _calls(result))
    x = isamap.random_inputs(kernel)
    assert np.allclose(result.run(x)["Y"], isamap.evaluate(kernel, x)["Y"])


def test_nnp_fuses_an_f32_bias_into_its_accumulators() -> None:
    kernel = isamap.parse_kernel(
        FC.format(m=40, n=36, bias="f32").replace(" i8", " bf16").replace("40, 36", "40, 36")
    )
    result = isamap.compile(kernel, isamap.load_target("nnp"))
    (call,) = _calls(result)
    assert call.attrs["bias"] and call.attrs["epilogue"] == "relu"
    x = isamap.random_inputs(kernel)
    assert np.allclose(result.run(x)["Y"], isamap.evaluate(kernel, x)["Y"])


# -- an instruction whose semantics chains the bias --------------------------------------------

VECDSP = target_path("vecdsp")
PLAIN = 'semantics = "C[i, j] += A[i, k] * B[k, j]"\nextents = { i = 1, j = 16, k = 1 }'
PLAIN_OPERANDS = 'operands = { A = "local", B = "local", C = "vregs" }'


def _chained(tmp_path: Path, chain: str) -> isamap.Target:
    text = VECDSP.read_text()
    assert PLAIN in text and PLAIN_OPERANDS in text
    text = text.replace(
        PLAIN,
        f'semantics = """\nC[i, j] += A[i, k] * B[k, j]\n{chain}\n"""\n'
        "extents = { i = 1, j = 16, k = 1 }",
    )
    ops = 'operands = { A = "local", B = "local", C = "vregs", D = "vregs", bias = "local" }'
    text = text.replace(PLAIN_OPERANDS, ops, 1)
    path = tmp_path / "chained.toml"
    path.write_text(text.replace('name = "vecdsp"', 'name = "chained"'))
    return isamap.load_target(str(path))


def test_a_chained_bias_and_relu_map_only_products_under_both(tmp_path: Path) -> None:
    target = _chained(tmp_path, "D[i, j] = relu(C[i, j] + bias[j])")
    ins = target.instruction("vmac")
    assert (ins.chain, ins.chain_bias) == ("relu", "bias")
    fused = isamap.parse_kernel(
        "tensor A[20, 12] f32\ntensor B[12, 40] f32\ntensor c[40] f32\n"
        "T[i, j] += A[i, k] * B[k, j]\nY[i, j] = relu(c[j] + T[i, j])\n"
    )
    result = isamap.compile(fused, target)
    calls = _calls(result)
    assert calls and all(n.attrs["bias"] and n.attrs["epilogue"] == "relu" for n in calls)
    x = isamap.random_inputs(fused)
    assert np.allclose(result.run(x)["Y"], isamap.evaluate(fused, x)["Y"])
    plain = isamap.parse_kernel(
        "tensor A[20, 12] f32\ntensor B[12, 40] f32\nT[i, j] += A[i, k] * B[k, j]\n"
        "Y[i, j] = relu(T[i, j])\n"
    )
    assert not _calls(isamap.compile(plain, target))  # vmac would add a bias
    names = {r.name for r in derive_rules(target)}
    assert "bmm-to-vmac" not in names  # it never computes a product without its bias
    chained = {n for n in names if n.endswith("-of-bmm-to-vmac")}
    assert len(chained) == 4  # [n] or [b, n] bias, either operand order
    checked = check_rules(
        target, only={"relu-of-bias-of-bmm-to-vmac", "relu-of-bias-swapped-of-bmm-to-vmac"}
    )
    assert [c.verdict for c in checked] == ["ok", "ok"]


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        ("D[i, j] = relu(C[i, j] + bias[i])", "must be read at the product's N indices"),
        ("D[i, j] = relu(C[i, j] * bias[j])", "a chained scale is not mapped"),
        ("D[i, j] = tanh(relu(C[i, j] + bias[j]))", "is not a function and/or a per-column bias"),
    ],
)
def test_a_bias_chain_that_cannot_map_is_refused_at_load(
    tmp_path: Path, chain: str, reason: str
) -> None:
    with pytest.raises(IsamapError, match=reason) as info:
        _chained(tmp_path, chain)
    loc = info.value.loc
    assert loc is not None and loc.file.endswith("chained.toml") and loc.line is not None

"""The functional machine computes what the hardware computes: operands in the instruction's
types, the accumulator wrapping or saturating at its declared width, outputs narrowed to their
declared types; and a target file declares this arithmetic per instruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import eligible_instructions
from isamap.hardware.functional import operand_types
from isamap.hardware.target_file import target_path
from isamap.ir.errors import IsamapError
from isamap.ir.reference import evaluate, random_inputs

ROOT = Path(__file__).resolve().parents[2]
GEMM = """tensor A[{m}, {k}] {t}
tensor B[{k}, {n}] {t}
tensor C[{m}, {n}] {c}
C[i, j] += A[i, k] * B[k, j]
"""


def _gemmini_with(tmp_path: Path, name: str, acc: str, overflow: str) -> isamap.Target:
    """Gemmini with its accumulator `acc` wide, overflowing by `overflow`."""
    text = target_path("gemmini").read_text()
    text = text.replace('acc_dtype = "i32"', f'acc_dtype = "{acc}"')
    text = text.replace('overflow = "wrap"', f'overflow = "{overflow}"')
    text = text.replace(
        'dtypes = { C = "i32", D = "i32" }', f'dtypes = {{ C = "{acc}", D = "{acc}" }}'
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace('name = "gemmini"', f'name = "{name}"'))
    return isamap.load_target(str(path))


def _wrap16(x: np.ndarray) -> np.ndarray:
    return (x + 2**15) % 2**16 - 2**15


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_an_i16_accumulator_wraps_or_saturates_as_declared(tmp_path: Path, overflow: str) -> None:
    target = _gemmini_with(tmp_path, f"acc16_{overflow}", "i16", overflow)
    # K = 16: one instruction call per output block, so the hardware's value is the exact sum
    # wrapped or clamped once
    kernel = isamap.parse_kernel(GEMM.format(m=20, n=18, k=16, t="i8", c="i32"))
    a = np.full((20, 16), 127.0)
    b = np.where(np.arange(18) % 2 == 0, 127.0, -128.0)[None, :].repeat(16, 0)
    result = isamap.compile(kernel, target)
    got = result.run({"A": a, "B": b})["C"]
    exact = a @ b
    assert np.abs(exact).max() > 2**15  # overflows int16
    want = _wrap16(exact) if overflow == "wrap" else np.clip(exact, -(2**15), 2**15 - 1)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, evaluate(kernel, {"A": a, "B": b})["C"])  # the kernel's i32


def test_saturation_is_per_instruction_call(tmp_path: Path) -> None:
    # two K blocks of +127*127*16 = 258,064 each: saturated after the first call, it stays there
    target = _gemmini_with(tmp_path, "acc16_sat", "i16", "saturate")
    kernel = isamap.parse_kernel(GEMM.format(m=16, n=16, k=32, t="i8", c="i32"))
    ones = {"A": np.full((16, 32), 127.0), "B": np.full((32, 16), 127.0)}
    assert np.array_equal(isamap.compile(kernel, target).run(ones)["C"], np.full((16, 16), 32767))


def test_gemmini_narrows_its_output_to_int8_saturating() -> None:
    kernel = isamap.parse_kernel(GEMM.format(m=20, n=20, k=40, t="i8", c="i8"))
    x = random_inputs(kernel, seed=5)
    got = isamap.compile(kernel, "gemmini").run(x)["C"]
    exact = x["A"] @ x["B"]
    assert (np.abs(exact) > 127).any()
    assert np.array_equal(got, np.clip(exact, -128, 127))


def test_operands_are_rounded_to_a_float_instruction_type_and_checked_for_an_integer_one() -> None:
    nnp, gemmini = isamap.load_target("nnp"), isamap.load_target("gemmini")
    bf16 = operand_types(nnp.instruction("matmul"))
    x = np.array([1 + 2.0**-9, 3.14159])
    assert list(bf16.operand("lhs", x)) == [1.0, 3.140625]
    i8 = operand_types(gemmini.instruction("compute_preloaded"))
    assert list(i8.operand("lhs", np.array([3.0, -128.0]))) == [3.0, -128.0]
    with pytest.raises(IsamapError, match=r"operand lhs holds 0\.5, not a i8 value"):
        i8.operand("lhs", np.array([0.5]))


def test_a_kernel_whose_types_do_not_fit_runs_in_float64() -> None:
    # what the machine runs for a mapping compile refuses (no quantize): not the hardware's
    gemmini = isamap.load_target("gemmini")
    f32 = isamap.parse_kernel(GEMM.format(m=4, n=4, k=4, t="f32", c="f32"))
    i8 = isamap.parse_kernel(GEMM.format(m=4, n=4, k=4, t="i8", c="i32"))
    ins = gemmini.instruction("compute_preloaded")
    assert operand_types(ins, f32).lhs.name == "f64"
    assert (operand_types(ins, i8).lhs.name, operand_types(ins, i8).acc.name) == ("i8", "i32")


def test_instructions_are_chosen_where_their_types_fit() -> None:
    amx = isamap.load_target(str(ROOT / "examples" / "isa" / "amx.toml"))
    kinds = {t: isamap.parse_kernel(GEMM.format(m=32, n=32, k=64, t=t, c="f32")) for t in
             ("i8", "bf16", "f32", "u8")}  # fmt: skip
    assert eligible_instructions(amx, kinds["i8"]) == [
        "tdpbusd",
        "tdpbf16ps",
    ]  # i8 is exact in bf16
    assert eligible_instructions(amx, kinds["bf16"]) == ["tdpbf16ps"]
    assert eligible_instructions(amx, kinds["u8"]) == ["tdpbf16ps"]  # u8 is exact in bf16
    assert eligible_instructions(amx, kinds["f32"]) == ["tdpbusd", "tdpbf16ps"]  # none fits
    result = isamap.compile(kinds["bf16"], amx)
    assert {c.call.instruction for c in result.program.calls} == {"tdpbf16ps"}
    x = random_inputs(kinds["bf16"], seed=1)
    np.testing.assert_allclose(result.run(x)["C"], evaluate(kinds["bf16"], x)["C"], rtol=1e-12)


def test_the_arithmetic_keys_are_checked(tmp_path: Path) -> None:
    text = target_path("gemmini").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('overflow = "saturate"', 'overflow = "clamp"'))
    with pytest.raises(IsamapError, match=r"bad.toml:\d+:\d+: 'overflow' must be one of wrap, "):
        isamap.load_target(str(bad))
    bad.write_text(text.replace('narrowing = ["i8"]', 'narrowing = ["i4"]'))
    with pytest.raises(IsamapError, match=r"unknown narrowing 'i4'"):
        isamap.load_target(str(bad))
    bad.write_text(text.replace('overflow = "wrap"   ', 'scale = "f32"\noverflow = "wrap"', 1))
    with pytest.raises(IsamapError, match=r"'scale' is for a store"):
        isamap.load_target(str(bad))
    gemmini = isamap.load_target("gemmini")
    mvout = gemmini.instruction("mvout")
    assert (mvout.narrowing, mvout.scale, mvout.overflow) == (("i8",), "f32", "saturate")
    assert gemmini.instruction("compute_preloaded").overflow == "wrap"


def test_a_store_that_wraps_narrows_by_wrapping(tmp_path: Path) -> None:
    text = target_path("gemmini").read_text()
    path = tmp_path / "wrapping.toml"
    path.write_text(text.replace('overflow = "saturate"', 'overflow = "wrap"'))
    target = isamap.load_target(str(path))
    kernel = isamap.parse_kernel(GEMM.format(m=20, n=20, k=40, t="i8", c="i8"))
    x = random_inputs(kernel, seed=5)
    exact = x["A"] @ x["B"]
    got = isamap.compile(kernel, target).run(x)["C"]
    assert np.array_equal(got, (exact + 128) % 256 - 128)
    assert not np.array_equal(got, np.clip(exact, -128, 127))

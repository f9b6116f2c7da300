"""Misuse of the public API (issue 10, defects 7, 9, 10): each is one IsamapError naming what was
wrong — the tensor, the argument — never an AttributeError deep inside or a silent truncation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import isamap

GEMM = "tensor A[12, 10] i8\ntensor B[10, 12] i8\nC[i, j] += A[i, k] * B[k, j]\n"  # gemmini: int8


@pytest.fixture(scope="module")
def kernel() -> isamap.Kernel:
    return isamap.parse_kernel(GEMM)


@pytest.fixture(scope="module")
def result(kernel: isamap.Kernel) -> isamap.CompileResult:
    return isamap.compile(kernel, "gemmini")


def _raises(call: Callable[[], object], *needles: str) -> isamap.IsamapError:
    with pytest.raises(isamap.IsamapError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return info.value


def _inputs(kernel: isamap.Kernel, **override: Any) -> dict[str, Any]:
    return {**isamap.random_inputs(kernel), **override}


@pytest.mark.parametrize("runner", ["run", "run_mapping", "evaluate"])
@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda i: [i["A"], i["B"]], ("dict", "list", "A, B")),
        (lambda i: None, ("dict", "NoneType")),
        (lambda i: {"A": i["A"]}, ("missing input B", "(10, 12)")),
        (lambda i: {**i, "Z": i["A"]}, ("no tensor named Z",)),
        (lambda i: {**i, "C": np.zeros((12, 12))}, ("C is computed by the kernel",)),
        (lambda i: {**i, 0: i["A"]}, ("input names are strings",)),
        (lambda i: {**i, "B": i["B"].T}, ("input B has shape (12, 10), expected (10, 12)",)),
        (lambda i: {**i, "A": i["A"] + 1j}, ("input A", "complex")),
        (lambda i: {**i, "A": np.full((12, 10), "x")}, ("input A", "real numbers")),
        (lambda i: {**i, "A": "abc"}, ("input A", "real numbers")),
        (lambda i: {**i, "A": [[1.0], [1.0, 2.0]]}, ("input A", "not an array")),
        (lambda i: {**i, "A": np.full((12, 10), None)}, ("input A", "nan", "finite")),
        (lambda i: {**i, "B": np.full((10, 12), np.nan)}, ("input B", "finite")),
    ],
    ids=[
        "list",
        "none",
        "missing",
        "extra",
        "output-given",
        "int-key",
        "wrong-shape",
        "complex",
        "strings",
        "str-value",
        "ragged",
        "objects",
        "nan",
    ],
)
def test_bad_inputs_name_the_tensor(
    kernel: isamap.Kernel,
    result: isamap.CompileResult,
    runner: str,
    make: Callable[[dict[str, Any]], Any],
    needles: tuple[str, ...],
) -> None:
    inputs = make(_inputs(kernel))
    call = {
        "run": lambda: result.run(inputs),
        "run_mapping": lambda: result.run_mapping(inputs),
        "evaluate": lambda: isamap.evaluate(kernel, inputs),
    }[runner]
    _raises(call, *needles)


def test_wrong_shape_names_the_tensor_not_a_node(
    kernel: isamap.Kernel, result: isamap.CompileResult
) -> None:
    err = _raises(lambda: result.run(_inputs(kernel, B=np.zeros((12, 10)))), "input B")
    assert "%" not in str(err)


def test_lists_and_ints_are_real_arrays(
    kernel: isamap.Kernel, result: isamap.CompileResult
) -> None:
    inputs = isamap.random_inputs(kernel)
    as_lists = {"A": inputs["A"].tolist(), "B": (inputs["B"] // 2).astype(np.int32)}
    assert np.array_equal(result.run(as_lists)["C"], isamap.evaluate(kernel, as_lists)["C"])


@pytest.mark.parametrize(
    ("call", "needles"),
    [
        (lambda k: isamap.compile(GEMM, "gemmini"), ("compile", "Kernel", "parse_kernel", "str")),
        (lambda k: isamap.compile(k, 123), ("compile", "Target", "int")),
        (lambda k: isamap.compile(k, "gemmini", cost=5), ("cost model", "int")),
        (lambda k: isamap.compile(k, "gemmini", schedule=None), ("strategy", "NoneType")),
        (lambda k: isamap.compile(k, "gemmini", candidates=0), ("candidates", ">= 1")),
        (lambda k: isamap.compile(k, "gemmini", limits=5), ("limits", "Limits")),
        (lambda k: isamap.saturate(GEMM, "gemmini"), ("saturate", "Kernel")),
        (lambda k: isamap.saturate(k, None), ("saturate", "Target", "NoneType")),
        (lambda k: isamap.parse_kernel(GEMM.encode()), ("parse_kernel", "bytes", "decode")),
        (lambda k: isamap.parse_kernel(None), ("parse_kernel", "NoneType")),
        (lambda k: isamap.load_kernel(None), ("load_kernel", "path")),
        (lambda k: isamap.load_target(None), ("target", "NoneType")),
        (lambda k: isamap.load_target(3), ("target", "int")),
        (lambda k: isamap.evaluate(GEMM, {}), ("Kernel", "str")),
        (lambda k: isamap.random_inputs(GEMM), ("Kernel", "str")),
        (lambda k: isamap.random_inputs(k, seed=-1), ("seed", ">= 0")),
    ],
    ids=lambda v: "" if callable(v) else None,
)
def test_wrong_argument_types(
    kernel: isamap.Kernel, call: Callable[[isamap.Kernel], object], needles: tuple[str, ...]
) -> None:
    _raises(lambda: call(kernel), *needles)


@pytest.mark.parametrize("n", [-3, "3", 2.0, True])
def test_variants_wants_a_count(result: isamap.CompileResult, n: Any) -> None:
    _raises(lambda: result.saturation.variants(n), "variants", ">= 0")


def test_variants_and_extract_check_the_cost(result: isamap.CompileResult) -> None:
    _raises(lambda: result.saturation.extract(cost=5), "cost model", "int")  # type: ignore[arg-type]
    _raises(lambda: result.saturation.variants(2, cost="speed"), "unknown cost model 'speed'")
    assert result.saturation.variants(0) == []
    assert result.saturation.extract(cost="instructions").cost_model == "instructions"


def test_random_inputs_refuses_a_huge_kernel_with_its_size() -> None:
    huge = isamap.parse_kernel("tensor A[1000000, 1000000] f32\nC[i, j] = relu(A[i, j])")
    _raises(lambda: isamap.random_inputs(huge), "7.3 TiB", "1,000,000,000,000 float64 elements")


def test_evaluate_refuses_huge_outputs() -> None:
    k = isamap.parse_kernel(
        "tensor A[100000, 1] f32\ntensor B[1, 100000] f32\nC[i, j] += A[i, k] * B[k, j]"
    )
    inputs = isamap.random_inputs(k)
    _raises(lambda: isamap.evaluate(k, inputs), "computed tensors", "74.5 GiB")


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("tensor A[4] f32\nC[i] = A[i] * 1e999", ("<string>:2:15", "too large")),
        (f"tensor A[4] f32\nC[i] = A[i] * {'7' * 400}", ("<string>:2:15", "too large")),
        (f"tensor A[{2**48 + 1}] f32\nC[i] = A[i]", ("<string>:1:10", "too large")),
        (f"tensor A[{2**47}, 4] f32\nC[i, j] = A[i, j]", ("<string>:1:8", "2**48")),
        (f"tensor A[4] f32 pad({2**48})\nC[i] = A[i]", ("<string>:1:8", "padding included")),
        (
            f"tensor A[{2**17}, {2**17}] f32\ntensor B[{2**17}, {2**17}] f32\n"
            "C[i, j] += A[i, k] * B[k, j]",
            ("<string>:3:1", "iterations"),
        ),
    ],
)
def test_numbers_the_models_cannot_hold_exactly_are_refused(
    text: str, needles: tuple[str, ...]
) -> None:
    _raises(lambda: isamap.parse_kernel(text), *needles)


def test_largest_allowed_kernel_is_timed_not_zero() -> None:
    # 2**45 MACs: within the bound, the model's cycles are positive and finite
    k = isamap.parse_kernel(
        f"tensor A[{2**15}, {2**15}] i8\ntensor B[{2**15}, {2**15}] i8\n"
        "C[i, j] += A[i, k] * B[k, j]"
    )
    report = isamap.compile(k, "gemmini").report
    assert report.macs == 2**45
    assert 2**45 / 256 <= report.cycles < float("inf")

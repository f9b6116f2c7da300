"""Native code of every CPU target against numpy: through `compile` (extraction picks the
micro-kernel) on the example kernels and edge shapes, and the matrix-call emitter directly on
each blocking choice (A packed or read in place, several K slices, fused bias and epilogues).

A target whose features this CPU lacks is compiled (the C must build) but not run, so every family
is exercised on any x86-64 machine and the suite passes on a CPU without AVX-512.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.codegen import emit_c, load_native
from isamap.codegen.blocking import Blocking
from isamap.codegen.families import FAMILIES
from isamap.codegen.gemm import emit_matmul
from isamap.codegen.toolchain import build
from isamap.hardware.host_cpu import missing_features
from isamap.ir import builders

ROOT = Path(__file__).resolve().parents[2]
CPU_TARGETS = [n for n in isamap.list_targets() if isamap.load_target(n).codegen]
RUNNABLE = [n for n in CPU_TARGETS if not missing_features(isamap.load_target(n).cpu_features)]


def _gemm(m: int, n: int, k: int, tail: str = "") -> isamap.Kernel:
    text = f"tensor A[{m}, {k}] f32\ntensor B[{k}, {n}] f32\nC[i, j] += A[i, k] * B[k, j]\n"
    return isamap.parse_kernel(text + tail, f"gemm{m}x{n}x{k}")


def _check(
    kernel: isamap.Kernel, target: str, seed: int = 0, mapped: bool | None = True
) -> isamap.CompileResult:
    """Compile for `target`, run natively, compare every output with the numpy reference;
    `mapped`: some of it must run on the micro-kernel (False: on the host alone; None: either)."""
    result = isamap.compile(kernel, target)
    if mapped is not None:
        assert bool(result.mapping.instruction_calls()) == mapped, str(result.mapping)
    inputs = isamap.random_inputs(kernel, seed=seed)
    got = result.run(inputs)
    want = isamap.evaluate(kernel, inputs)
    assert got.keys() == set(kernel.outputs())  # intermediates are not returned
    for name, value in got.items():
        assert value.dtype == np.float32 and value.shape == want[name].shape
        scale = max(1.0, float(np.max(np.abs(want[name]))))
        np.testing.assert_allclose(value, want[name], rtol=2e-5, atol=2e-5 * scale, err_msg=name)
    return result


def test_every_cpu_target_builds_and_runs_where_it_can() -> None:
    kernel = _gemm(37, 29, 45)
    assert {"host-avx512", "host-avx2", "host-generic"} <= set(CPU_TARGETS)
    assert "host-generic" in RUNNABLE  # portable C runs anywhere
    for name in CPU_TARGETS:
        if name in RUNNABLE:
            _check(kernel, name)
            continue
        result = isamap.compile(kernel, name)
        source = emit_c(result.program, result.mapping, kernel, result.target)
        assert build(source.text, source.flags).path.is_file()  # builds; this CPU cannot run it
        with pytest.raises(isamap.IsamapError, match="this CPU lacks"):
            result.run(isamap.random_inputs(kernel))


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("shape", [(130, 17, 600), (70, 130, 40)])
def test_gemm_edge_shapes(target: str, shape: tuple[int, int, int]) -> None:
    _check(_gemm(*shape), target)


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_gemm_too_small_for_the_micro_kernel_runs_on_the_host(target: str) -> None:
    _check(_gemm(1, 70, 3), target, mapped=False)


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_matrix_vector_product(target: str) -> None:
    _check(_gemm(130, 1, 70), target, mapped=None)


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_separable_blocks_read_the_window_in_place(target: str, stride: int) -> None:
    kernel = builders.dw_separable(1, 16, 10, 10, 32, stride=stride)
    result = _check(kernel, target, mapped=None)
    text = result.c_source()
    ops = [n.op for n in result.mapping.nodes]
    if stride == 1 or "einsum" in ops:  # a depthwise einsum over a window: the direct loop
        assert f"depthwise 3x3, stride {stride}x{stride}" in text and "read in place" in text


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_depthwise_convolution_of_odd_width(target: str) -> None:
    _check(builders.dw_separable(1, 8, 9, 21, 12), target, mapped=None)


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_stride_2_depthwise_convolution_wide_enough_for_vector_phases(
    target: str, threads: int
) -> None:
    """An odd number of channels and an odd width (37). Fused with its pointwise product
    (one thread), the rows are read in place: the taps are the even and odd lanes of vector
    pairs. The parallel unfused loop (two threads) fills each stride-2 phase row with whole
    vectors of even lanes (`vload_even`, 2 * LANES floats inside the row), then one column at
    a time up to the row's end, on both phases (padding 1 shifts one of them)."""
    kernel = builders.dw_separable(1, 5, 9, 37, 6, stride=2)
    result = isamap.compile(kernel, target, threads=threads)
    inputs = isamap.random_inputs(kernel, seed=0)
    want = isamap.evaluate(kernel, inputs)["Y"]
    np.testing.assert_allclose(result.run(inputs)["Y"], want, rtol=2e-5, atol=2e-5)
    text = result.c_source()
    if threads == 1:
        assert "rows read in place" in text
        assert "vpair_odd(lo_, hi_)" in text and "vpair_even(lo_, hi_)" in text
    else:
        assert "vload_even(src + 2 * q" in text


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize("example", ["gemm_relu", "dw_separable", "gru_cell", "attention_scores"])
def test_example_kernels(target: str, example: str) -> None:
    _check(isamap.load_kernel(str(ROOT / "examples" / "kernels" / f"{example}.kernel")), target)


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_fused_tanh_epilogue(target: str) -> None:
    kernel = _gemm(40, 48, 64, "Y[i, j] = tanh(C[i, j])\n")
    result = isamap.compile(kernel, target)
    fused = [n for n in result.mapping.instruction_calls() if n.attrs.get("epilogue") == "tanh"]
    assert fused, str(result.mapping)
    _check(kernel, target)


def _matmul_fn(family: str, blk: Blocking, dims: tuple[int, int, int, int], epi: str | None):
    fam = FAMILIES[family]
    entry = "\nint entry(const float* A, const float* B, float* C, const float* b)"
    text = (
        fam.prelude
        + emit_matmul("g", blk, fam.lanes, dims, epi)
        + entry
        + "{ return g(A, B, C, b); }\n"
    )
    fn = build(text, fam.flags).library.entry
    fn.argtypes = [ctypes.c_void_p] * 4
    fn.restype = ctypes.c_int
    return fn


FAMILY_OF = {isamap.load_target(n).codegen: n for n in RUNNABLE}


@pytest.mark.parametrize("family", sorted(FAMILY_OF))
@pytest.mark.parametrize(
    ("pack_a", "pack_b", "epilogue", "bias"),
    [
        (True, True, "sigmoid", True),
        (False, True, "relu", False),
        (True, False, "tanh", False),
        (False, False, None, True),
    ],
)
def test_the_matrix_call_on_each_blocking(
    family: str, pack_a: bool, pack_b: bool, epilogue: str | None, bias: bool
) -> None:
    lanes = FAMILIES[family].lanes
    mr, nr = 3, 2 * lanes
    b, m, n, k = 2, 3 * mr + 2, 3 * nr + 5, 23  # edges in M and N; K in three slices of 8
    blk = Blocking(mr, nr, mc=2 * mr, nc=2 * nr, kc=8, pack_a=pack_a, pack_b=pack_b)
    fn = _matmul_fn(family, blk, (b, m, n, k), epilogue)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((b, m, k), dtype=np.float32)
    y = rng.standard_normal((b, k, n), dtype=np.float32)
    bvec = rng.standard_normal(n, dtype=np.float32)
    out = np.full((b, m, n), np.nan, dtype=np.float32)
    assert (
        fn(x.ctypes.data, y.ctypes.data, out.ctypes.data, bvec.ctypes.data if bias else None) == 0
    )
    want = np.matmul(x.astype(np.float64), y) + (bvec if bias else 0.0)
    if epilogue == "relu":
        want = np.maximum(want, 0.0)
    elif epilogue == "sigmoid":
        want = 1.0 / (1.0 + np.exp(-want))
    elif epilogue == "tanh":
        want = np.tanh(want)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILY_OF))
def test_vector_exp_sigmoid_tanh_over_the_whole_range(family: str) -> None:
    fam = FAMILIES[family]
    text = fam.prelude + (
        "\nvoid entry(const float* x, float* e, float* s, float* t, int n) {"
        " for (int i = 0; i + LANES <= n; i += LANES) {"
        " vstore(e + i, vexp(vload(x + i))); vstore(s + i, vsigmoid(vload(x + i)));"
        " vstore(t + i, vtanh(vload(x + i))); } }\n"
    )
    fn = build(text, fam.flags).library.entry
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int]
    x = np.concatenate([np.linspace(-100, 100, 4000), [0.0, 1e-6, -1e-6, 88.0, -87.0]])
    x = np.resize(x, -(-x.size // 16) * 16).astype(np.float32)
    e, s, t = (np.empty_like(x) for _ in range(3))
    fn(x.ctypes.data, e.ctypes.data, s.ctypes.data, t.ctypes.data, x.size)
    x64 = x.astype(np.float64)
    small = x64 < 88.0
    np.testing.assert_allclose(e[small], np.exp(x64[small]), rtol=3e-6, atol=1e-37)
    np.testing.assert_allclose(s, 1.0 / (1.0 + np.exp(-x64)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(t, np.tanh(x64), rtol=1e-5, atol=2e-7)


def test_the_native_program_is_loaded_once_per_result() -> None:
    kernel = _gemm(8, 16, 4)
    result = isamap.compile(kernel, "host")
    first = result.native()
    assert result.native() is first
    again = load_native(
        emit_c(result.program, result.mapping, kernel, result.target), result.target
    )
    assert again.built.cached and again.built.path == first.built.path


def test_threads_run_the_matrix_loop_in_parallel() -> None:
    kernel = _gemm(70, 130, 40, "Y[i, j] = relu(C[i, j])\n")
    result = isamap.compile(kernel, "host-generic", threads=2)
    assert "#pragma omp parallel for" in result.c_source()
    inputs = isamap.random_inputs(kernel, seed=3)
    want = isamap.evaluate(kernel, inputs)["Y"]
    np.testing.assert_allclose(result.run(inputs)["Y"], want, rtol=2e-5, atol=2e-5)
    block = builders.dw_separable(1, 16, 10, 10, 32)
    result = isamap.compile(block, "host-generic", threads=2)
    assert result.c_source().count("#pragma omp parallel for") >= 2  # depthwise and pointwise
    inputs = isamap.random_inputs(block, seed=3)
    want = isamap.evaluate(block, inputs)["Y"]
    np.testing.assert_allclose(result.run(inputs)["Y"], want, rtol=2e-5, atol=2e-5)
    with pytest.raises(isamap.IsamapError, match="threads must be an integer >= 1"):
        isamap.compile(kernel, "host-generic", threads=0)


def test_every_operator_of_the_language_has_c() -> None:
    from isamap.codegen import loops
    from isamap.ir.ops import BINARY_NAMES, UNARY_NAMES

    assert set(UNARY_NAMES) <= set(loops.VECTOR_FNS) and set(UNARY_NAMES) <= set(loops._SCALAR_FNS)
    assert set(BINARY_NAMES) <= set(loops.VECTOR_OPS) and set(BINARY_NAMES) <= set(
        loops._SCALAR_OPS
    )


@pytest.mark.parametrize("target", RUNNABLE)
def test_elementwise_operators(target: str) -> None:
    text = (
        "tensor A[20, 37] f32\ntensor B[20, 37] f32\n"
        "C[i, j] = max(A[i, j], B[i, j]) / (sqrt(relu(A[i, j]) + 1) + exp(min(A[i, j], B[i, j])))\n"
        "D[i, j] = tanh(A[i, j]) - sigmoid(B[i, j]) * -erf(A[i, j])\n"
    )
    _check(isamap.parse_kernel(text, "ops"), target, mapped=False)


def test_a_product_read_through_slices_of_its_pieces_writes_each_into_its_slice() -> None:
    """A GRU's input projections (X times [Wz | Wr | Wh], returned as Pz, Pr, Ph): each piece
    is computed into its output, with no buffer for the whole product or the slices between."""
    from isamap.bench.suites import gru_projection_text

    kernel = isamap.parse_kernel(gru_projection_text(37, 40), "projection")
    text = _check(kernel, RUNNABLE[0]).c_source()
    assert text.count("computed by its product") == 3 and "each piece into its slice" in text
    assert "memcpy(" not in text.split("isamap_run_prepared(")[1]  # no slice is copied

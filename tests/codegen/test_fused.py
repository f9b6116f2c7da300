"""Fused output loops against numpy: element-wise regions after matrix calls (bias, ReLU6, a
residual, several exits, K in several slices), depthwise-separable blocks whose depthwise rows
feed the pointwise micro-kernel (one block and several, with a tail block, stride 1 and 2), and
the GRU step whose gates are evaluated on the recurrent product's accumulators."""

from __future__ import annotations

import re

import numpy as np
import pytest

import isamap
import isamap.codegen.emit as emit_module
import isamap.codegen.fused as fused_module
from isamap.bench.suites import gru_step_text
from isamap.codegen import CSource, emit_c, load_native
from isamap.codegen.families import family
from isamap.codegen.fused import (
    channel_plan,
    full_depth_streams,
    matrix_plan,
    pass_rows,
    pixel_tiles,
)
from isamap.hardware.host_cpu import missing_features

RUNNABLE = [
    n
    for n in ("host-avx512", "host-avx2", "host-generic")
    if not missing_features(isamap.load_target(n).cpu_features)
]
HOST = RUNNABLE[0]


def _check(kernel: isamap.Kernel, target: str = HOST) -> str:
    """Run natively, compare the kernel's outputs with numpy; the C source."""
    result = isamap.compile(kernel, target)
    inputs = isamap.random_inputs(kernel, seed=2)
    got = result.run(inputs)
    want = isamap.evaluate(kernel, inputs)
    assert got.keys() == set(kernel.outputs())
    for name, value in got.items():
        scale = max(1.0, float(np.max(np.abs(want[name]))))
        np.testing.assert_allclose(value, want[name], rtol=2e-5, atol=2e-5 * scale, err_msg=name)
    return result.c_source()


def _runs_like_numpy(source: CSource, result: isamap.CompileResult, seed: int) -> None:
    """Emitted `source` for `result`'s block, loaded and run, gives numpy's output."""
    inputs = isamap.random_inputs(result.kernel, seed=seed)
    got = load_native(source, result.target).run(inputs)
    want = isamap.evaluate(result.kernel, inputs)
    (name,) = result.kernel.outputs()
    np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-4)


def _block(stride: int, c: int = 16, h: int = 10, w: int = 10) -> isamap.Kernel:
    """A MobileNetV2 block as the ONNX frontend fuses it: depthwise + bias + ReLU6, pointwise +
    bias, and (stride 1) the residual add."""
    out, wout = (h - 1) // stride + 1, (w - 1) // stride + 1
    residual = stride == 1
    text = "\n".join(
        [
            f"tensor X[1, {c}, {h}, {w}] f32 pad(0:0, 0:0, 1:1, 1:1)",
            f"tensor F[{c}, 3, 3] f32\ntensor B[{c}] f32\ntensor W[32, {c}] f32",
            "tensor B2[32] f32",
            f"tensor X2[1, 32, {out}, {wout}] f32" if residual else "",
            f"O[n, c, h, w] += X[n, c, {stride}*h + r - 1, {stride}*w + s - 1] * F[c, r, s]",
            "Y2[n, c, h, w] = min(relu(O[n, c, h, w] + B[c]), 6)",
            "O2[n, k, h, w] += Y2[n, c, h, w] * W[k, c]",
            "Y3[n, k, h, w] = O2[n, k, h, w] + B2[k]",
            "Y4[n, k, h, w] = X2[n, k, h, w] + Y3[n, k, h, w]" if residual else "",
        ]
    )
    return isamap.parse_kernel(text, f"block_s{stride}")


def test_stride_2_blocks_read_their_rows_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stride 2 on an odd width (37) in blocks of 2 output rows, the last a tail: the taps are
    the even and odd lanes of pairs of vectors loaded from the input rows in place (masked
    where a pair reaches past the row), a zero row standing for the padding rows above and
    below."""
    monkeypatch.setattr(emit_module, "rows_per_block", lambda *args: 2)
    text = _check(_block(2, 16, 5, 37))
    assert "depthwise-separable block fused: blocks of 2 rows" in text
    assert "rows read in place" in text and "vload_range(xr0" in text and ": zrow;" in text
    assert "vload_even(src" not in text


def _depthwise(
    h: int, w: int, r: int, sh: int, sw: int, pad: int, pointwise: bool
) -> isamap.Kernel:
    """A depthwise r x r convolution of 6 channels (bias, ReLU6), then optionally a pointwise
    product to 10 channels."""
    ho, wo = (h + 2 * pad - r) // sh + 1, (w + 2 * pad - r) // sw + 1
    lines = [
        f"tensor X[1, 6, {h}, {w}] f32 pad(0:0, 0:0, {pad}:{pad}, {pad}:{pad})",
        f"tensor F[6, {r}, {r}] f32\ntensor B[6] f32",
        f"O[n, c, h, w] += X[n, c, {sh}*h + r - {pad}, {sw}*w + s - {pad}] * F[c, r, s]",
        "Y2[n, c, h, w] = min(relu(O[n, c, h, w] + B[c]), 6)",
    ]
    if pointwise:
        lines += ["tensor W[10, 6] f32", "Y3[n, k, h, w] += Y2[n, c, h, w] * W[k, c]"]
    assert ho > 0 and wo > 0
    return isamap.parse_kernel("\n".join(lines), "dw")


@pytest.mark.parametrize("target", RUNNABLE)
@pytest.mark.parametrize(
    ("h", "w", "r", "sh", "pad", "pointwise"),
    [
        (11, 23, 5, 2, 2, True),  # 5 taps a row: pairs at 2w - 2, 2w and 2w + 2
        (9, 20, 3, 2, 0, True),  # no padding: every pair inside on the left
        (7, 9, 3, 1, 1, True),  # row stride 1; rows narrower than a pair: every vector an edge
        (8, 40, 3, 2, 1, False),  # the depthwise alone, its region's exit stored
    ],
)
def test_column_stride_2_read_in_place_runs_like_numpy(
    target: str, h: int, w: int, r: int, sh: int, pad: int, pointwise: bool
) -> None:
    """The in-place stride-2 taps for other filter widths, paddings, row strides and row widths,
    fused with a pointwise product or alone, on every family this CPU runs."""
    text = _check(_depthwise(h, w, r, sh, 2, pad, pointwise), target)
    assert "rows read in place" in text


@pytest.fixture(scope="module")
def blocks() -> list[isamap.CompileResult]:
    return [isamap.compile(_block(s), HOST) for s in (1, 2)]


def test_a_matrix_call_with_bias_and_relu6() -> None:
    """A light region (bias, ReLU6) on a product in one K slice: a whole tile evaluates it in
    its K loop's own function."""
    text = (
        "tensor X[40, 24] f32\ntensor W[24, 48] f32\ntensor B[40] f32\n"
        "O[i, j] += X[i, k] * W[k, j]\nY[i, j] = min(relu(O[i, j] + B[i]), 6)\n"
    )
    source = _check(isamap.parse_kernel(text, "expand"))
    assert "element-wise steps fused into the output loop" in source
    assert "_mk_whole(a, b0, kc, row, col, E, O)" in source


@pytest.mark.parametrize("target", RUNNABLE)
def test_edge_tiles_compute_only_their_rows_and_vectors(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fused product whose rows (40) and columns (5 vectors) are no multiple of its tile's
    (vectorised over its columns): the last row panel and the last column panel run kernels of
    their own size, whose results land in the full tile's slots."""
    monkeypatch.setattr(emit_module, "channel_plan", lambda *args: None)
    text = (
        "tensor X[40, 24] f32\ntensor W[24, LEN] f32\ntensor B[40] f32\n"
        "O[i, j] += X[i, k] * W[k, j]\nY[i, j] = relu(O[i, j] + B[i])\n"
    )
    target_ = isamap.load_target(target)
    assert target_.codegen is not None
    lanes = family(target_.codegen).lanes
    source = _check(isamap.parse_kernel(text.replace("LEN", str(5 * lanes)), "edges"), target)
    kernels = set(re.findall(r"void \w+_mk_k(\d+)x(\d+)\(", source))
    assert len(kernels) > 1 and any(int(v) == 1 for _, v in kernels), kernels


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_matrix_call_over_few_columns_is_vectorised_over_its_rows(target: str) -> None:
    """A 1x1 convolution on a 3x9 plane (27 pixels: a 16-wide tile of pixels pads 5 of them)
    with bias and ReLU6, 64 output channels: computed vectorised over A's rows (the output
    channels), B's pixels broadcast where they lie, its region stored per channel row."""
    text = (
        "tensor X[1, 48, 3, 9] f32\ntensor W[64, 48] f32\ntensor B[64] f32\n"
        "O[n, m, h, w] += X[n, k, h, w] * W[m, k]\n"
        "Y[n, m, h, w] = min(relu(O[n, m, h, w] + B[m]), 6)\n"
    )
    assert "vectorised over A's rows" in _check(isamap.parse_kernel(text, "expand"), target)


@pytest.mark.parametrize("rows", [None, 3])
def test_depthwise_separable_blocks_with_bias_relu6_and_residual(
    blocks: list[isamap.CompileResult], rows: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stride 1 (with the residual) and 2, in one block per image and in blocks of 3 rows (a
    tail block where 3 does not divide the height)."""
    if rows is not None:
        monkeypatch.setattr(emit_module, "rows_per_block", lambda *args: rows)
    for result in blocks:
        source = emit_c(result.program, result.mapping, result.kernel, result.target)
        assert "depthwise-separable block fused" in source.text
        assert rows is None or "blocks of 3 rows" in source.text
        _runs_like_numpy(source, result, seed=2)


@pytest.mark.parametrize("rows", [None, 3])
def test_pointwise_products_vectorised_over_output_channels(
    blocks: list[isamap.CompileResult], rows: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel-vectorised pointwise loop (chosen for few-pixel planes) on blocks of every
    kind: bias, ReLU6, the residual, stride 2, a tail block, a last tile of fewer pixels and
    of fewer channels (32 channels, 100 or 25 pixels, tiles of 6 or 4 pixels); with blocks of
    3 rows the 16 input channels are also taken 5 at a time (partial sums kept per tile, a last
    slice of 1)."""
    if rows is not None:
        monkeypatch.setattr(emit_module, "rows_per_block", lambda *args: rows)
        monkeypatch.setattr(emit_module, "channel_kc", lambda *args: 5)
    for result, tile in zip(blocks, [(6, 24), (4, 16)], strict=True):
        assert result.target.codegen is not None
        lanes = family(result.target.codegen).lanes
        tile = (tile[0], -(-tile[1] // lanes) * lanes)
        monkeypatch.setattr(emit_module, "channel_plan", lambda *args, t=tile: t)
        source = emit_c(result.program, result.mapping, result.kernel, result.target)
        assert f"vectorised over output channels, tile {tile[0]}x{tile[1]}" in source.text
        assert rows is None or "5 channels per slice" in source.text
        _runs_like_numpy(source, result, seed=3)


def test_a_packed_b_of_full_depth_is_not_sliced_where_it_streams() -> None:
    """One K slice for a packed B whose full-depth panels the smallest memory holding them
    (L2 here) supplies as fast as the micro-kernel reads them; slices filling half of L1 for a
    B read in place, and where the panel would stream from a memory too slow for the tile."""
    target = isamap.load_target("host-avx2")
    tiles = [(6, 16, 6.0)]
    assert matrix_plan(target, 8, tiles, 3, 32, 512, 512, "l1", b_packed=True).kc == 512
    assert matrix_plan(target, 8, tiles, 3, 32, 512, 512, "l1").kc < 512
    assert full_depth_streams(target, 64, 6.0, 512)  # 32 KiB: from L1
    assert not full_depth_streams(target, 64, 0.5, 10**6)  # 64 MB at 128 B/cycle: from DRAM


def test_few_pixel_planes_are_vectorised_over_output_channels() -> None:
    # a 7x7 plane: 49 pixels pad to 56 in vectors of 8 (12.5 %), channels divide evenly
    tiles = [(6, 16, 6.0), (4, 24, 6.0), (12, 8, 6.0)]
    assert channel_plan(tiles, 8, 320, 49) is not None
    assert channel_plan(tiles, 8, 64, 196) is None  # 14x14: little padding either way
    assert channel_plan([(12, 8, 6.0)], 16, 320, 49) is None  # no tile a whole vector wide


def test_pixel_tiles_are_evened_out() -> None:
    """As few tiles of at most MR as cover the pixels, none a sliver: 49 pixels on MR 6 are
    four of 6 and five of 5, not eight of 6 and a last one of 1."""
    assert pixel_tiles(49, 6) == [6, 6, 6, 6, 5, 5, 5, 5, 5]
    for pixels in range(1, 80):
        for mr in (1, 4, 6, 7, 12):
            got = pixel_tiles(pixels, mr)
            assert sum(got) == pixels and len(got) == -(-pixels // mr)
            assert max(got) <= mr and max(got) - min(got) <= 1


def test_depthwise_passes_fit_the_vector_registers() -> None:
    """Up to 4 output rows per pass while the taps, the accumulators and two temporaries fit:
    16 ymm registers hold a 3x3 filter's and 4 rows, not a 5x5 filter's; 32 zmm hold both."""
    avx2, avx512 = isamap.load_target("host-avx2"), isamap.load_target("host-avx512")
    assert pass_rows(avx2, 8, 9) == 4
    assert pass_rows(avx2, 8, 12) == 2
    assert pass_rows(avx2, 8, 25) == 1
    assert pass_rows(avx512, 16, 25) == 4


@pytest.fixture(scope="module")
def small_plane() -> isamap.CompileResult:
    """A 7x7 block with 19 output channels: bias and ReLU6 after the depthwise, a bias after
    the pointwise product."""
    text = "\n".join(
        [
            "tensor X[1, 16, 7, 7] f32 pad(0:0, 0:0, 1:1, 1:1)",
            "tensor F[16, 3, 3] f32\ntensor B[16] f32\ntensor W[19, 16] f32\ntensor B2[19] f32",
            "O[n, c, h, w] += X[n, c, h + r - 1, w + s - 1] * F[c, r, s]",
            "Y2[n, c, h, w] = min(relu(O[n, c, h, w] + B[c]), 6)",
            "O2[n, k, h, w] += Y2[n, c, h, w] * W[k, c]",
            "Y3[n, k, h, w] = O2[n, k, h, w] + B2[k]",
        ]
    )
    return isamap.compile(isamap.parse_kernel(text, "block7"), HOST)


@pytest.mark.parametrize(("rows", "tile"), [(None, 6), (3, 6), (2, 4)])
def test_uneven_pixel_tiles_and_depthwise_passes_run_like_numpy(
    small_plane: isamap.CompileResult,
    rows: int | None,
    tile: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The channel-vectorised product on evened pixel tiles of 3 to 6 pixels (49 pixels on MR
    6: 6s and 5s; blocks of 3 rows: 21 pixels and a tail of 7; blocks of 2 rows on MR 4: 14 and
    7 pixels, 4s and 3s), 19 output channels (a last panel of 3), 5 input channels per slice; the
    depthwise rows in passes of 4, 2 and 1 over 7-wide rows (each copy's tail stored whole)."""
    result = small_plane
    assert result.target.codegen is not None
    lanes = family(result.target.codegen).lanes
    if rows is not None:
        monkeypatch.setattr(emit_module, "rows_per_block", lambda *args: rows)
    monkeypatch.setattr(emit_module, "channel_kc", lambda *args: 5)
    monkeypatch.setattr(emit_module, "channel_plan", lambda *args: (tile, 2 * lanes))
    monkeypatch.setattr(emit_module, "pass_rows", lambda *args: 4)
    source = emit_c(result.program, result.mapping, result.kernel, result.target)
    assert f"tile {tile}x{2 * lanes}" in source.text and "evened out" in source.text
    assert "hl + 4 <= hcur" in source.text and "hl + 1 <= hcur" in source.text
    _runs_like_numpy(source, result, seed=4)


@pytest.mark.parametrize("target", RUNNABLE)
def test_a_gru_step_fuses_its_gates_into_the_recurrent_product(target: str) -> None:
    text = _check(isamap.parse_kernel(gru_step_text(5, 24), "gru_step"), target)
    if target == HOST:
        assert "3 piece(s)" in text and "B packed" in text
    assert "_whole(" not in text  # sigmoid and tanh: evaluated after the handover


def test_a_product_in_several_k_slices_with_a_column_bias_and_two_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a full-depth panel would stream from L2 here: sliced as for a panel past every level
    monkeypatch.setattr(fused_module, "full_depth_streams", lambda *args: False)
    text = (
        "tensor A[37, 600] f32\ntensor B[600, 45] f32\ntensor b[45] f32\n"
        "C[i, j] += A[i, k] * B[k, j]\n"
        "Y[i, j] = tanh(C[i, j] + b[j])\n"
        "Z[i, j] = C[i, j] * 0.5\n"
    )
    source = _check(isamap.parse_kernel(text, "sliced"))
    kc = int(source.split(", KC ")[1].split(",")[0])
    assert kc < 600  # several K slices: partial sums through the scratch block
    assert "fused into the output loop" in source


def test_an_intermediate_read_after_the_region_is_stored() -> None:
    text = (
        "tensor A[20, 30] f32\ntensor B[30, 24] f32\n"
        "C[i, j] += A[i, k] * B[k, j]\n"
        "Y[i, j] = relu(C[i, j])\n"
        "S[i] += Y[i, j]\n"
    )
    _check(isamap.parse_kernel(text, "stored"))


def test_bound_weights_are_packed_once_and_used_on_every_call() -> None:
    kernel = isamap.parse_kernel(gru_step_text(5, 24), "gru_step")
    result = isamap.compile(kernel, HOST)
    source = emit_c(
        result.program, result.mapping, kernel, result.target, constants=("Uz", "Ur", "Uh")
    )
    assert "_prepare_b(" in source.text and source.constants == ("Uz", "Ur", "Uh")
    program = load_native(source, result.target)
    inputs = isamap.random_inputs(kernel, seed=4)
    prepared = program.prepare({n: inputs[n] for n in ("Uz", "Ur", "Uh")})
    want = isamap.evaluate(kernel, inputs)["Hn"]
    for step in range(2):  # the bound values win over whatever sits in their slots
        ins = [
            np.zeros_like(inputs[n], dtype=np.float32)
            if n.startswith("U") and step
            else np.asarray(inputs[n], dtype=np.float32)
            for n in source.inputs
        ]
        out = np.empty(want.shape, np.float32)
        prepared.call(ins, [out])
        np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)
    with pytest.raises(isamap.IsamapError, match="emitted with constants"):
        program.prepare({"Uz": inputs["Uz"]})
    with pytest.raises(isamap.IsamapError, match="not inputs of kernel"):
        emit_c(result.program, result.mapping, kernel, result.target, constants=("Q",))


def test_bound_calls_and_repeated_calls_on_the_same_buffers() -> None:
    """`bind` builds a call's pointers once; `call` reuses the last call's pointers only while
    the same array objects come back (a new output array gets the new result)."""
    kernel = isamap.parse_kernel(gru_step_text(3, 16), "gru_step")
    result = isamap.compile(kernel, HOST)
    source = emit_c(result.program, result.mapping, kernel, result.target, constants=("Uz",))
    program = load_native(source, result.target)
    inputs = isamap.random_inputs(kernel, seed=5)
    want = isamap.evaluate(kernel, inputs)["Hn"]
    ins = [np.asarray(inputs[n], dtype=np.float32) for n in source.inputs]
    for runner in (program, program.prepare({"Uz": inputs["Uz"]})):
        first, second = np.empty(want.shape, np.float32), np.empty(want.shape, np.float32)
        runner.call(ins, [first])
        runner.call(ins, [second])  # same inputs, another output array
        bound_out = np.zeros(want.shape, np.float32)
        run = runner.bind(ins, [bound_out])
        run()
        for out in (first, second, bound_out):
            np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)

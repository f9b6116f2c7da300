"""Direct-convolution instructions: their form, the kernels they take, the call's timing and run.

An instruction whose semantics windows its input (`O[k, h, w] += X[c, h + r, w + s] * W[k, c, r,
s]`) maps a kernel's convolution without an im2col copy: the input tile is loaded once with its
halo, the weights per channel block, the output accumulated over channel blocks and taps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import conv_instructions, explain_rules
from isamap.hardware.conv_form import instruction_conv_form
from isamap.hardware.direct_conv import best_conv_schedule, conv_plan, conv_timing, run_conv_call
from isamap.hardware.matrix_form import matrix_form
from isamap.ir import builders
from isamap.ir.conv import conv_geometry
from isamap.ir.program import TileSchedule
from tests.typed import typed_for

NVDLA = Path(__file__).resolve().parents[2] / "examples" / "isa" / "nvdla.toml"


@pytest.fixture(scope="module")
def nvdla() -> isamap.Target:
    return isamap.load_target(str(NVDLA))


def _geometry(kernel: isamap.Kernel):  # type: ignore[no-untyped-def]
    """The geometry of a conv kernel's product, as the encoder writes it."""
    from isamap.egraph.encode import encode_kernel

    program = encode_kernel(kernel).program()
    window = program.split('(Window $v0 "')[1].split('"')[0]
    spec = program.split('(Einsum "')[1].split('"')[0]
    g = conv_geometry(spec, window, kernel.shapes["X"], kernel.shapes["W"])
    assert not isinstance(g, str), g
    return g


def test_the_instruction_has_a_conv_form_and_a_1x1_matrix_form(nvdla: isamap.Target) -> None:
    ins = nvdla.instructions["conv"]
    form = instruction_conv_form(ins)
    assert form is not None
    assert (form.stripe, form.atom_k, form.atom_c, form.max_taps) == (16, 8, 8, (32, 32))
    assert form.strides == tuple(range(1, 9)) and form.max_padding == 31
    matrix = matrix_form(ins.semantics)  # a GEMM is a 1x1 convolution
    assert matrix is not None
    assert [matrix.tile(r) for r in "bmnk"] == [1, 16, 8, 8]
    assert conv_instructions(nvdla) == ["conv"]
    names = [name for name, _ in explain_rules(nvdla)]
    assert "einsum-window-to-conv" in names and "bmm-to-conv" in names


def test_geometry_reads_stride_padding_dilation_and_groups() -> None:
    g = _geometry(builders.conv2d(1, 16, 21, 21, 32, 3, 3, stride=2, padding=1))
    h, w = g.spatial[-2:]
    assert (h.stride, h.taps, h.pad, h.out_size, h.size) == (2, 3, 1, 11, 21)
    assert (w.pad, w.pad_after) == (1, 1)
    assert (g.c, g.k, g.b) == (16, 32, 1)
    d = _geometry(builders.conv2d(1, 4, 12, 12, 6, 3, 3, dilation=2))
    assert d.spatial[-1].dilation == 2 and d.spatial[-1].pad == 0
    grouped = _geometry(builders.conv2d(1, 8, 10, 10, 8, 3, 3, padding=1, groups=4))
    assert (grouped.b, grouped.c, grouped.k) == (4, 2, 2)
    assert [sp.out for sp in grouped.spatial][-2:] == ["h", "w"]


def test_supports_gives_a_reason_for_what_the_engine_cannot_do(nvdla: isamap.Target) -> None:
    form = instruction_conv_form(nvdla.instructions["conv"])
    assert form is not None
    ok = _geometry(builders.conv2d(1, 16, 21, 21, 32, 3, 3, stride=2, padding=1))
    assert form.supports(ok) is None
    wide = _geometry(builders.conv2d(1, 2, 20, 20, 2, 3, 3, stride=9))
    assert "stride 9" in (form.supports(wide) or "")
    padded = _geometry(builders.conv2d(1, 2, 40, 40, 2, 3, 3, padding=32))
    assert "padding 32" in (form.supports(padded) or "")
    big = _geometry(builders.conv2d(1, 2, 40, 40, 2, 33, 1))
    assert "33 taps" in (form.supports(big) or "")


def test_input_tile_is_loaded_once_with_its_halo(nvdla: isamap.Target) -> None:
    """DRAM bytes are the input with its halo (never the im2col copy), the weights, the output."""
    kernel = builders.conv2d(1, 16, 20, 20, 16, 3, 3, padding=1)
    g = _geometry(kernel)
    plan = conv_plan(nvdla, "conv", g)
    whole = TileSchedule("WS", 20, 2, 2, "ijk", False)  # one tile: everything loaded once
    t = conv_timing(plan, whole)
    input_bytes = 16 * 20 * 20  # int8, padding made on chip
    weight_bytes = 16 * 16 * 9
    output_bytes = 16 * 20 * 20 * 4  # stored at int32
    assert t.bytes["dram"] == input_bytes + weight_bytes + output_bytes
    im2col = 16 * 9 * 20 * 20
    assert input_bytes < im2col / 8
    rows = TileSchedule("WS", 5, 2, 2, "ijk", False)  # four tiles of 5 rows: halos overlap
    halo = conv_timing(plan, rows).bytes["dram"] - weight_bytes - output_bytes
    assert halo == 16 * 20 * (6 + 7 + 7 + 6)
    issues = t.counts["conv"]
    assert issues == 25 * 2 * 2 * 9  # stripes x kernel blocks x channel blocks x taps


@pytest.mark.parametrize(
    "kernel",
    [
        builders.conv2d(1, 12, 13, 11, 10, 3, 2, stride=2, padding=1),
        builders.conv2d(2, 8, 9, 9, 8, 3, 3, padding=2, dilation=2, groups=2),
    ],
    ids=["strided", "grouped-dilated-batched"],
)
def test_machine_run_equals_numpy_across_tiles(nvdla: isamap.Target, kernel: isamap.Kernel) -> None:
    g = _geometry(kernel)
    plan = conv_plan(nvdla, "conv", g)
    rng = np.random.default_rng(3)
    x = rng.integers(-5, 5, kernel.shapes["X"]).astype(float)
    w = rng.integers(-5, 5, kernel.shapes["W"]).astype(float)
    ref = g.reference(x, w)
    for s in (
        TileSchedule("WS", 2, 1, 1, "kji", True),  # partial sums leave and come back
        TileSchedule("WS", 3, 2, 1, "ijk", False),
        best_conv_schedule(nvdla, "conv", g)[0],
    ):
        out, counts = run_conv_call(plan, s, x, w)
        np.testing.assert_allclose(out, ref)
        assert counts["conv"] == conv_timing(plan, s).counts["conv"]


def test_a_schedule_that_overruns_cbuf_is_refused(nvdla: isamap.Target) -> None:
    kernel = builders.conv2d(1, 32, 48, 48, 16, 3, 3, padding=1)
    plan = conv_plan(nvdla, "conv", _geometry(kernel))
    huge = TileSchedule("WS", 48, 2, 4, "ijk", True)  # 2 x 32 x 48 x 48 input bytes
    assert not plan.fits(huge)
    x = np.zeros(kernel.shapes["X"])
    w = np.zeros(kernel.shapes["W"])
    with pytest.raises(isamap.IsamapError, match="cbuf holds 131072 bytes"):
        run_conv_call(plan, huge, x, w)
    s, _ = best_conv_schedule(nvdla, "conv", plan.g)
    assert plan.fits(s)


def test_compiled_conv_lists_the_instruction(nvdla: isamap.Target) -> None:
    kernel = typed_for(builders.conv2d(1, 8, 12, 12, 16, 3, 3, stride=2, padding=1), nvdla)
    result = isamap.compile(kernel, nvdla)
    assert [n.op for n in result.mapping.instruction_calls()] == ["instr_conv"]
    listing = result.program.listing()
    assert "conv (direct convolution, no im2col)" in listing
    assert "halo" in listing
    inputs = isamap.random_inputs(kernel, seed=1)
    np.testing.assert_allclose(
        result.run(inputs)["O"], isamap.evaluate(kernel, inputs)["O"], atol=1e-9
    )


def test_relu_after_a_conv_is_applied_by_the_sdp_store(nvdla: isamap.Target) -> None:
    kernel = isamap.parse_kernel(
        "tensor X[1, 6, 10, 10] i8\ntensor W[8, 6, 3, 3] i8\n"
        "O[n, k, h, w] += X[n, c, h + r, w + s] * W[k, c, r, s]\n"
        "Y[n, k, h, w] = relu(O[n, k, h, w])\n"
    )
    result = isamap.compile(kernel, nvdla)
    (call,) = result.mapping.instruction_calls()
    assert call.op == "instr_conv" and call.attrs["epilogue"] == "relu"
    assert not [n for n in result.mapping.nodes if n.op in ("fn", "vec")], result.mapping
    assert "relu applied by sdp_store on the way out" in result.program.listing()
    inputs = isamap.random_inputs(kernel, seed=2)
    np.testing.assert_allclose(
        result.run(inputs)["Y"], isamap.evaluate(kernel, inputs)["Y"], atol=1e-9
    )


def _target_with(tmp_path: Path, semantics: str, extents: str, extra: str = "") -> Path:
    text = NVDLA.read_text()
    start = text.index("[instructions.conv]")
    end = text.index("[instructions.sdp_add]")
    block = (
        '[instructions.conv]\nunit = "cmac"\nkind = "compute"\n'
        f'semantics = "{semantics}"\nextents = {extents}\n'
        'operands = { X = "cbuf", W = "cbuf", O = "cacc" }\n'
        f"{extra}latency_cycles = 24\nissue_cycles = 16.0\n\n"
    )
    path = tmp_path / "chip.toml"
    path.write_text(text[:start] + block + text[end:])
    return path


@pytest.mark.parametrize(
    ("semantics", "extents", "reason"),
    [
        (  # a tap the weights do not have: not a window of a convolution
            "O[k, w] += X[c, w + s] * W[k, c]",
            "{ k = 8, c = 8, w = 16, s = 3 }",
            "not stride*out + dilation*tap - pad",
        ),
        (
            "O[k, w] += X[c, w + s] * W[k, c, w + s]",
            "{ k = 8, c = 8, w = 16, s = 3 }",
            "both factors have affine accesses",
        ),
        (
            "O[g, k, w] += X[g, c, w + s] * W[g, k, c, s]",
            "{ g = 2, k = 8, c = 8, w = 16, s = 3 }",
            "batch index",
        ),
        (
            "O[k, w] += X[c, w + s + 1] * W[k, c, s]",
            "{ k = 8, c = 8, w = 16, s = 3 }",
            "an offset into the input",
        ),
    ],
)
def test_unusable_window_instruction_is_an_error_at_load(
    tmp_path: Path, semantics: str, extents: str, reason: str
) -> None:
    path = _target_with(tmp_path, semantics, extents)
    with pytest.raises(isamap.IsamapError) as info:
        isamap.load_target(str(path))
    message = str(info.value)
    line = int(message.split(":")[1])
    assert message.startswith(f"{path}:")
    assert "semantics" in path.read_text().splitlines()[line - 1]
    assert "can never be used" in message and reason in message, message


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("strides = [0, 1]\n", "list of integers >= 1"),
        ("dilations = 2\n", "list of integers >= 1"),
        ("max_padding = -1\n", "must be >= 0"),
    ],
)
def test_bad_window_keys_are_errors(tmp_path: Path, extra: str, reason: str) -> None:
    path = _target_with(
        tmp_path,
        "O[k, h, w] += X[c, h + r, w + s] * W[k, c, r, s]",
        "{ k = 8, c = 8, h = 1, w = 16, r = 3, s = 3 }",
        extra,
    )
    with pytest.raises(isamap.IsamapError, match=reason):
        isamap.load_target(str(path))


def test_window_keys_on_a_plain_instruction_are_an_error(tmp_path: Path) -> None:
    path = _target_with(
        tmp_path, "O[k, w] += X[c, w] * W[k, c]", "{ k = 8, c = 8, w = 16 }", "strides = [1, 2]\n"
    )
    with pytest.raises(isamap.IsamapError, match="for a direct-convolution instruction"):
        isamap.load_target(str(path))

"""Tests for target files: the shipped gemmini target, loading, and every validation error."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isamap.hardware.target import TARGET_DIR, Target, dtype_bytes, list_targets
from isamap.hardware.target_file import load_target, target_path
from isamap.ir.errors import IsamapError

GEMMINI_TEXT = target_path("gemmini").read_text()

# A small valid target; tests break one thing in it at a time.
MINIMAL = """\
[target]
name = "tiny"
clock_ghz = 1.0
input_dtype = "i8"
acc_dtype = "i32"

[memories.dram]
level = "dram"
capacity_bytes = 1048576
bandwidth_bytes_per_cycle = 8.0
energy_pj_per_byte = 100.0

[memories.buf]
level = "onchip"
capacity_bytes = 4096
bandwidth_bytes_per_cycle = 32.0
energy_pj_per_byte = 1.0

[units.array]
kind = "matrix"
rows = 4
cols = 4

[units.dma]
kind = "dma"

[instructions.load]
unit = "dma"
kind = "move"
semantics = "S[i, j] = D[i, j]"
extents = { i = 4, j = 4 }
operands = { D = "dram", S = "buf" }
latency_cycles = 10
issue_cycles = 2.0

[instructions.matmul_4x4x4]
unit = "array"
kind = "compute"
semantics = "C[i, j] += A[i, k] * B[k, j]"
extents = { i = 4, j = 4, k = 4 }
operands = { A = "buf", B = "buf", C = "buf" }
latency_cycles = 12
issue_cycles = 4.0
epilogues = ["relu"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def replaced(old: str, new: str, text: str = MINIMAL) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, fragment: str) -> int:
    """1-based number of the first line containing `fragment`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(fragment)


def load_error(tmp_path: Path, text: str) -> IsamapError:
    path = write(tmp_path, text)
    with pytest.raises(IsamapError) as info:
        load_target(str(path))
    assert info.value.loc is not None
    assert info.value.loc.file == str(path)
    return info.value


def check_error(tmp_path: Path, text: str, line_fragment: str, message: str) -> IsamapError:
    """Loading `text` fails at the line holding `line_fragment`, with `message` in the message."""
    err = load_error(tmp_path, text)
    assert err.loc is not None
    assert err.loc.line == line_of(text, line_fragment), str(err)
    assert message in err.message, str(err)
    return err


# -- the shipped target ----------------------------------------------------------------------------


def test_gemmini_loads_with_its_documented_numbers() -> None:
    t = load_target("gemmini")
    assert isinstance(t, Target)
    assert (t.name, t.clock_ghz, t.input_dtype, t.acc_dtype) == ("gemmini", 1.0, "i8", "i32")
    sp, acc, dram = t.memories["scratchpad"], t.memories["accumulator"], t.dram()
    assert (sp.capacity_bytes, sp.banks, sp.row_bytes) == (256 * 1024, 4, 16)
    assert (acc.capacity_bytes, acc.banks, acc.row_bytes) == (64 * 1024, 2, 64)
    assert (dram.name, dram.bandwidth_bytes_per_cycle, dram.latency_cycles) == ("dram", 16.0, 100)
    array = t.units["systolic"]
    assert (array.kind, array.rows, array.cols, array.macs_per_cycle) == ("matrix", 16, 16, 256.0)
    assert set(array.dataflows) == {"weight_stationary", "output_stationary"}
    assert t.host.kind == "host" and t.host.transcendental_cycles == 20.0
    assert t.units["host"] is t.host


def test_gemmini_instructions() -> None:
    t = load_target("gemmini")
    assert list(t.instructions) == [
        "mvin",
        "mvout",
        "mvin_bias",
        "preload",
        "compute_preloaded",
        "compute_accumulated",
    ]
    assert [i.name for i in t.compute_instructions()] == [
        "compute_preloaded",
        "compute_accumulated",
    ]
    cp = t.instruction("compute_preloaded")
    assert dict(cp.extents) == {"i": 16, "j": 16, "k": 16}
    assert dict(cp.operands) == {"A": "scratchpad", "B": "scratchpad", "C": "accumulator"}
    assert cp.semantics.shapes["A"] == (16, 16)
    assert cp.semantics.dtype("A") == "i8" and cp.semantics.dtype("C") == "i32"
    assert cp.operand_bytes("C") == 16 * 16 * 4
    assert (cp.issue_cycles, cp.stationary, cp.reuses_stationary) == (16.0, "B", False)
    assert t.instruction("compute_accumulated").reuses_stationary
    assert t.instruction("mvout").epilogues == ("relu",)
    assert t.instruction("mvin").semantics.statements[0].target == "S"
    assert all(i.kind in ("compute", "move", "config") for i in t.instructions.values())


def test_unknown_instruction_lists_known_names() -> None:
    with pytest.raises(IsamapError, match="mvin, mvout"):
        load_target("gemmini").instruction("matmul")


def test_dtype_bytes() -> None:
    assert [dtype_bytes(d) for d in ("i8", "int8", "f16", "bf16", "f32", "i32", "f64")] == [
        1,
        1,
        2,
        2,
        4,
        4,
        8,
    ]
    assert Target.dtype_bytes("int32") == 4
    with pytest.raises(IsamapError, match="unknown element type"):
        dtype_bytes("f7")


def test_load_by_path_and_list_targets(tmp_path: Path) -> None:
    assert "gemmini" in list_targets()
    path = write(tmp_path, MINIMAL)
    t = load_target(str(path))
    assert t.name == "tiny" and t.path == str(path)
    assert load_target(str(target_path("gemmini"))).name == "gemmini"


def test_unknown_target_name() -> None:
    with pytest.raises(IsamapError, match=r"shipped: .*gemmini"):
        load_target("no_such_target")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IsamapError, match="cannot read") as info:
        load_target(str(tmp_path / "absent.toml"))
    assert info.value.loc is not None and info.value.loc.file.endswith("absent.toml")


def test_defaults(tmp_path: Path) -> None:
    t = load_target(str(write(tmp_path, MINIMAL)))
    assert t.units["array"].macs_per_cycle == 16.0
    assert (t.memories["buf"].banks, t.memories["buf"].latency_cycles) == (1, 0)
    assert t.host.name == "host"
    assert (t.host.macs_per_cycle, t.host.elementwise_per_cycle) == (1.0, 1.0)
    assert t.host.transcendental_cycles == 20.0
    assert t.description == "" and t.instruction("load").epilogues == ()


# -- validation errors, each located at its file and line ---------------------------------------


def test_toml_syntax_error(tmp_path: Path) -> None:
    text = replaced("rows = 4", "rows = = 4")
    err = check_error(tmp_path, text, "rows = = 4", "TOML syntax error")
    assert err.loc is not None and err.loc.col > 0


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    text = replaced("cols = 4", "cols = 4\ncols = 8")
    check_error(tmp_path, text, "cols = 8", "TOML syntax error")


def test_missing_required_key(tmp_path: Path) -> None:
    text = replaced("capacity_bytes = 4096\n", "")
    check_error(tmp_path, text, "[memories.buf]", "missing required key 'capacity_bytes'")


def test_missing_required_table(tmp_path: Path) -> None:
    text = replaced('[target]\nname = "tiny"\n', '[targte]\nname = "tiny"\n')
    check_error(tmp_path, text, "[targte]", "unknown key 'targte'")


def test_unknown_key(tmp_path: Path) -> None:
    text = replaced("capacity_bytes = 4096", "capacity_bytes = 4096\nlatncy_cycles = 3")
    err = check_error(tmp_path, text, "latncy_cycles", "unknown key 'latncy_cycles'")
    assert "latency_cycles" in err.message  # the allowed keys are listed


def test_wrong_type(tmp_path: Path) -> None:
    text = replaced("capacity_bytes = 4096", 'capacity_bytes = "4 KiB"')
    check_error(tmp_path, text, '"4 KiB"', "must be an integer")


def test_float_where_integer_needed(tmp_path: Path) -> None:
    text = replaced("capacity_bytes = 4096", "capacity_bytes = 4096.5")
    check_error(tmp_path, text, "4096.5", "must be an integer")


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    text = replaced("bandwidth_bytes_per_cycle = 32.0", "bandwidth_bytes_per_cycle = true")
    check_error(tmp_path, text, "= true", "must be a number")


def test_non_positive_size(tmp_path: Path) -> None:
    text = replaced("capacity_bytes = 4096", "capacity_bytes = 0")
    check_error(tmp_path, text, "capacity_bytes = 0", "must be >= 1")


def test_non_positive_bandwidth(tmp_path: Path) -> None:
    text = replaced("bandwidth_bytes_per_cycle = 32.0", "bandwidth_bytes_per_cycle = -1.0")
    check_error(tmp_path, text, "-1.0", "must be a finite number > 0")


def test_infinite_bandwidth(tmp_path: Path) -> None:
    text = replaced("bandwidth_bytes_per_cycle = 32.0", "bandwidth_bytes_per_cycle = inf")
    check_error(tmp_path, text, "= inf", "finite")


def test_negative_latency(tmp_path: Path) -> None:
    text = replaced("latency_cycles = 10", "latency_cycles = -3")
    check_error(tmp_path, text, "latency_cycles = -3", "must be >= 0")


def test_zero_issue_interval(tmp_path: Path) -> None:
    text = replaced("issue_cycles = 2.0", "issue_cycles = 0")
    check_error(tmp_path, text, "issue_cycles = 0", "> 0")


def test_unknown_memory_level(tmp_path: Path) -> None:
    text = replaced('level = "onchip"', 'level = "sram"')
    check_error(tmp_path, text, '"sram"', "must be one of dram, onchip")


def test_unknown_unit_kind(tmp_path: Path) -> None:
    text = replaced('kind = "matrix"', 'kind = "tensor_core"')
    check_error(tmp_path, text, '"tensor_core"', "must be one of matrix, vector, dma, host")


def test_unknown_dataflow(tmp_path: Path) -> None:
    text = replaced("cols = 4\n", 'cols = 4\ndataflows = ["weight_stationery"]\n')
    check_error(tmp_path, text, "weight_stationery", "unknown dataflows 'weight_stationery'")


def test_unknown_instruction_kind(tmp_path: Path) -> None:
    text = replaced('kind = "move"', 'kind = "copy"')
    check_error(tmp_path, text, '"copy"', "must be one of compute, move, config")


def test_unknown_dtype(tmp_path: Path) -> None:
    text = replaced('acc_dtype = "i32"', 'acc_dtype = "int33"')
    check_error(tmp_path, text, "int33", "unknown element type 'int33'")


def test_instruction_unit_must_exist(tmp_path: Path) -> None:
    text = replaced('unit = "array"', 'unit = "systolic"')
    check_error(tmp_path, text, '"systolic"', "unknown unit 'systolic' (known: array, dma, host)")


def test_operand_memory_must_exist(tmp_path: Path) -> None:
    text = replaced('operands = { D = "dram", S = "buf" }', 'operands = { D = "dram", S = "spad" }')
    check_error(tmp_path, text, '"spad"', "unknown memory 'spad'")


def test_semantics_parse_error_is_at_the_semantics_key(tmp_path: Path) -> None:
    text = replaced('semantics = "S[i, j] = D[i, j]"', 'semantics = "S[i, j] = D[i, j] *"')
    check_error(tmp_path, text, "D[i, j] *", "in the semantics of 'load'")


def test_semantics_nested_too_deeply(tmp_path: Path) -> None:
    deep = "(" * 3000 + "D[i, j]" + ")" * 3000
    text = replaced('semantics = "S[i, j] = D[i, j]"', f'semantics = "S[i, j] = {deep}"')
    check_error(tmp_path, text, "semantics = ", "in the semantics of 'load'")


def test_semantics_unknown_function(tmp_path: Path) -> None:
    text = replaced('semantics = "S[i, j] = D[i, j]"', 'semantics = "S[i, j] = gelu(D[i, j])"')
    check_error(tmp_path, text, "gelu", "in the semantics of 'load'")


def test_semantics_tensor_without_operand_memory(tmp_path: Path) -> None:
    text = replaced('operands = { D = "dram", S = "buf" }', 'operands = { S = "buf" }')
    check_error(tmp_path, text, 'operands = { S = "buf" }', "tensor 'D' of the semantics has no")


def test_operand_not_in_semantics(tmp_path: Path) -> None:
    text = replaced('S = "buf" }', 'S = "buf", X = "buf" }')
    check_error(tmp_path, text, 'X = "buf"', "operand 'X' is not a tensor")


def test_semantics_index_without_extent(tmp_path: Path) -> None:
    text = replaced("extents = { i = 4, j = 4, k = 4 }", "extents = { i = 4, j = 4, kk = 4 }")
    check_error(tmp_path, text, "kk = 4", "index 'k' of the semantics has no extent")


def test_unused_extent(tmp_path: Path) -> None:
    text = replaced("extents = { i = 4, j = 4 }", "extents = { i = 4, j = 4, q = 2 }")
    check_error(tmp_path, text, "q = 2", "extent of 'q' is given but")


def test_operand_tiles_must_fit_their_memory(tmp_path: Path) -> None:
    text = replaced("extents = { i = 4, j = 4, k = 4 }", "extents = { i = 64, j = 64, k = 4 }")
    check_error(tmp_path, text, 'A = "buf"', "need 16896 bytes of 'buf', which holds 4096")


def test_unknown_epilogue(tmp_path: Path) -> None:
    text = replaced('epilogues = ["relu"]', 'epilogues = ["relu", "gelu"]')
    check_error(tmp_path, text, '"gelu"', "unknown epilogues 'gelu'")


def test_stationary_must_be_an_operand(tmp_path: Path) -> None:
    text = replaced('epilogues = ["relu"]', 'stationary = "W"')
    check_error(tmp_path, text, 'stationary = "W"', "must be one of A, B, C")


def test_reuses_stationary_needs_stationary(tmp_path: Path) -> None:
    text = replaced('epilogues = ["relu"]', "reuses_stationary = true")
    check_error(tmp_path, text, "reuses_stationary", "needs a 'stationary'")


def test_dtypes_must_name_tensors(tmp_path: Path) -> None:
    text = replaced('operands = { D = "dram"', 'dtypes = { Q = "i32" }\noperands = { D = "dram"')
    check_error(tmp_path, text, 'Q = "i32"', "dtypes names 'Q'")


def test_at_least_one_dram(tmp_path: Path) -> None:
    text = replaced('level = "dram"', 'level = "onchip"')
    check_error(tmp_path, text, "[memories.dram]", 'at least one memory with level = "dram"')


def test_exactly_one_host(tmp_path: Path) -> None:
    text = MINIMAL + '\n[units.cpu]\nkind = "host"\n\n[units.cpu2]\nkind = "host"\n'
    check_error(tmp_path, text, "[units.cpu2]", "two host units")
    text = MINIMAL + '\n[units.cpu]\nkind = "host"\n\n[host]\nmacs_per_cycle = 2.0\n'
    check_error(tmp_path, text, "[host]", "two host units")


def test_host_table_kind_must_be_host(tmp_path: Path) -> None:
    text = MINIMAL + '\n[host]\nkind = "vector"\n'
    check_error(tmp_path, text, 'kind = "vector"', "must be one of host")


def test_host_from_units_table(tmp_path: Path) -> None:
    text = MINIMAL + '\n[units.cpu]\nkind = "host"\ntranscendental_cycles = 40.0\n'
    t = load_target(str(write(tmp_path, text)))
    assert t.host.name == "cpu" and t.host.transcendental_cycles == 40.0


def test_bad_table_shape(tmp_path: Path) -> None:
    text = replaced("[memories.dram]\n", "[memories]\ndram = 3\n[memories.dram2]\n")
    check_error(tmp_path, text, "dram = 3", "'memories.dram' must be a table")


def test_host_table_rejects_unknown_keys(tmp_path: Path) -> None:
    text = MINIMAL + "\n[host]\nmacs_per_cycles = 2.0\n"
    check_error(tmp_path, text, "macs_per_cycles", "unknown key 'macs_per_cycles' in [host]")


def test_errors_tomllib_lets_through(tmp_path: Path) -> None:
    for text, message in [
        ("a = " + "1" * 5000, "4300"),
        ("a = " + "[" * 3000 + "]" * 3000, "deep"),
    ]:
        err = load_error(tmp_path, text)
        assert message in err.message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_bytes(b'[target]\nname = "\xff"\n')
    with pytest.raises(IsamapError, match="not UTF-8"):
        load_target(str(path))


# -- robustness ------------------------------------------------------------------------------------

_LINES = GEMMINI_TEXT.splitlines()


@st.composite
def mangled_gemmini(draw: st.DrawFn) -> str:
    """gemmini.toml with a few lines deleted, duplicated or replaced, or characters changed."""
    lines = list(_LINES)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap_line", "char"]))
        if action == "delete":
            del lines[at]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "swap_line":
            lines[at] = draw(st.sampled_from(_LINES))
        elif lines[at]:
            col = draw(st.integers(0, len(lines[at]) - 1))
            char = draw(st.sampled_from([*"0-9.=[]{}\"', #x_\n", "", "1e400", "-"]))
            lines[at] = lines[at][:col] + char + lines[at][col + 1 :]
        if not lines:
            break
    return "\n".join(lines) + "\n"


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mangled_gemmini())
def test_mangled_gemmini_loads_or_raises_isamap_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    try:
        target = load_target(str(path))
    except IsamapError as err:
        assert err.loc is not None and err.loc.file == str(path)
    else:
        assert target.instructions and target.host.kind == "host"


def test_docs_minimal_example_loads(tmp_path: Path) -> None:
    docs = (TARGET_DIR / "README.md").read_text()
    example = docs.split("## A minimal target, annotated", 1)[1].split("```toml\n", 1)[1]
    t = load_target(str(write(tmp_path, example.split("```", 1)[0])))
    assert t.name == "tiny" and t.units["array"].macs_per_cycle == 64.0
    mm = t.instruction("matmul_8x8x8")
    assert mm.semantics.dtype("C") == "i32" and mm.stationary == "B"


# -- issue 10: files that loaded but could not be used ------------------------------------------


@pytest.mark.parametrize("text", ["", "# a comment\n", "\n"])
def test_empty_file_is_missing_its_tables(tmp_path: Path, text: str) -> None:
    with pytest.raises(IsamapError, match="missing required key 'target'"):
        load_target(str(write(tmp_path, text)))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("capacity_bytes = 4096", f"capacity_bytes = {10**30}", "capacity_bytes"),
        ("bandwidth_bytes_per_cycle = 32.0", "bandwidth_bytes_per_cycle = 1e300", "bandwidth"),
        ("issue_cycles = 4.0", "issue_cycles = 1e16", "issue_cycles"),
        ("latency_cycles = 12", f"latency_cycles = {2**63 - 1}", "latency_cycles"),
    ],
)
def test_numbers_beyond_any_hardware_are_refused(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    text = replaced(old, new)
    with pytest.raises(IsamapError, match=f"{key}.* must be at most") as info:
        load_target(str(write(tmp_path, text)))
    assert info.value.loc is not None and info.value.loc.line == line_of(text, new)


def test_matrix_unit_needs_macs(tmp_path: Path) -> None:
    text = replaced("cols = 4\n", "cols = 4\nmacs_per_cycle = 0\n")
    with pytest.raises(IsamapError, match="macs_per_cycle' must be a finite number > 0") as info:
        load_target(str(write(tmp_path, text)))
    assert info.value.loc is not None and info.value.loc.line == line_of(text, "macs_per_cycle")


def test_a_unit_running_an_instruction_needs_its_rate(tmp_path: Path) -> None:
    text = replaced('kind = "matrix"\nrows = 4\ncols = 4', 'kind = "vector"\nlanes = 4')
    text = replaced("lanes = 4", "lanes = 4\nmacs_per_cycle = 0", text)
    with pytest.raises(IsamapError, match="runs the contraction instruction 'matmul_4x4x4'") as e:
        load_target(str(write(tmp_path, text)))
    assert e.value.loc is not None and e.value.loc.line == line_of(text, "macs_per_cycle")
    # a DMA unit moves data only: zero rates are what it has
    assert load_target(str(write(tmp_path, MINIMAL))).units["dma"].macs_per_cycle == 0


def test_load_target_names_a_wrong_argument() -> None:
    with pytest.raises(IsamapError, match="not NoneType"):
        load_target(None)  # type: ignore[arg-type]
    assert load_target(target_path("gemmini")).name == "gemmini"  # a Path is a path


def test_baseline_location_is_kept(tmp_path: Path) -> None:
    text = replaced('acc_dtype = "i32"', 'acc_dtype = "i32"\nbaseline_schedule = "heuristic"')
    t = load_target(str(write(tmp_path, text)))
    assert t.baseline_loc is not None and t.baseline_loc.line == line_of(text, "baseline")

"""The `isamap` command: extract on every example kernel, JSON output, e-graph dumps, and errors
as one line on stderr with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from isamap.cli import cli

ROOT = Path(__file__).resolve().parents[1]
KERNELS = sorted((ROOT / "examples" / "kernels").glob("*.kernel"))
GEMM = str(ROOT / "examples" / "kernels" / "gemm.kernel")
GRU = str(ROOT / "examples" / "new_hardware" / "gru_cell_i8.kernel")  # gemmini: int8 tensors
Q = "--quantize"  # the f32 examples on gemmini, which multiplies int8


def example(kernel: Path) -> tuple[str, ...]:
    """The arguments that compile example `kernel` on gemmini: the f32 kernel quantized, or for
    the GRU cell (whose gate sums per-tensor scales cannot serve) its int8 declaration."""
    return (GRU,) if kernel.stem == "gru_cell" else (str(kernel), Q)


def invoke(*args: str) -> Result:
    """Run the command in-process with stdout and stderr kept apart."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2 always keeps stderr apart
    return runner.invoke(cli, list(args))


@cache
def extract(*args: str) -> Result:
    """`isamap extract` with `args`, run once: several tests read the same compile's output
    (the command is deterministic, and each test only reads its result)."""
    return invoke("extract", *args)


def assert_one_error_line(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("isamap: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_version_and_help() -> None:
    assert invoke("--version").exit_code == 0
    result = invoke("--help")
    assert result.exit_code == 0
    assert all(name in result.stdout for name in ("extract", "sim", "targets"))


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda p: p.stem)
def test_extract_every_example(kernel: Path) -> None:
    result = extract(*example(kernel))
    assert result.exit_code == 0, result.output
    assert "compute_preloaded" in result.stdout
    assert "cycles:" in result.stdout
    assert result.stderr == ""


def test_extract_json() -> None:
    result = invoke("extract", GEMM, Q, "--json", "--cost", "instructions")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"kernel", "target", "mapping", "report", "variants"} <= doc.keys()
    assert doc["target"] == "gemmini"
    assert doc["mapping"]["cost_model"] == "instructions"
    assert doc["report"]["cycles"] > 0
    assert doc["variants"] == []


def test_extract_variants() -> None:
    result = invoke("extract", GEMM, Q, "--variants", "3")
    assert result.exit_code == 0, result.output
    assert "best distinct mappings" in result.stdout
    assert "variant #1" in result.stdout
    doc = json.loads(invoke("extract", GEMM, Q, "--variants", "3", "--json").stdout)
    costs = [v["cost"] for v in doc["variants"]]
    assert 1 <= len(costs) <= 3
    assert costs == sorted(costs)
    assert costs[0] == doc["mapping"]["cost"]


def test_extract_writes_egraph(tmp_path: Path) -> None:
    dot, egraph = tmp_path / "g.dot", tmp_path / "g.json"
    result = invoke("extract", GEMM, Q, "--dot", str(dot), "--egraph-json", str(egraph))
    assert result.exit_code == 0, result.output
    assert dot.read_text().startswith("digraph")
    assert "classes" in json.loads(egraph.read_text())


def test_extract_unwritable_dump_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "g.dot"
    assert_one_error_line(invoke("extract", GEMM, Q, "--dot", str(missing)), str(missing))


def _instruction_nodes(kernel: str) -> list[dict[str, object]]:
    path = GRU if kernel == "gru_cell.kernel" else str(ROOT / "examples" / "kernels" / kernel)
    flags = () if kernel == "gru_cell.kernel" else (Q,)
    result = extract(path, "--json", *flags)
    assert result.exit_code == 0, result.output
    nodes: list[dict[str, object]] = json.loads(result.stdout)["mapping"]["nodes"]
    return [n for n in nodes if n["op"] == "instr"]


def test_dw_separable_pointwise_on_instructions() -> None:
    # the pointwise 1x1 conv contracts over the 16 channels; the depthwise 3x3 over 9 taps
    ks = sorted(n["attrs"]["k"] for n in _instruction_nodes("dw_separable.kernel"))  # type: ignore[index]
    assert 16 in ks, ks
    result = extract(str(ROOT / "examples" / "kernels" / "dw_separable.kernel"), Q)
    assert "k=16" in result.stdout


def test_gru_gate_gemms_fused_with_concat() -> None:
    result = extract(GRU)
    assert result.exit_code == 0, result.output
    assert "concat" in result.stdout
    assert len(_instruction_nodes("gru_cell.kernel")) < 6  # fewer calls than the 6 gate GEMMs


def test_conv2d_im2col_window() -> None:
    result = extract(str(ROOT / "examples" / "kernels" / "conv2d.kernel"), Q)
    assert result.exit_code == 0, result.output
    assert "window" in result.stdout


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("tensor A[4, 4] f32\nC[i, j] += A[i, k] * \n", ":2:22"),  # syntax error
        ("tensor A[4, 5] f32\ntensor B[4, 5] f32\nC[i, j] += A[i, k] * B[k, j]\n", ":3:"),
        ("tensor A[4, 4] f32\nC[i, j] = frob(A[i, j])\n", ":2:11"),  # unknown function
    ],
    ids=["syntax", "shape-mismatch", "unknown-function"],
)
def test_bad_kernel_is_one_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.kernel"
    path.write_text(text)
    assert_one_error_line(invoke("extract", str(path)), f"{path}{where}")


def test_missing_kernel_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.kernel"
    assert_one_error_line(invoke("extract", str(path)), str(path))


def test_unknown_target() -> None:
    assert_one_error_line(invoke("extract", GEMM, Q, "--target", "nope"), "nope")


def test_bad_target_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[target]\nname = "x"\n[[[\n')
    assert_one_error_line(invoke("extract", GEMM, Q, "--target", str(path)), f"{path}:3")


def test_unknown_cost_model() -> None:
    assert_one_error_line(invoke("extract", GEMM, Q, "--cost", "speed"), "speed")


def test_extract_schedule_random() -> None:
    result = invoke("extract", GEMM, Q, "--schedule", "random")
    assert result.exit_code == 0, result.output
    assert "compute_preloaded" in result.stdout
    assert "(schedule random)" in result.stdout  # the report states the scheduled cycles
    doc = json.loads(invoke("extract", GEMM, Q, "--schedule", "random", "--json").stdout)
    assert doc["report"]["schedule"] == "random"
    assert doc["report"]["cycles"] > 0


def test_extract_default_schedule_is_heuristic() -> None:
    result = invoke("extract", GEMM, Q)
    assert result.exit_code == 0, result.output
    assert "(schedule heuristic)" in result.stdout
    assert "speedup" in result.stdout


def test_extract_unknown_schedule() -> None:
    assert_one_error_line(invoke("extract", GEMM, Q, "--schedule", "fastest"), "fastest")


def test_iteration_limit_warns_and_still_maps() -> None:
    result = invoke("extract", GRU, "--max-iterations", "1")
    assert result.exit_code == 0, result.output
    assert "compute_preloaded" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "iteration-limit" in warnings[0] and "best found so far" in warnings[0]


def test_targets() -> None:
    result = invoke("targets")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("gemmini"))
    assert "compute_preloaded" in line
    doc = json.loads(invoke("targets", "--json").stdout)
    assert "gemmini" in [t["name"] for t in doc]


def test_python_m_isamap_subprocess(tmp_path: Path) -> None:
    """A real process: exit codes, and exactly one stderr line on bad input."""
    ok = subprocess.run(
        [sys.executable, "-m", "isamap", "extract", GEMM, Q, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["report"]["cycles"] > 0
    bad = tmp_path / "bad.kernel"
    bad.write_text("tensor A[4, 4] f32\nC[i, j] = frob(A[i, j])\n")
    err = subprocess.run(
        [sys.executable, "-m", "isamap", "extract", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert err.returncode == 2
    assert err.stdout == ""
    assert err.stderr.count("\n") == 1 and err.stderr.startswith("isamap: error: ")
    assert f"{bad}:2:11" in err.stderr


def test_targets_explain_prints_the_schema() -> None:
    result = invoke("targets", "--explain")
    assert result.exit_code == 0
    from isamap.hardware import target_file

    schema = (target_file.TARGET_DIR / "README.md").read_text()
    assert result.stdout.strip() == schema.strip()
    # every key the loader accepts is documented
    tables = [target_file.TARGET_KEYS, target_file.MEMORY_KEYS, target_file.UNIT_KEYS]
    for key in {k for t in [*tables, target_file.INSTRUCTION_KEYS] for k in t}:
        assert f"`{key}`" in schema, key


def test_bad_rule_file_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    import shutil

    from isamap.hardware.target_file import target_path

    toml = tmp_path / "chip.toml"
    shutil.copy(target_path("gemmini"), toml)
    (tmp_path / "chip.egg").write_text("(ruleset r)\n(rewrite (Fnn f x) x :ruleset r)\n")
    result = invoke("extract", GEMM, Q, "--target", str(toml))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'chip.egg'}:2:" in lines[0], result.stderr


def test_targets_checks_a_target_file(tmp_path: Path) -> None:
    from isamap.hardware.target_file import target_path

    good = invoke("targets", str(target_path("vecdsp")))
    assert good.exit_code == 0 and good.stdout.startswith("vecdsp")
    bad = tmp_path / "bad.toml"
    bad.write_text(target_path("vecdsp").read_text().replace("lanes = 16 ", "lanes = -16 "))
    result = invoke("targets", str(bad))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and f"{bad}:" in result.stderr

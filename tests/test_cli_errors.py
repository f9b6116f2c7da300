"""Bad input through the `isamap` command (issue 10's reproductions): click's usage errors, bad
files, unfit baselines and unwritable outputs each end in one `isamap: error:` line, exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isamap.hardware.target_file import target_path
from tests.test_cli import GEMM, assert_one_error_line, invoke

GEMMINI = target_path("gemmini").read_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["extract", GEMM, "--max-iterations", "0"], "--max-iterations"),
        (["extract", GEMM, "--max-enodes", "-5"], "--max-enodes"),
        (["extract", GEMM, "--max-seconds", "0"], "--max-seconds"),
        (["extract", GEMM, "--variants", "-1"], "--variants"),
        (["extract", GEMM, "--frobnicate"], "--frobnicate"),
        (["extract"], "KERNEL"),
        (["frobnicate"], "frobnicate"),
        (["sim", GEMM, "--max-iterations", "x"], "x"),
        (["check-rules", "--seed", "-1"], "--seed"),
        (["bench", "nope"], "nope"),
        (["bench", "deepbench-gemm", "--jobs", "0"], "--jobs"),
        (["bench", "deepbench-gemm", "--limit", "0"], "--limit"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    result = invoke(*args)
    assert_one_error_line(result, needle, "--help")
    assert "Usage:" not in result.stderr


@pytest.mark.parametrize("command", ["extract", "sim"])
def test_a_directory_as_kernel_is_one_line(tmp_path: Path, command: str) -> None:
    assert_one_error_line(invoke(command, str(tmp_path)), "KERNEL", "directory")


def test_dump_to_a_directory_is_one_line(tmp_path: Path) -> None:
    assert_one_error_line(invoke("extract", GEMM, "--dot", str(tmp_path)), "--dot")


def test_bench_out_naming_a_file_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_error_line(invoke("bench", "deepbench-gemm", "--out", str(afile)), "--out")


@pytest.mark.parametrize("out", ["/sys/isamap-bench", "afile/sub"])
def test_bench_unwritable_out_fails_before_the_run(tmp_path: Path, out: str) -> None:
    (tmp_path / "afile").write_text("x")
    path = out if out.startswith("/") else str(tmp_path / out)
    result = invoke("bench", "deepbench-gemm", "--limit", "1", "--out", path)
    assert_one_error_line(result, path, "cannot create")
    assert result.stdout == ""  # nothing was compiled


def test_bare_command_prints_the_help() -> None:
    result = invoke()
    assert result.exit_code == 0
    assert "extract" in result.stdout and "Usage:" in result.stdout


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("tensor A[4, 4] f32\nC[i, j] = A[i, j] * 1e999\n", ":2:21"),
        (f"tensor A[4, 4] f32\nC[i, j] = A[i, j] * {'9' * 400}\n", ":2:21"),
        (f"tensor A[{'9' * 5000}] f32\nC[i] = A[i]\n", ":1:10"),
        (f"tensor A[{10**13}, {10**13}] f32\nC[i, j] = A[i, j]\n", ":1:8"),
        (b"tensor A[4] f32\n# caf\xe9\nC[i] = A[i]\n", ":2:6"),
        (bytes(range(256)), ":2:118"),  # 0x80 is past the \n at offset 10
    ],
    ids=["1e999", "400-digit", "5000-digit-dim", "2^86-elements", "latin-1", "binary"],
)
def test_bad_kernel_files_are_one_line(tmp_path: Path, content: str | bytes, where: str) -> None:
    path = tmp_path / "bad.kernel"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert_one_error_line(invoke("extract", str(path)), f"{path}{where}")


def test_extent_of_10_to_26_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.kernel"
    path.write_text(
        "tensor A[10000000000000, 10] f32\ntensor B[10, 10000000000000] f32\n"
        "C[i, j] += A[i, k] * B[k, j]\n"
    )
    result = invoke("sim", str(path))
    assert_one_error_line(result, f"{path}:3", "iterations")


@pytest.mark.parametrize("content", ["", "# only a comment\n", "\n\n"])
def test_empty_target_file_is_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.toml"
    path.write_text(content)
    assert_one_error_line(invoke("targets", str(path)), str(path), "missing required")


def _gemmini_with(tmp_path: Path, extents: str) -> Path:
    """gemmini.toml with every 16x16x16 matrix instruction at other extents."""
    text = GEMMINI.replace("extents = { i = 16, j = 16, k = 16 }", f"extents = {extents}")
    assert text != GEMMINI
    path = tmp_path / "chip.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "extents",
    ["{ i = 1, j = 1, k = 16 }", "{ i = 16, j = 16, k = 1 }", "{ i = 8, j = 4, k = 2 }"],
    ids=["dot-product", "outer-product", "8x4x2"],
)
def test_a_baseline_that_cannot_serve_the_target_fails_at_load(
    tmp_path: Path, extents: str
) -> None:
    path = _gemmini_with(tmp_path, extents)
    lines = GEMMINI.split("\n")
    line = 1 + next(i for i, s in enumerate(lines) if s.startswith("baseline_schedule ="))
    for args in (["targets", str(path)], ["extract", GEMM, "--target", str(path)]):
        assert_one_error_line(
            invoke(*args), f"{path}:{line}:1: baseline_schedule", "gemmini-default", "cannot serve"
        )


@pytest.mark.parametrize("target", ["vecdsp", "nnp"])
def test_sim_with_a_strategy_that_cannot_serve_the_target(target: str) -> None:
    result = invoke("sim", GEMM, "--target", target, "--schedule", "gemmini-default")
    assert_one_error_line(result, "gemmini-default", f"cannot serve target '{target}'")


def test_matrix_unit_with_no_macs_is_refused_at_its_line(tmp_path: Path) -> None:
    text = GEMMINI.replace("macs_per_cycle = 256.0", "macs_per_cycle = 0")
    path = tmp_path / "chip.toml"
    path.write_text(text)
    line = 1 + text.split("\n").index(
        next(s for s in text.split("\n") if re.match(r"macs_per_cycle = 0\s", s))
    )
    assert_one_error_line(invoke("targets", str(path)), f"{path}:{line}:1", "macs_per_cycle")

"""The command on the host CPU: extract maps a GEMM onto the micro-kernel, --emit-c writes C."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import GEMM, assert_one_error_line, invoke


def test_extract_maps_a_gemm_onto_the_micro_kernel(tmp_path: Path) -> None:
    out = tmp_path / "gemm.c"
    result = invoke("extract", GEMM, "--target", "host", "--emit-c", str(out))
    assert result.exit_code == 0, result.stderr
    assert "[fma] mk_" in result.stdout
    text = out.read_text()
    assert "int isamap_run(const float* const* in, float* const* out)" in text
    assert "emitted by isamap" in text


def test_sim_emits_c_too(tmp_path: Path) -> None:
    out = tmp_path / "gemm.c"
    result = invoke("sim", GEMM, "--target", "host-generic", "--emit-c", str(out))
    assert result.exit_code == 0, result.stderr
    assert "family c" in out.read_text()


def test_emit_c_needs_a_cpu_target(tmp_path: Path) -> None:
    c_file = str(tmp_path / "x.c")
    result = invoke("extract", GEMM, "--quantize", "--target", "gemmini", "--emit-c", c_file)
    assert_one_error_line(result, "--emit-c needs a CPU target")


def test_targets_lists_the_host_alias() -> None:
    result = invoke("targets")
    assert result.exit_code == 0
    assert any(
        line.startswith("host ") and "alias of host-" in line for line in result.stdout.splitlines()
    )

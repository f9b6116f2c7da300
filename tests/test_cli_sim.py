"""`isamap sim`: the scheduled program's listing and its simulated results, as text or JSON,
with every schedule strategy and one error line for an unknown one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_cli import GEMM, KERNELS, Q, assert_one_error_line, example, invoke


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda p: p.stem)
def test_sim_every_example(kernel: Path) -> None:
    result = invoke("sim", *example(kernel))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("program ")
    assert re.search(r"^\s*for \w+ in ", out, re.MULTILINE), out
    assert re.search(r"^\s*mvin\b", out, re.MULTILINE), out
    assert "(schedule heuristic)" in out  # the default strategy
    for needle in ("cycles:", "utilisation:", "bytes moved:", "energy:", "roofline", "speedup"):
        assert needle in out, needle
    # the listing comes first, the results block after it
    assert out.index("mvin") < out.index("cycles:")


def test_sim_json() -> None:
    result = invoke("sim", GEMM, Q, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"program", "report", "mapping"} <= doc.keys()
    report = doc["report"]
    assert report["cycles"] > 0
    assert report["baseline_cycles"] > 0
    assert report["schedule"] == "heuristic"
    assert report["speedup"] == pytest.approx(report["baseline_cycles"] / report["cycles"])
    assert 0 < report["percent_of_roofline"] <= 100
    assert report["energy_pj"] > 0
    assert report["bytes"] and report["utilisation"]
    assert doc["program"]["calls"]


def _cycles_and_speedup(out: str) -> tuple[float, float]:
    cycles = re.search(r"^cycles: ([\d,]+)", out, re.MULTILINE)
    speedup = re.search(r"speedup ([\d.]+)x", out)
    assert cycles and speedup, out
    return float(cycles.group(1).replace(",", "")), float(speedup.group(1))


def test_sim_schedules_on_gemm() -> None:
    default = invoke("sim", GEMM, Q, "--schedule", "gemmini-default")
    assert default.exit_code == 0, default.output
    assert "(schedule gemmini-default)" in default.stdout
    assert "speedup 1.00x" in default.stdout  # the baseline against itself
    base_cycles, _ = _cycles_and_speedup(default.stdout)
    exhaustive = invoke("sim", GEMM, Q, "--schedule", "exhaustive")
    assert exhaustive.exit_code == 0, exhaustive.output
    assert "(schedule exhaustive)" in exhaustive.stdout
    assert re.search(r"^\s*for ", exhaustive.stdout, re.MULTILINE)
    cycles, speedup = _cycles_and_speedup(exhaustive.stdout)
    assert cycles <= base_cycles  # exhaustive search never loses to the baseline's choice
    assert speedup >= 1.0


def test_sim_options() -> None:
    result = invoke(
        "sim", GEMM, Q, "--target", "gemmini", "--cost", "energy", "--max-iterations", "2", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mapping"]["cost_model"] == "energy"


def test_sim_unknown_schedule() -> None:
    result = invoke("sim", GEMM, Q, "--schedule", "fastest")
    assert_one_error_line(result, "fastest", "heuristic")
    assert result.stdout == ""


def test_sim_unknown_schedule_is_checked_first(tmp_path: Path) -> None:
    # the strategy name is judged before the kernel is even read
    missing = tmp_path / "missing.kernel"
    assert_one_error_line(invoke("sim", str(missing), "--schedule", "fastest"), "fastest")


def test_sim_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.kernel"
    assert_one_error_line(invoke("sim", str(missing)), str(missing))
    assert_one_error_line(invoke("sim", GEMM, Q, "--target", "nope"), "nope")
    assert_one_error_line(invoke("sim", GEMM, Q, "--cost", "speed"), "speed")

"""`isamap bench`: a small run writes report.md, report.json and three plots; parallel workers
give the same numbers as one process; bad names are one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from isamap.bench.plots import PLOTS
from isamap.cli import cli


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def gemm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "tmp"
    result = invoke("bench", "deepbench-gemm", "--limit", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "deepbench-gemm: 3 rows" in result.output
    return out


def test_writes_report_and_plots(gemm_run: Path) -> None:
    for name in ("report.md", "report.json", *PLOTS):
        assert (gemm_run / name).stat().st_size > 0, name
    assert (gemm_run / "roofline.png").read_bytes()[:4] == b"\x89PNG"
    assert "# isamap benchmarks on gemmini" in (gemm_run / "report.md").read_text()


def test_report_json_keys(gemm_run: Path) -> None:
    doc = json.loads((gemm_run / "report.json").read_text())
    assert doc["target"] == "gemmini"
    assert doc["baseline_schedule"] == "gemmini-default"
    assert set(doc["suites"]) == {"deepbench-gemm"}
    suite = doc["suites"]["deepbench-gemm"]
    for key in ("geomean_speedup", "geomean_percent_of_roofline", "compile_seconds", "slowest"):
        assert key in suite["summary"]
    assert len(suite["workloads"]) == 3
    for row in suite["workloads"]:
        assert row["cycles"] >= row["roofline_cycles"] > 0
        assert row["speedup"] == pytest.approx(row["baseline_cycles"] / row["cycles"])
    for kernel in doc["kernels"].values():
        for key in ("instruction_calls", "utilisation", "energy_pj", "enodes", "stage_seconds"):
            assert key in kernel
        assert {"saturate", "extract", "schedule_and_simulate"} <= set(kernel["stage_seconds"])


def _numbers(out: Path) -> dict[str, tuple[float, float, float]]:
    doc = json.loads((out / "report.json").read_text())
    return {
        key: (k["cycles"], k["baseline_cycles"], k["energy_pj"])
        for key, k in doc["kernels"].items()
    }


def test_parallel_jobs_give_the_same_numbers(tmp_path: Path) -> None:
    for jobs in ("1", "2"):
        args = ("bench", "deepbench-gemm", "--limit", "2", "--jobs", jobs)
        result = invoke(*args, "--out", str(tmp_path / jobs))
        assert result.exit_code == 0, result.output
    assert _numbers(tmp_path / "1") == _numbers(tmp_path / "2")


def test_unknown_suite_is_a_usage_error() -> None:
    result = invoke("bench", "imagenet")
    assert result.exit_code == 2
    assert "imagenet" in result.output


@pytest.mark.parametrize("option", [("--target", "nosuch"), ("--schedule", "nosuch")])
def test_bad_target_or_schedule_is_one_error_line(option: tuple[str, str]) -> None:
    result = invoke("bench", "deepbench-gemm", "--limit", "1", *option)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("isamap: error: "), result.stderr

"""Saturation in phases: the same fixpoint as all rules together, reported per phase."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import isamap
from isamap.egraph.phases import PHASES, phase_of_ruleset
from isamap.egraph.saturate import saturate
from isamap.hardware.target_file import target_path


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.mark.parametrize(
    ("ruleset", "phase"),
    [
        ("layout", "layout"),
        ("fusion", "fusion"),
        ("target", "instruction"),
        ("layout-mine", "layout"),
        ("packing_extra", "packing"),
        ("chip", "instruction"),
        ("layouts", "instruction"),  # a prefix only counts with its separator
    ],
)
def test_phase_of_ruleset(ruleset: str, phase: str) -> None:
    assert phase_of_ruleset(ruleset) == phase


def test_report_gives_each_phase_its_work(gemmini: isamap.Target) -> None:
    gru = isamap.load_kernel("examples/kernels/gru_cell.kernel")
    report = saturate(gru, gemmini).report
    assert list(report.phases) == [p for p in PHASES if p in report.phases]  # in run order
    assert report.phases["layout"].iterations > 0
    assert report.phases["fusion"].iterations > 0  # the GRU's gate GEMMs share operands
    assert report.phases["instruction"].iterations > 0
    assert report.phases["instruction"].matches > 0
    assert all(p.iterations <= report.iterations for p in report.phases.values())
    assert all(p.enodes > 0 for p in report.phases.values() if p.iterations)
    assert "phases" in report.summary()
    assert set(report.to_dict()["phases"]) == set(report.phases)


def test_packing_runs_only_where_channels_pack(gemmini: isamap.Target) -> None:
    dw = isamap.load_kernel("examples/kernels/dw_separable.kernel")
    gemm = isamap.load_kernel("examples/kernels/gemm.kernel")
    assert saturate(dw, gemmini).report.phases["packing"].iterations == 1
    assert saturate(gemm, gemmini).report.phases["packing"].iterations == 0


def test_a_target_rule_files_ruleset_runs_in_the_phase_it_names(tmp_path: Path) -> None:
    shutil.copy(target_path("gemmini"), tmp_path / "chip.toml")
    (tmp_path / "chip.egg").write_text(
        "(ruleset layout-mine)\n"
        '(rewrite (Fn "relu" (Fn "relu" x)) (Fn "relu" x) :ruleset layout-mine '
        ':name "relu-idempotent")\n'
    )
    target = isamap.load_target(str(tmp_path / "chip.toml"))
    kernel = isamap.parse_kernel(
        "tensor A[8, 8] f32\nB[i, j] = relu(A[i, j])\nC[i, j] = relu(B[i, j])\n"
    )
    report = saturate(kernel, target).report
    assert report.matches_per_rule["relu-idempotent"] >= 1
    assert report.phases["layout"].matches >= 1

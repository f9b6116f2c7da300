"""Saturation runner: limits and why it stopped, the run report, dumps, rule-file errors."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from egglog import bindings

import isamap
from isamap.egraph import Limits, encode_kernel, saturate
from isamap.egraph.saturate import RULES_DIR, load_rule_text
from isamap.extract import extract
from isamap.hardware.target_file import target_path
from tests.typed import typed_for


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


@pytest.fixture(scope="module")
def gru() -> isamap.Kernel:
    return isamap.load_kernel("examples/kernels/gru_cell.kernel")


def test_saturates_and_reports(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini)
    rep = sat.report
    assert rep.stop_reason == "saturated" and not rep.hit_limit
    assert rep.enodes == sat.dump.enodes > 0
    assert rep.eclasses == len(sat.dump.classes)
    assert rep.matches_per_rule["bmm-to-compute_preloaded"] > 0
    assert rep.matches_per_rule["fuse-gemms-sharing-lhs"] > 0
    assert {"load_rules", "encode", "saturate", "serialize"} <= set(rep.stage_seconds)
    assert all(v >= 0 for v in rep.stage_seconds.values())
    assert rep.stage_seconds["saturate"] > 0
    assert "saturated after" in rep.summary()


def test_iteration_limit_returns_best_so_far(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini, Limits(iterations=1))
    assert sat.report.stop_reason == "iteration-limit"
    assert sat.report.hit_limit and "limit was hit" in sat.report.summary()
    mapping = extract(sat)
    assert set(mapping.outputs) >= set(gru.outputs())


def test_enode_limit(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini, Limits(enodes=60))
    assert sat.report.stop_reason == "enode-limit"
    full = saturate(gru, gemmini)
    assert sat.report.enodes < full.report.enodes


def test_time_limit(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini, Limits(seconds=1e-9))
    assert sat.report.stop_reason == "time-limit"
    assert sat.report.iterations == 0  # the encoding alone: no iteration started past the limit
    assert set(extract(sat).outputs) >= set(gru.outputs())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seconds": 0.0},
        {"seconds": -1.0},
        {"seconds": float("nan")},
        {"seconds": float("inf")},
        {"iterations": -1},
        {"iterations": 0},
        {"enodes": 0},
        {"enodes": 2.5},
        {"iterations": True},
    ],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(isamap.IsamapError) as info:
        Limits(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith("Limits: ") and "\n" not in str(info.value)


GROWS_FOREVER = (
    "(ruleset grow)\n"
    '(rewrite (Bmm b m n k x y) (Bmm b m n (+ k 1) x y) :ruleset grow :name "grow")\n'
)


def _growing_target(tmp_path: Path) -> isamap.Target:
    toml = tmp_path / "chip.toml"
    shutil.copy(target_path("gemmini"), toml)
    (tmp_path / "chip.egg").write_text(GROWS_FOREVER)
    return isamap.load_target(str(toml))


@pytest.mark.parametrize("limit", [300, 437, 650])
def test_enode_limit_is_never_exceeded(tmp_path: Path, gru: isamap.Kernel, limit: int) -> None:
    sat = saturate(gru, _growing_target(tmp_path), Limits(iterations=200, enodes=limit))
    assert sat.report.stop_reason == "enode-limit"
    assert sat.report.undone_iteration
    assert sat.report.iterations > 0
    assert sat.report.enodes <= limit
    assert "undone" in sat.report.summary()
    assert set(extract(sat).outputs) >= set(gru.outputs())


def test_time_limit_bounds_saturation_and_extraction(tmp_path: Path, gru: isamap.Kernel) -> None:
    target = _growing_target(tmp_path)
    limits = Limits(iterations=10_000, enodes=10**9, seconds=1.0)
    kernel = typed_for(gru, target)  # int8 on a gemmini copy
    t0 = time.perf_counter()
    result = isamap.compile(kernel, target, limits=limits, allow_unchecked_rules=True)
    elapsed = time.perf_counter() - t0
    report = result.report.egraph
    assert report.stop_reason == "time-limit"
    assert report.extract_stop_reason == "time-limit"
    assert "extraction stopped" in report.summary()
    assert elapsed < 1.0 + 4.0, elapsed  # the limit, one iteration, scheduling the result


def test_extraction_deadline_returns_the_greedy_mappings_best(
    gemmini: isamap.Target, gru: isamap.Kernel
) -> None:
    sat = saturate(gru, gemmini)
    full = extract(sat, "latency")
    assert sat.report.extract_stop_reason == "complete"
    hurried = extract(sat, "latency", "greedy", seconds=0.0)
    assert sat.report.extract_stop_reason == "time-limit"
    assert set(hurried.outputs) == set(full.outputs)
    assert hurried.cost >= full.cost


def test_many_statements_encode_in_linear_time(gemmini: isamap.Target) -> None:
    """1,000 statements: egglog parses one long program in quadratic time and memory, so the
    encoding is loaded in chunks; outputs and roots are found in one pass."""
    text = "tensor A[8, 8] f32\n" + "".join(f"C{n}[i, j] = relu(A[i, j])\n" for n in range(1, 1001))
    kernel = isamap.parse_kernel(text)
    t0 = time.perf_counter()
    result = isamap.compile(kernel, gemmini, limits=Limits(seconds=2.0))
    assert time.perf_counter() - t0 < 15.0
    assert len(result.mapping.outputs) == 1000
    assert result.report.egraph.stage_seconds["encode"] < 5.0


def test_dumps(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini)
    data = json.loads(sat.to_json())
    assert set(data["results"]) == set(gru.written())
    assert any(n["op"] == "Instr" for nodes in data["classes"].values() for n in nodes)
    dot = sat.to_dot()
    assert dot.startswith("digraph egraph {") and "compute_preloaded" in dot


def test_every_result_class_has_a_shape(gemmini: isamap.Target, gru: isamap.Kernel) -> None:
    sat = saturate(gru, gemmini)
    for name, cid in sat.dump.results.items():
        assert sat.dump.shapes[cid] == tuple(gru.shapes[name])


def test_encoding_is_literal() -> None:
    """The encoder writes the product as the kernel says it: no roles, layouts or orientation."""
    kernel = isamap.parse_kernel(
        "tensor A[4, 6] f32\ntensor B[5, 6] f32\nC[i, j] += A[i, k] * B[j, k]\n"
    )
    text = encode_kernel(kernel).program()
    assert '(Einsum "i,k;j,k;i,j" $v0 $v1)' in text
    for decision in ("Bmm", "Transpose", "Reshape", "Window"):
        assert decision not in text
    assert "(HostStmt 0" in text and '(Result "C"' in text


def test_saturation_finds_both_orientations(gemmini: isamap.Target) -> None:
    """The rules lay the literal product out as a Bmm both ways round: B[j, k] is already the
    [n, k] operand of (B . A^T)^T, and a [k, n] one after a transpose in A . B^T."""
    kernel = isamap.parse_kernel(
        "tensor A[4, 6] f32\ntensor B[5, 6] f32\nC[i, j] += A[i, k] * B[j, k]\n"
    )
    sat = saturate(kernel, gemmini)
    bmms = {
        (n.int_arg(1), n.int_arg(2), n.int_arg(3))
        for nodes in sat.dump.classes.values()
        for n in nodes
        if n.op == "Bmm"
    }
    assert {(4, 5, 6), (5, 4, 6)} <= bmms
    assert sat.report.matches_per_rule["einsum-to-bmm"] >= 2
    assert sat.report.matches_per_rule["einsum-commute"] >= 1


def test_rule_file_errors_name_file_line_col() -> None:
    egraph = bindings.EGraph()
    load_rule_text(egraph, (RULES_DIR / "sorts.egg").read_text(), "sorts.egg")
    bad = "(ruleset mine)\n\n(rewrite (Bmmm b m n k x y) x :ruleset mine)\n"
    with pytest.raises(isamap.IsamapError) as info:
        load_rule_text(egraph, bad, "mine.egg")
    assert info.value.loc is not None
    assert (info.value.loc.file, info.value.loc.line) == ("mine.egg", 3)
    assert "Bmmm" in str(info.value)


def test_rule_file_syntax_error() -> None:
    egraph = bindings.EGraph()
    with pytest.raises(isamap.IsamapError) as info:
        load_rule_text(egraph, "(datatype T (A)\n", "broken.egg")
    assert str(info.value).startswith("broken.egg:")

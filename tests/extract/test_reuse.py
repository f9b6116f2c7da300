"""Reusing an extraction for kernels that differ only in their constants (extract/reuse.py): the
e-graphs must be the same but for their floats, renamed one to one; a constant a rule's guard
tests makes other e-graphs; a quantized GRU's steps share one extraction and each still gets
exactly the mapping and the cycles compiling it alone gives."""

from __future__ import annotations

import sys

import pytest

import isamap
from isamap.extract.exact import candidate_mappings
from isamap.extract.reuse import EGraphShape, egraph_shape, same_up_to_floats, transport
from isamap.frontend import model_from_proto, models
from isamap.hardware.machine import run_program
from tests.egraph.test_requant_rules import GEMM
from tests.extract.test_exact import compile_calls
from tests.typed import check_outputs

compile_module = sys.modules["isamap.compile"]


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


def _shape(scale: str, target: isamap.Target) -> tuple[isamap.Saturation, EGraphShape]:
    kernel = isamap.parse_kernel(GEMM.format(body=f"Y_q[i, j] = {scale} * relu(Y[i, j])"))
    sat = isamap.saturate(kernel, target)
    return sat, egraph_shape(sat.dump, kernel)


def test_kernels_differing_in_a_scale_share_the_egraphs_shape(gemmini: isamap.Target) -> None:
    sat_a, a = _shape("0.015625", gemmini)
    sat_b, b = _shape("0.0234375", gemmini)  # both f32 values: the scaling store takes either
    assert a.key == b.key and a.floats != b.floats
    assert same_up_to_floats(a, b)
    (mapping_a, chosen), *_ = candidate_mappings(sat_a, "latency", "exact", 1, 1, 0.0)
    moved = transport(chosen, sat_a.dump, sat_b.dump)
    assert all(node in sat_b.dump.classes[cid] for cid, node in moved.items())
    (mapping_b, _), *_ = candidate_mappings(sat_b, "latency", "exact", 1, 1, 0.0)
    assert [n.op for n in moved.values()] == [n.op for n in chosen.values()]
    assert mapping_a.cost == pytest.approx(mapping_b.cost)


def test_a_scale_a_guard_refuses_gives_another_egraph(gemmini: isamap.Target) -> None:
    # 0.01 is no f32 value: the scaling store's rule does not fire, the cast stays on the host
    _, exact = _shape("0.015625", gemmini)
    _, inexact = _shape("0.01", gemmini)
    assert exact.key != inexact.key
    assert not same_up_to_floats(exact, inexact)


def test_floats_must_rename_one_to_one() -> None:
    key = ("k",)
    assert same_up_to_floats(EGraphShape(key, (1.0, 2.0)), EGraphShape(key, (3.0, 4.0)))
    assert not same_up_to_floats(EGraphShape(key, (1.0, 1.0)), EGraphShape(key, (3.0, 4.0)))
    assert not same_up_to_floats(EGraphShape(key, (1.0, 2.0)), EGraphShape(key, (3.0, 3.0)))
    assert not same_up_to_floats(EGraphShape(key, (1.0,)), EGraphShape(("other",), (1.0,)))


def test_quantized_gru_steps_share_one_extraction(
    gemmini: isamap.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each quantized step has its own scales and its own saturation; the k-best search runs
    for the projection and the first step only; a later step's mapping and cycles are those
    compiling it alone gives, and every step's program computes its kernel bit for bit."""
    searches = compile_calls(monkeypatch, "candidate_mappings")
    proto = models.gru_model(steps=2, batch=1, input_size=8, hidden=8)
    result = isamap.compile(model_from_proto(proto), gemmini, quantize=True)
    assert result.report.kernels == 3 and searches[0] == 2
    monkeypatch.undo()  # compiling alone, below, searches as compile does
    steps = result.compiled[1:]
    assert len({str(c.kernel) for c in steps}) == 2  # two kernels: the scales differ
    alone = isamap.compile(steps[-1].kernel, gemmini)  # a step whose extraction was carried

    def nodes(m: isamap.Mapping) -> list[object]:
        return [(n.op, n.args, dict(n.attrs), n.shape, n.unit, n.cycles) for n in m.nodes]

    assert nodes(steps[-1].mapping) == nodes(alone.mapping)  # constants included
    assert steps[-1].report.cycles == alone.report.cycles
    for step in steps:
        q = step.quantization
        assert q is not None
        ints = q.quantize_inputs(isamap.random_inputs(q.source, seed=5))
        machine = run_program(step.program, step.mapping, q.kernel, gemmini, ints)
        check_outputs(machine, q.kernel, ints)  # bit for bit where integer

"""The suites' kernel generators: every row becomes kernels that build, with the MACs the source
data states (per MobileNet layer, per GEMM, per GRU layer), and the GRU and residual kernels
compute what numpy does."""

from __future__ import annotations

import pytest

import isamap
from isamap.bench.suites import (
    SUITES,
    dw_separable_residual_text,
    gru_projection_text,
    gru_step_text,
    suite_workloads,
)
from isamap.compile import kernel_macs
from tests.typed import check_outputs

ROWS = {"deepbench-gemm": 248, "deepbench-gru": 73, "mobilenet-v1": 16, "mobilenet-v2": 37}


@pytest.mark.parametrize("suite", list(SUITES))
def test_every_row_builds_with_the_stated_macs(suite: str) -> None:
    workloads = suite_workloads(suite)
    assert len(workloads) == ROWS[suite]
    built = {}
    for w in workloads:
        for p in w.parts:
            if p.spec.key not in built:
                built[p.spec.key] = kernel_macs(p.spec.build())
        assert sum(p.count * built[p.spec.key] for p in w.parts) == w.expected_macs, w.name


@pytest.mark.parametrize("version", [1, 2])
def test_mobilenet_covers_every_csv_layer_once(version: int) -> None:
    workloads = suite_workloads(f"mobilenet-v{version}")
    layers = [name for w in workloads for name in w.layers]
    assert len(layers) == len(set(layers)) == {1: 29, 2: 54}[version]
    blocks = [w for w in workloads if w.kind.startswith("dw_separable")]
    assert len(blocks) == {1: 13, 2: 17}[version]
    residual = [w for w in workloads if w.kind == "dw_separable+residual"]
    assert len(residual) == {1: 0, 2: 10}[version]


def test_gru_layer_is_projection_plus_timesteps_steps() -> None:
    layer = suite_workloads("deepbench-gru", limit=1)[0]
    projection, step = layer.parts
    assert projection.count == 1
    assert step.count == layer.info["timesteps"]
    assert "t" in layer.name


def test_limit_takes_the_first_rows() -> None:
    assert [w.name for w in suite_workloads("deepbench-gemm", limit=3)] == [
        w.name for w in suite_workloads("deepbench-gemm")[:3]
    ]
    with pytest.raises(ValueError, match="unknown suite"):
        suite_workloads("imagenet")


@pytest.mark.parametrize(
    "text",
    [
        gru_step_text(batch=3, hidden=20, dtype="i8"),  # gemmini: the suites' integer kernels
        gru_projection_text(rows=6, hidden=20, dtype="i8"),
        dw_separable_residual_text(c=8, h=6, w=6, k=8, stride=1, pad=1, dtype="i8"),
    ],
    ids=["gru-step", "gru-projection", "dw-residual"],
)
def test_text_kernels_compile_and_match_numpy(text: str) -> None:
    kernel = isamap.parse_kernel(text)
    result = isamap.compile(kernel, "gemmini")
    assert result.mapping.instruction_calls(), "the contractions should use the array"
    inputs = isamap.random_inputs(kernel)
    check_outputs(result.run(inputs), kernel, inputs)  # bit for bit where integer


def test_gru_gates_fuse_into_one_call() -> None:
    projection = gru_projection_text(rows=8, hidden=32, dtype="i8")
    mapping = isamap.compile(isamap.parse_kernel(projection), "gemmini").mapping
    assert len(mapping.instruction_calls()) == 1, mapping
    # a step's gates fuse too, but on gemmini the host computes the sigmoids and tanh: running
    # the z gate apart lets the host start on it while the array computes the other two
    step_kernel = isamap.parse_kernel(gru_step_text(batch=4, hidden=32, dtype="i8"))
    step = isamap.compile(step_kernel, "gemmini")
    calls = step.mapping.instruction_calls()
    assert len(calls) <= 2
    assert max(int(str(c.attrs["n"])) for c in calls) >= 2 * 32

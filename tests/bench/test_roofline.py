"""No report exceeds its roofline: the smallest kernels of every bench suite (where fixed costs
and host work weigh most) on every shipped target."""

from __future__ import annotations

import pytest

import isamap
from isamap.bench.suites import SUITES, KernelSpec, suite_workloads
from isamap.compile import kernel_macs
from isamap.hardware.target import list_targets


def _smallest(suite: str, count: int = 2) -> list[KernelSpec]:
    specs = {p.spec.key: p.spec for w in suite_workloads(suite) for p in w.parts}
    return sorted(specs.values(), key=lambda s: (kernel_macs(s.build()), s.key))[:count]


CASES = [(suite, spec) for suite in SUITES for spec in _smallest(suite)]


@pytest.mark.parametrize("target", list_targets())
@pytest.mark.parametrize(("suite", "spec"), CASES, ids=[f"{s}:{k.key}" for s, k in CASES])
def test_no_report_exceeds_its_roofline(target: str, suite: str, spec: KernelSpec) -> None:
    loaded = isamap.load_target(target)
    report = isamap.compile(spec.build(loaded), loaded).report  # in the target's own types
    assert 0 < report.percent_of_roofline <= 100.0 + 1e-9
    # the whole program moves at least its DRAM bytes over the DRAM's bandwidth
    dram = loaded.dram()
    assert report.cycles >= report.bytes.get("dram", 0.0) / dram.bandwidth_bytes_per_cycle - 1

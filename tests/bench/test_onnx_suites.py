"""The MobileNet suites from ONNX graphs agree with the CSV of published layer shapes: the same
rows, kinds and layers, each row's kernel with the CSV's MAC count; a model file is a suite."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from isamap.bench.onnx_suites import workloads
from isamap.bench.runner import run_bench
from isamap.bench.suites import suite_workloads
from isamap.frontend import models
from isamap.ir.model import kernel_macs


@pytest.mark.parametrize("suite", ["mobilenet-v1", "mobilenet-v2"])
def test_onnx_mobilenet_matches_the_csv(suite: str) -> None:
    onnx_rows, csv_rows = workloads(suite), suite_workloads(suite)
    assert [w.name for w in onnx_rows] == [w.name for w in csv_rows]
    assert [w.kind for w in onnx_rows] == [w.kind for w in csv_rows]
    assert [w.layers for w in onnx_rows] == [w.layers for w in csv_rows]
    for onnx_row, csv_row in zip(onnx_rows, csv_rows, strict=True):
        (part,) = onnx_row.parts
        assert kernel_macs(part.spec.build()) == onnx_row.expected_macs == csv_row.expected_macs


def test_a_model_file_is_a_suite(tmp_path: Path) -> None:
    path = tmp_path / "gru.onnx"
    onnx.save(models.gru_model(steps=3, batch=1, input_size=8, hidden=8), str(path))
    rows = workloads(str(path))
    assert [w.name for w in rows] == ["gru", "gru/step0", "gru/step1", "gru/step2"]
    assert len({p.spec.key for w in rows for p in w.parts}) == 2  # the steps share a kernel
    run = run_bench([str(path)], "gemmini")
    (suite,) = run.suites.values()
    assert len(suite.workloads) == 4 and all(r.cycles > 0 for r in suite.workloads)

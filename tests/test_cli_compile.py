"""`isamap compile MODEL.onnx`: the report on stdout, --json, --out writes the report files."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from click.testing import CliRunner

from isamap.cli import cli
from isamap.frontend import models


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "gru.onnx"
    onnx.save(models.gru_model(steps=3, batch=1, input_size=8, hidden=8), str(path))
    return path


def test_compile_prints_the_report_and_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli, ["compile", str(_model(tmp_path)), "-t", "gemmini", "--quantize", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    # quantized, each step has the scales of its own values: no two layers are the same kernel
    assert "model gru on gemmini: 4 layers, 4 distinct kernels" in result.output
    assert "| gru/step2 | GRU step |" in result.output
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "layers.png"}
    assert "-target gemmini --quantize --out" in (out / "report.md").read_text()  # as it ran
    doc = json.loads((out / "report.json").read_text())
    assert doc["macs"] == 2 * 3 * 8 * 8 * 3 and len(doc["layers"]) == 4


def test_compile_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["compile", str(_model(tmp_path)), "-t", "nnp", "--json", "--no-fusion"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["target"] == "nnp" and doc["cycles"] == sum(r["cycles"] for r in doc["layers"])


def test_compile_refuses_a_float_model_on_gemmini_without_quantize(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["compile", str(_model(tmp_path)), "-t", "gemmini"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isamap: error: "), result.output
    assert "multiplies f32 tensors" in lines[0] and "--quantize" in lines[0]

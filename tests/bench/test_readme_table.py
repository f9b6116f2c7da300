"""The README's Results section is generated from report.json files."""

from __future__ import annotations

import json
from pathlib import Path

from isamap.bench.readme import HEADING, main, update_readme
from isamap.bench.report import write_report
from isamap.bench.runner import run_bench


def test_table_from_a_report_json(tmp_path: Path, capsys: object) -> None:
    run = run_bench(["mobilenet-v1"], "gemmini", limit=2, command="isamap bench mobilenet-v1")
    write_report(run, tmp_path)
    main([str(tmp_path / "report.json")])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.startswith(HEADING)
    summary = json.loads((tmp_path / "report.json").read_text())["suites"]["mobilenet-v1"]
    speedup = f"{summary['summary']['geomean_speedup']:.2f}x"
    row = next(line for line in out.splitlines() if line.startswith("| gemmini | mobilenet-v1"))
    assert speedup in row
    assert "isamap bench mobilenet-v1" in out
    assert "gemmini: no deepbench-gemm, deepbench-gru" in out


def test_update_replaces_only_the_last_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\ntext\n")
    update_readme(readme, f"{HEADING}\n\nold\n")
    update_readme(readme, f"{HEADING}\n\nnew\n")
    assert readme.read_text() == f"# x\n\ntext\n\n{HEADING}\n\nnew\n"

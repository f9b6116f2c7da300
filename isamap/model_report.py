"""The saved report of a whole-network compilation: report.md (totals and the per-layer table),
report.json (everything), layers.png (each layer's cycles against its roofline)."""

from __future__ import annotations

import json
from pathlib import Path

from isamap.compile_model import ModelResult

__all__ = ["write_model_report"]


def write_model_report(result: ModelResult, out: Path, command: str = "") -> list[Path]:
    """Write the report files into directory `out` (created if needed); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    report = result.report
    doc = report.to_dict()
    doc["command"] = command
    doc["source"] = result.model.source
    json_path = out / "report.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    png = out / "layers.png"
    _plot(result, png)
    md = out / "report.md"
    lines = [
        f"# {report.model} on {report.target}",
        "",
        f"`{command}`" if command else "",
        "",
        "```",
        report.summary(),
        "```",
        "",
        "Cycles are simulated by isamap's timing model, per layer and summed (layers run one "
        "after another); the baseline is the target's own schedule strategy "
        f"(`{report.baseline_schedule}`) on the same mappings. Layers with the same kernel share "
        "one compilation (`= layer` in the compile column). Reshapes, flattens and time-step "
        "slices are views: no data moves.",
        "",
        "![layers](layers.png)",
        "",
        report.table(),
        "",
    ]
    md.write_text("\n".join(lines), encoding="utf-8")
    return [md, json_path, png]


def _plot(result: ModelResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.report.layers
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows)), 4.0))
    xs = range(len(rows))
    ax.bar(xs, [max(r.cycles, 1.0) for r in rows], label="cycles", color="#4c72b0")
    ax.scatter(
        xs,
        [max(r.roofline_cycles, 1.0) for r in rows],
        label="roofline",
        color="#dd8452",
        marker="_",
        s=120,
        zorder=3,
    )
    ax.set_yscale("log")
    ax.set_ylabel("cycles")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r.name for r in rows], rotation=90, fontsize=6)
    ax.set_title(f"{result.report.model} on {result.report.target}: cycles per layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Compare isamap's systolic-array compute-cycle model with SCALE-Sim itself.

isamap models the compute cycles of a GEMM ``C = A . B`` (A is M x K, B is K x N) on an
R x C systolic array the way SCALE-Sim v2/v3 does:

* output stationary (OS): ``ceil(M/R) * ceil(N/C)`` folds of ``K + R + C - 2`` cycles, minus 1;
* weight stationary (WS): ``ceil(K/R) * ceil(N/C)`` folds of ``M + 2R + C - 2`` cycles, minus 1.

This script checks that claim against the real simulator. It

1. creates a private virtual environment (default ``benchmarks/.scalesim-venv``, git-ignored)
   with ``python -m venv`` and installs SCALE-Sim (PyPI ``scalesim``, MIT) and ``numpy<2.4``
   into it with pip -- this needs network access to PyPI the first time;
2. writes a SCALE-Sim config (array size, dataflow, generous SRAMs, CALC bandwidth mode), a GEMM
   topology CSV (``Layer, M, N, K,`` rows) and an empty layout CSV per (array, dataflow) run;
3. runs SCALE-Sim through its Python API (``scalesim.scale_sim.scalesim(...).run_scale()``) in
   that environment and reads ``Total Cycles`` and ``Stall Cycles`` from its
   ``COMPUTE_REPORT.csv``;
4. compares them with the formula above (a private copy, the expectation) and with
   ``isamap.hardware.timing.compute_cycles`` when that is importable;
5. writes ``report.md`` and ``report.json`` (plus SCALE-Sim's inputs and raw reports under
   ``raw/``) to ``--out`` (default ``benchmarks/reports/scalesim``).

Exit status: 0 when SCALE-Sim agrees with the formula on every case (and isamap's function, when
importable, agrees too), 1 when some case disagrees, 2 when SCALE-Sim could not be installed or
run. This is a manual calibration tool: it is not imported by the test suite and must not run in
CI. See ``docs/calibration.md``.

Usage::

    . .venv/bin/activate
    python benchmarks/scalesim_compare.py            # full set of cases
    python benchmarks/scalesim_compare.py --quick    # three GEMMs on a 16x16 array
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import venv
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO_ROOT / "benchmarks" / ".scalesim-venv"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "reports" / "scalesim"
# The compute-module line references in docs/calibration.md are to scalesim 3.0.0.
DEFAULT_SCALESIM_SPEC = "scalesim==3.0.0"
NUMPY_SPEC = "numpy<2.4"

# (M, N, K) with A: M x K, B: K x N, C: M x N.
GEMMS: list[tuple[int, int, int]] = [
    (16, 16, 16),
    (32, 16, 48),
    (64, 64, 64),
    (100, 36, 72),
    (17, 33, 65),
    (128, 32, 16),
    (1, 1, 1),
    (8, 100, 20),
]
QUICK_GEMMS: list[tuple[int, int, int]] = [(16, 16, 16), (100, 36, 72), (17, 33, 65)]
# Extra arrays: a bigger square one and two rectangular ones, so that a swap of R and C
# (rows = ArrayHeight, cols = ArrayWidth) would show up in the WS term 2R + C.
EXTRA_ARRAYS: list[tuple[int, int, list[tuple[int, int, int]]]] = [
    (32, 32, [(64, 64, 64), (100, 36, 72), (17, 33, 65)]),
    (8, 32, [(100, 36, 72), (17, 33, 65)]),
    (32, 8, [(100, 36, 72), (17, 33, 65)]),
]
DATAFLOWS = ("WS", "OS")

# Runs inside the SCALE-Sim venv. argv: config, topology, layout, log dir.
# save_disk_space=True skips the per-cycle SRAM/DRAM trace CSVs; the reports are still written.
DRIVER = textwrap.dedent(
    """
    import sys
    from scalesim.scale_sim import scalesim
    cfg, topo, layout, logdir = sys.argv[1:5]
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
                   layout=layout, input_type_gemm=True)
    sim.run_scale(top_path=logdir)
    """
)

CONFIG_TEMPLATE = """\
[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 4096
FilterSramSzkB: 4096
OfmapSramSzkB: 4096
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


@dataclass(frozen=True)
class Case:
    """One GEMM on one array with one dataflow."""

    rows: int
    cols: int
    m: int
    n: int
    k: int
    dataflow: str  # "WS" | "OS"


@dataclass
class Result:
    """SCALE-Sim's numbers for a case next to the formula's and isamap's."""

    rows: int
    cols: int
    m: int
    n: int
    k: int
    dataflow: str
    folds: int
    cycles_per_fold: int
    scalesim_total_cycles: int
    scalesim_stall_cycles: int
    scalesim_compute_cycles: int
    formula_cycles: int
    isamap_cycles: int | None
    formula_equal: bool
    isamap_equal: bool | None


def expected_folds(rows: int, cols: int, m: int, n: int, k: int, dataflow: str) -> tuple[int, int]:
    """Return (number of folds, cycles per fold) of SCALE-Sim's model, our own copy."""
    if dataflow == "OS":  # Sr = M on the rows, Sc = N on the columns, T = K streamed
        return math.ceil(m / rows) * math.ceil(n / cols), k + rows + cols - 2
    if dataflow == "WS":  # Sr = K on the rows, Sc = N on the columns, T = M streamed
        return math.ceil(k / rows) * math.ceil(n / cols), m + 2 * rows + cols - 2
    raise ValueError(f"unknown dataflow {dataflow!r}")


def expected_cycles(rows: int, cols: int, m: int, n: int, k: int, dataflow: str) -> int:
    """Compute cycles of the GEMM: folds x cycles per fold, minus 1 overall."""
    folds, per_fold = expected_folds(rows, cols, m, n, k, dataflow)
    return folds * per_fold - 1


def load_isamap_compute_cycles() -> Callable[[int, int, int, int, int, str], int] | None:
    """isamap.hardware.timing.compute_cycles, or None when it cannot be imported."""
    try:
        from isamap.hardware.timing import compute_cycles
    except ImportError:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        try:
            from isamap.hardware.timing import compute_cycles
        except ImportError as exc:
            print(f"[isamap] isamap.hardware.timing.compute_cycles not importable: {exc}")
            return None
    return compute_cycles


def venv_python(venv_dir: Path) -> Path:
    """The interpreter of a virtual environment."""
    sub = "Scripts" if sys.platform == "win32" else "bin"
    exe = "python.exe" if sys.platform == "win32" else "python"
    return venv_dir / sub / exe


def ensure_scalesim(venv_dir: Path, spec: str) -> Path:
    """Create the venv and install SCALE-Sim in it unless it is already there; return python."""
    py = venv_python(venv_dir)
    if py.exists():
        probe = subprocess.run(
            [str(py), "-c", "import scalesim.scale_sim"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            print(f"[venv] reusing {venv_dir} (SCALE-Sim already installed)")
            return py
    if not py.exists():
        print(f"[venv] creating {venv_dir} with python -m venv")
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    cmd = [str(py), "-m", "pip", "install", "--quiet", spec, NUMPY_SPEC]
    print(f"[venv] {' '.join(cmd)}  (needs PyPI)")
    subprocess.run(cmd, check=True)
    return py


def package_versions(py: Path) -> dict[str, str]:
    """Versions of SCALE-Sim and numpy inside the venv."""
    code = (
        "import importlib.metadata as m, json, platform;"
        "print(json.dumps({'scalesim': m.version('scalesim'), 'numpy': m.version('numpy'),"
        "'python': platform.python_version()}))"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run_scalesim(
    py: Path, rows: int, cols: int, dataflow: str, gemms: list[tuple[int, int, int]], work: Path
) -> list[tuple[int, int]]:
    """Run SCALE-Sim once, one topology layer per GEMM; return (total, stall) cycles per layer."""
    run_name = f"gemm_{rows}x{cols}_{dataflow.lower()}"
    run_dir = work / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run_dir / "config.cfg"
    topo = run_dir / "topology.csv"
    layout = run_dir / "layout.csv"
    cfg.write_text(
        CONFIG_TEMPLATE.format(run_name=run_name, rows=rows, cols=cols, dataflow=dataflow.lower())
    )
    # SCALE-Sim's GEMM reader drops the last comma-separated field, so every row ends with ",".
    lines = ["Layer, M, N, K,"] + [f"gemm{i}, {m}, {n}, {k}," for i, (m, n, k) in enumerate(gemms)]
    topo.write_text("\n".join(lines) + "\n")
    layout.write_text("Layer,\n")  # must exist; unused without custom layouts
    logs = run_dir / "logs"
    print(f"[scalesim] {rows}x{cols} {dataflow}: {len(gemms)} GEMM layers")
    proc = subprocess.run(
        [str(py), "-c", DRIVER, str(cfg), str(topo), str(layout), str(logs)],
        capture_output=True,
        text=True,
    )
    report = logs / run_name / "COMPUTE_REPORT.csv"
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(
            f"SCALE-Sim failed for {run_name} (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    with report.open(newline="") as fh:
        rows_out = [
            {key.strip(): val.strip() for key, val in row.items() if key and key.strip()}
            for row in csv.DictReader(fh, skipinitialspace=True)
        ]
    if len(rows_out) != len(gemms):
        raise RuntimeError(f"{report}: {len(rows_out)} layers, expected {len(gemms)}")
    return [(int(r["Total Cycles"]), int(r["Stall Cycles"])) for r in rows_out]


def plan(quick: bool) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """The (rows, cols, GEMMs) groups to run."""
    if quick:
        return [(16, 16, QUICK_GEMMS)]
    return [(16, 16, GEMMS), *EXTRA_ARRAYS]


def compare(py: Path, quick: bool, raw_dir: Path) -> list[Result]:
    """Run every group through SCALE-Sim and compare case by case."""
    isamap_fn = load_isamap_compute_cycles()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        work = Path(tmp)
        for rows, cols, gemms in plan(quick):
            for dataflow in DATAFLOWS:
                measured = run_scalesim(py, rows, cols, dataflow, gemms, work)
                for (m, n, k), (total, stall) in zip(gemms, measured, strict=True):
                    folds, per_fold = expected_folds(rows, cols, m, n, k, dataflow)
                    formula = expected_cycles(rows, cols, m, n, k, dataflow)
                    ours = isamap_fn(rows, cols, m, n, k, dataflow) if isamap_fn else None
                    sim_compute = total - stall
                    results.append(
                        Result(
                            rows=rows,
                            cols=cols,
                            m=m,
                            n=n,
                            k=k,
                            dataflow=dataflow,
                            folds=folds,
                            cycles_per_fold=per_fold,
                            scalesim_total_cycles=total,
                            scalesim_stall_cycles=stall,
                            scalesim_compute_cycles=sim_compute,
                            formula_cycles=formula,
                            isamap_cycles=ours,
                            formula_equal=sim_compute == formula,
                            isamap_equal=None if ours is None else ours == sim_compute,
                        )
                    )
        # Keep SCALE-Sim's inputs and COMPUTE_REPORT.csv files (small) for reference.
        if raw_dir.exists():
            shutil.rmtree(raw_dir)
        for run_dir in sorted(p for p in work.iterdir() if p.is_dir()):
            dest = raw_dir / run_dir.name
            dest.mkdir(parents=True)
            for name in ("config.cfg", "topology.csv"):
                shutil.copy2(run_dir / name, dest / name)
            shutil.copy2(
                run_dir / "logs" / run_dir.name / "COMPUTE_REPORT.csv", dest / "COMPUTE_REPORT.csv"
            )
    return results


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**NO**")


def write_reports(out: Path, results: list[Result], meta: dict[str, object]) -> None:
    """Write report.json and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "cases": [asdict(r) for r in results]}
    (out / "report.json").write_text(json.dumps(payload, indent=2) + "\n")

    lines = [
        "# SCALE-Sim vs isamap compute cycles",
        "",
        f"Generated by `benchmarks/scalesim_compare.py` on {meta['date']}. "
        f"SCALE-Sim {meta['scalesim']}, numpy {meta['numpy']}, "
        f"Python {meta['python']} (SCALE-Sim venv). Mode: {meta['mode']}.",
        "",
        "GEMM `C = A . B`, A is M x K, B is K x N; array R x C (R = ArrayHeight, C = ArrayWidth).",
        "Formula: OS `ceil(M/R)*ceil(N/C)` folds of `K+R+C-2`; "
        "WS `ceil(K/R)*ceil(N/C)` folds of `M+2R+C-2`; total = folds x per-fold - 1.",
        "SCALE-Sim compute cycles = `Total Cycles` - `Stall Cycles` of COMPUTE_REPORT.csv "
        "(CALC bandwidth mode; stalls were "
        + ("0 in every case" if all(r.scalesim_stall_cycles == 0 for r in results) else "NONZERO")
        + ").",
        "",
        "| array | df | M | N | K | folds | cyc/fold | SCALE-Sim | formula | isamap "
        "| formula = SCALE-Sim | isamap = SCALE-Sim |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.rows}x{r.cols} | {r.dataflow} | {r.m} | {r.n} | {r.k} | {r.folds} "
            f"| {r.cycles_per_fold} | {r.scalesim_compute_cycles} | {r.formula_cycles} "
            f"| {'n/a' if r.isamap_cycles is None else r.isamap_cycles} "
            f"| {_mark(r.formula_equal)} | {_mark(r.isamap_equal)} |"
        )
    n_ok = sum(r.formula_equal for r in results)
    isa = [r.isamap_equal for r in results if r.isamap_equal is not None]
    lines += [
        "",
        f"Formula agrees with SCALE-Sim on {n_ok}/{len(results)} cases.",
        (
            f"isamap's `compute_cycles` agrees on {sum(isa)}/{len(isa)} cases."
            if isa
            else "isamap's `compute_cycles` was not importable; isamap column is n/a."
        ),
        "",
        "SCALE-Sim's inputs and raw COMPUTE_REPORT.csv files are under `raw/`. "
        "See `docs/calibration.md` for where the formula comes from in SCALE-Sim's code.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Run SCALE-Sim on small GEMMs and compare its compute cycles with isamap's "
        "model. Creates a venv and pip-installs scalesim (needs network); not for CI."
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"SCALE-Sim venv (default {DEFAULT_VENV})"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--quick", action="store_true", help="three GEMMs on a 16x16 array only")
    parser.add_argument(
        "--scalesim-spec",
        default=DEFAULT_SCALESIM_SPEC,
        help=f"pip requirement for SCALE-Sim (default {DEFAULT_SCALESIM_SPEC!r})",
    )
    args = parser.parse_args(argv)

    print("This script installs SCALE-Sim into its own venv, runs it on small GEMMs and compares")
    print("its compute cycles with the fold formula and isamap.hardware.timing.compute_cycles.")
    try:
        py = ensure_scalesim(args.venv.resolve(), args.scalesim_spec)
        versions = package_versions(py)
        print(f"[venv] scalesim {versions['scalesim']}, numpy {versions['numpy']}")
        out = args.out.resolve()
        results = compare(py, args.quick, out / "raw")
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        print(f"ERROR: could not install or run SCALE-Sim: {exc}", file=sys.stderr)
        return 2

    meta: dict[str, object] = {
        **versions,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "host_python": platform.python_version(),
        "scalesim_spec": args.scalesim_spec,
    }
    write_reports(out, results, meta)

    width = max(len(f"{r.rows}x{r.cols}") for r in results)
    for r in results:
        isa = "n/a" if r.isamap_cycles is None else str(r.isamap_cycles)
        flag = "ok" if r.formula_equal and r.isamap_equal is not False else "MISMATCH"
        print(
            f"  {f'{r.rows}x{r.cols}':<{width}} {r.dataflow} M={r.m:<4} N={r.n:<4} K={r.k:<4} "
            f"scalesim={r.scalesim_compute_cycles:<6} formula={r.formula_cycles:<6} "
            f"isamap={isa:<6} {flag}"
        )
    bad = [r for r in results if not r.formula_equal or r.isamap_equal is False]
    print(f"[report] {out / 'report.md'}  {out / 'report.json'}")
    print(f"{len(results) - len(bad)}/{len(results)} cases agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

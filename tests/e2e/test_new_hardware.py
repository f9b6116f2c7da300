"""The new-hardware walkthrough (examples/new_hardware/README.md) runs as written.

Every `isamap ...` line of the README's ```bash blocks runs through `python -m isamap` from the
repository root and must exit 0 — except the deliberate mistake (`broken_tiny8.toml`), which must
exit 2 with one error line naming the file and line. The output the README shows after a command
must appear in what the command prints. Then every example kernel is compiled on tiny8 and run
both ways (instruction semantics, and tile by tile through the modelled memories) against numpy,
gemm_relu must map onto `mmrelu` with relu fused, and every rule must check sound.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import isamap
from isamap.hardware.machine import run_program
from tests.test_cli import invoke
from tests.typed import check_outputs, typed_for

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "examples" / "new_hardware"
README = HERE / "README.md"
TARGET = HERE / "tiny8.toml"
BROKEN = HERE / "broken_tiny8.toml"
KERNELS = sorted((ROOT / "examples" / "kernels").glob("*.kernel"))

#: The line of broken_tiny8.toml that holds the deliberate mistake (README, step 2).
BROKEN_LINE = 123

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block of the README, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(README.read_text())]


def _walkthrough() -> list[tuple[str, str | None]]:
    """Each `isamap` command of a ```bash block, with the plain block that follows it (its
    output as the README shows it), if the next block is one."""
    blocks = _blocks()
    steps: list[tuple[str, str | None]] = []
    for n, (lang, body) in enumerate(blocks):
        if lang != "bash":
            continue
        shown = blocks[n + 1][1] if n + 1 < len(blocks) and blocks[n + 1][0] == "" else None
        lines = [line.strip() for line in body.splitlines() if line.strip().startswith("isamap ")]
        steps += [(line, shown if i == len(lines) - 1 else None) for i, line in enumerate(lines)]
    return steps


STEPS = _walkthrough()


def _isamap(command: str) -> subprocess.CompletedProcess[str]:
    args = shlex.split(command)
    assert args[0] == "isamap"
    return subprocess.run(
        [sys.executable, "-m", "isamap", *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


_NUMBER = re.compile(r"\d[\d,.]*")


def _normal(line: str) -> str:
    """A line with what varies between checkouts taken out: the absolute path of isamap's own
    rule files."""
    return re.sub(r"\S*/isamap/rules/", "<isamap>/rules/", line.rstrip())


def _masked(line: str) -> str:
    """The line with every number replaced by '#': cycles, bytes and the tiles the scheduler
    picks change as isamap's scheduler improves; the shape of the output does not."""
    return _NUMBER.sub("#", _normal(line))


#: README lines that must appear exactly, numbers included: the point of the walkthrough.
_EXACT = ("isamap: error:", "mmrelu + relu", "mmrelu with relu computes")


def _shown_lines(shown: str) -> list[str]:
    """The lines of a README output block to look for. Elided output ('...'), e-graph and stage
    timings, and the body of a program listing (loops and tiles: the scheduler's choice) are
    skipped."""
    out: list[str] = []
    in_listing = False
    for line in shown.splitlines():
        if line.startswith("program "):
            in_listing = True
            out.append(line)
            continue
        if in_listing:
            in_listing = bool(line.strip())
            continue
        if line.strip() and line.strip() != "..." and not line.startswith(("e-graph:", "stages:")):
            out.append(line)
    return out


def _missing(shown: str, printed: str) -> list[str]:
    exact = {_normal(line) for line in printed.splitlines()}
    masked = {_masked(line) for line in printed.splitlines()}
    missing = []
    for line in _shown_lines(shown):
        if any(key in line for key in _EXACT):
            if _normal(line) not in exact:
                missing.append(line)
        elif _masked(line) not in masked:
            missing.append(line)
    return missing


def test_walkthrough_has_the_steps() -> None:
    commands = [c for c, _ in STEPS]
    assert "isamap targets --explain" in commands
    assert "isamap check-rules --target examples/new_hardware/tiny8.toml" in commands
    assert (
        "isamap extract examples/kernels/gemm_relu.kernel --target examples/new_hardware/tiny8.toml"
        " --quantize" in commands
    )
    assert any(c.startswith("isamap sim ") for c in commands)
    assert sum("broken_tiny8.toml" in c for c in commands) == 1


@pytest.mark.parametrize("command,shown", STEPS, ids=[c for c, _ in STEPS])
def test_walkthrough_command(command: str, shown: str | None) -> None:
    done = _isamap(command)
    if "broken_tiny8.toml" in command:
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert re.fullmatch(
            rf"isamap: error: examples/new_hardware/broken_tiny8\.toml:{BROKEN_LINE}:\d+: .+",
            lines[0],
        ), lines[0]
    else:
        assert done.returncode == 0, done.stderr
    if shown is not None:
        missing = _missing(shown, done.stdout + done.stderr)
        assert not missing, f"README shows lines `{command}` does not print: {missing}"


def test_readme_python_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    code = [body for lang, body in _blocks() if lang == "python"]
    assert code
    for body in code:
        exec(compile(body, str(README), "exec"), {})
    assert "mmrelu + relu" in capsys.readouterr().out


def test_broken_target_is_tiny8_with_one_mistake() -> None:
    good = TARGET.read_text().splitlines()
    bad = BROKEN.read_text().splitlines()
    assert len(good) == len(bad)
    differ = [n + 1 for n, (g, b) in enumerate(zip(good, bad, strict=True)) if g != b]
    assert differ == [1, BROKEN_LINE]  # the header comment and the mistake
    assert bad[0].startswith("#")


def test_check_rules_all_sound() -> None:
    # in this process (test_walkthrough_command runs the command in a fresh one): the checks of
    # tiny8's rules are then memoised for the copies of tiny8 that tests/test_soundness.py checks
    done = invoke("check-rules", "--target", str(TARGET), "--json")
    assert done.exit_code == 0, done.output
    checks = {c["rule"]: c for c in json.loads(done.stdout)}
    assert all(c["sound"] for c in checks.values()), [
        r for r, c in checks.items() if not c["sound"]
    ]
    # the derived rules and the hand-written ones are all there
    for rule in ("bmm-to-mmrelu", "fuse-relu-into-mmrelu", "relu-through-slice", "slice-of-slice"):
        assert rule in checks
    assert checks["fuse-relu-into-mmrelu"]["matches"] > 0
    assert checks["slice-of-slice"]["matches"] > 0
    assert checks["slice-of-slice"]["where"].endswith("tiny8.egg:11:1")


@pytest.fixture(scope="module")
def tiny8() -> isamap.Target:
    return isamap.load_target(str(TARGET))


def _readme_table() -> dict[str, int]:
    """kernel -> cycles, as the README's table gives them."""
    rows = re.findall(r"^\| `(\w+)` \| ([\d,]+) \|", README.read_text(), re.M)
    return {name: int(cycles.replace(",", "")) for name, cycles in rows}


def test_readme_table_lists_every_kernel() -> None:
    assert set(_readme_table()) == {p.stem for p in KERNELS}


@pytest.mark.parametrize("path", KERNELS, ids=[p.stem for p in KERNELS])
def test_kernel_on_tiny8(path: Path, tiny8: isamap.Target) -> None:
    kernel = typed_for(isamap.parse_kernel(path.read_text(), name=path.stem), tiny8)
    result = isamap.compile(kernel, tiny8)
    inputs = isamap.random_inputs(kernel)
    want = isamap.evaluate(kernel, inputs)
    got = result.run(inputs)
    machine = run_program(result.program, result.mapping, kernel, tiny8, inputs)
    assert got and set(got) == set(machine) and set(got) <= set(want)
    check_outputs(got, kernel, inputs)  # bit for bit where integer
    check_outputs(machine, kernel, inputs)
    # the contractions run on the array, not the host
    assert result.mapping.instruction_calls()
    assert all(n.attrs["instruction"] == "mmrelu" for n in result.mapping.instruction_calls())
    # the README's table is not stale: the scheduler may improve, but not by a different story
    written = _readme_table()[path.stem]
    assert abs(result.report.cycles - written) <= 0.25 * written, (result.report.cycles, written)


def test_gemm_relu_fuses_relu_into_mmrelu(tiny8: isamap.Target) -> None:
    kernel = isamap.parse_kernel((ROOT / "examples/kernels/gemm_relu.kernel").read_text())
    result = isamap.compile(typed_for(kernel, tiny8), tiny8)
    calls = result.mapping.instruction_calls()
    assert [(n.attrs["instruction"], n.attrs["epilogue"]) for n in calls] == [("mmrelu", "relu")]
    assert not result.mapping.host_ops()  # the relu is not left to the host
    assert not any(n.op == "fn" for n in result.mapping.nodes)

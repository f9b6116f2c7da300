"""Feed many bad inputs through the `isamap` command and the public API and count the outcomes.

The contract (README, DESIGN.md): every run ends in a result (exit 0), a verdict (exit 1), or one
`isamap: error: ...` line with exit status 2; every API misuse raises an `IsamapError` whose message
is one line. This script counts tracebacks, multi-line errors and nonsense accepted. Run it with
`python benchmarks/bad_inputs.py [--verbose]` (a few minutes); it prints one line per failing case
and a summary table. It is not a test: tests/test_fuzz_*.py assert the same contract on fewer
inputs.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

import isamap
from isamap.cli import cli
from isamap.hardware.target_file import target_path

ROOT = Path(__file__).resolve().parents[1]
GEMMINI = target_path("gemmini")
TINY8 = ROOT / "examples" / "new_hardware" / "tiny8.toml"
KERNELS = ROOT / "examples" / "kernels"
GEMM = str(KERNELS / "gemm.kernel")
QUICK = ["--max-seconds", "3"]


@dataclass
class Case:
    area: str  # cli-kernel, cli-target, cli-rules, cli-args, api
    what: str
    run: Callable[[], str]  # returns an outcome name


# -- running ------------------------------------------------------------------------------------


def cli_case(args: list[str], expect_error: bool = True) -> Callable[[], str]:
    def run() -> str:
        result = CliRunner().invoke(cli, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            return "traceback:" + type(result.exception).__name__
        code = result.exit_code
        if code == 2:
            lines = result.stderr.splitlines()
            if len(lines) == 1 and lines[0].startswith("isamap: error: "):
                return "error-line"
            return "multi-line"
        if code == 1:
            return "verdict" if result.stdout.strip() else "exit-1-silent"
        if code == 0:
            return "accepted" if expect_error else "ok"
        return f"exit-{code}"

    return run


def api_case(call: Callable[[], Any], expect_error: bool = True) -> Callable[[], str]:
    def run() -> str:
        try:
            call()
        except isamap.IsamapError as err:
            return "multi-line" if "\n" in str(err) else "error-line"
        except Exception as err:  # the thing being counted
            return "traceback:" + type(err).__name__ + ": " + str(err).splitlines()[0][:80]
        return "accepted" if expect_error else "ok"

    return run


# -- inputs -------------------------------------------------------------------------------------

KERNEL_TEXTS: dict[str, str | bytes] = {
    "float overflow 1e999": "tensor A[4, 4] f32\nC[i, j] = A[i, j] * 1e999\n",
    "400-digit literal": f"tensor A[4, 4] f32\nC[i, j] = A[i, j] * {'9' * 400}\n",
    "5000-digit literal": f"tensor A[4, 4] f32\nC[i, j] = A[i, j] * {'9' * 5000}\n",
    "5000-digit dimension": f"tensor A[{'9' * 5000}] f32\nC[i] = A[i]\n",
    "extent 10^26": (
        f"tensor A[{10**26}, 4] f32\ntensor B[4, 4] f32\nC[i, j] += A[i, k] * B[k, j]\n"
    ),
    "extents 10^9 x 10^9": "tensor A[1000000000, 1000000000] f32\nC[i, j] = relu(A[i, j])\n",
    "extent 2^63": f"tensor A[{2**63}] f32\nC[i] = A[i]\n",
    "huge padding": f"tensor A[4] f32 pad({10**30})\nC[i] = A[i - 1]\n",
    "huge index coefficient": f"tensor A[4] f32\nC[i] = A[{10**30}*i]\n",
    "huge index constant": f"tensor A[4] f32\nC[i] = A[i + {10**30}]\n",
    "latin-1 kernel": "# caf\xe9\ntensor A[4] f32\nC[i] = A[i]\n".encode("latin-1"),
    "binary kernel": bytes(range(256)),
    "NUL bytes": b"tensor A[4] f32\x00\nC[i] = A[i]\n",
    "empty kernel": "",
    "only comments": "# nothing\n",
    "BOM": "\ufefftensor A[4] f32\nC[i] = A[i]\n",
    "form feed": "tensor A[4] f32\x0c\nC[i] = A[i]\n",
    "unicode line separator": "tensor A[4] f32\u2028C[i] = A[i]\n",
    "deep parentheses": "tensor A[4] f32\nC[i] = " + "(" * 5000 + "A[i]" + ")" * 5000 + "\n",
    "deep unary minus": "tensor A[4] f32\nC[i] = " + "-" * 5000 + "A[i]\n",
    "long sum": "tensor A[4] f32\nC[i] = " + " + ".join(["A[i]"] * 3000) + "\n",
    "zero dimension": "tensor A[0] f32\nC[i] = A[i]\n",
    "float dimension": "tensor A[2.5] f32\nC[i] = A[i]\n",
    "unknown dtype": "tensor A[4] f64\nC[i] = A[i]\n",
    "nan literal name": "tensor A[4] f32\nC[i] = A[i] * nan\n",
    "float index": "tensor A[4] f32\nC[i] = A[1.5]\n",
    "scalar broadcast": "tensor A[] f32\nC[i] = A[]\n",
    "out of bounds": "tensor A[4] f32\nC[i] = A[i + 1]\n",
    "read before write": "tensor A[4] f32\nC[i] = D[i]\nD[i] = A[i]\n",
    "self read": "tensor A[4] f32\nC[i] = C[i] + A[i]\n",
    "index times index": "tensor A[4, 4] f32\nC[i] = A[i*i, 0]\n",
    "unclosed bracket": "tensor A[4] f32\nC[i = A[i]\n",
    "double assignment": "tensor A[4] f32\nC[i] = A[i]\nC[i] = A[i]\n",
    "unknown function": "tensor A[4] f32\nC[i] = softmax(A[i])\n",
    "windows line endings": "tensor A[4] f32\r\nC[i] = relu(A[i])\r\n",
}

TOML_VALUES = ["0", "-1", "nan", "inf", "1e308", str(10**30), '"x"', "[1]", "true", "{}"]


def mutated_kernels(n: int, rng: random.Random) -> dict[str, str]:
    """Character-level mutations of the example kernels (seeded)."""
    sources = [p.read_text() for p in sorted(KERNELS.glob("*.kernel"))]
    alphabet = "[](),+-*=#:0123456789ijk ABC\n\t.e"
    out: dict[str, str] = {}
    for i in range(n):
        text = list(rng.choice(sources))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(text))
            op = rng.choice(["delete", "insert", "replace"])
            if op == "delete":
                del text[pos]
            elif op == "insert":
                text.insert(pos, rng.choice(alphabet))
            else:
                text[pos] = rng.choice(alphabet)
        out[f"mutant {i}"] = "".join(text)
    return out


def target_mutations(text: str) -> dict[str, str]:
    """Every numeric key of a target file set to each of TOML_VALUES, one at a time."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    table = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            table = line.split("#")[0].strip()
        m = re.match(r"^(\s*[a-z_]+\s*=\s*)(-?[0-9][0-9_.e+-]*)(\s*(#.*)?)$", line)
        if not m:
            continue
        key = m.group(1).split("=")[0].strip()
        for value in TOML_VALUES:
            new = [*lines[:i], m.group(1) + value + m.group(3), *lines[i + 1 :]]
            out[f"line {i + 1} {table} {key} = {value}"] = "\n".join(new)
    return out


def instruction_shapes(text: str) -> dict[str, str]:
    """The gemmini target with its matrix instructions changed into other contractions."""
    shapes = {
        "dot product": ('"C[i, j] += A[i, k] * B[k, j]"', "{ i = 1, j = 1, k = 16 }"),
        "outer product": ('"C[i, j] += A[i, k] * B[k, j]"', "{ i = 16, j = 16, k = 1 }"),
        "8x4x2 block": ('"C[i, j] += A[i, k] * B[k, j]"', "{ i = 8, j = 4, k = 2 }"),
        "rectangular 16x8x16": ('"C[i, j] += A[i, k] * B[k, j]"', "{ i = 16, j = 8, k = 16 }"),
    }
    out: dict[str, str] = {}
    for what, (_, extents) in shapes.items():
        out[what] = re.sub(r"extents = \{ i = 16, j = 16, k = 16 \}", f"extents = {extents}", text)
    return out


RULE_TEXTS: dict[str, str | bytes] = {
    "empty": "",
    "binary": bytes(range(256)),
    "latin-1": "; caf\xe9\n(ruleset r)\n".encode("latin-1"),
    "unbalanced": "(ruleset r\n",
    "unknown ruleset": '(rewrite (Fn "relu" x) x :ruleset nope :name "n")\n',
    "run": "(ruleset r)\n(run r 10)\n",
    "include": '(include "/etc/passwd")\n',
    "panic": '(ruleset r)\n(rule ((= x (Fn "relu" y))) ((panic "boom")) :ruleset r :name "p")\n',
    "delete": '(ruleset r)\n(rule ((= x (Fn "relu" y))) ((delete (Fn "relu" y))) :ruleset r)\n',
    "duplicate name": '(ruleset r)\n(rewrite (Fn "relu" x) (Fn "relu" x) :ruleset r :name "d")\n'
    '(rewrite (Fn "exp" x) (Fn "exp" x) :ruleset r :name "d")\n',
    "unsound relu-through-add": '(ruleset u)\n(rewrite (Fn "relu" (Ew "+" x y)) '
    '(Ew "+" (Fn "relu" x) (Fn "relu" y)) :ruleset u :name "relu-through-add")\n',
    "unknown constructor": '(ruleset r)\n(rewrite (Nope x) x :ruleset r :name "n")\n',
    "deep nesting": "(ruleset r)\n" + "(" * 3000 + ")" * 3000 + "\n",
}


def build_cases(tmp: Path, n_mutants: int) -> list[Case]:
    cases: list[Case] = []

    def write(name: str, content: str | bytes) -> str:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    # kernels through `extract`
    rng = random.Random(0)
    texts = {**KERNEL_TEXTS, **mutated_kernels(n_mutants, rng)}
    for i, (what, text) in enumerate(texts.items()):
        path = write(f"k{i}.kernel", text)
        cases.append(Case("cli-kernel", what, cli_case(["extract", path, *QUICK], False)))

    # target files through `targets FILE`, and when they load, through `extract`
    base = GEMMINI.read_text()
    target_texts: dict[str, str | bytes] = {
        "empty target": "",
        "only a comment": "# nothing\n",
        "binary target": bytes(range(256)),
        "latin-1 target": "# caf\xe9\n".encode("latin-1") + base.encode(),
        "truncated": base[: len(base) // 2],
        "macs_per_cycle = 0": base.replace("macs_per_cycle = 256.0", "macs_per_cycle = 0"),
        "unknown baseline": base.replace('"gemmini-default"', '"nope"'),
        **{f"gemmini {k}": v for k, v in target_mutations(base).items()},
        **{f"gemmini-baseline {k}": v for k, v in instruction_shapes(base).items()},
    }
    for i, (what, text) in enumerate(target_texts.items()):
        path = write(f"t{i}/chip.toml", text)
        cases.append(Case("cli-target", what, cli_case(["targets", path], False)))
        if what.startswith("gemmini-baseline") or "= 0" in what:
            # these load today: they must then compile, or be refused at load
            nonsense = what.startswith("gemmini-baseline") or "[units.systolic] macs_per" in what
            argv = ["extract", GEMM, "-t", path]
            cases.append(Case("cli-target", f"extract on {what}", cli_case(argv, nonsense)))

    # rule files beside a copy of tiny8
    for i, (what, text) in enumerate(RULE_TEXTS.items()):
        folder = tmp / f"r{i}"
        folder.mkdir()
        shutil.copy(TINY8, folder / "tiny8.toml")
        write(f"r{i}/tiny8.egg", text)
        chip = str(folder / "tiny8.toml")
        cases.append(
            Case(
                "cli-rules",
                f"extract, rules {what}",
                cli_case(["extract", GEMM, "-t", chip], False),
            )
        )
        cases.append(
            Case(
                "cli-rules",
                f"check-rules, rules {what}",
                cli_case(["check-rules", "-t", chip], False),
            )
        )

    # arguments
    write("afile", "x")
    args: dict[str, list[str]] = {
        "--max-iterations 0": ["extract", GEMM, "--max-iterations", "0"],
        "--max-iterations -1": ["extract", GEMM, "--max-iterations", "-1"],
        "--max-enodes 0": ["extract", GEMM, "--max-enodes", "0"],
        "--max-seconds -1": ["extract", GEMM, "--max-seconds", "-1"],
        "--max-seconds 0": ["extract", GEMM, "--max-seconds", "0"],
        "--max-iterations x": ["extract", GEMM, "--max-iterations", "x"],
        "--variants -1": ["extract", GEMM, "--variants", "-1"],
        "directory as KERNEL": ["extract", str(tmp)],
        "missing KERNEL": ["extract", str(tmp / "absent.kernel")],
        "no KERNEL": ["extract"],
        "unknown option": ["extract", GEMM, "--frobnicate"],
        "unknown command": ["frobnicate"],
        "unknown target": ["extract", GEMM, "-t", "nope"],
        "target is a directory": ["extract", GEMM, "-t", str(tmp) + "/"],
        "unknown cost": ["extract", GEMM, "-c", "nope"],
        "unknown schedule": ["extract", GEMM, "-s", "nope"],
        "sim gemmini-default on vecdsp": ["sim", GEMM, "-t", "vecdsp", "-s", "gemmini-default"],
        "sim gemmini-default on nnp": ["sim", GEMM, "-t", "nnp", "-s", "gemmini-default"],
        "--dot /sys/x": ["extract", GEMM, "--dot", "/sys/x/e.dot"],
        "--dot a directory": ["extract", GEMM, "--dot", str(tmp)],
        "--egraph-json /proc/x": ["extract", GEMM, "--egraph-json", "/proc/x"],
        "targets a directory": ["targets", str(tmp)],
        "targets absent file": ["targets", str(tmp / "absent.toml")],
        "check-rules --seed -1": ["check-rules", "--seed", "-1"],
        "check-rules --seed x": ["check-rules", "--seed", "x"],
        "check-rules unknown target": ["check-rules", "-t", "nope"],
        "bench unknown suite": ["bench", "nope"],
        "bench --jobs 0": ["bench", "deepbench-gemm", "--jobs", "0"],
        "bench --limit 0": ["bench", "deepbench-gemm", "--limit", "0"],
        "bench --out a file": [
            "bench",
            "deepbench-gemm",
            "--limit",
            "1",
            "--out",
            str(tmp / "afile"),
        ],
        "bench --out /sys/x": ["bench", "deepbench-gemm", "--limit", "1", "--out", "/sys/x"],
        "bench unknown schedule": ["bench", "deepbench-gemm", "-s", "nope"],
    }
    for what, argv in args.items():
        cases.append(Case("cli-args", what, cli_case(argv)))
    cases.append(Case("cli-args", "no command (prints the help)", cli_case([], False)))

    cases.extend(api_cases())
    return cases


def api_cases() -> list[Case]:
    gemm = isamap.parse_kernel(
        "tensor A[12, 10] f32\ntensor B[10, 12] f32\nC[i, j] += A[i, k] * B[k, j]"
    )
    target = isamap.load_target("gemmini")
    result = isamap.compile(gemm, target)
    sat = result.saturation
    good = isamap.random_inputs(gemm)
    huge = isamap.parse_kernel("tensor A[1000000, 1000000] f32\nC[i, j] = relu(A[i, j])")
    calls: dict[str, Callable[[], Any]] = {
        "compile(text)": lambda: isamap.compile("C[i] = A[i]", target),  # type: ignore[arg-type]
        "compile(target=123)": lambda: isamap.compile(gemm, 123),  # type: ignore[arg-type]
        "compile(cost=5)": lambda: isamap.compile(gemm, target, cost=5),
        "compile(cost='nope')": lambda: isamap.compile(gemm, target, cost="nope"),
        "compile(schedule=None)": lambda: isamap.compile(gemm, target, schedule=None),  # type: ignore[arg-type]
        "compile(candidates=-1)": lambda: isamap.compile(gemm, target, candidates=-1),
        "compile(limits=5)": lambda: isamap.compile(gemm, target, limits=5),  # type: ignore[arg-type]
        "parse_kernel(bytes)": lambda: isamap.parse_kernel(b"tensor A[4] f32\nC[i] = A[i]"),  # type: ignore[arg-type]
        "parse_kernel(None)": lambda: isamap.parse_kernel(None),  # type: ignore[arg-type]
        "parse_kernel(123)": lambda: isamap.parse_kernel(123),  # type: ignore[arg-type]
        "parse_kernel(1e999)": lambda: isamap.parse_kernel("tensor A[4] f32\nC[i] = A[i] * 1e999"),
        "load_kernel(None)": lambda: isamap.load_kernel(None),  # type: ignore[arg-type]
        "load_kernel(directory)": lambda: isamap.load_kernel("/tmp"),
        "load_target(None)": lambda: isamap.load_target(None),  # type: ignore[arg-type]
        "load_target('')": lambda: isamap.load_target(""),
        "load_target(123)": lambda: isamap.load_target(123),  # type: ignore[arg-type]
        "load_target(directory/)": lambda: isamap.load_target("/tmp/"),
        "run(list)": lambda: result.run([good["A"], good["B"]]),  # type: ignore[arg-type]
        "run(None)": lambda: result.run(None),  # type: ignore[arg-type]
        "run(strings)": lambda: result.run({"A": np.full((12, 10), "x"), "B": good["B"]}),
        "run(str value)": lambda: result.run({"A": "abc", "B": good["B"]}),
        "run(missing B)": lambda: result.run({"A": good["A"]}),
        "run(extra Z)": lambda: result.run({**good, "Z": good["A"]}),
        "run(output C given)": lambda: result.run({**good, "C": np.zeros((12, 12))}),
        "run(complex)": lambda: result.run({"A": good["A"] + 1j, "B": good["B"]}),
        "run(wrong shape B)": lambda: result.run({"A": good["A"], "B": good["B"].T}),
        "run(ragged lists)": lambda: result.run({"A": [[1.0], [1.0, 2.0]], "B": good["B"]}),
        "run(object array)": lambda: result.run({"A": np.full((12, 10), None), "B": good["B"]}),
        "run(int key)": lambda: result.run({0: good["A"], "B": good["B"]}),  # type: ignore[dict-item]
        "run(nan)": lambda: result.run({"A": np.full((12, 10), np.nan), "B": good["B"]}),
        "run_mapping(list)": lambda: result.run_mapping([good["A"]]),  # type: ignore[arg-type]
        "run_mapping(wrong shape)": lambda: result.run_mapping({"A": good["A"].T, "B": good["B"]}),
        "evaluate(list)": lambda: isamap.evaluate(gemm, [good["A"]]),  # type: ignore[arg-type]
        "evaluate(complex)": lambda: isamap.evaluate(gemm, {"A": good["A"] + 1j, "B": good["B"]}),
        "evaluate(strings)": lambda: isamap.evaluate(
            gemm, {"A": np.full((12, 10), "x"), "B": good["B"]}
        ),
        "evaluate(text kernel)": lambda: isamap.evaluate("C[i] = A[i]", good),  # type: ignore[arg-type]
        "random_inputs(10^12 elements)": lambda: isamap.random_inputs(huge),
        "random_inputs(seed=-1)": lambda: isamap.random_inputs(gemm, seed=-1),
        "random_inputs(text)": lambda: isamap.random_inputs("C[i] = A[i]"),  # type: ignore[arg-type]
        "variants(-3)": lambda: sat.variants(-3),
        "variants('3')": lambda: sat.variants("3"),  # type: ignore[arg-type]
        "variants(cost='nope')": lambda: sat.variants(2, cost="nope"),
        "extract(cost=5)": lambda: sat.extract(cost=5),
        "saturate(text)": lambda: isamap.saturate("C[i] = A[i]", target),  # type: ignore[arg-type]
        "saturate(target=None)": lambda: isamap.saturate(gemm, None),  # type: ignore[arg-type]
        "saturate(limits=5)": lambda: isamap.saturate(gemm, target, 5),  # type: ignore[arg-type]
    }
    return [Case("api", what, api_case(call)) for what, call in calls.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=60, help="mutated example kernels")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(Path(tmp), args.mutants)
        tally: Counter[tuple[str, str]] = Counter()
        for case in cases:
            try:
                outcome = case.run()
            except BaseException as err:  # a crash of this script's own harness
                outcome = "harness:" + type(err).__name__
                traceback.print_exc()
            kind = outcome.split(":")[0]
            tally[case.area, kind] += 1
            if args.verbose or kind in ("traceback", "multi-line", "accepted", "harness"):
                print(f"{case.area:<11} {outcome:<40.120} {case.what}")
    areas = sorted({a for a, _ in tally})
    kinds = sorted({k for _, k in tally})
    print(f"\n{'':<11}" + "".join(f"{k:>12}" for k in kinds) + f"{'total':>8}")
    for area in areas:
        row = [tally[area, k] for k in kinds]
        print(f"{area:<11}" + "".join(f"{n:>12}" for n in row) + f"{sum(row):>8}")
    print(
        f"{'all':<11}"
        + "".join(f"{sum(tally[a, k] for a in areas):>12}" for k in kinds)
        + f"{sum(tally.values()):>8}"
    )


if __name__ == "__main__":
    main()

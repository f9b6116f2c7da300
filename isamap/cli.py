"""The `isamap` command: a thin click shell over the public API.

Commands: `extract`, `sim`, `compile` (an ONNX model), `targets`, `check-rules`, `bench`.

Errors caused by user input print one line and exit with code 2: an `IsamapError` as
`isamap: error: file:line:col: ...`, and click's usage errors (a bad option value, a missing
argument, a directory given for a file) in the same form instead of click's three-line usage
text. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

import isamap
from isamap.bench.cpu_suites import CPU_SUITES
from isamap.bench.runner import ALL, run_bench
from isamap.bench.suites import SUITES
from isamap.compile import check_schedule
from isamap.extract import COST_MODELS, METHODS, ExtractionTimeLimit, cost_model
from isamap.hardware.host_cpu import HOST_ALIAS, host_target_name
from isamap.schedule.registry import strategy, strategy_names

__all__ = ["cli", "main"]

#: Exit status for bad input, the same as click's usage errors.
EXIT_BAD_INPUT = 2

_LIMITS = isamap.Limits()

_F = TypeVar("_F", bound=Callable[..., Any])


def _fail(ctx: click.Context, message: str) -> NoReturn:
    """Print one error line on stderr and exit with EXIT_BAD_INPUT."""
    click.echo(f"isamap: error: {message}", err=True)
    ctx.exit(EXIT_BAD_INPUT)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _IsamapGroup(click.Group):
    """A click group that turns IsamapError and click's usage errors into one line on stderr
    and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except isamap.IsamapError as err:
            _fail(ctx, _one_line(str(err)))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's `main`, with usage errors as one `isamap: error:` line (standalone mode)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:  # bare `isamap`: the help, no error
            click.echo(err.ctx.get_help() if err.ctx else self.get_help(click.Context(self)))
            sys.exit(0)
        except click.ClickException as err:
            message = _one_line(err.format_message())
            if isinstance(err, click.UsageError) and err.ctx is not None:
                message += f" (see `{err.ctx.command_path} --help`)"
            click.echo(f"isamap: error: {message}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("isamap: interrupted", err=True)
            sys.exit(130)
        except OSError as err:
            if err.errno != errno.EPIPE:  # stdout closed early (`isamap ... | head`): not a bug
                raise
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_IsamapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(isamap.__version__, prog_name="isamap")
def cli() -> None:
    """isamap: map deep-learning kernels onto accelerator instructions with e-graphs."""


def _write(ctx: click.Context, path: Path, text: str) -> None:
    """Write `text` to `path`; an unwritable path is bad input, not a bug."""
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as err:
        _fail(ctx, f"{path}: cannot write: {err.strerror or err}")


def _output_file(ctx: click.Context, path: Path | None) -> None:
    """Refuse, before any work, an output file that cannot be written (a directory, no folder)."""
    if path is None:
        return
    if path.is_dir() or not path.parent.is_dir():
        _fail(
            ctx, f"{path}: cannot write: {'is a directory' if path.is_dir() else 'no such folder'}"
        )


def _writable_dir(ctx: click.Context, path: Path) -> None:
    """Create directory `path` if needed; a path that cannot be one is bad input, not a bug."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _fail(ctx, f"{path}: cannot create the report directory: {err.strerror or err}")
    if not path.is_dir():
        _fail(ctx, f"{path}: not a directory")


def _common_options(f: _F) -> _F:
    """The options `extract` and `sim` share: target, cost model, schedule, JSON output and the
    saturation limits."""
    options = [
        click.option(
            "-t",
            "--target",
            default="gemmini",
            show_default=True,
            help="Shipped name or a .toml path.",
        ),
        click.option(
            "-c",
            "--cost",
            default="latency",
            show_default=True,
            help=f"Cost model: {', '.join(COST_MODELS)}.",
        ),
        click.option(
            "-s",
            "--schedule",
            default="heuristic",
            show_default=True,
            help=f"Schedule strategy: {', '.join(strategy_names())}.",
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print one JSON object and nothing else."
        ),
        click.option(
            "--max-iterations",
            type=click.IntRange(min=1),
            default=_LIMITS.iterations,
            show_default=True,
            help="Saturation limit: iterations.",
        ),
        click.option(
            "--max-enodes",
            type=click.IntRange(min=1),
            default=_LIMITS.enodes,
            show_default=True,
            help="Saturation limit: e-nodes.",
        ),
        click.option(
            "--disable-rule",
            multiple=True,
            metavar="NAME",
            help="Leave rewrite rule NAME out of saturation (repeatable).",
        ),
        click.option(
            "--max-seconds",
            type=click.FloatRange(min=0, min_open=True),
            default=_LIMITS.seconds,
            show_default=True,
            help="Saturation limit: seconds.",
        ),
        click.option(
            "--quantize/--no-quantize",
            default=None,
            help="A float kernel on an integer-only target: quantize it (symmetric "
            "per-tensor scales from random inputs); without --quantize it is refused.",
        ),
        click.option(
            "--allow-unchecked-rules",
            is_flag=True,
            help="Use the target's rule file even if check-rules does not pass it.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _emit_c_option(f: _F) -> _F:
    """`--emit-c FILE` of `extract` and `sim`."""
    option = click.option(
        "--emit-c",
        "emit_c",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Write the C isamap emits for the program to FILE (CPU targets).",
    )
    return option(f)


def _compile(
    kernel: Path,
    target: str,
    cost: str,
    schedule: str,
    max_iterations: int,
    max_enodes: int,
    max_seconds: float,
    disabled_rules: Sequence[str] = (),
    method: str = "exact",
    allow_unchecked_rules: bool = False,
    quantize: bool | None = None,
) -> isamap.CompileResult:
    """Check the names, then compile; warn on stderr when saturation or the ILP stopped at a
    limit."""
    strategy(schedule)  # an unknown name fails now, before any loading or saturation
    k = isamap.load_kernel(str(kernel))
    t = isamap.load_target(target)
    cost_model(cost, t, k)  # an unknown name fails now, not after saturation
    limits = isamap.Limits(iterations=max_iterations, enodes=max_enodes, seconds=max_seconds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtractionTimeLimit)
        result = isamap.compile(
            k,
            t,
            cost=cost,
            schedule=schedule,
            limits=limits,
            extract=method,
            disabled_rules=disabled_rules,
            allow_unchecked_rules=allow_unchecked_rules,
            quantize=quantize,
        )
    for w in caught:
        if issubclass(w.category, ExtractionTimeLimit):
            click.echo(f"isamap: warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    run = result.saturation.report
    if run.stop_reason != "saturated":
        click.echo(
            f"isamap: warning: saturation stopped at its {run.stop_reason}; "
            "the mapping is the best found so far",
            err=True,
        )
    if run.extract_stop_reason != "complete":
        click.echo(
            f"isamap: warning: extraction stopped at its {run.extract_stop_reason}; "
            "the mapping is the best found so far",
            err=True,
        )
    return result


def _print_variants(variants: Sequence[isamap.Mapping], cost: str) -> None:
    click.echo(f"\n{len(variants)} best distinct mappings under {cost}:")
    for rank, variant in enumerate(variants, start=1):
        calls = ", ".join(n.describe() for n in variant.instruction_calls()) or "host only"
        click.echo(f"  #{rank} cost {variant.cost:,.0f}: {calls}")
    for rank, variant in enumerate(variants, start=1):
        click.echo(f"\nvariant #{rank}: {variant}")


@cli.command()
@click.argument("kernel", type=click.Path(dir_okay=False, path_type=Path))
@_common_options
@_emit_c_option
@click.option(
    "--variants",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Also print the N best distinct mappings.",
)
@click.option(
    "--extract",
    "method",
    type=click.Choice(METHODS),
    default="exact",
    show_default=True,
    help="Extraction: exact (an ILP with HiGHS from a greedy start; --max-seconds bounds it) or "
    "greedy (greedy DAG + local search).",
)
@click.option(
    "--dot",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the e-graph as graphviz text.",
)
@click.option(
    "--egraph-json",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the e-graph as JSON.",
)
@click.pass_context
def extract(
    ctx: click.Context,
    kernel: Path,
    target: str,
    cost: str,
    schedule: str,
    as_json: bool,
    max_iterations: int,
    max_enodes: int,
    disable_rule: tuple[str, ...],
    max_seconds: float,
    quantize: bool | None,
    allow_unchecked_rules: bool,
    emit_c: Path | None,
    variants: int,
    method: str,
    dot: Path | None,
    egraph_json: Path | None,
) -> None:
    """Saturate KERNEL with a target's instructions and print the cheapest mapping and its
    report (scheduled with strategy --schedule, against the target's baseline)."""
    _output_file(ctx, dot)
    _output_file(ctx, egraph_json)
    _output_file(ctx, emit_c)
    result = _compile(
        kernel,
        target,
        cost,
        schedule,
        max_iterations,
        max_enodes,
        max_seconds,
        disable_rule,
        method,
        allow_unchecked_rules,
        quantize,
    )
    best = result.saturation.variants(variants, cost, seconds=max_seconds) if variants else []
    if dot is not None:
        _write(ctx, dot, result.saturation.to_dot())
    if egraph_json is not None:
        _write(ctx, egraph_json, result.saturation.to_json())
    _write_c(ctx, result, emit_c)
    if as_json:
        doc = {
            "kernel": str(kernel),
            "target": result.target.name,
            "mapping": result.mapping.to_dict(),
            "report": result.report.to_dict(),
            "variants": [v.to_dict() for v in best],
        }
        click.echo(json.dumps(doc, indent=1))
        return
    click.echo(str(result.mapping))
    click.echo(str(result.report))
    if best:
        _print_variants(best, cost)


def _write_c(ctx: click.Context, result: isamap.CompileResult, path: Path | None) -> None:
    """`--emit-c FILE`: the program's C, for a CPU target."""
    if path is None:
        return
    if result.target.codegen is None:
        name = result.target.name
        _fail(ctx, f"--emit-c needs a CPU target (one with a codegen family), not '{name}'")
    _write(ctx, path, result.c_source())


@cli.command()
@click.argument("kernel", type=click.Path(dir_okay=False, path_type=Path))
@_common_options
@_emit_c_option
@click.pass_context
def sim(
    ctx: click.Context,
    kernel: Path,
    target: str,
    cost: str,
    schedule: str,
    as_json: bool,
    max_iterations: int,
    max_enodes: int,
    disable_rule: tuple[str, ...],
    max_seconds: float,
    quantize: bool | None,
    allow_unchecked_rules: bool,
    emit_c: Path | None,
) -> None:
    """Compile KERNEL, schedule it with strategy --schedule and simulate it: print the program
    listing, then cycles, utilisation, bytes per memory level, energy, the roofline and the
    speedup over the target's baseline schedule."""
    _output_file(ctx, emit_c)
    result = _compile(
        kernel,
        target,
        cost,
        schedule,
        max_iterations,
        max_enodes,
        max_seconds,
        disable_rule,
        allow_unchecked_rules=allow_unchecked_rules,
        quantize=quantize,
    )
    _write_c(ctx, result, emit_c)
    if as_json:
        doc = {
            "kernel": str(kernel),
            "target": result.target.name,
            "program": result.program.to_dict(),
            "report": result.report.to_dict(),
            "mapping": result.mapping.to_dict(),
        }
        click.echo(json.dumps(doc, indent=1))
        return
    click.echo(result.program.listing())
    click.echo()
    click.echo(str(result.report))


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@_common_options
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.md, report.json and layers.png into this directory.",
)
@click.option("--no-fusion", is_flag=True, help="Compile every ONNX node as its own layer.")
@click.pass_context
def compile_command(
    ctx: click.Context,
    model: Path,
    target: str,
    cost: str,
    schedule: str,
    as_json: bool,
    max_iterations: int,
    max_enodes: int,
    disable_rule: tuple[str, ...],
    max_seconds: float,
    allow_unchecked_rules: bool,
    quantize: bool | None,
    out: Path | None,
    no_fusion: bool,
) -> None:
    """Compile a whole ONNX MODEL layer by layer (fused where the mapping allows) and print the
    per-layer and total report (docs/onnx.md)."""
    from isamap.compile_model import compile_model
    from isamap.model_report import write_model_report  # matplotlib loads only for --out

    strategy(schedule)
    m = isamap.load_onnx(model)
    t = isamap.load_target(target)
    if out is not None:
        _writable_dir(ctx, out)
    limits = isamap.Limits(iterations=max_iterations, enodes=max_enodes, seconds=max_seconds)
    result = compile_model(
        m,
        t,
        cost,
        schedule,
        limits,
        disabled_rules=disable_rule,
        allow_unchecked_rules=allow_unchecked_rules,
        quantize=quantize,
        fusion=not no_fusion,
    )
    if out is not None:
        flags = [f"--target {target}"]  # the command as given (its non-default options)
        flags += [f"--cost {cost}"] if cost != "latency" else []
        flags += [f"--schedule {schedule}"] if schedule != "heuristic" else []
        flags += [] if quantize is None else ["--quantize" if quantize else "--no-quantize"]
        flags += ["--no-fusion"] if no_fusion else []
        command = f"isamap compile {model} {' '.join(flags)} --out {out}"
        try:
            write_model_report(result, out, command)
        except OSError as err:
            _fail(ctx, f"{err.filename or out}: cannot write the report: {err.strerror or err}")
    if as_json:
        click.echo(json.dumps(result.report.to_dict(), indent=1))
        return
    click.echo(str(result.report))
    if out is not None:
        click.echo(f"\nreport: {out / 'report.md'}")


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--explain", is_flag=True, help="Print the target file schema (every key).")
@click.option(
    "--explain-rules", is_flag=True, help="List the rules derived from each target's instructions."
)
def targets(files: tuple[str, ...], as_json: bool, explain: bool, explain_rules: bool) -> None:
    """List the shipped targets and their compute instructions, or load and check FILES."""
    if explain:
        schema = resources.files("isamap") / "targets" / "README.md"
        click.echo(schema.read_text(encoding="utf-8"))
        return
    names = list(files) or isamap.list_targets()
    loaded = [isamap.load_target(name) for name in names]
    if explain_rules:
        from isamap.egraph.target_rules import explain_rules as derived_rules

        for t in loaded:
            rules = derived_rules(t)
            if as_json:
                listed = [{"name": n, "rule": d} for n, d in rules]
                click.echo(json.dumps({"target": t.name, "rules": listed}, indent=1))
                continue
            click.echo(f"{t.name}: {len(rules)} derived rules")
            for name, text in rules:
                click.echo(f"  {name}: {text}")
        return
    if as_json:
        doc = [
            {
                "name": t.name,
                "description": t.description,
                "compute_instructions": [i.name for i in t.compute_instructions()],
                "units": list(t.units),
                "memories": list(t.memories),
            }
            for t in loaded
        ]
        click.echo(json.dumps(doc, indent=1))
        return
    width = max((len(t.name) for t in loaded), default=0)
    for t in loaded:
        compute = ", ".join(i.name for i in t.compute_instructions()) or "none"
        click.echo(f"{t.name:<{width}}  {t.description} [compute: {compute}]")
    if not files and any(t.codegen for t in loaded):
        best = host_target_name()
        click.echo(f"{HOST_ALIAS:<{width}}  alias of {best}, the best CPU target this CPU runs")


@cli.command("check-rules")
@click.option("-t", "--target", default="gemmini", show_default=True, help="Target name or .toml.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random corpus kernels.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def check_rules_command(ctx: click.Context, target: str, seed: int, as_json: bool) -> None:
    """Check every rewrite rule of the algebra and of TARGET for soundness.

    Each rule runs alone on terms built from its left-hand side at several small shapes, then
    with the rules before it as background on small random kernels; every e-node is evaluated
    with numpy and the e-nodes of an e-class must agree. Exit status 1 when a rule is unsound
    or never fired (not verified).
    """
    from isamap.soundness import check_rules

    checks = check_rules(isamap.load_target(target), seed=seed)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        for c in checks:
            note = "" if c.exercised else " (never fired: not verified)"
            click.echo(
                f"{c.verdict:<9} {c.rule.name}  [{c.rule.loc}] {c.pattern_matches} matches on "
                f"{c.instances} terms from its pattern, {c.matches} on the corpus{note}"
            )
            if c.counterexample is not None:
                click.echo(f"          counterexample {c.counterexample}")
        bad = sum(not c.sound for c in checks)
        click.echo(f"{len(checks) - bad} of {len(checks)} rules sound")
    if any(not c.sound for c in checks):
        ctx.exit(1)


class _SuiteOrModel(click.Choice):  # type: ignore[type-arg]
    """A suite name, or a path to an ONNX model file (`isamap bench net.onnx`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith(".onnx"):
            return value
        return super().convert(value, param, ctx)


@cli.command()
@click.argument("suite", type=_SuiteOrModel([*SUITES, ALL, *CPU_SUITES]))
@click.option("-t", "--target", default="gemmini", show_default=True, help="Target name or .toml.")
@click.option(
    "-s",
    "--schedule",
    default="heuristic",
    show_default=True,
    help=f"Schedule strategy: {', '.join(strategy_names())}.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report directory [default: bench-results/SUITE-TARGET].",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Kernels compiled in parallel processes.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows of each suite.")
@click.pass_context
def bench(
    ctx: click.Context,
    suite: str,
    target: str,
    schedule: str,
    out: Path | None,
    jobs: int,
    limit: int | None,
) -> None:
    """Compile a benchmark SUITE (deepbench-gemm, deepbench-gru, mobilenet-v1, mobilenet-v2 or
    all; or a MODEL.onnx file, one row per fused layer) on a target and write report.md,
    report.json and plots (docs/benchmarks.md). The CPU suites (cpu-gemm, cpu-gru,
    cpu-mobilenet, cpu-mobilenet-v2) run native code for a CPU target (default host) against
    numpy's BLAS and onnxruntime instead (docs/cpu.md)."""
    from isamap.bench.report import write_report  # matplotlib loads only for this command

    if suite in CPU_SUITES:
        _cpu_bench(ctx, suite, target, out, limit)
        return
    loaded = isamap.load_target(target)
    check_schedule(loaded, schedule)  # bad names fail before the progress bar
    name = loaded.name
    suites = list(SUITES) if suite == ALL else [suite]
    if suite.endswith(".onnx"):
        isamap.load_onnx(suite)  # a bad model file fails now, before the progress bar
    label = Path(suite).stem if suite.endswith(".onnx") else suite
    out = out if out is not None else Path("bench-results") / f"{label}-{name}"
    _writable_dir(ctx, out)  # an unwritable --out fails now, not after the whole suite
    command = " ".join(["isamap bench", suite, "--target", target, "--schedule", schedule])
    command += f" --jobs {jobs}" + (f" --limit {limit}" if limit else "")
    with click.progressbar(length=1, label=f"{suite} on {name}", file=sys.stderr) as bar:

        def progress(done: int, total: int, key: str) -> None:
            bar.length = total
            bar.update(1)

        run = run_bench(suites, target, schedule, jobs, limit, progress, command)
    try:
        write_report(run, out)
    except OSError as err:
        _fail(ctx, f"{err.filename or out}: cannot write the report: {err.strerror or err}")
    for name_, s in run.suites.items():
        m = s.summary
        click.echo(
            f"{name_}: {m['workloads']} rows, geomean speedup {m['geomean_speedup']:.2f}x, "
            f"geomean {m['geomean_percent_of_roofline']:.1f}% of roofline, "
            f"compile {m['compile_seconds']:.1f} s"
        )
    click.echo(f"report: {out / 'report.md'} ({run.wall_seconds:.1f} s)")


def _cpu_bench(
    ctx: click.Context, suite: str, target: str, out: Path | None, limit: int | None
) -> None:
    """A CPU suite: native code against numpy/onnxruntime, single thread (docs/cpu.md)."""
    from isamap.bench.cpu_suites import run_cpu_suite, write_cpu_report

    if ctx.get_parameter_source("target") == click.core.ParameterSource.DEFAULT:
        target = HOST_ALIAS
    loaded = isamap.load_target(target)
    out = out if out is not None else Path("bench-results") / f"{suite}-{loaded.name}"
    _writable_dir(ctx, out)
    command = " ".join(["isamap bench", suite, "--target", target])
    command += f" --limit {limit}" if limit else ""
    run = run_cpu_suite(
        suite,
        target,
        limit=limit,
        command=command,
        progress=lambda name: click.echo(f"  {name}", err=True),
    )
    try:
        write_cpu_report(run, out)
    except OSError as err:
        _fail(ctx, f"{err.filename or out}: cannot write the report: {err.strerror or err}")
    click.echo(
        f"{suite} on {run.target}: {len(run.cases)} rows, geomean {run.geomean_ratio:.3f}x "
        f"{run.anchor}"
    )
    click.echo(f"report: {out / 'report.md'}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `isamap` console script and of `python -m isamap`."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="isamap")

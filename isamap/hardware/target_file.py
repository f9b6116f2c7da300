"""Reading a target file: TOML parsing, validation with file:line errors, and building the Target.

Every problem is an `IsamapError` located at the offending key's line in the `.toml` file. Nothing
in a target file is executed; instruction semantics go through the kernel parser only.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from isamap.hardware.conv_form import has_window_access
from isamap.hardware.elementwise_form import elementwise_form, elementwise_problem
from isamap.hardware.host_cpu import HOST_ALIAS, host_target_name
from isamap.hardware.matrix_form import (
    chain_bias,
    chain_function,
    contraction_problem,
    matrix_form,
)
from isamap.hardware.promotion import with_promotions
from isamap.hardware.target import (
    CODEGEN_FAMILIES,
    TARGET_DIR,
    Instruction,
    Memory,
    Target,
    Unit,
    dtype_bytes,
    list_targets,
)
from isamap.ir.dtypes import ALIASES, DTYPES
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import ELEMENTWISE_FUNCTIONS, Kernel
from isamap.ir.parser import decode_utf8, parse_kernel

__all__ = ["MAX_NUMBER", "TargetFile", "load_target", "read_target", "target_path"]

Keys = tuple[str, ...]

MEMORY_LEVELS = ("dram", "onchip")
UNIT_KINDS = ("matrix", "vector", "dma", "host")
INSTRUCTION_KINDS = ("compute", "move", "config")
DATAFLOWS = ("weight_stationary", "output_stationary", "input_stationary")
#: Element-type spellings accepted in a target file, mapped to the kernel language's spelling.
DTYPE_SPELLINGS: Mapping[str, str] = {**{d: d for d in DTYPES}, **ALIASES}
#: What an integer result past its type's range does (`overflow`).
OVERFLOW_MODES = ("wrap", "saturate")

# Allowed keys of each table, each mapped to whether it is required.
TOP_TABLES = {"target": True, "memories": True, "units": True, "instructions": True, "host": False}
TARGET_KEYS = {
    "name": True,
    "clock_ghz": True,
    "input_dtype": True,
    "acc_dtype": True,
    "description": False,
    "baseline_schedule": False,
    "codegen": False,
    "cpu_features": False,
}
MEMORY_KEYS = {
    "level": True,
    "capacity_bytes": True,
    "bandwidth_bytes_per_cycle": True,
    "energy_pj_per_byte": True,
    "banks": False,
    "latency_cycles": False,
    "row_bytes": False,
}
UNIT_KEYS = {
    "kind": True,
    "rows": False,
    "cols": False,
    "lanes": False,
    "count": False,
    "dataflows": False,
    "macs_per_cycle": False,
    "elementwise_per_cycle": False,
    # timing mechanisms (isamap/targets/README.md, "Timing mechanisms")
    "double_buffered": False,
    "decoupled": False,
    "load_queue_depth": False,
    "store_queue_depth": False,
    "transposer": False,
    "transcendental_cycles": False,
    "energy_pj_per_mac": False,
}
HOST_KEYS = {**UNIT_KEYS, "kind": False}
INSTRUCTION_KEYS = {
    "unit": True,
    "kind": True,
    "semantics": True,
    "extents": True,
    "operands": True,
    "latency_cycles": True,
    "issue_cycles": True,
    "energy_pj": False,
    "epilogues": False,
    "broadcasts": False,
    "stationary": False,
    "reuses_stationary": False,
    "dtypes": False,
    "overflow": False,
    "narrowing": False,
    "scale": False,
    "strides": False,
    "dilations": False,
    "max_padding": False,
    "doc": False,
}

_HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]\s*(#.*)?$")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MISSING: Any = object()
#: The largest number a target file may give (capacities, rates, latencies, energies): larger
#: ones are no hardware, and the timing model computes its products exactly only below 2**53.
MAX_NUMBER = 10**15
_T = TypeVar("_T")


def _split_key(dotted: str) -> Keys:
    return tuple(part.strip().strip("\"'") for part in dotted.split("."))


class TargetFile:
    """A parsed TOML target file that can locate any key path and raise located errors."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        # Split on \n only, as TOML counts lines (splitlines also splits on \x0c, \u2028, ...).
        self.lines = text.split("\n")
        self.data = _parse_toml(path, text)
        # Each table header's key path -> (header line index, end line index exclusive).
        self.sections: dict[Keys, tuple[int, int]] = {}
        headers = [
            (i, _split_key(m.group(1)))
            for i, line in enumerate(self.lines)
            if (m := _HEADER.match(line))
        ]
        ends = [i for i, _ in headers[1:]] + [len(self.lines)] if headers else []
        self.sections[()] = (-1, headers[0][0] if headers else len(self.lines))
        for (start, keys), end in zip(headers, ends, strict=True):
            self.sections.setdefault(keys, (start, end))

    def loc(self, keys: Keys) -> SourceLoc:
        """Where `keys` is defined: its `key =` line in its table, else the table's header line."""
        for cut in range(len(keys), -1, -1):
            span = self.sections.get(keys[:cut])
            if span is None:
                continue
            start, end = span
            if cut < len(keys):
                pattern = re.compile(rf"^(\s*)[\"']?{re.escape(keys[cut])}[\"']?\s*[=.]")
                for i in range(start + 1, end):
                    if m := pattern.match(self.lines[i]):
                        return SourceLoc(self.path, i + 1, len(m.group(1)) + 1)
            if start >= 0:
                return SourceLoc(self.path, start + 1)
        # An implicit table (`[memories.a]` defines `memories`): its first sub-table's header.
        for sub, (start, _) in self.sections.items():
            if keys and sub[: len(keys)] == keys:
                return SourceLoc(self.path, start + 1)
        return SourceLoc(self.path)

    def error(self, keys: Keys, message: str) -> IsamapError:
        return IsamapError(message, self.loc(keys))

    # -- typed access ---------------------------------------------------------------------------

    def table(self, keys: Keys, value: object, allowed: Mapping[str, bool]) -> dict[str, Any]:
        """`value` as a table whose keys are all in `allowed` and hold every required one."""
        if not isinstance(value, dict):
            raise self.error(keys, f"'{'.'.join(keys)}' must be a table")
        where = f"[{'.'.join(keys)}]" if keys else "the top level"
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.error(
                (*keys, unknown[0]),
                f"unknown key '{unknown[0]}' in {where} (allowed: {', '.join(allowed)})",
            )
        missing = [k for k, required in allowed.items() if required and k not in value]
        if missing:
            raise self.error(keys, f"{where} is missing required key '{missing[0]}'")
        return value

    def named_tables(self, keys: Keys, value: object) -> dict[str, Any]:
        """A table of tables (`[memories.<name>]`), each name a plain identifier."""
        if not isinstance(value, dict):
            raise self.error(keys, f"'{'.'.join(keys)}' must be a table of [{keys[-1]}.<name>]")
        for name in value:
            if not _NAME.match(name):
                raise self.error((*keys, name), f"bad name '{name}' (letters, digits, _)")
        return value

    def integer(
        self, keys: Keys, table: Mapping[str, Any], default: Any = _MISSING, minimum: int = 1
    ) -> int:
        value = table.get(keys[-1], default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(keys, f"'{keys[-1]}' must be an integer, not {_show(value)}")
        if value < minimum:
            raise self.error(keys, f"'{keys[-1]}' must be >= {minimum}, not {value}")
        if value > MAX_NUMBER:
            raise self.error(keys, f"'{keys[-1]}' must be at most {MAX_NUMBER:.0e}, not {value}")
        return value

    def number(
        self, keys: Keys, table: Mapping[str, Any], default: Any = _MISSING, positive: bool = True
    ) -> float:
        value = table.get(keys[-1], default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(keys, f"'{keys[-1]}' must be a number, not {_show(value)}")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise self.error(keys, f"'{keys[-1]}' must be a finite number {bound}, not {value}")
        if value > MAX_NUMBER:
            raise self.error(keys, f"'{keys[-1]}' must be at most {MAX_NUMBER:.0e}, not {value}")
        return float(value)

    def string(
        self,
        keys: Keys,
        table: Mapping[str, Any],
        default: Any = _MISSING,
        choices: tuple[str, ...] | None = None,
    ) -> str:
        value = table.get(keys[-1], default)
        if not isinstance(value, str):
            raise self.error(keys, f"'{keys[-1]}' must be a string, not {_show(value)}")
        if choices is not None and value not in choices:
            raise self.error(
                keys, f"'{keys[-1]}' must be one of {', '.join(choices)}, not '{value}'"
            )
        return value

    def strings(
        self, keys: Keys, table: Mapping[str, Any], choices: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = table.get(keys[-1], [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(keys, f"'{keys[-1]}' must be a list of strings")
        for v in value:
            if v not in choices:
                raise self.error(keys, f"unknown {keys[-1]} '{v}' (known: {', '.join(choices)})")
        return tuple(value)

    def dtype(self, keys: Keys, table: Mapping[str, Any]) -> str:
        """An element type, in the kernel language's spelling (`int8` -> `i8`)."""
        value = self.string(keys, table)
        if value not in DTYPE_SPELLINGS:
            raise self.error(
                keys, f"unknown element type '{value}' (known: {', '.join(DTYPE_SPELLINGS)})"
            )
        return DTYPE_SPELLINGS[value]


def _show(value: object) -> str:
    if value is _MISSING:
        return "missing"
    return f"{type(value).__name__} {value!r}"[:60]


def _parse_toml(path: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        if m := _TOML_POS.search(message):
            line, col = int(m.group(1)), int(m.group(2))
            message = message[: m.start()]
        else:
            line, col = text.rstrip("\n").count("\n") + 1, 0
            message = _TOML_END.sub(" (at end of file)", message)
        raise IsamapError(f"TOML syntax error: {message}", SourceLoc(path, line, col)) from None
    # tomllib lets these through: an integer of over 4300 digits, arrays nested ~1000 deep.
    except ValueError as err:
        raise IsamapError(f"TOML error: {err}", SourceLoc(path)) from None
    except RecursionError:
        raise IsamapError("TOML error: values nested too deeply", SourceLoc(path)) from None


# -- building -----------------------------------------------------------------------------------


def target_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The file a target name or path refers to: a bare name means a shipped target."""
    if isinstance(name_or_path, os.PathLike):
        return Path(name_or_path)
    if not isinstance(name_or_path, str):
        raise IsamapError(
            "a target is a shipped name or a path to a .toml file, "
            f"not {type(name_or_path).__name__}"
        )
    if "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path)
    if name_or_path == HOST_ALIAS:  # the best shipped CPU target this CPU can run
        name_or_path = host_target_name()
    path = TARGET_DIR / name_or_path / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(list_targets()) or "none"
        raise IsamapError(f"no shipped target named '{name_or_path}' (shipped: {known})")
    return path


def load_target(name_or_path: str | os.PathLike[str]) -> Target:
    """Load and validate a target file: a shipped name (`"gemmini"`) or a path to a `.toml`.

    Raises IsamapError, located at the offending file and line, on any problem; never returns a
    partly loaded target. (`isamap.load_target` also checks that the target's baseline schedule
    can serve it, which needs the scheduler above this package.)
    """
    return read_target(target_path(name_or_path))


def read_target(path: Path) -> Target:
    """Read, validate and build the target in `path`; IsamapError at file:line on any problem."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise IsamapError(f"cannot read target file: {err.strerror}", SourceLoc(name)) from None
    return build_target(TargetFile(name, decode_utf8(data, name, "target file")))


def build_target(doc: TargetFile) -> Target:
    """Validate a parsed target file and build its Target (all or nothing)."""
    top = doc.table((), doc.data, TOP_TABLES)
    head = doc.table(("target",), top["target"], TARGET_KEYS)
    input_dtype = doc.dtype(("target", "input_dtype"), head)
    acc_dtype = doc.dtype(("target", "acc_dtype"), head)
    memories = {
        name: _memory(doc, ("memories", name), table)
        for name, table in doc.named_tables(("memories",), top["memories"]).items()
    }
    if not any(m.level == "dram" for m in memories.values()):
        raise doc.error(("memories",), 'a target needs at least one memory with level = "dram"')
    units = {
        name: _unit(doc, ("units", name), table, name)
        for name, table in doc.named_tables(("units",), top["units"]).items()
    }
    host = _host(doc, top, units)
    units[host.name] = host
    instructions: dict[str, Instruction] = {}
    for name, table in doc.named_tables(("instructions",), top["instructions"]).items():
        keys = ("instructions", name)
        instructions[name] = _instruction(
            doc,
            keys,
            doc.table(keys, table, INSTRUCTION_KEYS),
            memories,
            units,
            (input_dtype, acc_dtype),
        )
    _check_rates(doc, units, instructions)
    baseline_key = ("target", "baseline_schedule")
    codegen = head.get("codegen")
    if codegen is not None:
        codegen = doc.string(("target", "codegen"), head, choices=CODEGEN_FAMILIES)
    features = _cpu_features(doc, head, codegen)
    return Target(
        name=doc.string(("target", "name"), head),
        path=doc.path,
        description=doc.string(("target", "description"), head, default=""),
        baseline_schedule=doc.string(baseline_key, head, default="heuristic"),
        baseline_loc=doc.loc(baseline_key if "baseline_schedule" in head else ("target",)),
        clock_ghz=doc.number(("target", "clock_ghz"), head),
        input_dtype=input_dtype,
        acc_dtype=acc_dtype,
        memories=memories,
        units=units,
        instructions=with_promotions(instructions),
        host=host,
        codegen=codegen,
        cpu_features=features,
    )


def _cpu_features(doc: TargetFile, head: Mapping[str, Any], codegen: str | None) -> tuple[str, ...]:
    """`[target] cpu_features`: flag names (letters, digits, _), only beside a `codegen`."""
    keys = ("target", "cpu_features")
    value = head.get("cpu_features", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise doc.error(keys, "'cpu_features' must be a list of strings")
    if value and codegen is None:
        raise doc.error(keys, "'cpu_features' needs a 'codegen' family in [target]")
    for v in value:
        if not _NAME.match(v):
            raise doc.error(keys, f"bad CPU feature name '{v}' (letters, digits, _)")
    return tuple(value)


def _check_rates(
    doc: TargetFile, units: Mapping[str, Unit], instructions: Mapping[str, Instruction]
) -> None:
    """A unit that runs a contraction needs MACs per cycle, one that runs an elementwise
    instruction elements per cycle: a zero rate would be timed as free, or divide by zero."""
    for ins in instructions.values():
        if ins.kind != "compute":
            continue
        unit = units[ins.unit]
        needs = []
        if matrix_form(ins.semantics) is not None:
            needs.append(("macs_per_cycle", unit.macs_per_cycle, "contraction"))
        if elementwise_form(ins.semantics) is not None:
            needs.append(("elementwise_per_cycle", unit.elementwise_per_cycle, "elementwise"))
        for key, rate, what in needs:
            if rate <= 0:
                raise doc.error(
                    ("units", unit.name, key),
                    f"unit '{unit.name}' runs the {what} instruction '{ins.name}', so its "
                    f"{key} must be > 0, not {rate:g}",
                )


def _memory(doc: TargetFile, keys: Keys, raw: object) -> Memory:
    t = doc.table(keys, raw, MEMORY_KEYS)
    row_bytes = t.get("row_bytes")
    return Memory(
        name=keys[-1],
        level=doc.string((*keys, "level"), t, choices=MEMORY_LEVELS),
        capacity_bytes=doc.integer((*keys, "capacity_bytes"), t),
        banks=doc.integer((*keys, "banks"), t, default=1),
        bandwidth_bytes_per_cycle=doc.number((*keys, "bandwidth_bytes_per_cycle"), t),
        latency_cycles=doc.integer((*keys, "latency_cycles"), t, default=0, minimum=0),
        energy_pj_per_byte=doc.number((*keys, "energy_pj_per_byte"), t, positive=False),
        row_bytes=None if row_bytes is None else doc.integer((*keys, "row_bytes"), t),
    )


def _unit(doc: TargetFile, keys: Keys, raw: object, name: str, kind: str | None = None) -> Unit:
    t = doc.table(keys, raw, UNIT_KEYS if kind is None else HOST_KEYS)
    kind = doc.string((*keys, "kind"), t, default=kind, choices=(kind,) if kind else UNIT_KINDS)
    rows = doc.integer((*keys, "rows"), t, default=1)
    cols = doc.integer((*keys, "cols"), t, default=1)
    lanes = doc.integer((*keys, "lanes"), t, default=1)
    count = doc.integer((*keys, "count"), t, default=1)
    # Peak rates a unit of this kind has unless the file says otherwise.
    macs, elementwise = {
        "matrix": (rows * cols * count, cols * count),
        "vector": (lanes * count, lanes * count),
        "dma": (0, 0),
        "host": (1, 1),
    }[kind]
    host = kind == "host"
    return Unit(
        name=name,
        kind=kind,
        rows=rows,
        cols=cols,
        lanes=lanes,
        count=count,
        dataflows=doc.strings((*keys, "dataflows"), t, DATAFLOWS),
        macs_per_cycle=doc.number(
            (*keys, "macs_per_cycle"), t, default=macs, positive=host or kind == "matrix"
        ),
        elementwise_per_cycle=doc.number(
            (*keys, "elementwise_per_cycle"), t, default=elementwise, positive=host
        ),
        transcendental_cycles=doc.number(
            (*keys, "transcendental_cycles"), t, default=20.0 if host else 1.0
        ),
        energy_pj_per_mac=doc.number((*keys, "energy_pj_per_mac"), t, default=0.0, positive=False),
        **_mechanisms(doc, keys, t),
    )


def _mechanisms(doc: TargetFile, keys: Keys, t: Mapping[str, Any]) -> dict[str, Any]:
    """A unit's timing mechanisms (isamap/targets/README.md, "Timing mechanisms"): flags and
    queue depths."""
    out: dict[str, Any] = {}
    for flag in ("double_buffered", "decoupled", "transposer"):
        value = t.get(flag, False)
        if not isinstance(value, bool):
            raise doc.error((*keys, flag), f"{flag} must be true or false, not {value!r}"[:120])
        out[flag] = value
    for depth in ("load_queue_depth", "store_queue_depth"):
        out[depth] = doc.integer((*keys, depth), t, default=0, minimum=0)
    return out


def _host(doc: TargetFile, top: Mapping[str, Any], units: Mapping[str, Unit]) -> Unit:
    """The one host unit: `[host]`, a `[units.<name>]` of kind host, or a slow default."""
    hosts = [u for u in units.values() if u.kind == "host"]
    if "host" in top:
        if hosts or "host" in units:
            other = hosts[0].name if hosts else "host"
            raise doc.error(("host",), f"two host units: [host] and [units.{other}]")
        return _unit(doc, ("host",), top["host"], "host", kind="host")
    if len(hosts) > 1:
        raise doc.error(
            ("units", hosts[1].name),
            f"two host units: '{hosts[0].name}' and '{hosts[1].name}' (a target has exactly one)",
        )
    if hosts:
        return hosts[0]
    if "host" in units:
        raise doc.error(("units", "host"), "the unit named 'host' must have kind = \"host\"")
    return Unit(
        name="host",
        kind="host",
        macs_per_cycle=1.0,
        elementwise_per_cycle=1.0,
        transcendental_cycles=20.0,
    )


def _instruction(
    doc: TargetFile,
    keys: Keys,
    t: dict[str, Any],
    memories: Mapping[str, Memory],
    units: Mapping[str, Unit],
    dtypes: tuple[str, str],
) -> Instruction:
    unit = doc.string((*keys, "unit"), t)
    if unit not in units:
        raise doc.error((*keys, "unit"), f"unknown unit '{unit}' (known: {', '.join(units)})")
    text = doc.string((*keys, "semantics"), t)
    extents = _name_table(doc, (*keys, "extents"), t, lambda k, tt: doc.integer(k, tt))
    operands = _name_table(doc, (*keys, "operands"), t, lambda k, tt: doc.string(k, tt))
    for tensor, mem in operands.items():
        if mem not in memories:
            raise doc.error(
                (*keys, "operands"),
                f"operand '{tensor}' is in unknown memory '{mem}' (known: {', '.join(memories)})",
            )
    declared = _name_table(doc, (*keys, "dtypes"), t, lambda k, tt: doc.dtype(k, tt), {})
    semantics = Semantics(doc, keys, text, extents)
    tensor_dtypes = semantics.dtypes(declared, dtypes)
    semantics.check_operands(operands, memories, tensor_dtypes)
    kernel = semantics.parse(tensor_dtypes)
    kind = doc.string((*keys, "kind"), t, choices=INSTRUCTION_KINDS)
    if kind == "compute":
        problem = _semantics_problem(kernel)
        if problem is not None:
            raise doc.error(
                (*keys, "semantics"), f"instruction '{keys[-1]}' can never be used: {problem}"
            )
    chain = chain_function(kernel) if kind == "compute" else None
    bias = chain_bias(kernel) if kind == "compute" else None
    epilogues = doc.strings((*keys, "epilogues"), t, ELEMENTWISE_FUNCTIONS)
    if (chain is not None or bias is not None) and epilogues:
        chained = " and ".join(
            x for x in (chain, f"bias {bias}" if bias else None) if x is not None
        )
        raise doc.error(
            (*keys, "epilogues"),
            f"instruction '{keys[-1]}' chains {chained} in its semantics; it cannot also "
            "declare epilogues",
        )
    stationary = t.get("stationary")
    if stationary is not None:
        stationary = doc.string((*keys, "stationary"), t, choices=tuple(operands))
    reuses = t.get("reuses_stationary", False)
    if not isinstance(reuses, bool):
        raise doc.error((*keys, "reuses_stationary"), "'reuses_stationary' must be true or false")
    if reuses and stationary is None:
        raise doc.error((*keys, "reuses_stationary"), "reuses_stationary needs a 'stationary'")
    return Instruction(
        name=keys[-1],
        unit=unit,
        kind=kind,
        semantics_text=text,
        semantics=kernel,
        extents=extents,
        operands=operands,
        latency_cycles=doc.integer((*keys, "latency_cycles"), t, minimum=0),
        issue_cycles=doc.number((*keys, "issue_cycles"), t),
        energy_pj=doc.number((*keys, "energy_pj"), t, default=0.0, positive=False),
        epilogues=epilogues,
        chain=chain,
        chain_bias=bias,
        broadcasts=_broadcasts(doc, keys, t, kernel),
        stationary=stationary,
        reuses_stationary=reuses,
        doc=doc.string((*keys, "doc"), t, default=""),
        **_number_keys(doc, keys, t, kind),
        **_window_keys(doc, keys, t, kernel, kind),
    )


def _window_keys(
    doc: TargetFile, keys: Keys, t: dict[str, Any], semantics: Kernel, kind: str
) -> dict[str, Any]:
    """What a direct-convolution instruction's DMA handles on the way in (`conv_form.py`):
    `strides` and `dilations` (lists of supported values), `max_padding` (zero rows per edge).
    Only for a compute instruction whose semantics windows its input."""
    given = [k for k in ("strides", "dilations", "max_padding") if k in t]
    if not given:
        return {}
    if kind != "compute" or not has_window_access(semantics):
        raise doc.error(
            (*keys, given[0]),
            f"'{given[0]}' is for a direct-convolution instruction (a compute instruction whose "
            "semantics reads a window, `X[c, h + r, w + s]`)",
        )
    out: dict[str, Any] = {}
    for key in ("strides", "dilations"):
        if key not in t:
            continue
        values = t[key]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
        ):
            raise doc.error((*keys, key), f"'{key}' must be a list of integers >= 1, like [1, 2]")
        out[key] = tuple(sorted(set(values)))
    if "max_padding" in t:
        out["max_padding"] = doc.integer((*keys, "max_padding"), t, minimum=0)
    return out


def _broadcasts(
    doc: TargetFile, keys: Keys, t: dict[str, Any], semantics: Kernel
) -> tuple[str, ...] | None:
    """The operands the instruction can read broadcast over its lanes (None: any of them)."""
    if "broadcasts" not in t:
        return None
    return doc.strings((*keys, "broadcasts"), t, tuple(semantics.inputs()))


def _number_keys(doc: TargetFile, keys: Keys, t: dict[str, Any], kind: str) -> dict[str, Any]:
    """The instruction's arithmetic: `overflow` (default: a compute instruction's accumulator
    wraps, a store's narrowing saturates), the types a store narrows to, its scale's type."""
    default = "wrap" if kind == "compute" else "saturate"
    overflow = doc.string((*keys, "overflow"), t, default=default, choices=OVERFLOW_MODES)
    narrowing = doc.strings((*keys, "narrowing"), t, tuple(DTYPE_SPELLINGS))
    scale = doc.dtype((*keys, "scale"), t) if "scale" in t else None
    if (narrowing or scale) and kind != "move":
        key = "narrowing" if narrowing else "scale"
        raise doc.error((*keys, key), f"'{key}' is for a store (kind = \"move\"), not {kind}")
    return {
        "overflow": overflow,
        "narrowing": tuple(DTYPE_SPELLINGS[n] for n in narrowing),
        "scale": scale,
    }


def _semantics_problem(semantics: Kernel) -> str | None:
    """Why a compute instruction's semantics could never compute part of any kernel."""
    if any(s.accumulate for s in semantics.statements[:1]):
        return contraction_problem(semantics)
    return elementwise_problem(semantics)


def _name_table(
    doc: TargetFile,
    keys: Keys,
    t: Mapping[str, Any],
    get: Callable[[Keys, Mapping[str, Any]], _T],
    default: Any = _MISSING,
) -> dict[str, _T]:
    """A `{ name = value, ... }` table, each value read by `get(keys, table)`."""
    value = t.get(keys[-1], default)
    if not isinstance(value, dict):
        raise doc.error(keys, f"'{keys[-1]}' must be a table like {{ i = 16, j = 16 }}")
    return {name: get((*keys, name), value) for name in value}


# -- instruction semantics ----------------------------------------------------------------------

_ACCESS = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\[([^\[\]]*)\]")
_TARGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[[^\[\]]*\]\s*\+=")
# A term of an affine index expression: `h`, `2*h`, `h*2` or `3` (numbers kept short).
_TERM = re.compile(
    r"^(?:(\d{1,9})\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*|\d{1,9})(?:\s*\*\s*(\d{1,9}))?$"
)


class Semantics:
    """An instruction's semantics text, pre-scanned for tensors and their shapes before parsing."""

    def __init__(self, doc: TargetFile, keys: Keys, text: str, extents: Mapping[str, int]) -> None:
        self.doc, self.keys, self.text = doc, keys, text
        self.key = (*keys, "semantics")
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        if not code.strip():
            raise doc.error(self.key, "semantics is empty")
        self.accumulated = {m.group(1) for line in code.splitlines() if (m := _TARGET.match(line))}
        dims: dict[str, list[int]] = {}
        used: set[str] = set()
        for m in _ACCESS.finditer(code):
            tensor, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
            sizes = [self._size(arg, extents, used) for arg in args]
            old = dims.setdefault(tensor, sizes)
            if len(old) != len(sizes):
                raise doc.error(
                    self.key, f"tensor '{tensor}' is used with {len(old)} and {len(sizes)} indices"
                )
            dims[tensor] = [max(a, b) for a, b in zip(old, sizes, strict=True)]
        if not dims:
            raise doc.error(self.key, "semantics names no tensor (expected e.g. C[i] = A[i])")
        unused = [i for i in extents if i not in used]
        if unused:
            raise doc.error(
                (*keys, "extents", unused[0]),
                f"extent of '{unused[0]}' is given but the semantics never uses it",
            )
        self.shapes = {name: tuple(s) for name, s in dims.items()}

    def _size(self, arg: str, extents: Mapping[str, int], used: set[str]) -> int:
        """Size a dimension needs for an affine index expression (`i`, `2*h + r`) to stay in it."""
        terms = re.findall(r"([+-]?)\s*([^+-]+)", arg.replace(" ", ""))
        if not arg or "".join(s + t for s, t in terms) != arg.replace(" ", ""):
            raise self.doc.error(self.key, f"bad index expression '{arg}'")
        hi = 0
        for sign, term in terms:
            m = _TERM.match(term)
            if m is None:
                raise self.doc.error(self.key, f"index expression '{arg}' is not affine")
            coef = int(m.group(1) or 1) * int(m.group(3) or 1) * (-1 if sign == "-" else 1)
            name = m.group(2)
            if name.isdigit():
                hi += coef * int(name)
                continue
            if name not in extents:
                raise self.doc.error(
                    (*self.keys, "extents"), f"index '{name}' of the semantics has no extent"
                )
            used.add(name)
            if coef < 0:
                raise self.doc.error(self.key, f"index expression '{arg}' can go negative")
            hi += coef * (extents[name] - 1)
        if hi < 0:
            raise self.doc.error(self.key, f"index expression '{arg}' is negative")
        return hi + 1

    def dtypes(self, declared: Mapping[str, str], defaults: tuple[str, str]) -> dict[str, str]:
        """Each tensor's element type: as declared, else acc_dtype if accumulated, else input."""
        for name in declared:
            if name not in self.shapes:
                raise self.doc.error(
                    (*self.keys, "dtypes", name),
                    f"dtypes names '{name}', not a tensor of the semantics",
                )
        input_dtype, acc_dtype = defaults
        return {
            name: declared.get(name, acc_dtype if name in self.accumulated else input_dtype)
            for name in self.shapes
        }

    def check_operands(
        self, operands: Mapping[str, str], memories: Mapping[str, Memory], dtypes: Mapping[str, str]
    ) -> None:
        """Every tensor has an operand memory, every operand is a tensor, and the tiles fit."""
        key = (*self.keys, "operands")
        for name in self.shapes:
            if name not in operands:
                raise self.doc.error(key, f"tensor '{name}' of the semantics has no operand memory")
        for name in operands:
            if name not in self.shapes:
                raise self.doc.error(key, f"operand '{name}' is not a tensor of the semantics")
        used: dict[str, int] = {}
        for name, shape in self.shapes.items():
            size = math.prod(shape) * dtype_bytes(dtypes[name])
            used[operands[name]] = used.get(operands[name], 0) + size
        for mem, size in used.items():
            if size > memories[mem].capacity_bytes:
                raise self.doc.error(
                    key,
                    f"operand tiles need {size} bytes of '{mem}', which "
                    f"holds {memories[mem].capacity_bytes}",
                )

    def parse(self, dtypes: Mapping[str, str]) -> Kernel:
        """The semantics as a Kernel; a parse error is re-reported at the `semantics` key."""
        decls = [
            f"tensor {name}[{', '.join(map(str, shape))}] {dtypes[name]}"
            for name, shape in self.shapes.items()
        ]
        where = f"in the semantics of '{self.keys[-1]}'"
        try:
            return parse_kernel("\n".join([*decls, self.text]), self.doc.path, self.keys[-1])
        except IsamapError as err:
            raise IsamapError(f"{where}: {err.message}", self.doc.loc(self.key)) from None
        except RecursionError:  # the kernel parser recurses on nesting depth
            raise IsamapError(
                f"{where}: expression nested too deeply", self.doc.loc(self.key)
            ) from None

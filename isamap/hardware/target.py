"""The machine model of a hardware target: memories, compute units, instructions, and the target.

Targets are data (`isamap/targets/<name>/<name>.toml`, schema in isamap/targets/README.md); these
types are what `isamap.hardware.target_file.load_target` builds from one, after validating it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from isamap.ir.dtypes import ALIASES, DTYPES
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import Kernel

__all__ = [
    "CODEGEN_FAMILIES",
    "DTYPE_BYTES",
    "Instruction",
    "Memory",
    "Target",
    "Unit",
    "dtype_bytes",
    "is_shipped",
    "list_targets",
    "shipped_target_files",
]

#: Bytes per element of every element type a target may name (isamap/ir/dtypes.py), aliases too.
DTYPE_BYTES: Mapping[str, int] = {
    **{name: t.bytes for name, t in DTYPES.items()},
    **{alias: DTYPES[name].bytes for alias, name in ALIASES.items()},
}

#: Code-generation families a CPU target may name (`[target] codegen`): C with AVX-512 or AVX2
#: intrinsics, or portable C. The emitter for each lives in `isamap.codegen`, not in the file.
CODEGEN_FAMILIES: tuple[str, ...] = ("avx512", "avx2", "c")

#: The folder holding the shipped targets, one folder each: `<name>/<name>.toml`.
TARGET_DIR = Path(__file__).resolve().parent.parent / "targets"


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of `dtype` (`i8` 1, `bf16` 2, `f32` 4, ...); IsamapError if unknown."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        known = ", ".join(sorted(DTYPE_BYTES))
        raise IsamapError(f"unknown element type '{dtype}' (known: {known})") from None


@dataclass(frozen=True, kw_only=True)
class Memory:
    """One level of the memory hierarchy (DRAM, a scratchpad, an accumulator, PE registers).

    `bandwidth_bytes_per_cycle` is the total over all banks; `latency_cycles` is the time to the
    first byte of an access; `row_bytes` is the width of one addressable row (None: no rows).
    """

    name: str
    level: str  # "dram" | "onchip"
    capacity_bytes: int
    banks: int = 1
    bandwidth_bytes_per_cycle: float
    latency_cycles: int = 0
    energy_pj_per_byte: float
    row_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class Unit:
    """A compute or data-movement engine: a systolic array, a vector unit, a DMA, the host CPU.

    `macs_per_cycle` and `elementwise_per_cycle` are peak throughputs; `transcendental_cycles` is
    the cost of one sigmoid/tanh/exp in cycles per element per lane.

    The timing mechanisms a unit's controller has (isamap/targets/README.md, "Timing mechanisms"):
    `double_buffered` PEs preload the next stationary block under the current one (folds
    pipeline; fill and drain once per run of back-to-back folds); `decoupled` load/execute/store
    queues let a compute start once its own blocks have landed (not its whole tile);
    `load_queue_depth` / `store_queue_depth` bound the moves in flight (0: no bound);
    `transposer` reads an operand transposed on the way in (no DRAM round trip).
    """

    name: str
    kind: str  # "matrix" | "vector" | "dma" | "host"
    rows: int = 1
    cols: int = 1
    lanes: int = 1
    count: int = 1  # identical units side by side; a call's tiles are spread over them
    dataflows: tuple[str, ...] = ()
    macs_per_cycle: float
    elementwise_per_cycle: float
    transcendental_cycles: float = 1.0
    energy_pj_per_mac: float = 0.0
    double_buffered: bool = False
    decoupled: bool = False
    load_queue_depth: int = 0
    store_queue_depth: int = 0
    transposer: bool = False


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """One instruction of a target: semantics in index notation at fixed extents, plus its costs.

    `semantics` is the parsed form of `semantics_text` with every tensor declared at the shape its
    bare indices give (`extents`); `operands` maps each of its tensors to the memory it lives in.
    `latency_cycles` runs from issue to a usable result on an idle machine, memory latency included;
    `issue_cycles` is the interval between back-to-back issues; `energy_pj` is a per-call overhead,
    on top of the per-byte energy of the memories and the per-MAC energy of the unit.
    """

    name: str
    unit: str
    kind: str  # "compute" | "move" | "config"
    semantics_text: str
    semantics: Kernel = field(hash=False)
    extents: Mapping[str, int] = field(hash=False)
    operands: Mapping[str, str] = field(hash=False)
    latency_cycles: int
    issue_cycles: float
    energy_pj: float = 0.0
    epilogues: tuple[str, ...] = ()
    #: The function a contraction's semantics chains onto every result (`D = relu(C)`): the
    #: instruction always applies it, so it computes only products under that function.
    chain: str | None = None
    #: The per-column bias tensor the chained statement adds before its function
    #: (`D[i, j] = relu(C[i, j] + bias[j])`): the instruction computes only products plus a bias.
    chain_bias: str | None = None
    #: The operands it can read broadcast over its lanes (`promotion.py`); None: any of them.
    broadcasts: tuple[str, ...] | None = None
    stationary: str | None = None
    reuses_stationary: bool = False
    doc: str = ""
    derived_from: str | None = None  # the instruction this one reads differently (promotion.py)
    #: An integer result past its type's range: a compute instruction's accumulator, a store's
    #: narrowing ("wrap" or "saturate").
    overflow: str = "wrap"
    #: Types a store can narrow its output to on the way out (after `scale`, to nearest even).
    narrowing: tuple[str, ...] = ()
    #: The type of the per-call scale a store multiplies by before narrowing (None: no scale).
    scale: str | None = None
    #: A direct-convolution instruction (window accesses, `conv_form.py`): the strides and
    #: dilations its DMA supports (empty: those its semantics writes) and the zero padding it
    #: adds at an edge.
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    max_padding: int = 0

    def operand_shape(self, tensor: str) -> tuple[int, ...]:
        """The tile shape of operand `tensor` in one call."""
        return self.semantics.shapes[tensor]

    def operand_bytes(self, tensor: str) -> int:
        """Bytes of operand `tensor` touched by one call."""
        count = 1
        for extent in self.operand_shape(tensor):
            count *= extent
        return count * dtype_bytes(self.semantics.dtype(tensor))


@dataclass(frozen=True, kw_only=True)
class Target:
    """A hardware target: its memories, units (host included), instructions and element types.

    `units` holds every unit by name, the host among them; `host` is that host unit, which runs
    whatever no instruction covers.
    """

    name: str
    path: str
    description: str
    clock_ghz: float
    input_dtype: str
    acc_dtype: str
    memories: Mapping[str, Memory] = field(hash=False)
    units: Mapping[str, Unit] = field(hash=False)
    instructions: Mapping[str, Instruction] = field(hash=False)
    host: Unit
    baseline_schedule: str = "heuristic"  # the vendor library's strategy, speedups are against it
    #: A CPU target's code-generation family (CODEGEN_FAMILIES): its programs run natively.
    codegen: str | None = None
    #: CPU features (`/proc/cpuinfo` flag names) the code of `codegen` needs to run.
    cpu_features: tuple[str, ...] = ()
    #: Where `baseline_schedule` is set (or the [target] table), for errors about it.
    baseline_loc: SourceLoc | None = field(default=None, compare=False, hash=False)

    @staticmethod
    def dtype_bytes(dtype: str) -> int:
        """Bytes per element of `dtype`: i8/int8 1, f16/bf16 2, f32/i32/int32 4, f64 8."""
        return dtype_bytes(dtype)

    def dram(self) -> Memory:
        """The off-chip memory (the first memory whose level is `dram`)."""
        for mem in self.memories.values():
            if mem.level == "dram":
                return mem
        raise IsamapError(f"target '{self.name}' has no dram memory", SourceLoc(self.path))

    def compute_instructions(self) -> list[Instruction]:
        """Instructions of kind `compute`, in file order."""
        return [ins for ins in self.instructions.values() if ins.kind == "compute"]

    def instruction(self, name: str) -> Instruction:
        """The instruction called `name`; IsamapError listing the known names if there is none."""
        try:
            return self.instructions[name]
        except KeyError:
            known = ", ".join(self.instructions) or "none"
            raise IsamapError(
                f"target '{self.name}' has no instruction '{name}' (known: {known})",
                SourceLoc(self.path),
            ) from None


def shipped_target_files() -> list[Path]:
    """The shipped target files, `isamap/targets/<name>/<name>.toml`, sorted by name."""
    folders = sorted(p for p in TARGET_DIR.iterdir() if p.is_dir())
    return [d / f"{d.name}.toml" for d in folders if (d / f"{d.name}.toml").is_file()]


def list_targets() -> list[str]:
    """Names of the shipped targets (every `isamap/targets/<name>/<name>.toml`), sorted."""
    return [p.stem for p in shipped_target_files()]


def is_shipped(path: str | Path) -> bool:
    """Whether `path` is a file of a shipped target (inside `isamap/targets/`)."""
    return Path(path).resolve().is_relative_to(TARGET_DIR)

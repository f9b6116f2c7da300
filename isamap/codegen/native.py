"""Running emitted C natively: build (or load from the cache) and call it on numpy arrays."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

import numpy as np

from isamap.codegen.emit import ENTRY, CSource
from isamap.codegen.families import family
from isamap.codegen.toolchain import Built, build
from isamap.hardware.host_cpu import missing_features
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError

__all__ = ["NativeProgram", "PreparedProgram", "load_native"]

_FloatPtrs = ctypes.POINTER(ctypes.c_void_p)


def _pointers(arrays: list[np.ndarray]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])


class _Pointers:
    """The pointer arrays of the last call's arrays, reused while the same array objects come
    back (a timing loop, a network's fixed buffers): building them costs microseconds per
    array, a tenth of a small kernel. The arrays are held, so their data cannot move or be
    freed while their addresses are kept."""

    def __init__(self) -> None:
        self._key: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self._ptrs: tuple[ctypes.Array[ctypes.c_void_p], ...] = ()

    def get(
        self, ins: list[np.ndarray], outs: list[np.ndarray]
    ) -> tuple[ctypes.Array[ctypes.c_void_p], ...]:
        ki, ko = self._key
        same = (
            len(ki) == len(ins)
            and len(ko) == len(outs)
            and all(a is b for a, b in zip(ki, ins, strict=True))
            and all(a is b for a, b in zip(ko, outs, strict=True))
        )
        if not same:
            self._key = (list(ins), list(outs))
            self._ptrs = (_pointers(ins), _pointers(outs))
        return self._ptrs


@dataclass
class NativeProgram:
    """A loaded native program: `run(arrays)` calls its entry point on f32 copies of them."""

    source: CSource
    built: Built

    def __post_init__(self) -> None:
        self._entry = getattr(self.built.library, ENTRY)
        self._entry.restype = ctypes.c_int
        self._entry.argtypes = [_FloatPtrs, _FloatPtrs]
        self._last = _Pointers()

    def run(self, inputs: MappingABC[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the program, by name, as float32 arrays."""
        ins = [np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.source.inputs]
        outs = {name: np.empty(shape, dtype=np.float32) for name, shape in self.source.outputs}
        self.call(ins, list(outs.values()))
        return outs

    def prepare(self, constants: MappingABC[str, np.ndarray]) -> PreparedProgram:
        """Bind the inputs the C was emitted with as `constants` (weights): their operands are
        packed once, here, instead of on every call."""
        return PreparedProgram(self, constants)

    def call(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
        """The entry point on prepared arrays (C-contiguous float32, in ABI order): no copies,
        for timing loops."""
        in_ptrs, out_ptrs = self._last.get(ins, outs)
        if self._entry(in_ptrs, out_ptrs) != 0:
            raise IsamapError("native program ran out of memory")

    def bind(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> Callable[[], None]:
        """`call(ins, outs)` as a function of no arguments, its pointers built once: for a loop
        that runs the program on the same buffers again and again (a recurrent layer's steps,
        each on its own slices)."""
        in_ptrs, out_ptrs = _pointers(ins), _pointers(outs)
        held = (list(ins), list(outs))  # the arrays outlive the pointers to their data
        entry = self._entry

        def run(_held: object = held) -> None:
            if entry(in_ptrs, out_ptrs) != 0:
                raise IsamapError("native program ran out of memory")

        return run


class PreparedProgram:
    """A native program with its constant inputs bound: the operands read from them were
    packed once (`isamap_prepare`), and every call uses those bound values -- whatever the
    caller passes in their places -- so the packed copies can never disagree with the run."""

    def __init__(self, program: NativeProgram, constants: MappingABC[str, np.ndarray]) -> None:
        src = program.source
        missing = [c for c in src.constants if c not in constants]
        extra = [c for c in constants if c not in src.constants]
        if missing or extra:
            raise IsamapError(
                f"prepare: the program was emitted with constants {list(src.constants)}, "
                f"given {list(constants)}"
            )
        self.program = program
        self._bound = {
            src.inputs.index(n): np.ascontiguousarray(v, dtype=np.float32)
            for n, v in constants.items()
        }
        lib = program.built.library
        self._prepare = getattr(lib, f"{ENTRY}_prepare")
        self._prepare.restype = ctypes.c_void_p
        self._prepare.argtypes = [_FloatPtrs]
        self._release = getattr(lib, f"{ENTRY}_release")
        self._release.argtypes = [ctypes.c_void_p]
        self._run = getattr(lib, f"{ENTRY}_prepared")
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, _FloatPtrs, _FloatPtrs]
        ins = [self._bound.get(i, np.zeros(1, np.float32)) for i in range(len(src.inputs))]
        ptrs = (ctypes.c_void_p * max(len(ins), 1))(*[a.ctypes.data for a in ins])
        self._state = self._prepare(ptrs)
        if not self._state:
            raise IsamapError("native program ran out of memory preparing its constants")
        self._last = _Pointers()

    def call(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> None:
        """Like `NativeProgram.call`; the bound constants replace their slots of `ins`."""
        args = [self._bound.get(i, a) for i, a in enumerate(ins)]
        in_ptrs, out_ptrs = self._last.get(args, outs)
        if self._run(self._state, in_ptrs, out_ptrs) != 0:
            raise IsamapError("native program ran out of memory")

    def bind(self, ins: list[np.ndarray], outs: list[np.ndarray]) -> Callable[[], None]:
        """`call(ins, outs)` as a function of no arguments, its pointers built once (see
        `NativeProgram.bind`)."""
        args = [self._bound.get(i, a) for i, a in enumerate(ins)]
        in_ptrs, out_ptrs = _pointers(args), _pointers(outs)
        held = (args, list(outs), self)  # the arrays and the packed state outlive the pointers
        run_prepared, state = self._run, self._state

        def run(_held: object = held) -> None:
            if run_prepared(state, in_ptrs, out_ptrs) != 0:
                raise IsamapError("native program ran out of memory")

        return run

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state:
            self._release(state)
            self._state = None


def load_native(source: CSource, target: Target) -> NativeProgram:
    """Compile (or load from the cache) `source` for `target`; IsamapError if this CPU lacks a
    feature the target's code needs."""
    missing = missing_features(target.cpu_features)
    if missing:
        raise IsamapError(
            f"this CPU lacks {', '.join(missing)}, which target '{target.name}' needs to run "
            "natively (use target 'host' for the best one this CPU runs)"
        )
    prelude = family(source.family).prelude
    built = build(source.text, source.flags, openmp=source.threads > 1, prelude=prelude)
    return NativeProgram(source, built)

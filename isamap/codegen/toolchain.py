"""Compile emitted C with the system C compiler into a shared object, cached by source hash.

The compiler is `$CC` if set, else the first of cc, gcc, clang on PATH. Objects live in
`$XDG_CACHE_HOME/isamap` (default `~/.cache/isamap`), named by a hash of the compiler, its flags
and the source, so a rerun of the same program loads without compiling. `ISAMAP_CACHE_DIR`
overrides the directory.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from isamap.ir.errors import IsamapError

__all__ = ["BuildError", "Built", "build", "cache_dir", "find_compiler", "precompile_prelude"]

_CANDIDATES = ("cc", "gcc", "clang")


class BuildError(IsamapError):
    """The C compiler is missing or failed on emitted code."""


@dataclass(frozen=True)
class Built:
    """A compiled, loaded shared object and how it was obtained."""

    library: ctypes.CDLL
    path: Path
    cached: bool
    seconds: float  # compiling (0 when cached) plus loading, wall clock
    cpu_seconds: float = 0.0  # the compiler's own CPU time (user + system): load-independent


def find_compiler() -> list[str]:
    """The C compiler command: `$CC` (may carry arguments) or the first of cc, gcc, clang."""
    env = os.environ.get("CC", "").strip()
    if env:
        cmd = shlex.split(env)
        if shutil.which(cmd[0]) is None:
            raise BuildError(f"C compiler '{cmd[0]}' from CC not found: set CC to a C compiler")
        return cmd
    for name in _CANDIDATES:
        if shutil.which(name) is not None:
            return [name]
    raise BuildError(
        f"no C compiler found (tried {', '.join(_CANDIDATES)}): set CC to a C compiler to run "
        "CPU targets natively"
    )


def cache_dir() -> Path:
    """Where compiled objects are cached (created on demand)."""
    explicit = os.environ.get("ISAMAP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "isamap"


def build(source: str, flags: tuple[str, ...], openmp: bool = False, prelude: str = "") -> Built:
    """The shared object of `source`, compiled with `flags` (plus -fopenmp), loaded.

    `prelude`, text `source` starts with (after its first line, a comment), is compiled once
    per compiler and flags into a precompiled header in the cache and included from there: the
    intrinsics headers it includes take the compiler about 0.45 s of every kernel's build. A
    compiler that cannot use the precompiled header reads the header's text instead."""
    started = time.perf_counter()
    cc = find_compiler()
    args = _options(flags, openmp)
    key = hashlib.sha256("\0".join([*cc, *args, source]).encode()).hexdigest()[:24]
    folder = cache_dir()
    target = folder / f"isamap-{key}.so"
    cached = target.is_file()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not cached:
        _make(folder)
        text = source
        head, _, rest = source.partition("\n")
        if prelude and rest.startswith(prelude) and head.startswith("/*"):
            header = _precompiled(cc, args, prelude, folder)
            text = f'{head}\n#include "{header.name}"\n{rest[len(prelude) :]}'
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = Path(tmp) / "kernel.c"
            src.write_text(text)
            out = Path(tmp) / "kernel.so"
            _compile(cc, [*args, "-I", str(folder), "-o", str(out), str(src), "-lm"])
            os.replace(out, target)  # atomic: concurrent builders of one key agree
    try:
        library = ctypes.CDLL(str(target))
    except OSError as err:
        raise BuildError(f"cannot load compiled kernel {target}: {err}") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Built(library, target, cached, time.perf_counter() - started, cpu)


def precompile_prelude(prelude: str, flags: tuple[str, ...], openmp: bool = False) -> float:
    """Precompile `prelude` for `flags` into the cache now, as `build`'s first kernel would;
    the wall seconds it took (0 if it was there). Benchmarks time a kernel's cold build apart
    from this once-per-compiler-and-options cost."""
    started = time.perf_counter()
    cc = find_compiler()
    args = _options(flags, openmp)
    folder = cache_dir()
    _make(folder)
    _precompiled(cc, args, prelude, folder)
    return time.perf_counter() - started


def _options(flags: tuple[str, ...], openmp: bool) -> list[str]:
    """The compiler options for a kernel's shared object (and its prelude's header)."""
    return [*flags, "-shared", "-fPIC", "-std=c11", *(["-fopenmp"] if openmp else [])]


def _make(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BuildError(f"cannot create cache directory {folder}: {err.strerror}") from None


def _compile(cc: list[str], args: list[str]) -> None:
    cmd = [*cc, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except OSError as err:
        raise BuildError(f"cannot run C compiler '{cc[0]}': {err.strerror}") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"C compiler '{cc[0]}' took over 300 s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        detail = next((ln for ln in lines if "error" in ln), lines[-1])
        raise BuildError(f"C compiler '{cc[0]}' failed on emitted code: {detail[:300]}")


def _precompiled(cc: list[str], args: list[str], prelude: str, folder: Path) -> Path:
    """The prelude as a header in `folder`, with its precompiled form beside it (GCC finds
    `name.h.gch` for `#include "name.h"` when it was built with the same options); named by a
    hash of the compiler, options and text, so a header is never stale. Built once; a compiler
    that cannot precompile it leaves the header alone, which is then read as text."""
    tag = hashlib.sha256("\0".join([*cc, *args, prelude]).encode()).hexdigest()[:24]
    header = folder / f"isamap-prelude-{tag}.h"
    if not header.is_file():
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".h", delete=False) as f:
            f.write(prelude)
        os.replace(f.name, header)
    gch = header.with_name(header.name + ".gch")
    if not gch.is_file():
        partial = header.with_name(f"{header.name}.{os.getpid()}.gch")
        compile_args = [a for a in args if a != "-shared"]
        try:
            _compile(cc, [*compile_args, "-x", "c-header", "-o", str(partial), str(header)])
            os.replace(partial, gch)
        except BuildError:
            partial.unlink(missing_ok=True)  # the header's text serves instead
    return header

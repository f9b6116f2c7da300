"""The CPU this process runs on: its instruction-set features, and the `host` target alias.

Features are the kernel's flag names (`avx2`, `fma`, `avx512f`, ...), read at run time, because
machines of one kind may have different CPUs (a VM may hide AVX-512). `host` names the shipped CPU
target (one with `[target] codegen`) whose `cpu_features` this CPU has, preferring the one that
needs the most of them.
"""

from __future__ import annotations

import platform
import subprocess
import tomllib
from functools import lru_cache
from pathlib import Path

from isamap.hardware.target import shipped_target_files
from isamap.ir.errors import IsamapError

__all__ = ["HOST_ALIAS", "cpu_features", "host_target_name", "missing_features"]

#: The target name that means "the best shipped CPU target for this machine".
HOST_ALIAS = "host"


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The instruction-set features of this CPU (lower-case flag names; empty if unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        # sysctl spells them AVX2, FMA, AVX512F; the kernel's names are lower-case
        return frozenset(f.lower().replace(".", "_") for f in out.split())
    return frozenset()


def missing_features(required: tuple[str, ...]) -> list[str]:
    """The features of `required` this CPU lacks, in order."""
    have = cpu_features()
    return [f for f in required if f not in have]


def _cpu_targets() -> list[tuple[str, tuple[str, ...]]]:
    """(name, cpu_features) of every shipped CPU target, read from its [target] table."""
    found = []
    for path in shipped_target_files():
        try:
            head = tomllib.loads(path.read_text()).get("target", {})
        except (OSError, ValueError):
            continue  # loading it by name reports the problem at its line
        if isinstance(head, dict) and isinstance(head.get("codegen"), str):
            features = head.get("cpu_features", [])
            if isinstance(features, list):
                found.append((path.stem, tuple(str(f) for f in features)))
    return found


def host_target_name() -> str:
    """The shipped CPU target this CPU runs that needs the most features (ties: by name)."""
    usable = [(len(f), name) for name, f in _cpu_targets() if not missing_features(f)]
    if not usable:
        raise IsamapError("no shipped CPU target runs on this CPU (target 'host')")
    return min(usable, key=lambda t: (-t[0], t[1]))[1]

"""Cache blocking of a matrix call on a CPU target, from its schedule and the target's caches.

The micro-kernel is the instruction's register tile (MR x NR, k = 1). The scheduler's tile along
K (the depth of the B panel it fitted in the memory the instruction declares for B, L1 on the
shipped targets) is KC; MC is the most rows of A whose KC-deep block fills half of A's memory
(L2), NC the most columns of B whose KC-deep block fills a quarter of the next level (L3, shared
between cores). Whether A is packed is decided by the shape (`pack_a`).
"""

from __future__ import annotations

from dataclasses import dataclass

from isamap.hardware.target import Target
from isamap.ir.program import ScheduledCall

__all__ = ["Blocking", "blocking"]

#: The deepest KC: beyond it the B panel and the A micro-panel leave L1 on any shipped target.
MAX_KC = 512


@dataclass(frozen=True)
class Blocking:
    """MR x NR register tile, MC x KC block of A, KC x NC block of B, and A packed or not."""

    mr: int
    nr: int
    mc: int
    nc: int
    kc: int
    pack_a: bool

    def describe(self) -> str:
        packed = "A and B packed" if self.pack_a else "B packed, A read in place"
        return (
            f"micro-kernel {self.mr}x{self.nr}, blocks MC {self.mc} NC {self.nc} KC {self.kc}, "
            f"{packed}"
        )


def _round_down(value: int, step: int) -> int:
    return max(step, value // step * step)


def _next_level(target: Target, name: str) -> int:
    """Capacity of the smallest on-chip memory larger than memory `name` (else `name`'s)."""
    own = target.memories[name].capacity_bytes
    bigger = [
        m.capacity_bytes
        for m in target.memories.values()
        if m.level == "onchip" and m.capacity_bytes > own
    ]
    return min(bigger, default=own)


def blocking(
    target: Target, sc: ScheduledCall, a_memory: str, pack_a: bool | None = None
) -> Blocking:
    """The blocking of call `sc`: its register tile, the scheduler's K tile, MC and NC."""
    call = sc.call
    mr, nr, bk = call.block
    kc = max(1, min(call.k, sc.schedule.tile_k * bk, MAX_KC))
    if call.k > kc:  # even the K blocks out, so the last one is not a sliver
        trips = -(-call.k // kc)
        kc = -(-call.k // trips)
    a_bytes = target.memories[a_memory].capacity_bytes
    mc = min(_round_down(a_bytes // 2 // (kc * 4), mr), -(-call.m // mr) * mr)
    nc = min(_round_down(_next_level(target, a_memory) // 4 // (kc * 4), nr), -(-call.n // nr) * nr)
    if pack_a is None:
        pack_a = should_pack_a(call.m, call.n, nc, nr)
    return Blocking(mr, nr, mc, nc, kc, pack_a)


def should_pack_a(m: int, n: int, nc: int, nr: int) -> bool:
    """Pack A when each packed block is reused by enough B panels to pay for the copy."""
    return min(n, nc) >= 8 * nr and m >= 64

"""Cache blocking of a matrix call on a CPU target, from its schedule and the target's caches.

The micro-kernel is the instruction's register tile (MR x NR, k = 1). The scheduler's tile along
K (the depth of the B panel it fitted in the memory the instruction declares for B, L1 on the
shipped targets) is KC; MC is the most rows of A whose KC-deep block fills half of A's memory
(L2), NC the most columns of B whose KC-deep block fills a quarter of the next level (L3, shared
between cores). Whether A is packed is decided by the shape (`pack_a`).
"""

from __future__ import annotations

from dataclasses import dataclass

from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError
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
    pack_b: bool = True

    def describe(self) -> str:
        packed = {
            (True, True): "A and B packed",
            (False, True): "B packed, A read in place",
            (True, False): "A packed, B read in place",
            (False, False): "A and B read in place",
        }[self.pack_a, self.pack_b]
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
    target: Target,
    sc: ScheduledCall,
    a_memory: str,
    pack_a: bool | None = None,
    pack_b: bool | None = None,
) -> Blocking:
    """The blocking of call `sc`: its register tile, the scheduler's K tile, MC and NC."""
    call = sc.call
    mr, nr, bk = call.block
    blk = _blocks(target, a_memory, mr, nr, sc.schedule.tile_k * bk, call.m, call.n, call.k)
    return Blocking(
        mr,
        nr,
        blk.mc,
        blk.nc,
        blk.kc,
        blk.pack_a if pack_a is None else pack_a,
        blk.pack_b if pack_b is None else pack_b,
    )


def host_blocking(target: Target, m: int, n: int, k: int) -> Blocking:
    """A blocking for a product the mapping left to the host (no schedule): the register tile
    and memories of the target's first matrix instruction, the deepest KC."""
    for ins in target.compute_instructions():
        form = matrix_form(ins.semantics)
        if form is not None:
            mr, nr = form.tile("m"), form.tile("n")
            return _blocks(target, ins.operands[form.lhs], mr, nr, MAX_KC, m, n, k)
    raise IsamapError(f"target '{target.name}' has no matrix instruction to emit a product with")


def _blocks(
    target: Target, a_memory: str, mr: int, nr: int, k_tile: int, m: int, n: int, k: int
) -> Blocking:
    kc = max(1, min(k, k_tile, MAX_KC))
    if k > kc:  # even the K blocks out, so the last one is not a sliver
        trips = -(-k // kc)
        kc = -(-k // trips)
    a_bytes = target.memories[a_memory].capacity_bytes
    mc = min(_round_down(a_bytes // 2 // (kc * 4), mr), -(-m // mr) * mr)
    l3 = _next_level(target, a_memory)
    nc = min(_round_down(l3 // 4 // (kc * 4), nr), -(-n // nr) * nr)
    return Blocking(mr, nr, mc, nc, kc, should_pack_a(m, n, nc, nr), should_pack_b(m, mc))


def should_pack_a(m: int, n: int, nc: int, nr: int) -> bool:
    """Pack A when each packed block is reused by enough B panels (8) to pay for the copy."""
    return min(n, nc) >= 8 * nr


def should_pack_b(m: int, mc: int) -> bool:
    """Pack B when several MC blocks of A reuse each packed block; with one, the copy would
    only double B's traffic (a short, wide GEMM such as 35 x 8457)."""
    return m > mc

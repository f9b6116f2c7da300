"""A vendor library's own mapping of a kernel: its calls issued as the library issues them.

isamap's extraction may run a product operand-swapped (Cᵀ = Bᵀ·Aᵀ, its result transposed back)
when that schedules better; a vendor library (Gemmini's `tiled_matmul_auto`, any BLAS) is called
on the kernel's own C = A·B, reading a transposed A or B through its flags (on Gemmini, the
transposer in the load path). So the baseline is timed on the same mapping with every swapped
call turned back: m and n exchanged, the operands exchanged and each re-oriented (a transpose
feeding the swapped call cancels; an operand read as it lay is read transposed), and the
transpose of its result gone. Nothing else changes, so a speedup measures the schedule and the
mapping choice, never a difference in what the two compute.

A library may issue calls its own way beyond that (Gemmini's runs a convolution through its conv
path, `isamap/targets/gemmini/conv_path.py`): the `issue` its target registered with its
baseline strategy (`schedule/registry.py`) then rewrites the unswapped mapping.
"""

from __future__ import annotations

import math
from dataclasses import replace

from isamap.hardware.target import Target
from isamap.ir.mapping import MapNode, Mapping
from isamap.schedule.analytic import layout_move
from isamap.schedule.registry import library_issue

__all__ = ["own_mapping", "prune_dead"]


_SWAP_LAST = "0,2,1"  # a batched product's result transposed: Cᵀ[b] -> C[b]


def _consumers(mapping: Mapping, node_id: int) -> list[MapNode]:
    return [n for n in mapping.nodes if node_id in n.args]


def _swapped(mapping: Mapping, node: MapNode) -> MapNode | None:
    """The transpose that turns `node`'s result back, if `node` is an operand-swapped call."""
    if node.op != "instr" or len(node.args) != 2 or node.attrs.get("taps"):
        return None  # (a tap accumulation is issued as it is: its operands are per tap)
    users = _consumers(mapping, node.id)
    if len(users) != 1 or node.id in mapping.outputs.values():
        return None
    user = users[0]
    if user.op == "transpose" and str(user.attrs.get("perm")) == _SWAP_LAST:
        return user
    return None


def own_mapping(mapping: Mapping, target: Target) -> Mapping:
    """`mapping` with every operand-swapped product call issued unswapped (module docstring);
    an operand it now reads transposed costs a layout move, which the simulator waives where
    the unit has a transposer. Then, if the target's baseline library registered how it issues
    calls (Gemmini's conv path), that rewrites it."""
    unswapped = _unswapped(mapping, target)
    issue = library_issue(target.baseline_schedule)
    return unswapped if issue is None else issue(unswapped, target)


def _unswapped(mapping: Mapping, target: Target) -> Mapping:
    undo = {n.id: t for n in mapping.nodes if (t := _swapped(mapping, n)) is not None}
    if not undo:
        return mapping
    out = Mapping(mapping.kernel, mapping.target, mapping.cost_model, mapping.cost)
    new_id: dict[int, int] = {}

    def add(node: MapNode) -> int:
        node = replace(node, id=len(out.nodes))
        out.nodes.append(node)
        return node.id

    gone = {t.id for t in undo.values()}
    for node in mapping.nodes:
        if node.id in undo:  # C^T = B^T . A^T  ->  C = A . B
            operands = []
            for arg in reversed(node.args):
                source = mapping.nodes[arg]
                if source.op == "transpose" and str(source.attrs.get("perm")) == _SWAP_LAST:
                    operands.append(new_id[source.args[0]])  # (X^T)^T = X: read as it lies
                    continue
                b, rows, cols = source.shape
                flipped = MapNode(
                    id=0,
                    op="transpose",
                    args=(new_id[arg],),
                    attrs={"perm": _SWAP_LAST},
                    shape=(b, cols, rows),
                    unit="dma",
                    tensor=None,
                    cycles=layout_move(target, math.prod(source.shape)).cycles,
                )
                operands.append(add(flipped))
            a = dict(node.attrs)
            a["m"], a["n"] = node.attrs["n"], node.attrs["m"]
            tiles = str(a.get("tiles", "")).split("x")
            if len(tiles) == 4:
                tiles[1], tiles[2] = tiles[2], tiles[1]
                a["tiles"] = "x".join(tiles)
            b, rows, cols = node.shape
            new_id[node.id] = add(
                replace(node, args=tuple(operands), attrs=a, shape=(b, cols, rows))
            )
        elif node.id in gone:  # its result is already C: the transpose back is a view
            new_id[node.id] = new_id[node.args[0]]
        else:
            new_id[node.id] = add(replace(node, args=tuple(new_id[a] for a in node.args)))
    out.outputs = {t: new_id[i] for t, i in mapping.outputs.items()}
    return prune_dead(out)


def prune_dead(mapping: Mapping) -> Mapping:
    """`mapping` without the nodes no output depends on any more (a cancelled transpose)."""
    live = set(mapping.outputs.values())
    for node in reversed(mapping.nodes):
        if node.id in live:
            live.update(node.args)
    out = Mapping(mapping.kernel, mapping.target, mapping.cost_model, mapping.cost)
    new_id: dict[int, int] = {}
    for node in mapping.nodes:
        if node.id in live:
            new_id[node.id] = len(out.nodes)
            out.nodes.append(
                replace(node, id=new_id[node.id], args=tuple(new_id[a] for a in node.args))
            )
    out.outputs = {t: new_id[i] for t, i in mapping.outputs.items()}
    return out

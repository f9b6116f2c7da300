"""Element-wise regions: the mapping nodes after a producer that a fused output loop computes.

A producer (a matrix call, a depthwise convolution) writes a value laid out as `rows x width`
floats. The element-wise nodes that follow it in the mapping -- `ew`, `fn`, `vec` and host
statements without a reduction (bias `O[n, c, h, w] + B[c]`, `min(relu(Y), 6)`, a residual add,
the GRU's gates and blend) -- form a region: each of its values is a function of the producer's
value at the same position, of other tensors at that position (`full` operands), of one entry of
a vector per row or per column (`row`, `col`), and of constants. A matrix call's value may be
read as several equal-width column pieces (slices of a product whose B is `[Uz | Ur | Uh]`); each
piece is a leaf. The producer's code evaluates the region on the vectors it holds in registers
and stores only the region's exits (values needed later or kernel outputs), so no intermediate
is written to memory. Everything here is read from the mapping; nothing depends on a benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from isamap.codegen.loops import VECTOR_FNS, VECTOR_OPS
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.target import Target
from isamap.ir.kernel import Access, Binary, Const, Expr, Kernel, Unary
from isamap.ir.mapping import MapNode

__all__ = ["Leaf", "Region", "find_region"]


@dataclass(frozen=True)
class Leaf:
    """An input of the region: a piece of the producer, an operand, or a constant."""

    kind: str  # "piece", "full", "row", "col", "const"
    ref: int = 0  # piece number, or the operand's node id
    value: float = 0.0  # a constant's value
    extent: int = 0  # a row operand's length (entry `row % extent`)


@dataclass
class Region:
    """Leaves, the steps computing values from them (in order), the exits to store."""

    rows: int
    width: int
    starts: list[int]  # each piece's first column in the producer's value
    leaves: list[Leaf] = field(default_factory=list)
    steps: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # name, op, args
    value: dict[int, str] = field(default_factory=dict)  # mapping node -> its value's name
    members: set[int] = field(default_factory=set)  # nodes the region makes unnecessary
    exits: list[int] = field(default_factory=list)  # nodes whose values are stored

    @property
    def operands(self) -> list[int]:
        """The node ids of the non-constant operands, in the order the code indexes them."""
        return list(dict.fromkeys(x.ref for x in self.leaves if x.kind in ("full", "row", "col")))

    def is_trivial(self) -> bool:
        return not self.steps

    def code(
        self,
        row: str,
        col: str,
        count: str | None,
        pieces: Sequence[str],
        operand: Callable[[int], str],
        store: Callable[[int, str], str] | None,
    ) -> tuple[list[str], dict[int, str]]:
        """C statements evaluating the region on one vector at (`row`, `col`): `pieces` are the
        producer's vectors, `operand(node)` the pointer of an operand; `count` (when not None)
        the number of valid lanes. Returns the statements and each exit's value name; with
        `store`, the statements end with `store(exit, value)` for every exit."""
        lines: list[str] = []
        names: dict[str, str] = {}
        for k, leaf in enumerate(self.leaves):
            name = f"l{k}"
            if leaf.kind == "piece":
                expr = pieces[leaf.ref]
            elif leaf.kind == "const":
                expr = f"vset1({leaf.value!r}f)"
            elif leaf.kind == "row":
                idx = row if leaf.extent == self.rows else f"({row}) % {leaf.extent}"
                expr = f"vset1({operand(leaf.ref)}[{idx}])"
            else:
                at = col if leaf.kind == "col" else f"(size_t)({row}) * {self.width} + {col}"
                ptr = f"{operand(leaf.ref)} + {at}"
                expr = f"vload({ptr})" if count is None else f"vloadn({ptr}, {count})"
            names[name] = name
            lines.append(f"V {name} = {expr};")
        for name, op, args in self.steps:
            fn = VECTOR_FNS.get(op) if len(args) == 1 else VECTOR_OPS.get(op)
            lines.append(f"V {name} = {fn}({', '.join(args)});")
        exits = {e: self.value[e] for e in self.exits}
        if store is not None:
            lines += [store(e, v) for e, v in exits.items()]
        return lines, exits


def _root(node_id: int, nodes: Sequence[MapNode]) -> int:
    while nodes[node_id].op == "reshape":
        node_id = nodes[node_id].args[0]
    return node_id


class _Builder:
    """Grows a region forward through the mapping from its producer."""

    def __init__(
        self,
        nodes: Sequence[MapNode],
        kernel: Kernel,
        target: Target,
        producer: int,
        rows: int,
        width: int,
        unavailable: set[int],
    ) -> None:
        self.nodes, self.kernel, self.target = nodes, kernel, target
        self.unavailable = unavailable
        self.producer = producer
        self.region = Region(rows, width, [])
        self.size = rows * width
        self.leaf_of: dict[Leaf, str] = {}

    def leaf(self, leaf: Leaf) -> str:
        if leaf not in self.leaf_of:
            self.leaf_of[leaf] = f"l{len(self.region.leaves)}"
            self.region.leaves.append(leaf)
        return self.leaf_of[leaf]

    def step(self, op: str, args: tuple[str, ...]) -> str:
        name = f"v{len(self.region.steps)}"
        self.region.steps.append((name, op, args))
        return name

    def operand_ok(self, node_id: int) -> bool:
        """An operand must exist before the producer runs: an input or an earlier node."""
        root = _root(node_id, self.nodes)
        if root in self.unavailable:  # fused away or read in place: no buffer holds it
            return False
        return self.nodes[root].op == "input" or root < self.producer

    def arg_value(self, node_id: int) -> str | None:
        """The region value or full operand an argument of the region's size denotes."""
        v = self.region.value.get(node_id)
        if v is not None:
            return v
        if math.prod(self.nodes[node_id].shape) == self.size and self.operand_ok(node_id):
            return self.leaf(Leaf("full", _root(node_id, self.nodes)))
        return None

    def expr(
        self, e: Expr, out_shape: Sequence[int], indices: Sequence[str], args: dict[str, int]
    ) -> str | None:
        if isinstance(e, Const):
            return self.leaf(Leaf("const", value=float(e.value)))
        if isinstance(e, Unary):
            if e.fn not in VECTOR_FNS:
                return None
            x = self.expr(e.arg, out_shape, indices, args)
            return None if x is None else self.step(e.fn, (x,))
        if isinstance(e, Binary):
            if e.op not in VECTOR_OPS:
                return None
            x = self.expr(e.lhs, out_shape, indices, args)
            y = self.expr(e.rhs, out_shape, indices, args)
            return None if x is None or y is None else self.step(e.op, (x, y))
        assert isinstance(e, Access)
        node_id = args[e.tensor]
        names = [a.plain_index() for a in e.indices]
        if list(names) == list(indices):
            return self.arg_value(node_id)
        if len(names) != 1 or names[0] not in indices or not self.operand_ok(node_id):
            return None
        pos = list(indices).index(str(names[0]))
        stride, extent = math.prod(out_shape[pos + 1 :]), out_shape[pos]
        if stride == self.region.width and self.region.rows % extent == 0:
            return self.leaf(Leaf("row", _root(node_id, self.nodes), extent=extent))
        if stride == 1 and extent == self.region.width:
            return self.leaf(Leaf("col", _root(node_id, self.nodes)))
        return None

    def try_node(self, n: MapNode) -> bool:
        """Add node `n` to the region if it is element-wise over region values; rolls back the
        leaves and steps it added when it is not."""
        if math.prod(n.shape) != self.size or not any(a in self.region.value for a in n.args):
            return False
        saved = (len(self.region.leaves), len(self.region.steps), dict(self.leaf_of))
        result = self._node_value(n)
        if result is None:
            del self.region.leaves[saved[0] :]
            del self.region.steps[saved[1] :]
            self.leaf_of = saved[2]
            return False
        self.region.value[n.id] = result
        self.region.members.add(n.id)
        return True

    def _node_value(self, n: MapNode) -> str | None:
        a = n.attrs
        if n.op in ("ew", "fn", "vec"):
            if n.op == "vec":
                form = elementwise_form(self.target.instruction(str(a["instruction"])).semantics)
                if form is None:
                    return None
                op = form.op
            else:
                op = str(a["op"] if n.op == "ew" else a["fn"])
            if any(tuple(self.nodes[x].shape) != tuple(n.shape) for x in n.args):
                return None
            vals = [self.arg_value(x) for x in n.args]
            if any(v is None for v in vals):
                return None
            table = VECTOR_FNS if len(vals) == 1 else VECTOR_OPS
            if op not in table or len(vals) > 2:
                return None
            return self.step(op, tuple(str(v) for v in vals))
        if n.op == "host_stmt":
            s = self.kernel.statements[int(str(a["index"]))]
            reads = list(dict.fromkeys(acc.tensor for acc in s.accesses()))
            if s.accumulate or s.reduced_indices() or len(n.args) != len(reads):
                return None
            ext = self.kernel.extents[int(str(a["index"]))]
            out_shape = [ext[i] for i in s.indices]
            if tuple(out_shape) != tuple(n.shape):
                return None
            return self.expr(s.expr, out_shape, s.indices, dict(zip(reads, n.args, strict=True)))
        return None


def find_region(
    nodes: Sequence[MapNode],
    kernel: Kernel,
    target: Target,
    producer: int,
    rows: int,
    width: int,
    required: set[int],
    sliced: bool,
    unavailable: set[int] = frozenset(),  # type: ignore[assignment]
) -> Region | None:
    """The element-wise region after `producer` (its value `rows x width`, or with `sliced`,
    equal column pieces of it), or None when the producer's value is needed as it is (some user
    outside the region reads it). `required`: nodes whose values the kernel returns."""
    users: dict[int, list[int]] = {}
    for n in nodes:
        for a in n.args:
            users.setdefault(a, []).append(n.id)
    b = _Builder(nodes, kernel, target, producer, rows, width, set(unavailable))
    region = b.region
    # views of the producer: reshapes keep its layout; slices along the last axis are pieces
    offsets: dict[int, tuple[int, int]] = {producer: (0, width)}
    for n in nodes[producer + 1 :]:
        if not n.args or n.args[0] not in offsets:
            continue
        start, length = offsets[n.args[0]]
        if n.op == "reshape":
            offsets[n.id] = (start, length)
        elif (
            n.op == "slice"
            and sliced
            and int(str(n.attrs["axis"])) == len(nodes[n.args[0]].shape) - 1
        ):
            offsets[n.id] = (start + int(str(n.attrs["start"])), int(str(n.attrs["length"])))
    leaf_widths = {
        length
        for v, (_, length) in offsets.items()
        if any(nodes[u].op not in ("reshape", "slice") for u in users.get(v, [])) or v in required
    }
    if len(leaf_widths) != 1:
        return None
    piece_width = leaf_widths.pop()
    if sliced:
        total = width
        region.width = piece_width
        b.size = rows * piece_width
        if total % piece_width:
            return None
    for v, (start, length) in offsets.items():
        if v == producer:
            continue
        region.members.add(v)
        if length == piece_width:
            if start not in region.starts:
                region.starts.append(start)
            region.value[v] = b.leaf(Leaf("piece", region.starts.index(start)))
    if piece_width == width:
        region.value[producer] = b.leaf(Leaf("piece", 0))
        region.starts = [0]
    for n in nodes[producer + 1 :]:
        if n.id in region.members:
            continue
        if n.op == "reshape" and n.args[0] in region.value:
            region.value[n.id] = region.value[n.args[0]]
            region.members.add(n.id)
            continue
        b.try_node(n)

    # exits: the producer and computed region values that are read outside or returned
    # (through reshapes, which stay views of the stored value); a slice read outside would
    # need the whole product
    def needed(v: int) -> bool:
        stack = [v]
        while stack:
            cur = stack.pop()
            if cur in required:
                return True
            for u in users.get(cur, []):
                if nodes[u].op == "reshape" and (u in region.members or cur == producer):
                    stack.append(u)
                elif u not in region.members:
                    return True
        return False

    for v in [producer, *sorted(region.members)]:
        if nodes[v].op == "slice" and needed(v):
            return None
        if nodes[v].op in ("reshape", "slice") and v != producer:
            continue
        if needed(v):
            region.exits.append(v)
    if producer in region.exits:
        if region.starts != [0] or region.width != width:
            return None
        region.value.setdefault(producer, b.leaf(Leaf("piece", 0)))
    # reshapes of exits are emitted as views of the stored value, not skipped
    for v in list(region.members):
        if nodes[v].op == "reshape" and _root(v, nodes) in region.exits:
            region.members.discard(v)
    return region

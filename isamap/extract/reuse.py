"""Reusing one extraction for kernels that differ only in the values of their constants.

A quantized network gives every layer its own scales, so a GRU's fifty steps are fifty kernels
that differ in a few floats. Each is still saturated on its own: a rule may test a constant's
value (a scale the store must represent exactly), so the e-graphs can differ. Where two
saturated e-graphs are the same but for their float literals, renamed one to one, and the two
kernels the same but for those values, every e-node costs the same in both (no cost reads a
float's value), so extraction would choose the same e-nodes again: the choice is carried over
e-class by e-class and lowered from the new e-graph, with its own constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isamap.egraph.dump import EGraphDump, ENode, Literal, Ref
from isamap.extract.extractor import Choice
from isamap.ir.kernel import Kernel

__all__ = ["EGraphShape", "egraph_shape", "same_up_to_floats", "transport"]

#: A float in a kernel's text (a statement's constant), not an index or a dimension.
_FLOAT = re.compile(r"(?<![\w.])-?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?")

_Node = tuple[str, tuple[Literal | tuple[str, str] | None, ...]]


@dataclass(frozen=True)
class EGraphShape:
    """A saturated e-graph and its kernel with every float literal left out (`key`, hashable),
    and those floats in the order the key meets them."""

    key: tuple[object, ...]
    floats: tuple[float, ...]


def egraph_shape(dump: EGraphDump, kernel: Kernel) -> EGraphShape:
    """The e-graph's e-classes (ids, e-nodes in order, shapes), its results, and the kernel's
    text, with float literals masked."""
    floats: list[float] = []
    classes: list[tuple[str, tuple[_Node, ...], tuple[int, ...]]] = []
    for cid in sorted(dump.classes):
        nodes = tuple((n.op, tuple(_mask(a, floats) for a in n.args)) for n in dump.classes[cid])
        classes.append((cid, nodes, dump.shapes.get(cid, ())))
    text = str(kernel)
    floats.extend(float(m.group()) for m in _FLOAT.finditer(text))
    key = (tuple(classes), tuple(sorted(dump.results.items())), _FLOAT.sub("#", text))
    return EGraphShape(key, tuple(floats))


def _mask(arg: Literal | Ref, floats: list[float]) -> Literal | tuple[str, str] | None:
    if isinstance(arg, Ref):
        return ("ref", arg.eclass)
    if isinstance(arg, float):
        floats.append(arg)
        return None
    return arg


def same_up_to_floats(a: EGraphShape, b: EGraphShape) -> bool:
    """Whether `b` is `a` with its floats renamed one to one (equal floats stay equal, distinct
    ones distinct): then the two e-graphs share every e-node and every cost."""
    if a.key != b.key or len(a.floats) != len(b.floats):
        return False
    forward: dict[float, float] = {}
    backward: dict[float, float] = {}
    for x, y in zip(a.floats, b.floats, strict=True):
        if forward.setdefault(x, y) != y or backward.setdefault(y, x) != x:
            return False
    return True


def transport(choice: Choice, source: EGraphDump, target: EGraphDump) -> Choice:
    """`choice` (an e-node per e-class of `source`) as the same e-nodes of `target`, an e-graph
    of the same shape (`same_up_to_floats`): each at its place in its e-class."""
    out: dict[str, ENode] = {}
    for cid, node in choice.items():
        index = next(i for i, n in enumerate(source.classes[cid]) if n is node or n == node)
        out[cid] = target.classes[cid][index]
    return out

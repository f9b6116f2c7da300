"""A saturated e-graph as plain Python data: e-classes, e-nodes, and the shape of every e-class.

Built from egglog's JSON serialisation, so extraction, printing and cost models never touch egglog.
Shapes are the e-graph's own analysis (the `shape` function of `rules/sorts.egg`); only an e-class
egglog left without one (a term text loaded from outside, a rule checker's instance) gets it from
the constructor table here, and `inferred_shapes` counts those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from isamap.egraph.vocabulary import (
    LIST_CONSTRUCTORS,
    TENSOR_CONSTRUCTORS,
    IllShapedError,
    shape_of,
)
from isamap.ir.kernel import Kernel

__all__ = ["TENSOR_OPS", "EGraphDump", "ENode", "Literal", "Ref", "parse_dims"]

#: Constructors of the Tensor and TensorList sorts (rules/sorts.egg), the nodes extraction sees.
TENSOR_OPS = TENSOR_CONSTRUCTORS | LIST_CONSTRUCTORS

Literal = int | float | str


@dataclass(frozen=True)
class Ref:
    """A child that is an e-class (a tensor or tensor list), not a literal."""

    eclass: str


@dataclass(frozen=True)
class ENode:
    """One e-node: its constructor, its arguments (literals or e-class refs) and its e-class."""

    op: str
    args: tuple[Literal | Ref, ...]
    eclass: str
    # the children, once: extraction asks for them millions of times
    _refs: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        refs = tuple(a.eclass for a in self.args if isinstance(a, Ref))
        object.__setattr__(self, "_refs", refs)

    def refs(self) -> tuple[str, ...]:
        return self._refs

    def literals(self) -> tuple[Literal, ...]:
        return tuple(a for a in self.args if not isinstance(a, Ref))

    def int_arg(self, index: int) -> int:
        value = self.args[index]
        assert isinstance(value, int), (self.op, index, value)
        return value

    def str_arg(self, index: int) -> str:
        value = self.args[index]
        assert isinstance(value, str), (self.op, index, value)
        return value


def parse_dims(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",")) if text else ()


def _literal(sort: str, op: str) -> Literal:
    if sort == "i64":
        return int(op)
    if sort == "f64":
        return float(op)
    if sort == "String":
        value = json.loads(op)
        assert isinstance(value, str)
        return value
    return op


@dataclass
class EGraphDump:
    """E-classes (id -> e-nodes), the e-class of each kernel result, and per-class shapes."""

    classes: dict[str, list[ENode]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # e-class -> tensor it holds re-laid out
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inferred_shapes: int = 0  # e-classes whose shape the e-graph did not hold (table-inferred)

    @property
    def enodes(self) -> int:
        return sum(len(nodes) for nodes in self.classes.values())

    @staticmethod
    def from_json(text: str, kernel: Kernel) -> EGraphDump:
        data = json.loads(text)
        nodes: dict[str, dict[str, object]] = data["nodes"]
        sort_of = {cid: str(info.get("type")) for cid, info in data["class_data"].items()}
        dump = EGraphDump()
        shape_nodes: list[tuple[str, str]] = []  # (tensor e-class, e-class of its shape value)
        values: dict[str, str] = {}  # primitive e-class -> its literal text
        for node in nodes.values():
            op = str(node["op"])
            children = node["children"]
            assert isinstance(children, list)
            if not children:
                values[str(node["eclass"])] = op
            if op == "shape" and len(children) == 1:
                shape_nodes.append((str(nodes[children[0]]["eclass"]), str(node["eclass"])))
                continue
            args: list[Literal | Ref] = []
            for child in children:
                cnode = nodes[child]
                csort = sort_of.get(str(cnode["eclass"]), "")
                if csort in ("i64", "f64", "String"):
                    args.append(_literal(csort, str(cnode["op"])))
                else:
                    args.append(Ref(str(cnode["eclass"])))
            if op == "Result":
                name, ref = args
                assert isinstance(name, str) and isinstance(ref, Ref)
                dump.results[name] = ref.eclass
            elif op == "Part":
                name, ref = args
                assert isinstance(name, str) and isinstance(ref, Ref)
                dump.labels.setdefault(ref.eclass, name)
            elif op in TENSOR_OPS:
                enode = ENode(op, tuple(args), str(node["eclass"]))
                dump.classes.setdefault(enode.eclass, []).append(enode)
        for cid, value in shape_nodes:
            if cid in dump.classes and value in values:
                dump.shapes[cid] = parse_dims(json.loads(values[value]))
        known = len(dump.shapes)
        dump.shapes = _infer_shapes(dump.classes, kernel, dump.shapes)
        dump.inferred_shapes = len(dump.shapes) - known
        return dump

    def to_json(self) -> str:
        return json.dumps(
            {
                "results": self.results,
                "classes": {
                    cid: [
                        {
                            "op": n.op,
                            "args": [
                                {"eclass": a.eclass} if isinstance(a, Ref) else a for a in n.args
                            ],
                        }
                        for n in nodes
                    ]
                    for cid, nodes in self.classes.items()
                },
                "shapes": {cid: list(s) for cid, s in self.shapes.items()},
            },
            indent=1,
        )

    def to_dot(self) -> str:
        """Graphviz text: one cluster per e-class, edges from e-nodes to child e-classes."""
        lines = ["digraph egraph {", "  compound=true; node [shape=box, fontsize=10];"]
        for cid, nodes in self.classes.items():
            lines.append(f'  subgraph "cluster_{cid}" {{ label="{cid}";')
            for i, n in enumerate(nodes):
                label = " ".join([n.op, *(str(x) for x in n.literals())]).replace('"', "'")
                lines.append(f'    "{cid}.{i}" [label="{label}"];')
            lines.append("  }")
        for cid, nodes in self.classes.items():
            for i, n in enumerate(nodes):
                for ref in n.refs():
                    if self.classes.get(ref):
                        lines.append(f'  "{cid}.{i}" -> "{ref}.0" [lhead="cluster_{ref}"];')
        lines.append("}")
        return "\n".join(lines)


def _node_shape(
    n: ENode, shapes: Mapping[str, tuple[int, ...]], kernel: Kernel
) -> tuple[int, ...] | None:
    """The shape of `n` by the constructor table's rule, once its operands' shapes are known."""
    if n.op == "Input":
        return tuple(kernel.shapes[n.str_arg(0)])
    if n.op == "HostStmt":
        return tuple(kernel.shapes[kernel.statements[n.int_arg(0)].target])
    operands: list[tuple[int, ...]] = []
    for arg in n.args:
        if isinstance(arg, Ref):
            shape = shapes.get(arg.eclass)
            if shape is None:
                return None
            operands.append(shape)
    try:
        return shape_of(n.op, n.literals(), operands)
    except IllShapedError:
        return None


def _infer_shapes(
    classes: Mapping[str, list[ENode]], kernel: Kernel, known: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """`known` completed by the constructor table's rules, for the e-classes it lacks."""
    shapes = dict(known)
    changed = True
    while changed:
        changed = False
        for cid, nodes in classes.items():
            if cid in shapes:
                continue
            for n in nodes:
                if n.op in ("TNil", "TCons"):
                    break
                shape = _node_shape(n, shapes, kernel)
                if shape is not None:
                    shapes[cid] = shape
                    changed = True
                    break
    return shapes

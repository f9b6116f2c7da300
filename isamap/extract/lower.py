"""Chosen e-nodes -> Mapping: name each operation, the unit that runs it, its attributes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from isamap.egraph.dump import EGraphDump, ENode, Ref
from isamap.egraph.vocabulary import constructor
from isamap.extract.cost import CostModel, op_cost
from isamap.hardware.conv_form import instruction_conv_form
from isamap.hardware.matrix_form import matrix_form
from isamap.ir.conv import conv_call_geometry
from isamap.ir.mapping import Attr, MapNode, Mapping

if TYPE_CHECKING:
    from isamap.egraph.saturate import Saturation

__all__ = ["build_mapping", "enode_operation", "tensor_args"]


def enode_operation(node: ENode) -> tuple[str, str, dict[str, Attr]]:
    """The mapping op, the unit kind and the attributes of an e-node (before target details)."""
    row = constructor(node.op)
    return row.mapping_op, row.unit, dict(zip(row.literals, node.literals(), strict=True))


def tensor_args(node: ENode, dump: EGraphDump, choice: dict[str, ENode]) -> list[str]:
    """E-classes of a node's tensor arguments, with TensorLists flattened."""
    out: list[str] = []
    for arg in node.args:
        if not isinstance(arg, Ref):
            continue
        sub = choice.get(arg.eclass)
        if sub is not None and sub.op in ("TCons", "TNil"):
            while sub is not None and sub.op == "TCons":
                head, tail = sub.args
                assert isinstance(head, Ref) and isinstance(tail, Ref)
                out.append(head.eclass)
                sub = choice.get(tail.eclass)
        else:
            out.append(arg.eclass)
    return out


def build_mapping(
    sat: Saturation, choice: dict[str, ENode], model: CostModel, total: float
) -> Mapping:
    """The Mapping that `choice` (an e-node per e-class) denotes for `sat`'s kernel outputs."""
    dump, kernel = sat.dump, sat.kernel
    names = {cid: name for name, cid in reversed(list(dump.results.items()))}
    dump = sat.dump
    mapping = Mapping(kernel.name, sat.target.name, model.name, total)
    ids: dict[str, int] = {}

    def visit(cid: str) -> int:
        # iterative post-order keeps deep mappings clear of Python's recursion limit
        stack: list[tuple[str, bool]] = [(cid, False)]
        while stack:
            cur, ready = stack.pop()
            if cur in ids:
                continue
            node = choice[cur]
            args = tensor_args(node, dump, choice)
            if not ready:
                stack.append((cur, True))
                stack.extend((a, False) for a in reversed(args) if a not in ids)
                continue
            label = names.get(cur)
            if label is None and cur in dump.labels:
                label = f"{dump.labels[cur]} (re-laid out)"
            ids[cur] = _emit(sat, mapping, node, [ids[a] for a in args], model, label)
        return ids[cid]

    for name in kernel.outputs():
        mapping.outputs[name] = visit(dump.results[name])
    for name, cid in dump.results.items():  # intermediates the mapping computes anyway
        if cid in ids and name not in mapping.outputs:
            mapping.outputs[name] = ids[cid]
    return mapping


def _emit(
    sat: Saturation,
    mapping: Mapping,
    node: ENode,
    args: list[int],
    model: CostModel,
    tensor: str | None,
) -> int:
    dump = sat.dump
    op, unit, attrs = enode_operation(node)
    if op == "instr":
        instruction = sat.target.instructions[str(attrs["instruction"])]
        # an instruction that chains a function onto its product applies it on every call
        attrs.setdefault("epilogue", instruction.chain)
        if node.op in ("InstrBias", "InstrBiasScale", "InstrTapsBias"):  # onto a bias row
            attrs["bias"] = 1
        if "narrow" in attrs and not attrs["narrow"]:  # a tap accumulation's store: no cast
            del attrs["narrow"], attrs["scale"]
        unit = instruction.unit
        form = matrix_form(instruction.semantics)
        assert form is not None
        counts = [math.ceil(int(str(attrs[r])) / form.tile(r)) for r in "bmnk"]
        if "taps" in attrs:  # a tap accumulation: each tap's depth padded on its own
            counts[3] *= int(str(attrs["taps"]))
        attrs["tiles"] = "x".join(str(c) for c in counts)
        attrs["tile"] = "x".join(str(form.tile(r)) for r in "bmnk")
    if op == "instr_conv":
        _conv_attrs(sat, node, attrs)
        unit = sat.target.instructions[str(attrs["instruction"])].unit
    if op == "vec":
        unit = sat.target.instructions[str(attrs["instruction"])].unit
    if op == "host_stmt":
        attrs["statement"] = str(sat.kernel.statements[int(str(attrs["index"]))])
    analytic = op_cost(node, dump, sat.target, sat.kernel)
    node_id = len(mapping.nodes)
    mapping.nodes.append(
        MapNode(
            id=node_id,
            op=op,
            args=tuple(args),
            attrs=attrs,
            shape=dump.shapes.get(node.eclass, ()),
            unit=unit,
            cost=model.node_cost(node, dump),
            tensor=tensor,
            cycles=analytic.cycles,
            counts=dict(analytic.counts),
        )
    )
    return node_id


def _conv_attrs(sat: Saturation, node: ENode, attrs: dict[str, Attr]) -> None:
    """A direct-convolution call's operand shapes (its geometry needs them), its GEMM view
    (b, m pixels, n kernels, k channels x taps) and its blocks, for listings and reports."""
    x, w = (sat.dump.shapes[r] for r in node.refs()[:2])
    g = conv_call_geometry(str(attrs["conv"]), x, w)
    form = instruction_conv_form(sat.target.instructions[str(attrs["instruction"])])
    assert form is not None
    attrs.update(x_shape=",".join(map(str, x)), w_shape=",".join(map(str, w)))
    attrs["epilogue"] = attrs.get("epilogue") or None  # "" in the e-graph: none
    if node.op == "InstrConvBias":  # the call accumulates onto its third operand, a bias row
        attrs["bias"] = 1
    attrs.update(b=g.b, m=g.pixels, n=g.k, k=g.c * g.taps)
    mb, nb, kb = form.blocks(g)
    attrs["tiles"] = f"{g.b}x{mb}x{nb}x{kb * g.taps}"
    attrs["tile"] = f"1x{form.stripe}x{form.atom_k}x{form.atom_c}"

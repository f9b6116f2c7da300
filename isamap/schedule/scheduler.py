"""Mapping -> Program: every matrix instruction call gets a tile schedule from a strategy.

A schedule leaves here only if its tiles fit the memories the instruction declares for its
operands (`hardware.footprint`), so nothing downstream times a program the machine would reject.
"""

from __future__ import annotations

from functools import lru_cache

from isamap.hardware.direct_conv import best_conv_schedule, conv_call, conv_listing, conv_plan
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel, CallTiming, call_timing, tap_call
from isamap.ir.conv import ConvGeometry, conv_call_geometry
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.mapping import MapNode, Mapping
from isamap.ir.program import MatmulCall, Program, ScheduledCall, TileSchedule
from isamap.ir.taps import TapGeometry
from isamap.schedule.registry import strategy as strategy_named

__all__ = ["best_call", "conv_geometry_of", "matmul_call_of", "schedule_mapping"]


def matmul_call_of(node: MapNode, model: ArrayModel) -> MatmulCall:
    """The MatmulCall an `instr` node of a mapping stands for."""
    a = node.attrs
    epilogue = a.get("epilogue")
    call = MatmulCall(
        node=node.id,
        instruction=str(a["instruction"]),
        b=int(str(a["b"])),
        m=int(str(a["m"])),
        n=int(str(a["n"])),
        k=int(str(a["k"])),
        block=model.block,
        epilogue=str(epilogue) if epilogue else None,
        bias=bool(a.get("bias")),
        scale=float(str(a["scale"])) if a.get("narrow") else None,
        narrow=str(a["narrow"]) if a.get("narrow") else None,
    )
    if a.get("geometry") is None:
        return call
    return tap_call(call, TapGeometry.parse(str(a["geometry"])), model.block[2])


@lru_cache(maxsize=4096)
def _cached(
    target_key: int,
    target: Target,
    name: str,
    dims: tuple[int, int, int, int, str, str],
    strategy: str,
) -> tuple[TileSchedule, CallTiming]:
    model = ArrayModel.for_instruction(target, name)
    b, m, n, k, extra, taps = dims
    call = MatmulCall(0, name, b, m, n, k, model.block, bias=extra == "bias")
    if taps:  # k is each tap's depth: the call stacks the taps, each padded to the block
        call = tap_call(call, TapGeometry.parse(taps), model.block[2])
    chosen = strategy_named(strategy)(model, call, target)
    over = model.layout.overruns(chosen)
    if over:  # every strategy filters by `fits`; this keeps any other one honest too
        raise IsamapError(
            f"schedule strategy '{strategy}' chose {chosen.describe()} for {name}, which does "
            f"not fit: {over[0].message('memory')}",
            SourceLoc(target.path),
        )
    return chosen, call_timing(model, call, chosen)


def best_call(
    target: Target,
    name: str,
    b: int,
    m: int,
    n: int,
    k: int,
    strategy: str = "heuristic",
    bias: bool = False,
    taps: str = "",
) -> tuple[TileSchedule, CallTiming]:
    """The schedule `strategy` picks for a call of this shape (onto a per-column bias row when
    `bias`), and its timing (memoised); with `taps` (a `TapGeometry`'s text) the call is that tap
    accumulation, `k` each tap's depth."""
    return _cached(id(target), target, name, (b, m, n, k, "bias" if bias else "", taps), strategy)


def _names(target: Target, call: MatmulCall) -> dict[str, str]:
    """The target's names for a call's listing: instructions by role, memories, epilogue."""
    model = ArrayModel.for_instruction(target, call.instruction)
    ins = target.instruction(call.instruction)
    form = matrix_form(ins.semantics)
    names = dict(model.names)
    if form is not None:
        names["in_memory"] = ins.operands[form.lhs]
        names["out_memory"] = ins.operands[form.out]
    if call.epilogue and call.epilogue in ins.epilogues:
        names["epilogue_by"] = ins.name
    return names


def schedule_mapping(mapping: Mapping, target: Target, strategy: str = "heuristic") -> Program:
    """Schedule every instruction call of `mapping` with `strategy` (by name)."""
    strategy_named(strategy)  # an unknown name fails before any work
    program = Program(mapping.kernel, mapping.target, strategy)
    for node in mapping.instruction_calls():
        if node.op == "instr_conv":
            program.calls.append(_conv_scheduled(mapping, node, target))
            continue
        model = ArrayModel.for_instruction(target, str(node.attrs["instruction"]))
        call = matmul_call_of(node, model)
        taps = call.taps
        k = call.k if taps is None else taps.channels
        geometry = "" if taps is None else taps.to_string()
        chosen, _ = best_call(
            target, call.instruction, call.b, call.m, call.n, k, strategy, call.bias, geometry
        )
        program.calls.append(
            ScheduledCall(call, chosen, strategy, _names(target, call), model.systolic)
        )
    return program


def conv_geometry_of(mapping: Mapping, node: MapNode) -> ConvGeometry:
    """The geometry of a mapping's direct-convolution call, from its literal and operands."""
    x, w = (mapping.nodes[a].shape for a in node.args[:2])
    return conv_call_geometry(str(node.attrs["conv"]), tuple(x), tuple(w))


def _conv_scheduled(mapping: Mapping, node: MapNode, target: Target) -> ScheduledCall:
    """A direct-convolution call with its schedule (`direct_conv.best_conv_schedule`; the
    strategies tile GEMMs, so one model serves every strategy name) and its listing."""
    name = str(node.attrs["instruction"])
    g = conv_geometry_of(mapping, node)
    bias = bool(node.attrs.get("bias"))
    chosen, _ = best_conv_schedule(target, name, g, bias)
    plan = conv_plan(target, name, g)
    epilogue = node.attrs.get("epilogue")
    call = conv_call(node.id, name, g, plan.model, str(epilogue) if epilogue else None, bias)
    names = dict(plan.model.names, in_memory=plan.x_mem, out_memory=plan.out_mem)
    if call.epilogue and call.epilogue in target.instruction(name).epilogues:
        names["epilogue_by"] = name
    lines = tuple(conv_listing(plan, chosen, node.id, "", call.epilogue, names, bias))
    return ScheduledCall(call, chosen, "direct-conv", names, plan.model.systolic, lines)

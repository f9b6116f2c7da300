"""Rewrite rules derived from a target's instruction semantics (ruleset `target`).

A compute instruction whose semantics is a contraction (`C[i, j] += A[i, k] * B[k, j]`) has a matrix
form: its indices play the batch/M/N/K roles the encoder gives every kernel contraction. So one
rule lets it compute any `Bmm`, tiled and zero-padded to its extents; an instruction that reuses the
stationary operand of another with the same semantics runs inside that one's calls. A move
instruction that stores a compute instruction's output with an epilogue (`mvout` with relu) gives a
rule fusing that function into the call, as does an epilogue the compute instruction lists itself.
An instruction whose semantics is elementwise (`Y[i] = sigmoid(X[i])`) runs any `Fn`/`Ew` of that
function, its lanes at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isamap.egraph.computed_rules import ComputedRule, RuleContext, tap_capable
from isamap.egraph.dump import ENode, Ref, parse_dims
from isamap.egraph.requant_rules import requant_rules
from isamap.egraph.term_builder import Builder, Val
from isamap.hardware.conv_form import ConvForm, has_window_access, instruction_conv_form
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.matrix_form import MatrixForm, bias_move, matrix_form, types_fit
from isamap.hardware.target import Instruction, Target
from isamap.ir.conv import ConvGeometry, conv_geometry, conv_literal
from isamap.ir.dtypes import fits
from isamap.ir.einsum import parse_einsum
from isamap.ir.kernel import Kernel
from isamap.ir.window import WindowSpec

__all__ = [
    "DerivedRule",
    "bias_loads",
    "broadcast_reads",
    "conv_bias_operand",
    "conv_epilogues",
    "conv_instructions",
    "conv_rules",
    "derive_rules",
    "eligible_instructions",
    "explain_rules",
    "matrix_instructions",
    "rules_program",
]


@dataclass(frozen=True)
class DerivedRule:
    """One generated rule: its name, the egglog text, and `before -> after` for people."""

    name: str
    text: str
    doc: str


def matrix_instructions(target: Target) -> list[str]:
    """Compute instructions with a matrix form that start a call (not stationary-reusing ones)."""
    return [
        ins.name
        for ins in target.compute_instructions()
        if not ins.reuses_stationary and matrix_form(ins.semantics) is not None
    ]


def eligible_instructions(target: Target, kernel: Kernel | None = None) -> list[str]:
    """The matrix instructions that may compute `kernel`'s products: those whose operand types
    hold the kernel's exactly (`types_fit`: a bf16 instruction for a bf16 kernel, an int8 one
    for an int8 kernel), when any does; else all of them (the types fit none: `compile` refuses
    such a kernel on an integer-only target unless it is quantized)."""
    names = matrix_instructions(target)
    if kernel is None:
        return names
    fitting = [n for n in names if types_fit(target.instructions[n].semantics, kernel)]
    return fitting or names


def derive_rules(target: Target, kernel: Kernel | None = None) -> list[DerivedRule]:
    """The `target` ruleset's rules for `target` (for `kernel`: only its eligible matrix
    instructions), in a stable order."""
    rules: list[DerivedRule] = []
    for name in eligible_instructions(target, kernel):
        ins = target.instructions[name]
        form = matrix_form(ins.semantics)
        assert form is not None
        if ins.chain_bias is not None:  # it always adds a bias (then its function, if any)
            rules.extend(_chained_bias_rules(target, ins))
            continue
        if ins.chain is not None:  # it always applies its function: only products under it
            rules.append(_chained_rule(target, ins, form))
            continue
        rule = f"bmm-to-{name}"
        if form.squares:  # one operand read twice: only a product of one tile with itself
            size = form.tile("m")
            text = (
                f'(rewrite (Bmm b m m m x x) (Instr "{name}" b m m m x x) :when ((<= m {size}))'
                f' :ruleset target :name "{rule}")'
            )
            doc = f"Bmm(b,m,m,m,x,x) with m <= {size} -> {name} ({ins.semantics_text})"
        else:
            text = (
                f'(rewrite (Bmm b m n k x y) (Instr "{name}" b m n k x y)'
                f' :ruleset target :name "{rule}")'
            )
            reading = ", its 1x1 reading" if has_window_access(ins.semantics) else ""
            doc = (
                f"Bmm(b,m,n,k,x,y) -> {name} tiled to {_tile_text(target, name)}"
                f" ({ins.semantics_text}{reading})"
            )
        rules.append(DerivedRule(rule, text, doc))
        out_mem = ins.operands[ins.semantics.statements[0].target]
        dram = target.dram().name
        for store in target.instructions.values():
            if store.kind != "move" or not store.epilogues:
                continue
            store_target = store.semantics.statements[0].target
            reads = {m for t, m in store.operands.items() if t != store_target}
            if out_mem not in reads or store.operands[store_target] != dram:
                continue
            for fn in store.epilogues:
                rule = f"fuse-{fn}-into-{name}-via-{store.name}"
                rules.append(
                    DerivedRule(
                        rule,
                        f'(rewrite (Fn "{fn}" (Instr "{name}" b m n k x y))'
                        f' (InstrAct "{name}" "{fn}" b m n k x y)'
                        f' :ruleset target :name "{rule}")',
                        f"{fn}({name}(x, y)) -> {name}(x, y) with {fn} applied by {store.name}",
                    )
                )
        rules.extend(_bias_rules(target, ins, out_mem, kernel))
        if tap_capable(target, name):
            rules.extend(_taps_rules(target, ins, out_mem, kernel))
        for fn in ins.epilogues:  # the compute instruction applies it itself
            rule = f"fuse-{fn}-into-{name}"
            rules.append(
                DerivedRule(
                    rule,
                    f'(rewrite (Fn "{fn}" (Instr "{name}" b m n k x y))'
                    f' (InstrAct "{name}" "{fn}" b m n k x y)'
                    f' :ruleset target :name "{rule}")',
                    f"{fn}({name}(x, y)) -> {name}(x, y) with {fn} fused in the instruction",
                )
            )
    rules.extend(_elementwise_rules(target))
    plain = [
        n
        for n in eligible_instructions(target, kernel)
        if target.instructions[n].chain is None and target.instructions[n].chain_bias is None
    ]
    taps = [n for n in plain if tap_capable(target, n)]
    rules.extend(DerivedRule(*r) for r in requant_rules(target, plain, taps))  # requant_rules.py
    return rules


def _chained_rule(target: Target, ins: Instruction, form: MatrixForm) -> DerivedRule:
    """`f(Bmm(x, y)) -> name` for an instruction whose semantics chains `f` onto its product."""
    name, fn = ins.name, ins.chain
    rule = f"{fn}-of-bmm-to-{name}"
    if form.squares:
        size = form.tile("m")
        text = (
            f'(rewrite (Fn "{fn}" (Bmm b m m m x x)) (InstrAct "{name}" "{fn}" b m m m x x)'
            f' :when ((<= m {size})) :ruleset target :name "{rule}")'
        )
    else:
        text = (
            f'(rewrite (Fn "{fn}" (Bmm b m n k x y)) (InstrAct "{name}" "{fn}" b m n k x y)'
            f' :ruleset target :name "{rule}")'
        )
    doc = f"{fn}(Bmm(b,m,n,k,x,y)) -> {name} tiled to {_tile_text(target, name)} (chained {fn})"
    return DerivedRule(rule, text, doc)


#: How a per-column bias meets a product [b, m, n] in the e-graph: one bias row for every batch
#: (`Broadcast z [b, m, n] "2"`, z [n]) or one per batch (`"0,2"`, z [b, n]); the rule-name
#: prefix of each.
_BIAS_READS = (("2", "bias"), ("0,2", "batch-bias"))


def _bias_fits(move: Instruction, ins: Instruction, kernel: Kernel | None) -> bool:
    """A kernel whose products the instruction computes in its own types (`types_fit`) may put
    a bias into its accumulator only if every tensor that can be a bias fits the bias move's
    type (an int8 kernel's int32 bias, not an f32 one); float64 numbers (no fit) take any bias.
    A bias is a tensor read broadcast (`broadcast_reads`): the only way a `Broadcast` enters
    the e-graph (the encoder's; `ew-through-layout` re-lays out an existing one), so a tensor
    read whole, as a residual is added, never lands in the accumulator."""
    if kernel is None or not types_fit(ins.semantics, kernel):
        return True
    source = move.semantics.inputs()[0]
    return all(fits(kernel.dtype(t), move.semantics.dtype(source)) for t in broadcast_reads(kernel))


def broadcast_reads(kernel: Kernel) -> set[str]:
    """The tensors an elementwise (`=`) statement of `kernel` reads without some index of the
    tensor it writes: the statement broadcasts them along the missing ones."""
    out: set[str] = set()
    for s in kernel.statements:
        if s.accumulate:
            continue
        written = set(s.indices)
        out.update(a.tensor for a in s.accesses() if not written <= set(a.index_names()))
    return out


def bias_loads(target: Target, ins: Instruction, kernel: Kernel | None = None) -> list[str]:
    """The moves that put a per-column bias into compute instruction `ins`'s output memory from
    DRAM (Gemmini's mvin of D with `repeating_bias`, NVDLA SDP's per-channel bias), in the
    types `kernel` needs (`_bias_fits`): what a call accumulating onto a bias needs."""
    out_mem = ins.operands[ins.semantics.statements[0].target]
    dram = target.dram().name
    return [
        mv.name
        for mv in target.instructions.values()
        if mv.kind == "move"
        and bias_move(mv.semantics)
        and mv.operands[mv.semantics.statements[0].target] == out_mem
        and dram in {m for t, m in mv.operands.items() if t != mv.semantics.statements[0].target}
        and _bias_fits(mv, ins, kernel)
    ]


def _bias_rules(
    target: Target, ins: Instruction, out_mem: str, kernel: Kernel | None = None
) -> list[DerivedRule]:
    """`Instr + bias -> InstrBias` when a move preloads a bias row into the instruction's output
    memory (Gemmini's mvin of D with `repeating_bias`), and the functions its stores apply on
    top (`fuse-relu-into-<name>-bias`)."""
    name = ins.name
    loads = bias_loads(target, ins, kernel)
    if not loads:
        return []
    via = loads[0]
    rules: list[DerivedRule] = []
    for where, prefix in _BIAS_READS:
        for first, second, tag in (("instr", "bias", ""), ("bias", "instr", "-swapped")):
            parts = {"instr": f'(Instr "{name}" b m n k x y)', "bias": f'(Broadcast z s "{where}")'}
            rule = f"{prefix}{tag}-into-{name}-via-{via}"
            rules.append(
                DerivedRule(
                    rule,
                    f'(rewrite (Ew "+" {parts[first]} {parts[second]})'
                    f' (InstrBias "{name}" "" b m n k x y z) :ruleset target :name "{rule}")',
                    f"{name}(x, y) + per-column bias z -> {name} accumulating onto z, preloaded"
                    f" by {via}",
                )
            )
    for fn in _out_functions(target, ins, out_mem):
        rule = f"fuse-{fn}-into-{name}-bias"
        rules.append(
            DerivedRule(
                rule,
                f'(rewrite (Fn "{fn}" (InstrBias "{name}" "" b m n k x y z))'
                f' (InstrBias "{name}" "{fn}" b m n k x y z) :ruleset target :name "{rule}")',
                f"{fn}({name}(x, y) + z) -> {name} onto bias z with {fn} on the way out",
            )
        )
    return rules


def _out_functions(target: Target, ins: Instruction, out_mem: str) -> list[str]:
    """The functions a call of `ins` can apply on its way out: its own epilogues and those of a
    store from its output memory `out_mem` to DRAM."""
    dram = target.dram().name
    fns = list(ins.epilogues)
    for store in target.instructions.values():
        dst = store.semantics.statements[0].target if store.kind == "move" else ""
        reads = {m for t, m in store.operands.items() if t != dst}
        if store.kind == "move" and out_mem in reads and store.operands[dst] == dram:
            fns.extend(f for f in store.epilogues if f not in fns)
    return fns


#: A tap call's arguments after its epilogue's literals, as the rules' patterns bind them (an
#: epilogue with no narrowing yet is `"" 1.0`: no type, scale 1).
_TAPS = "taps b m n k x y"


def _taps_rules(
    target: Target, ins: Instruction, out_mem: str, kernel: Kernel | None = None
) -> list[DerivedRule]:
    """The epilogues of a tap accumulation (`einsum-to-taps`' `InstrTaps`): the same
    accumulator and store as a plain call of `ins`, so the same bias preload (`taps-bias-into-
    ...`: `InstrTapsBias`) and the same functions on the way out (`fuse-relu-into-<name>-taps`:
    `InstrTapsEpi`, onto a bias too). The store's scale and narrowing are
    `requant_rules`'."""
    name = ins.name
    plain = f'(InstrTaps "{name}" g {_TAPS})'
    rules: list[DerivedRule] = []
    loads = bias_loads(target, ins, kernel)
    for via in loads[:1]:
        for where, prefix in _BIAS_READS:
            bias = f'(Broadcast z s "{where}")'
            for lhs, tag in ((f"{plain} {bias}", ""), (f"{bias} {plain}", "-swapped")):
                rule = f"taps-{prefix}{tag}-into-{name}-via-{via}"
                rules.append(
                    DerivedRule(
                        rule,
                        f'(rewrite (Ew "+" {lhs}) (InstrTapsBias "{name}" g "" "" 1.0 taps b m n k'
                        f' x y z) :ruleset target :name "{rule}")',
                        f"taps on {name} + per-column bias z -> the taps accumulating onto z,"
                        f" preloaded by {via}",
                    )
                )
    for fn in _out_functions(target, ins, out_mem):
        fused = [(plain, f'(InstrTapsEpi "{name}" g "{fn}" "" 1.0 {_TAPS})', "")]
        if loads:
            onto = f'(InstrTapsBias "{name}" g "" "" 1.0 {_TAPS} z)'
            fused.append((onto, f'(InstrTapsBias "{name}" g "{fn}" "" 1.0 {_TAPS} z)', "-bias"))
        for lhs, rhs, tag in fused:
            rule = f"fuse-{fn}-into-{name}-taps{tag}"
            rules.append(
                DerivedRule(
                    rule,
                    f'(rewrite (Fn "{fn}" {lhs}) {rhs} :ruleset target :name "{rule}")',
                    f"{fn}(taps on {name}{' + z' if tag else ''}) -> the taps with {fn} on the"
                    " way out",
                )
            )
    return rules


def _chained_bias_rules(target: Target, ins: Instruction) -> list[DerivedRule]:
    """`f(Bmm(x, y) + bias) -> name` for an instruction whose semantics adds a per-column bias
    (then a function) to its product (`D[i, j] = relu(C[i, j] + bias[j])`)."""
    name, fn = ins.name, ins.chain
    rules: list[DerivedRule] = []
    for where, prefix in _BIAS_READS:
        for first, second, tag in (("bmm", "bias", ""), ("bias", "bmm", "-swapped")):
            parts = {"bmm": "(Bmm b m n k x y)", "bias": f'(Broadcast z s "{where}")'}
            lhs = f'(Ew "+" {parts[first]} {parts[second]})'
            if fn is not None:
                lhs = f'(Fn "{fn}" {lhs})'
            rule = f"{fn + '-of-' if fn else ''}{prefix}{tag}-of-bmm-to-{name}"
            rules.append(
                DerivedRule(
                    rule,
                    f'(rewrite {lhs} (InstrBias "{name}" "{fn or ""}" b m n k x y z)'
                    f' :ruleset target :name "{rule}")',
                    f"{fn or 'id'}(Bmm(b,m,n,k,x,y) + bias z) -> {name} tiled to "
                    f"{_tile_text(target, name)} (chained bias{' and ' + fn if fn else ''})",
                )
            )
    return rules


def _elementwise_rules(target: Target) -> list[DerivedRule]:
    rules: list[DerivedRule] = []
    for ins in target.compute_instructions():
        form = elementwise_form(ins.semantics)
        if form is None:
            continue
        rule = f"{'fn' if form.arity == 1 else 'ew'}-{form.op}-to-{ins.name}"
        if form.arity == 1:
            text = f'(rewrite (Fn "{form.op}" x) (VecFn "{ins.name}" x)'
        else:
            text = f'(rewrite (Ew "{form.op}" x y) (VecEw "{ins.name}" x y)'
        rules.append(
            DerivedRule(
                rule,
                f'{text} :ruleset target :name "{rule}")',
                f"elementwise {form.op} -> {ins.name}, {form.lanes} lanes at a time "
                f"({ins.semantics_text})",
            )
        )
    return rules


def _tile_text(target: Target, name: str) -> str:
    form = matrix_form(target.instructions[name].semantics)
    assert form is not None
    return "x".join(f"{r}{form.tile(r)}" for r in "bmnk" if form.tile(r) > 1)


def rules_program(target: Target, kernel: Kernel | None = None) -> str:
    """The egglog text declaring ruleset `target` with every derived rule (for `kernel`)."""
    lines = ["(ruleset target)"]
    for rule in derive_rules(target, kernel):
        lines.append(f"; {rule.name}: {rule.doc}")
        lines.append(rule.text)
    return "\n".join(lines) + "\n"


# -- direct convolution: a computed rule per instruction with window accesses -------------------


def conv_instructions(target: Target, kernel: Kernel | None = None) -> list[str]:
    """The eligible matrix instructions (for `kernel`) that are direct convolutions."""
    return [
        n
        for n in eligible_instructions(target, kernel)
        if instruction_conv_form(target.instructions[n]) is not None
    ]


def _values(values: tuple[int, ...]) -> str:
    """`1..8` for a run of consecutive values, else `1,2,4`."""
    if len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ",".join(str(v) for v in values)


def _conv_rule_doc(ins: Instruction, form: ConvForm) -> str:
    taps = "x".join(str(t) for t in form.max_taps)
    return (
        f"Einsum(Window(x), w) that is a convolution with filters up to {taps}, stride in "
        f"{{{_values(form.strides)}}}, dilation in {{{_values(form.dilations)}}}, padding <= "
        f"{form.max_padding} -> InstrConv {ins.name} (the input read in place, no im2col; "
        f"{ins.semantics_text})"
    )


def conv_epilogues(target: Target, ins: Instruction) -> tuple[str, ...]:
    """The functions applied on the way out of a direct-convolution call: the compute
    instruction's own epilogues and those of a store from its output memory to DRAM (NVDLA's
    SDP applies ReLU to CACC's results as it writes them)."""
    out_mem = ins.operands[ins.semantics.statements[0].target]
    dram = target.dram().name
    fns = list(ins.epilogues)
    for store in target.instructions.values():
        if store.kind != "move" or not store.epilogues:
            continue
        dst = store.semantics.statements[0].target
        reads = {m for t, m in store.operands.items() if t != dst}
        if out_mem in reads and store.operands[dst] == dram:
            fns.extend(store.epilogues)
    return tuple(dict.fromkeys(fns))


def conv_bias_operand(g: ConvGeometry, shape: tuple[int, ...], where: tuple[int, ...]) -> str:
    """How a `Broadcast(z, shape, where)` added to a convolution of geometry `g` (in its Einsum's
    axis order) is a per-output-channel bias: "K" (z is [K]), "BK" (z holds one row per batch,
    [B, K] once reshaped: it varies along the output channel and every batch axis longer than
    one, in the result's order), or "" (it is not one: it varies along a pixel, or along some
    batch axes but not all)."""
    if g.kernel is None or list(where) != sorted(where) or len(set(where)) != len(where):
        return ""
    axes = g.out_axes
    kernel_at = axes.index(g.kernel[0])
    varied = [p for p in where if shape[p] != 1]
    batch = {axes.index(a) for a, e in g.batch if e != 1}
    if kernel_at not in varied or not set(varied) <= batch | {kernel_at}:
        return ""
    if varied == [kernel_at]:
        return "K"
    return "BK" if set(varied) == batch | {kernel_at} and max(batch) < kernel_at else ""


def _apply_conv(target: Target, ins: Instruction, form: ConvForm, bias: bool) -> ComputedRule:
    name, doc = ins.name, _conv_rule_doc(ins, form)
    epilogues = conv_epilogues(target, ins)
    if bias:
        doc += (
            f"; Einsum(...) + per-output-channel bias z -> InstrConvBias {name} accumulating "
            f"onto z (put there by {', '.join(bias_loads(target, ins))})"
        )
    if epilogues:
        doc += f"; f(...) -> the same with f on the way out, f in {epilogues}"
    parents: dict[int, dict[str, list[tuple[str, str, ENode | None]]]] = {}

    def users(ctx: RuleContext, eclass: str) -> list[tuple[str, str, ENode | None]]:
        """(function, e-class, None) of each `Fn f` node over `eclass` with f an epilogue, and
        ("+", e-class, broadcast) of each `Ew "+"` of `eclass` with a broadcast operand."""
        index = parents.get(id(ctx.dump))
        if index is None:
            parents.clear()
            index = parents[id(ctx.dump)] = {}
            for cid, nodes in ctx.dump.classes.items():
                for n in nodes:
                    child = n.args[1] if n.op == "Fn" and len(n.args) == 2 else None
                    if isinstance(child, Ref) and n.str_arg(0) in epilogues:
                        index.setdefault(child.eclass, []).append((n.str_arg(0), cid, None))
                    if not bias or n.op != "Ew" or n.str_arg(0) != "+":
                        continue
                    for side in (1, 2):
                        ref, other = n.args[side], n.args[3 - side]
                        assert isinstance(ref, Ref) and isinstance(other, Ref)
                        for q in ctx.dump.classes.get(other.eclass, ()):
                            if q.op == "Broadcast":
                                index.setdefault(ref.eclass, []).append(("+", cid, q))
        return index.get(eclass, [])

    def with_bias(
        b: Builder, ctx: RuleContext, eclass: str, g: ConvGeometry, call: tuple[str, str, Val, Val]
    ) -> None:
        """Union each per-output-channel bias added to the convolution (e-class `eclass`) with
        the call onto that bias, and each epilogue over that with the call applying it too."""
        shape = g.out_shape()
        for op, cid, q in users(ctx, eclass):
            if op != "+" or q is None:
                continue
            reads = conv_bias_operand(g, shape, parse_dims(q.str_arg(2)))
            z_cid = q.refs()[0]
            z_shape = ctx.dump.shapes.get(z_cid)
            want = (g.k,) if reads == "K" else (g.b, g.k)
            if not reads or z_shape is None or math.prod(z_shape) != math.prod(want):
                continue
            z = b.of(z_cid)
            if z_shape != want:
                z = b.make("Reshape", (z, ",".join(map(str, want))), want)
            b.union(cid, b.make("InstrConvBias", (*call[:2], "", *call[2:], z), shape))
            for fn, top, _ in users(ctx, cid):
                if fn != "+":
                    b.union(top, b.make("InstrConvBias", (*call[:2], fn, *call[2:], z), shape))

    def apply(node: ENode, b: Builder, ctx: RuleContext) -> list[Val]:
        lhs, _, _ = parse_einsum(node.str_arg(0))
        x_ref, w_ref = node.args[1], node.args[2]
        assert isinstance(x_ref, Ref) and isinstance(w_ref, Ref)
        w_shape = ctx.dump.shapes.get(w_ref.eclass)
        out: list[Val] = []
        for window in ctx.dump.classes.get(x_ref.eclass, []):
            if window.op != "Window" or w_shape is None:
                continue
            src = window.args[0]
            assert isinstance(src, Ref)
            src_shape = ctx.dump.shapes.get(src.eclass)
            text = window.str_arg(1)
            if src_shape is None or tuple(n for n, _ in WindowSpec.parse(text).axes) != lhs:
                continue
            g = conv_geometry(node.str_arg(0), text, src_shape, w_shape)
            if isinstance(g, str) or form.supports(g) is not None:
                continue
            literal = conv_literal(node.str_arg(0), text)
            x_val, w_val = b.of(src.eclass), b.of(w_ref.eclass)
            out.append(b.make("InstrConv", (name, literal, "", x_val, w_val), g.out_shape()))
            for fn, cid, _ in users(ctx, node.eclass):  # the function fused on the way out
                if fn != "+":
                    fused = b.make("InstrConv", (name, literal, fn, x_val, w_val), g.out_shape())
                    b.union(cid, fused)
            if bias:
                with_bias(b, ctx, node.eclass, g, (name, literal, x_val, w_val))
        return out

    return ComputedRule(f"einsum-window-to-{name}", "Einsum", doc, apply, "instruction")


def conv_rules(target: Target, kernel: Kernel | None = None) -> list[ComputedRule]:
    """The computed rules mapping a convolution onto each direct-convolution instruction of
    `target` (for `kernel`: the eligible ones). Egglog patterns cannot read a window's affine
    expressions, so the match is computed (`ir.conv.conv_geometry`, `ConvForm.supports`)."""
    rules = []
    for name in conv_instructions(target, kernel):
        form = instruction_conv_form(target.instructions[name])
        assert form is not None
        ins = target.instructions[name]
        rules.append(_apply_conv(target, ins, form, bool(bias_loads(target, ins, kernel))))
    return rules


def explain_rules(target: Target) -> list[tuple[str, str]]:
    """(name, before -> after) of every rule derived from `target`'s instructions, the computed
    direct-convolution rules included, for `isamap targets FILE --explain-rules`."""
    out = [(r.name, r.doc) for r in derive_rules(target)]
    return out + [(r.name, r.doc) for r in conv_rules(target)]

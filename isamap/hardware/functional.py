"""Functional execution of a Mapping: every operation with numpy, instructions tile by tile.

An instruction call is run as the hardware would: its operands are cut into tiles of the
instruction's extents (zero-padded at the edges), each tile is put in the instruction's own operand
layout, and the instruction's declared semantics (its index notation, as an einsum) computes it,
accumulating over K tiles. Numbers are the instruction's (`OperandTypes`): operands in its input
types (float types round to nearest even; an integer type takes only its integers), the
accumulator at its declared width, wrapping or saturating as the instruction says; the kernel's
outputs are stored in their declared types (`reference.store`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace

import numpy as np

from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.matrix_form import MatrixForm, matrix_form, types_fit
from isamap.hardware.target import Instruction, Target
from isamap.ir.conv import ConvGeometry, conv_call_geometry
from isamap.ir.dtypes import DType, dtype, fits
from isamap.ir.einsum import einsum_subscripts
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel, TensorDecl
from isamap.ir.mapping import MapNode, Mapping
from isamap.ir.ops import BINARY, UNARY
from isamap.ir.reference import check_inputs, evaluate, store
from isamap.ir.shapes import check_kernel
from isamap.ir.taps import stack_taps, tap_depth
from isamap.ir.window import WindowSpec

__all__ = [
    "EXACT",
    "OperandTypes",
    "conv_bias_start",
    "operand_types",
    "requantize",
    "run_instruction",
    "run_mapping",
    "run_node",
    "scaling_stores",
    "store_outputs",
]


def _dims(text: object) -> tuple[int, ...]:
    s = str(text)
    return tuple(int(x) for x in s.split(",")) if s else ()


def _tile(x: np.ndarray, starts: tuple[int, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """The tile of `x` at `starts` of `sizes`, zero-padded where it runs past the edge (a fresh
    C-ordered float64 array either way)."""
    src = tuple(slice(s, min(s + n, d)) for s, n, d in zip(starts, sizes, x.shape, strict=True))
    part = x[src]
    if part.shape == sizes:  # inside the edges: nothing to pad
        return np.array(part, dtype=np.float64, order="C")
    out = np.zeros(sizes)
    out[tuple(slice(0, n) for n in part.shape)] = part
    return out


@dataclass(frozen=True)
class _Layouts:
    """How an instruction of one matrix form takes its tiles: [b, m, k] and [b, k, n] tiles
    into its own operand layouts (each role axis split over the instruction's indices of that
    role, row-major, then the indices put in the order the instruction stores them), its output
    back to [b, m, n], its einsum and its tile per role. Worked out once per form, not per tile."""

    lhs_split: tuple[int, ...]
    lhs_axes: tuple[int, ...]
    rhs_split: tuple[int, ...]
    rhs_axes: tuple[int, ...]
    out_axes: tuple[int, ...]
    spec: str
    tiles: tuple[int, int, int, int]  # b, m, n, k

    def lhs(self, tile: np.ndarray) -> np.ndarray:
        return np.transpose(tile.reshape(self.lhs_split), self.lhs_axes)

    def rhs(self, tile: np.ndarray) -> np.ndarray:
        return np.transpose(tile.reshape(self.rhs_split), self.rhs_axes)

    def out(self, result: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
        return np.transpose(result, self.out_axes).reshape(sizes)


def _operand_layout(
    form: MatrixForm, roles: str, operand: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the split of a tile with whole-role axes `roles`, the axes of `operand`'s layout)."""
    canonical = [i for r in roles for i in form.role_indices(r)]
    want = form.indices(operand)
    return tuple(form.extents[i] for i in canonical), tuple(canonical.index(i) for i in want)


#: _Layouts by matrix form (MatrixForm holds dicts, so the key is its fields' values)
_LAYOUTS: dict[tuple[object, ...], _Layouts] = {}


def _layouts(form: MatrixForm) -> _Layouts:
    """`form`'s _Layouts (memoised: a machine run calls one instruction per block)."""
    key = (form.lhs_indices, form.rhs_indices, form.out_indices,
           tuple(form.roles.items()), tuple(form.extents.items()))  # fmt: skip
    hit = _LAYOUTS.get(key)
    if hit is None:
        if len(_LAYOUTS) > 4096:
            _LAYOUTS.clear()
        have = form.indices("out")
        canonical = [i for r in "bmn" for i in form.role_indices(r)]
        b, m, n, k = (form.tile(r) for r in "bmnk")
        lhs_split, lhs_axes = _operand_layout(form, "bmk", "lhs")
        rhs_split, rhs_axes = _operand_layout(form, "bkn", "rhs")
        hit = _LAYOUTS[key] = _Layouts(
            lhs_split,
            lhs_axes,
            rhs_split,
            rhs_axes,
            tuple(have.index(i) for i in canonical),
            form.einsum(),
            (b, m, n, k),
        )
    return hit


@dataclass(frozen=True)
class OperandTypes:
    """The numbers of a matrix instruction: its operands' element types, and what its
    accumulator does past its range (`overflow`: "wrap" or "saturate")."""

    name: str
    lhs: DType
    rhs: DType
    acc: DType
    overflow: str = "wrap"

    def operand(self, role: str, x: np.ndarray) -> np.ndarray:
        """`x` as the instruction's `role` ("lhs" or "rhs") operand: a float type rounds; an
        integer type takes only its own values (anything else is a mapping the types do not fit,
        which compile refuses), IsamapError if not."""
        t = self.lhs if role == "lhs" else self.rhs
        if not t.is_integer:
            return t.hold(x)
        got = t.convert(x)
        if not np.array_equal(got, x):
            at = tuple(int(i) for i in np.argwhere(got != x)[0])
            raise IsamapError(
                f"{self.name}: operand {role} holds {x[at]}, not a {t.name} value: the kernel's "
                "element types do not fit the instruction's (declare integer tensors, or quantize)"
            )
        return x

    def accumulate(self, acc: np.ndarray, product: np.ndarray) -> np.ndarray:
        """`acc + product` held in the accumulator's type: an integer sum wraps or saturates at
        the declared width, once per instruction call (the call's own dot products are exact, as
        the array's wide adders keep them)."""
        return self.acc.hold(acc + product, self.overflow if self.acc.is_integer else None)


#: What an instruction without declared types computes: float64 throughout.
EXACT = OperandTypes("exact", dtype("f64"), dtype("f64"), dtype("f64"))


def operand_types(ins: Instruction, kernel: Kernel | None = None) -> OperandTypes:
    """The numbers matrix instruction `ins` computes `kernel` in: its own types where the
    kernel's types fit them (`matrix_form.types_fit`); float64 (EXACT) where they do not, the
    numbers of a mapping `compile` refuses unless asked to quantize."""
    form = matrix_form(ins.semantics)
    assert form is not None, ins.name
    if kernel is not None and not types_fit(ins.semantics, kernel):
        return EXACT
    of = ins.semantics.dtype
    return OperandTypes(ins.name, dtype(of(form.lhs)), dtype(of(form.rhs)), dtype(of(form.out)),
                        ins.overflow)  # fmt: skip


def run_instruction(
    form: MatrixForm,
    x: np.ndarray,
    y: np.ndarray,
    epilogue: str | None = None,
    types: OperandTypes = EXACT,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """`epilogue(x[b,m,k] . y[b,k,n] + bias)` on an instruction of matrix form `form`, one tile
    at a time, in the instruction's numbers `types`; a per-column `bias` ([n] or [b, n]) is in
    the accumulator before the first product, as the instruction's bias move puts it there."""
    b, m, k = x.shape
    n = y.shape[2]
    layouts = _layouts(form)
    tb, tm, tn, tk = layouts.tiles
    spec = layouts.spec
    out = np.zeros((b, m, n))
    x, y = types.operand("lhs", x), types.operand("rhs", y)
    rows = np.zeros((b, 1, n)) if bias is None else bias_rows(bias, b, n, types)
    for b0 in range(0, b, tb):
        for m0 in range(0, m, tm):
            for n0 in range(0, n, tn):
                acc = np.zeros((tb, tm, tn)) + _tile(rows, (b0, 0, n0), (tb, 1, tn))
                for k0 in range(0, k, tk):
                    xt = _tile(x, (b0, m0, k0), (tb, tm, tk))
                    yt = _tile(y, (b0, k0, n0), (tb, tk, tn))
                    got = np.einsum(spec, layouts.lhs(xt), layouts.rhs(yt))
                    acc = types.accumulate(acc, layouts.out(got, (tb, tm, tn)))
                if epilogue is not None:
                    acc = UNARY[epilogue].numpy(acc)
                bs, ms, ns = min(tb, b - b0), min(tm, m - m0), min(tn, n - n0)
                out[b0 : b0 + bs, m0 : m0 + ms, n0 : n0 + ns] = acc[:bs, :ms, :ns]
    return out


def scaling_stores(target: Target, ins: Instruction) -> list[Instruction]:
    """The stores that move `ins`'s output memory to DRAM scaled and narrowed: a `scale`, a
    `narrowing`, saturating (Gemmini's mvout: ACC_SCALE)."""
    out_mem = ins.operands[ins.semantics.statements[0].target]
    dram = target.dram().name
    found = []
    for st in target.instructions.values():
        if st.kind != "move" or st.scale is None or not st.narrowing:
            continue
        dst = st.semantics.statements[0].target
        reads = {m for t, m in st.operands.items() if t != dst}
        if out_mem in reads and st.operands[dst] == dram and st.overflow == "saturate":
            found.append(st)
    return found


def requantize(
    acc: np.ndarray, target: Target, ins: Instruction, scale: float, to: str, fn: str | None
) -> np.ndarray:
    """What a scaling store makes of `ins`'s accumulator values `acc` on their way to DRAM: times
    `scale` held in the store's scale type, rounded to nearest even and saturated to `to`, then
    through `fn` (Gemmini's mvout: ACC_SCALE, then its activation). The product is exact (f32
    values are carried in float64, `DType.carried_exactly`); IsamapError if no store of the
    target scales and narrows to `to`."""
    stores = [st for st in scaling_stores(target, ins) if to in st.narrowing]
    if not stores:
        raise IsamapError(f"{ins.name}: no store of '{target.name}' scales and narrows to {to}")
    held = float(dtype(stores[0].scale or "f32").convert(np.float64(scale)))
    out = dtype(to).convert(held * acc, "saturate")
    return UNARY[fn].numpy(out) if fn else out


def conv_bias_start(g: ConvGeometry, bias: np.ndarray, types: OperandTypes = EXACT) -> np.ndarray:
    """A direct convolution's per-output-channel bias ([K], or [B, K] per batch) as what its
    accumulators start from, canonical [B, K, pixels]: the call accumulates onto it."""
    rows = bias_rows(bias, g.b, g.k, types)  # [B, 1, K]
    return np.repeat(np.transpose(rows, (0, 2, 1)), g.pixels, axis=2)


def bias_rows(bias: np.ndarray, b: int, n: int, types: OperandTypes = EXACT) -> np.ndarray:
    """A call's per-column bias ([n], or [b, n] per batch) as one row per batch [b, 1, n], in
    the accumulator's type (an integer accumulator takes only its own integers)."""
    rows = np.broadcast_to(np.reshape(bias, (-1, 1, n)), (b, 1, n)).astype(np.float64)
    if types.acc.is_integer and not np.array_equal(types.acc.convert(rows), rows):
        raise IsamapError(
            f"{types.name}: the bias holds values that are not {types.acc.name} integers: "
            "declare an integer bias, or quantize"
        )
    return rows


def _elementwise_semantics(ins: Instruction, kernel: Kernel) -> Kernel:
    """`ins`'s semantics in its own types where every type of `kernel` fits its inputs; else the
    same statements in float64 (f32: carried exactly), like a matrix call whose types do not fit
    (`operand_types`)."""
    sem = ins.semantics
    types = {kernel.dtype(n) for n in kernel.shapes}
    if all(fits(t, sem.dtype(i)) for t in types for i in sem.inputs()):
        return sem
    tensors = {n: replace(d, dtype="f32") for n, d in sem.tensors.items()}
    return Kernel(sem.name, tensors, sem.statements, sem.extents, sem.shapes, sem.source)


def _run_elementwise(ins: Instruction, args: list[np.ndarray], kernel: Kernel) -> np.ndarray:
    """An elementwise instruction over whole tensors, lanes at a time, by its semantics (in its
    types where `kernel`'s fit them)."""
    form = elementwise_form(ins.semantics)
    assert form is not None
    semantics = _elementwise_semantics(ins, kernel)
    flat = [np.asarray(a, dtype=np.float64).reshape(-1) for a in args]
    total = flat[0].size
    out = np.empty(total)
    for start in range(0, total, form.lanes):
        stop = min(start + form.lanes, total)
        chunk = {}
        for name, values in zip(form.inputs, flat, strict=True):
            lane = np.zeros(form.lanes)
            lane[: stop - start] = values[start:stop]
            chunk[name] = lane.reshape(ins.operand_shape(name))
        result = evaluate(semantics, chunk)[form.out].reshape(-1)
        out[start:stop] = result[: stop - start]
    return out.reshape(args[0].shape)


def _host_statement(kernel: Kernel, index: int, args: list[np.ndarray]) -> np.ndarray:
    """Statement `index` alone, by the reference semantics, on the host."""
    s = kernel.statements[index]
    reads = list(dict.fromkeys(a.tensor for a in s.accesses()))
    decls: dict[str, TensorDecl] = {}
    inputs: dict[str, np.ndarray] = {}
    for name, value in zip(reads, args, strict=False):
        decl = kernel.tensors.get(name)
        pad = decl.padding if decl is not None else ()
        decls[name] = TensorDecl(name, tuple(value.shape), "f32", pad)  # f32: carried as it comes
        inputs[name] = value
    target = s.target if s.target not in decls else f"{s.target}__out"
    decls[target] = TensorDecl(target, tuple(kernel.shapes[s.target]), "f32")
    stmt = dataclasses.replace(s, target=target)  # keeps its reduction (`+=` or `max=`)
    sub = check_kernel(f"{kernel.name}.stmt{index}", decls, [stmt], kernel.source)
    result = evaluate(sub, inputs, finite=False)[target]  # computed values, as they came
    if len(args) > len(reads):  # accumulating onto an earlier value of the target
        result = args[-1] + result
    return store(kernel, s.target, result)  # the host computes in the kernel's types


def _block_diag(t: np.ndarray, axis: int, g: int) -> np.ndarray:
    """`t` with `axis` split into (extent/g, g) and a last axis of g: the diagonal blocks."""
    shape = (*t.shape[:axis], t.shape[axis] // g, g, *t.shape[axis + 1 :])
    split = t.reshape(shape)[..., None]
    eye = np.eye(g).reshape((1,) * (axis + 1) + (g,) + (1,) * (len(shape) - axis - 2) + (g,))
    return np.asarray(split * eye)


def run_node(node: MapNode, args: list[np.ndarray], kernel: Kernel, target: Target) -> np.ndarray:
    """One mapping operation on numpy values (inputs are looked up by the caller)."""
    a = node.attrs
    op = node.op
    if op == "reshape":
        return args[0].reshape(_dims(a["shape"]))
    if op == "transpose":
        return np.transpose(args[0], _dims(a["perm"]))
    if op == "window":
        return WindowSpec.parse(str(a["spec"])).gather(args[0])
    if op == "broadcast":
        shape, where = _dims(a["shape"]), _dims(a["map"])
        expanded = np.reshape(args[0], [shape[i] if i in where else 1 for i in range(len(shape))])
        return np.broadcast_to(expanded, shape).copy()
    if op == "full":
        return np.full(node.shape, float(str(a["value"])))
    if op == "ew":
        return BINARY[str(a["op"])].numpy(args[0], args[1])
    if op == "fn":
        return UNARY[str(a["fn"])].numpy(args[0])
    if op == "reduce_sum":
        return np.asarray(np.sum(args[0], axis=_dims(a["axes"])))
    if op == "block_diag":
        return _block_diag(args[0], int(str(a["axis"])), int(str(a["groups"])))
    if op == "concat":
        return np.concatenate(args, axis=int(str(a["axis"])))
    if op == "slice":
        axis, start, length = (int(str(a[key])) for key in ("axis", "start", "length"))
        return np.take(args[0], range(start, start + length), axis=axis)
    if op == "einsum":
        return np.asarray(np.einsum(einsum_subscripts(str(a["spec"])), args[0], args[1]))
    if op == "host_matmul":
        return np.asarray(np.matmul(args[0], args[1]))
    if op == "host_stmt":
        return _host_statement(kernel, int(str(a["index"])), args)
    if op == "vec":
        return _run_elementwise(target.instruction(str(a["instruction"])), args, kernel)
    if op == "instr_conv":
        ins = target.instruction(str(a["instruction"]))
        g = conv_call_geometry(str(a["conv"]), args[0].shape, args[1].shape)
        types = operand_types(ins, kernel)
        product = g.reference(types.operand("lhs", args[0]), types.operand("rhs", args[1]))
        onto: np.ndarray = np.zeros(product.shape)
        if len(args) == 3:  # onto a per-output-channel bias, as the bias move puts it there
            onto = g.from_canonical(conv_bias_start(g, args[2], types))
        held = types.accumulate(onto, product)
        epilogue = a.get("epilogue")
        return UNARY[str(epilogue)].numpy(held) if epilogue else held
    if op == "narrow":
        return dtype(str(a["dtype"])).convert(args[0], "saturate")
    if op == "instr":
        ins = target.instruction(str(a["instruction"]))
        form = matrix_form(ins.semantics)
        assert form is not None
        epilogue = a.get("epilogue")
        fn = str(epilogue) if epilogue else None
        x, y = args[0], args[1]
        bias = args[2] if len(args) == 3 else None
        if a.get("taps"):  # one product per tap, accumulated: the taps stacked along K
            x, y = stack_taps(x, y, tap_depth(x.shape[3], form.tile("k")))
        if a.get("narrow"):  # read out scaled and narrowed, then through its function
            acc = run_instruction(form, x, y, None, operand_types(ins, kernel), bias)
            return requantize(acc, target, ins, float(str(a["scale"])), str(a["narrow"]), fn)
        return run_instruction(form, x, y, fn, operand_types(ins, kernel), bias)
    raise ValueError(f"cannot run mapping op '{op}'")


def run_mapping(
    mapping: Mapping, kernel: Kernel, target: Target, inputs: MappingABC[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run `mapping` on `inputs`; every kernel tensor the mapping computes, by name, in its
    declared element type."""
    for name in kernel.inputs():
        if name not in inputs:
            raise IsamapError(f"missing input '{name}' for kernel {kernel.name}")
        got = tuple(np.shape(inputs[name]))
        if got != tuple(kernel.shapes[name]):
            raise IsamapError(
                f"input '{name}' has shape {list(got)}, kernel {kernel.name} declares "
                f"{list(kernel.shapes[name])}"
            )
    inputs = check_inputs(kernel, inputs)
    values: list[np.ndarray] = []
    held = tensor_nodes(mapping)
    for node in mapping.nodes:
        if node.op == "input":
            value = np.asarray(inputs[str(node.attrs["name"])], dtype=np.float64)
        else:
            value = run_node(node, [values[i] for i in node.args], kernel, target)
        if tuple(value.shape) != tuple(node.shape):
            raise AssertionError(f"%{node.id} {node.op}: shape {value.shape} != {node.shape}")
        if node.id in held:  # a kernel tensor holds its declared type for every later reader
            value = store_outputs(kernel, {held[node.id]: value}, mapping, target)[held[node.id]]
        values.append(value)
    computed = {name: values[i] for name, i in mapping.outputs.items()}
    return store_outputs(kernel, computed, mapping, target)


def tensor_nodes(mapping: Mapping) -> dict[int, str]:
    """Mapping node -> the kernel tensor whose value it is (an int8 cast read by a later product
    must be int8 there too, not only where the program ends)."""
    return {i: name for name, i in mapping.outputs.items()}


def store_outputs(
    kernel: Kernel, outputs: MappingABC[str, np.ndarray], mapping: Mapping, target: Target
) -> dict[str, np.ndarray]:
    """The mapping's results as the kernel's tensors hold them: narrowed to each one's declared
    type, rounded to nearest even — saturating (Gemmini's mvout: ACC_SCALE at scale 1), or
    wrapping where the store that writes the result narrows to that type and says `wrap`."""
    out = {}
    for name, value in outputs.items():
        t = dtype(kernel.dtype(name))
        overflow = _narrowing(mapping, target, mapping.outputs[name], t.name)
        out[name] = t.hold(value, overflow if t.is_integer else "saturate")
    return out


#: Mapping operations that move a value without computing: a result keeps its producer's store.
_VIEWS = ("reshape", "transpose", "slice", "concat")


def _narrowing(mapping: Mapping, target: Target, node: int, to: str) -> str:
    """How the store of the matrix call behind mapping node `node` narrows to type `to`."""
    n = mapping.nodes[node]
    while n.op in _VIEWS and n.args:
        n = mapping.nodes[n.args[0]]
    if n.op not in ("instr", "instr_conv"):
        return "saturate"
    ins = target.instruction(str(n.attrs["instruction"]))
    out_mem = ins.operands[ins.semantics.statements[0].target]
    dram = target.dram().name
    for mover in target.instructions.values():
        dst = mover.semantics.statements[0].target
        reads = {m for t, m in mover.operands.items() if t != dst}
        writes_out = mover.kind == "move" and out_mem in reads and mover.operands[dst] == dram
        if writes_out and to in mover.narrowing:
            return mover.overflow
    return "saturate"

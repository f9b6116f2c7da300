"""A scheduled Program (with its Mapping) as one C translation unit with a fixed entry point.

`int isamap_run(const float* const* in, float* const* out)` takes the kernel's inputs in
declaration order and the mapping's outputs in their order, all dense row-major f32 arrays, and
returns 0 (1 when out of memory). Each mapping node becomes one loop nest or matrix call over a
buffer of its own; reshapes are views of their argument's buffer; a node whose value is an
output is computed straight into the output array.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import isamap.codegen.loops as loops
from isamap.codegen.blocking import Blocking, blocking, host_blocking
from isamap.codegen.depthwise import DepthwiseShape, depthwise_shape, emit_depthwise
from isamap.codegen.families import family
from isamap.codegen.fused import (
    block_stride,
    channel_kc,
    channel_plan,
    emit_channel_pointwise,
    emit_fused_depthwise,
    emit_fused_matmul,
    matrix_plan,
    pass_rows,
    reads_rows_in_place,
    rows_per_block,
)
from isamap.codegen.gemm import emit_matmul
from isamap.codegen.region import Region, find_region
from isamap.hardware.elementwise_form import elementwise_form
from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import MapNode, Mapping
from isamap.ir.program import Program
from isamap.ir.window import WindowSpec

__all__ = ["ENTRY", "CSource", "emit_c"]

#: The C function every emitted program exports.
ENTRY = "isamap_run"


@dataclass(frozen=True)
class CSource:
    """Emitted C and what calling it needs: input names, output names and shapes, flags."""

    text: str
    family: str
    flags: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, tuple[int, ...]], ...]
    threads: int = 1
    blockings: dict[int, Blocking] = field(default_factory=dict)
    b_pieces: dict[int, list[int]] = field(default_factory=dict)  # call -> B's concatenated pieces
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    constants: tuple[str, ...] = ()  # inputs `isamap_prepare` packs once (PreparedProgram)


def _dims(text: object) -> tuple[int, ...]:
    s = str(text)
    return tuple(int(x) for x in s.split(",")) if s else ()


def emit_c(
    program: Program,
    mapping: Mapping,
    kernel: Kernel,
    target: Target,
    threads: int = 1,
    constants: Sequence[str] = (),
) -> CSource:
    """C for `program` on CPU target `target` (its codegen family); IsamapError if not one.

    `constants` names inputs whose values a caller binds once (weights): the operands of fused
    products read from them are packed by `isamap_prepare` instead of on every call."""
    fam = family(target.codegen)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise IsamapError(f"threads must be an integer >= 1, not {threads!r}"[:80])
    emitter = _Emitter(program, kernel, target, fam.lanes, threads)
    unknown = [c for c in constants if c not in kernel.inputs()]
    if unknown:
        raise IsamapError(f"constants {', '.join(unknown)}: not inputs of kernel {kernel.name}")
    emitter.constants = set(constants)
    emitter.input_index = {
        n.id: kernel.inputs().index(str(n.attrs["name"])) for n in mapping.nodes if n.op == "input"
    }
    emitter.shapes = {n.id: tuple(n.shape) for n in mapping.nodes}
    inputs = kernel.inputs()
    nodes = mapping.nodes
    root = list(range(len(nodes)))
    for n in nodes:
        if n.op == "reshape":
            root[n.id] = root[n.args[0]]
    # an output is computed in place when its root is a computed node no other output claimed
    claimed: dict[int, int] = {}
    copies: list[tuple[int, int]] = []
    # the kernel's outputs; intermediates the mapping also names are not returned, so fused
    # loops never have to store them
    wanted = {name: mapping.outputs[name] for name in kernel.outputs() if name in mapping.outputs}
    for j, node_id in enumerate(wanted.values()):
        r = root[node_id]
        if nodes[r].op != "input" and r not in claimed:
            claimed[r] = j
        else:
            copies.append((j, r))
    # a window only a direct depthwise loop reads is never materialised
    users = Counter(a for n in nodes for a in n.args)
    lazy: set[int] = set()
    for n in nodes:
        found = _depthwise_of(n, nodes)
        if found is not None and all(users[v] == 1 and v not in claimed for v in found[2]):
            lazy.update(found[2])
    # a concatenation only a matrix call reads as its B is read piece by piece, in place
    for n in nodes:
        split = _b_pieces(n, nodes) if n.op == "instr" else None
        if split is not None and all(users[c] == 1 and c not in claimed for c in split[1]):
            emitter.b_pieces[n.id] = split[0]
            lazy.update(split[1])
    required = set(wanted.values())
    plans = _fusions(emitter, nodes, required | set(claimed), lazy)
    # a pieces product read only through slices of its pieces writes each piece into its slice
    into: dict[int, list[int]] = {}
    for n in nodes:
        if n.id in emitter.b_pieces and n.id not in plans and n.id not in lazy:
            slices = _piece_slices(n, nodes, emitter, required | set(claimed))
            if slices is not None:
                into[n.id], skipped = slices
                lazy.update(skipped)
    fused_into: dict[int, int] = {}
    for producer, plan in plans.items():
        for v in plan.lazy:
            fused_into[v] = producer
    body: list[str] = []
    owned: list[str] = []
    for n in nodes:  # inputs first: a fused loop may read one declared after its producer
        if n.op == "input" and n.id not in lazy:
            body.append(f"  float* t{n.id} = (float*)in[{inputs.index(str(n.attrs['name']))}];")

    def allocate(n: MapNode) -> None:
        var = f"t{n.id}"
        if n.id in claimed:
            body.append(f"  float* {var} = out[{claimed[n.id]}];")
        else:
            owned.append(var)
            body.append(f"  {var} = isa_alloc(sizeof(float) * {math.prod(n.shape)});")
            body.append(f"  if (!{var}) {{ rc = 1; goto done; }}")

    stored: set[int] = set()
    for n in nodes:
        var = f"t{n.id}"
        if n.id in plans:
            plan = plans[n.id]
            for e in plan.exits:
                allocate(nodes[e])
                stored.add(e)
            body.append(f"  /* %{n.id} {n.describe()}: {plan.note} */")
            body.extend(plan.lines)
            continue
        if n.id in into:
            for t in into[n.id]:
                allocate(nodes[t])
                stored.add(t)
            body.append(f"  /* %{n.id} {n.describe()}: each piece into its slice */")
            body.extend(
                emitter.matmul(
                    n, [f"t{a}" for a in n.args], [nodes[a].shape for a in n.args], into[n.id]
                )
            )
            continue
        if n.id in stored:
            body.append(f"  /* %{n.id} {n.describe()}: computed by its product */")
            continue
        if n.id in lazy:
            body.append(f"  /* %{n.id} {n.describe()}: read in place by its consumer */")
            continue
        if n.op == "input" or n.id in stored:
            continue
        if n.id in fused_into:
            body.append(f"  /* %{n.id} {n.describe()}: fused into %{fused_into[n.id]} */")
            continue
        if n.op == "reshape":
            body.append(f"  float* {var} = t{n.args[0]};")
            continue
        allocate(n)
        body.append(f"  /* %{n.id} {n.describe()} */")
        body.extend(emitter.node(n, nodes))
    for j, r in copies:
        body.append(f"  memcpy(out[{j}], t{r}, sizeof(float) * {math.prod(nodes[r].shape)});")
    text = "\n".join(
        [
            f"/* {kernel.name} on {target.name}: emitted by isamap (family {fam.name}) */",
            fam.prelude,
            *emitter.funcs,
            *_prepare_functions(emitter.prepare),
            f"int {ENTRY}_prepared(const void* state, const float* const* in,",
            "    float* const* out) {",
            "  int rc = 0;",
            "  float* const* S = (float* const*)state;",
            "  (void)S;",
            *[f"  float* {v} = NULL;" for v in owned],
            *body,
            "  goto done;",
            "done:",
            *[f"  isa_free({v});" for v in owned],
            "  return rc;",
            "}",
            f"int {ENTRY}(const float* const* in, float* const* out) {{",
            f"  return {ENTRY}_prepared(NULL, in, out);",
            "}",
            "",
        ]
    )
    outputs = tuple((name, tuple(nodes[i].shape)) for name, i in wanted.items())
    prepared = tuple(c for c in inputs if c in emitter.constants)
    return CSource(
        text,
        fam.name,
        fam.flags,
        inputs,
        outputs,
        threads,
        emitter.blockings,
        constants=prepared,
    )


@dataclass
class _Emitter:
    """Emits each node's statements; collects the functions of its matrix calls."""

    program: Program
    kernel: Kernel
    target: Target
    lanes: int
    threads: int
    funcs: list[str] = field(default_factory=list)
    blockings: dict[int, Blocking] = field(default_factory=dict)
    b_pieces: dict[int, list[int]] = field(default_factory=dict)  # call -> B's concatenated pieces
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)
    input_index: dict[int, int] = field(default_factory=dict)  # input node -> its position
    prepare: list[str] = field(default_factory=list)  # statements of isamap_prepare

    def _constant(self, node_id: int, nodes: list[MapNode]) -> int | None:
        """The input position of a node that is (a view of) a constant input, else None."""
        root = node_id
        while nodes[root].op == "reshape":
            root = nodes[root].args[0]
        n = nodes[root]
        if n.op == "input" and str(n.attrs["name"]) in self.constants:
            return self.input_index[root]
        return None

    def _slot(self, call: str) -> str:
        """A slot of the prepared state filled by `call` (a packing function's result)."""
        j = len(self.prepare)
        self.prepare.append(
            f"  S[{j}] = {call}; if (!S[{j}]) {{ {ENTRY}_release(S); return NULL; }}"
        )
        return f"(S ? S[{j}] : NULL)"

    def node(self, n: MapNode, nodes: list[MapNode]) -> list[str]:
        out, a = f"t{n.id}", n.attrs
        args = [f"t{i}" for i in n.args]
        shapes = [tuple(nodes[i].shape) for i in n.args]
        size = math.prod(n.shape)
        op = n.op
        if op == "transpose":
            return loops.transpose(out, args[0], shapes[0], _dims(a["perm"]))
        if op == "window":
            return loops.window(out, args[0], shapes[0], WindowSpec.parse(str(a["spec"])))
        if op == "broadcast":
            return loops.broadcast(out, args[0], _dims(a["shape"]), _dims(a["map"]))
        if op == "full":
            return loops.fill(out, size, float(str(a["value"])))
        if op in ("ew", "fn", "vec"):
            if op == "vec":
                form = elementwise_form(self.target.instruction(str(a["instruction"])).semantics)
                assert form is not None
                what = form.op
            else:
                what = str(a["op"] if op == "ew" else a["fn"])
            _same_shapes(n, shapes)
            return loops.elementwise(out, args, what, size)
        if op == "reduce_sum":
            return loops.reduce_sum(out, args[0], shapes[0], _dims(a["axes"]))
        if op == "block_diag":
            axis, groups = int(str(a["axis"])), int(str(a["groups"]))
            return loops.block_diag(out, args[0], shapes[0], axis, groups)
        if op == "concat":
            return loops.concat(out, args, shapes, int(str(a["axis"])))
        if op == "slice":
            axis, start, length = (int(str(a[k])) for k in ("axis", "start", "length"))
            return loops.slice_axis(out, args[0], shapes[0], axis, start, length)
        if op == "einsum":
            direct = self.depthwise(n, nodes)
            if direct is not None:
                return direct
            return loops.einsum(out, args[0], args[1], str(a["spec"]), shapes[0], shapes[1])
        if op == "host_matmul":
            return self.host_matmul(n, nodes, args, shapes)
        if op == "host_stmt":
            pairs = list(zip(args, shapes, strict=True))
            return loops.host_statement(out, self.kernel, int(str(a["index"])), pairs)
        if op == "instr":
            return self.matmul(n, args, shapes)
        raise IsamapError(f"codegen: cannot emit mapping operation '{op}' (node %{n.id})")

    def depthwise(self, n: MapNode, nodes: list[MapNode]) -> list[str] | None:
        """A depthwise convolution read straight from the window's source, if `n` is one."""
        found = _depthwise_of(n, nodes)
        if found is None:
            return None
        shape, (x, f), _ = found
        name = f"dw{n.id}"
        self.funcs.append(emit_depthwise(name, shape, self.threads))
        return [f"  if ({name}(t{x}, t{f}, t{n.id})) {{ rc = 1; goto done; }}"]

    def matmul(
        self,
        n: MapNode,
        args: list[str],
        shapes: list[tuple[int, ...]],
        into: Sequence[int] | None = None,
    ) -> list[str]:
        """A matrix call; with B read piece by piece, one product per piece into its columns
        of C, or (`into`: a node per piece) into that node's buffer."""
        a = n.attrs
        b, m, nn, k = (int(str(a[x])) for x in ("b", "m", "n", "k"))
        if shapes != [(b, m, k), (b, k, nn)] or tuple(n.shape) != (b, m, nn):
            raise IsamapError(f"codegen: matrix call %{n.id} has operand shapes {shapes}")
        sc = self.program.call_for(n.id)
        if sc is None:
            raise IsamapError(f"codegen: matrix call %{n.id} has no schedule in the program")
        ins = self.target.instruction(str(a["instruction"]))
        form = matrix_form(ins.semantics)
        assert form is not None
        blk = blocking(self.target, sc, ins.operands[form.lhs])
        self.blockings[n.id] = blk
        epilogue = str(a["epilogue"]) if a.get("epilogue") else None
        name = f"call{n.id}"
        pieces = self.b_pieces.get(n.id)
        if pieces is None:
            dims = (b, m, nn, k)
            self.funcs.append(emit_matmul(name, blk, self.lanes, dims, epilogue, self.threads))
            return [f"  if ({name}({args[0]}, {args[1]}, t{n.id}, NULL)) {{ rc = 1; goto done; }}"]
        # B = [B0 | B1 | ...]: one product per piece into its columns of C
        lines, offset, widths = [], 0, set()
        for j, piece in enumerate(pieces):
            w = self._shape(piece)[2]
            ldc = nn if into is None else w
            fn = f"{name}_w{w}_c{ldc}"
            if (w, ldc) not in widths:
                widths.add((w, ldc))
                dims = (b, m, w, k)
                self.funcs.append(
                    emit_matmul(fn, blk, self.lanes, dims, epilogue, self.threads, w, ldc)
                )
            dst = f"t{n.id} + {offset}" if into is None else f"t{into[j]}"
            call = f"{fn}({args[0]}, t{piece}, {dst}, NULL)"
            lines.append(f"  if ({call}) {{ rc = 1; goto done; }}")
            offset += w
        return lines

    def host_matmul(
        self, n: MapNode, nodes: list[MapNode], args: list[str], shapes: list[tuple[int, ...]]
    ) -> list[str]:
        """A product the mapping left to the host: a vector dot per output when B is one
        column, else the blocked matrix call with the target's first register tile."""
        xs, ys = shapes
        if len(xs) == 2 and len(ys) == 2:
            xs, ys = (1, *xs), (1, *ys)
        if len(xs) != 3 or len(ys) != 3 or xs[0] != ys[0] or xs[2] != ys[1]:
            raise IsamapError(f"codegen: host matmul %{n.id} of shapes {shapes}")
        b, m, k = xs
        nn = ys[2]
        direct = self.depthwise(n, nodes)
        if direct is not None:
            return direct
        if nn == 1 or nn < self.lanes:
            return loops.einsum(f"t{n.id}", args[0], args[1], "b,i,k;b,k,j;b,i,j", xs, ys)
        blk = host_blocking(self.target, m, nn, k)
        name = f"call{n.id}"
        self.funcs.append(emit_matmul(name, blk, self.lanes, (b, m, nn, k), None, self.threads))
        return [f"  if ({name}({args[0]}, {args[1]}, t{n.id}, NULL)) {{ rc = 1; goto done; }}"]

    def _shape(self, node_id: int) -> tuple[int, ...]:
        return self.shapes[node_id]

    def _pass_rows(self, d: DepthwiseShape) -> int:
        """The output rows one pass of the depthwise loop computes for shape `d`."""
        temps = 3 if reads_rows_in_place(d) else 2
        return pass_rows(self.target, self.lanes, d.r * d.s, temps)

    def _by_rows(
        self,
        name: str,
        tile: list[tuple[int, int, float]],
        b_memory: str,
        m: int,
        k: int,
        ldb: int,
        width: int,
        region: Region,
        epilogue: str | None,
    ) -> tuple[tuple[int, int], int] | None:
        """Emit product `name` (`m` x `width` x `k`, B rows `ldb` apart) vectorised over A's
        rows (the output channels), B's columns broadcast in place, when `channel_plan` finds
        that pads fewer lanes: its (pixels, channels) tile and channels per K slice; else None
        and nothing emitted."""
        by_rows = channel_plan(tile, self.lanes, m, width)
        if by_rows is None:
            return None
        kc = channel_kc(self.target, b_memory, k, by_rows[1])
        self.funcs.append(
            emit_channel_pointwise(
                name, by_rows, self.lanes, m, k, ldb, region, epilogue, width, kc
            )
        )
        return by_rows, kc

    def _tile(self, n: MapNode) -> tuple[list[tuple[int, int, float]], str, str, str | None]:
        """A matrix call's candidate register tiles (its instruction's first, then the target's
        other micro-kernels with B in the same memory), the memory its A lives in, its chained
        function."""
        ins = self.target.instruction(str(n.attrs["instruction"]))
        form = matrix_form(ins.semantics)
        assert form is not None
        tiles = [(form.tile("m"), form.tile("n"), ins.issue_cycles)]
        for other in self.target.compute_instructions():
            f = matrix_form(other.semantics)
            if f is None or other.name == ins.name or other.chain != ins.chain:
                continue
            same_memory = other.operands[f.lhs] == ins.operands[form.lhs]
            if same_memory and f.tile("n") % self.lanes == 0 and f.tile("k") == 1:
                tiles.append((f.tile("m"), f.tile("n"), other.issue_cycles))
        epilogue = str(n.attrs["epilogue"]) if n.attrs.get("epilogue") else None
        return tiles, ins.operands[form.lhs], ins.operands[form.rhs], epilogue

    def fused_matmul(
        self, n: MapNode, nodes: list[MapNode], required: set[int], unavailable: set[int]
    ) -> _Plan | None:
        """A matrix call with an element-wise region after it, computed in its output loop."""
        b, m, nn, k = (int(str(n.attrs[x])) for x in ("b", "m", "n", "k"))
        if b != 1:
            return None
        region = find_region(
            nodes, self.kernel, self.target, n.id, m, nn, required, True, unavailable
        )
        if region is None or region.is_trivial():
            return None
        width = region.width
        pieces = self.b_pieces.get(n.id)
        if pieces is not None:  # B = [B0 | B1 | ...]: each piece of the region is one of them
            at, offset = {}, 0
            for piece in pieces:
                at[offset] = (piece, self._shape(piece)[2])
                offset += self._shape(piece)[2]
            if any(at.get(st, (0, -1))[1] != width for st in region.starts):
                return None
            bsrc = [(at[st][0], 0) for st in region.starts]
            ldbs = [width] * len(bsrc)
        else:
            bsrc = [(n.args[1], st) for st in region.starts]
            ldbs = [nn] * len(bsrc)
        bptrs = [f"t{node} + {st}" for node, st in bsrc]
        tile, _, b_memory, epilogue = self._tile(n)
        plan = matrix_plan(
            self.target, self.lanes, tile, len(bptrs), m, width, k, b_memory, b_packed=True
        )
        name = f"fused{n.id}"
        a_in = self._constant(n.args[0], nodes)
        pa = "NULL" if a_in is None else self._slot(f"{name}_prepare_a((const float*)in[{a_in}])")
        # one B of few columns (a 7x7 plane's 49 pixels): vectorised over A's rows instead,
        # B's columns broadcast where it lies, when that pads fewer lanes
        by_rows = None
        if len(bptrs) == self.threads == 1:
            by_rows = self._by_rows(name, tile, b_memory, m, k, ldbs[0], width, region, epilogue)
        b_in = [self._constant(node, nodes) for node, _ in bsrc]
        pb = "NULL"
        if by_rows is None:
            if all(i is not None for i in b_in):
                ptrs = ", ".join(
                    f"(const float*)in[{i}] + {st}" for i, (_, st) in zip(b_in, bsrc, strict=True)
                )
                pb = self._slot(f"{name}_prepare_b((const float* const[]){{{ptrs}}})")
            self.funcs.append(
                emit_fused_matmul(
                    name, plan, self.lanes, m, width, k, ldbs, region, epilogue, False, self.threads
                )
            )
        lines = [
            "  {",
            f"    const float* Bp[{len(bptrs)}] = {{{', '.join(bptrs)}}};",
            *_pointer_arrays(region, "Ep", "Op"),
            f"    if ({name}(t{n.args[0]}, Bp, Ep, Op, 0, {width}, {pa}, {pb})) "
            "{ rc = 1; goto done; }",
            "  }",
        ]
        lazy = set(region.members) | ({n.id} - set(region.exits))
        how = (
            f"vectorised over A's rows, tile {by_rows[0][0]}x{by_rows[0][1]}"
            if by_rows is not None
            else f"tile {plan.mr}x{plan.nr}"
        )
        note = (
            f"{len(bptrs)} piece(s) of {m}x{width}x{k}, {how}, "
            f"{len(region.steps)} element-wise steps fused into the output loop"
        )
        return _Plan(lines, list(region.exits), lazy, note)

    def fused_depthwise(
        self, n: MapNode, nodes: list[MapNode], required: set[int], unavailable: set[int]
    ) -> _Plan | None:
        """A depthwise convolution with its region; when its one result is only the B of a
        pointwise matrix call, that product is fused too (depthwise rows feed the micro-kernel
        from a cache-resident buffer)."""
        found = _depthwise_of(n, nodes)
        assert found is not None
        d, (x, f), _ = found
        pix = d.ho * d.wo
        region = find_region(
            nodes, self.kernel, self.target, n.id, d.n * d.c, pix, required, False, unavailable
        )
        if region is None:
            return None
        feed = self._pointwise_after(region, nodes, required, unavailable, d)
        name = f"dw{n.id}"
        if feed is None:
            passes = self._pass_rows(d)
            self.funcs.append(emit_fused_depthwise(name, d, region, d.ho, None, self.lanes, passes))
            lines = [
                "  {",
                *_pointer_arrays(region, "Ep", "Op"),
                f"    if ({name}(t{x}, t{f}, NULL, Ep, Op, NULL, NULL, NULL)) "
                "{ rc = 1; goto done; }",
                "  }",
            ]
            lazy = set(region.members) | ({n.id} - set(region.exits))
            note = f"direct depthwise, {len(region.steps)} element-wise steps fused"
            return _Plan(lines, list(region.exits), lazy, note)
        mm, views, region2 = feed
        m = int(str(mm.attrs["m"]))
        tile, a_memory, b_memory, epilogue = self._tile(mm)
        rows = rows_per_block(self.target, a_memory, d, m)
        plan = matrix_plan(self.target, self.lanes, tile, 1, m, rows * d.wo, d.c, b_memory)
        pw = f"pw{mm.id}"
        ldb = block_stride(rows, d.wo, self.lanes)
        by_channels = self._by_rows(pw, tile, b_memory, m, d.c, ldb, rows * d.wo, region2, epilogue)
        if by_channels is not None:
            (mr, nr), kc = by_channels
            how = f"vectorised over output channels, tile {mr}x{nr}, {kc} channels per slice"
        else:
            self.funcs.append(
                emit_fused_matmul(
                    pw,
                    plan,
                    self.lanes,
                    m,
                    rows * d.wo,
                    d.c,
                    [ldb],
                    region2,
                    epilogue,
                    b_slack=True,
                )
            )
            how = f"on tile {plan.mr}x{plan.nr}"
        passes = self._pass_rows(d)
        self.funcs.append(emit_fused_depthwise(name, d, region, rows, pw, self.lanes, passes))
        a_in = self._constant(mm.args[0], nodes)
        pa = "NULL" if a_in is None else self._slot(f"{pw}_prepare_a((const float*)in[{a_in}])")
        lines = [
            "  {",
            *_pointer_arrays(region, "Ep", "Op", skip=region.exits),
            *_pointer_arrays(region2, "Ep2", "Op2"),
            f"    if ({name}(t{x}, t{f}, t{mm.args[0]}, Ep, Op, Ep2, Op2, {pa})) "
            "{ rc = 1; goto done; }",
            "  }",
        ]
        lazy = (
            set(region.members)
            | set(region.exits)
            | set(views)
            | set(region2.members)
            | ({n.id, mm.id} - set(region2.exits))
        )
        note = (
            f"depthwise-separable block fused: blocks of {rows} rows, the pointwise "
            f"{m}x{rows * d.wo}x{d.c} product {how} reads them in place"
        )
        return _Plan(lines, list(region2.exits), lazy, note)

    def _pointwise_after(
        self,
        region: Region,
        nodes: list[MapNode],
        required: set[int],
        unavailable: set[int],
        d: DepthwiseShape,
    ) -> tuple[MapNode, list[int], Region] | None:
        """The pointwise matrix call that is the only reader of the depthwise region's one
        exit (as its B, `[1, C, pixels]`), its views between, and its own region."""
        if len(region.exits) != 1 or d.n != 1 or region.exits[0] in required:
            return None
        users: dict[int, list[int]] = {}
        for node in nodes:
            for a in node.args:
                users.setdefault(a, []).append(node.id)
        cur, views = region.exits[0], []
        while True:
            us = users.get(cur, [])
            if len(us) != 1 or (cur in required and cur != region.exits[0]):
                return None
            nxt = nodes[us[0]]
            if nxt.op != "reshape":
                break
            views.append(nxt.id)
            cur = nxt.id
            if cur in required:
                return None
        mm = nxt
        if mm.op != "instr" or mm.args[1] != cur or mm.id in self.b_pieces:
            return None
        b, m, nn, k = (int(str(mm.attrs[x])) for x in ("b", "m", "n", "k"))
        if (b, nn, k) != (1, d.ho * d.wo, d.c) or self.program.call_for(mm.id) is None:
            return None
        region2 = find_region(
            nodes, self.kernel, self.target, mm.id, m, nn, required, False, unavailable
        )
        return None if region2 is None else (mm, views, region2)


def _prepare_functions(statements: list[str]) -> list[str]:
    """`isamap_prepare` (the state of packed constants, NULL when out of memory) and
    `isamap_release`."""
    return [
        f"void {ENTRY}_release(void* state) {{",
        "  float** S = (float**)state;",
        "  if (!S) return;",
        f"  for (int j = 0; j < {len(statements)}; ++j) free(S[j]);",
        "  free(S);",
        "}",
        f"void* {ENTRY}_prepare(const float* const* in) {{",
        f"  float** S = calloc({len(statements) + 1}, sizeof(float*));",
        "  if (!S) return NULL;",
        "  (void)in;",
        *statements,
        "  return S;",
        "}",
    ]


@dataclass
class _Plan:
    """A fused loop: its C statements, the values it stores, the nodes it makes unnecessary."""

    lines: list[str]
    exits: list[int]
    lazy: set[int]
    note: str


def _pointer_arrays(
    region: Region, operands: str, exits: str, skip: Sequence[int] = ()
) -> list[str]:
    """C arrays of a region's operand and exit pointers (never empty arrays)."""
    ops = [f"t{o}" for o in region.operands] or ["NULL"]
    outs = [f"t{e}" for e in region.exits if e not in skip] or ["NULL"]
    return [
        f"    const float* {operands}[{len(ops)}] = {{{', '.join(ops)}}};",
        f"    float* {exits}[{len(outs)}] = {{{', '.join(outs)}}};",
    ]


def _fusions(
    emitter: _Emitter,
    nodes: list[MapNode],
    required: set[int],
    lazy: set[int],
) -> dict[int, _Plan]:
    """The fused loops of a mapping, by producer: each matrix call or depthwise convolution
    with element-wise nodes after it (`region.py`)."""
    plans: dict[int, _Plan] = {}
    unavailable = set(lazy)
    for n in nodes:
        if n.id in unavailable:
            continue
        plan = None
        if _depthwise_of(n, nodes) is not None:
            # one scratch plane per call: with threads the per-channel parallel loop is used
            if emitter.threads == 1:
                plan = emitter.fused_depthwise(n, nodes, required, unavailable)
        elif n.op == "instr" and emitter.program.call_for(n.id) is not None:
            plan = emitter.fused_matmul(n, nodes, required, unavailable)
        if plan is not None:
            plans[n.id] = plan
            unavailable |= plan.lazy
    return plans


def _b_pieces(n: MapNode, nodes: list[MapNode]) -> tuple[list[int], list[int]] | None:
    """When a matrix call's B is a concatenation along its last (N) axis, nested ones
    flattened: the pieces, and the concatenation nodes."""
    pieces: list[int] = []
    chain: list[int] = []

    def along_n(node: MapNode) -> bool:
        return node.op == "concat" and int(str(node.attrs["axis"])) == len(node.shape) - 1

    def walk(node: MapNode) -> None:
        if along_n(node) and len(node.shape) == 3:
            chain.append(node.id)
            for arg in node.args:
                walk(nodes[arg])
        else:
            pieces.append(node.id)

    top = nodes[n.args[1]]
    if not along_n(top):
        return None
    walk(top)
    return pieces, chain


def _piece_slices(
    n: MapNode, nodes: list[MapNode], emitter: _Emitter, required: set[int]
) -> tuple[list[int], set[int]] | None:
    """When a pieces product `n` (B = [B0 | B1 | ...]) is read only through slices along its
    last axis (slices of slices too) and each piece's columns are exactly one slice: that
    slice per piece, and the product and the slices between (which then need no buffer)."""
    users: dict[int, list[int]] = {}
    for node in nodes:
        for arg in node.args:
            users.setdefault(arg, []).append(node.id)
    last = len(n.shape) - 1
    spans: dict[int, tuple[int, int]] = {n.id: (0, int(n.shape[last]))}
    between: set[int] = set()
    targets: dict[tuple[int, int], int] = {}
    pieces, offset = [], 0
    for piece in emitter.b_pieces[n.id]:
        w = emitter.shapes[piece][2]
        pieces.append((offset, w))
        offset += w
    stack = [n.id]
    while stack:
        cur = stack.pop()
        if cur in required and cur != n.id:  # a slice between that must be kept
            return None
        for u in users.get(cur, []):
            s = nodes[u]
            if s.op != "slice" or int(str(s.attrs["axis"])) != last:
                return None
            start = spans[cur][0] + int(str(s.attrs["start"]))
            spans[u] = (start, int(str(s.attrs["length"])))
            if spans[u] in pieces and spans[u] not in targets:
                targets[spans[u]] = u
            else:
                between.add(u)
                stack.append(u)
    if n.id in required or set(targets) != set(pieces):
        return None
    return [targets[p] for p in pieces], between | {n.id}


def _through_reshapes(node_id: int, nodes: list[MapNode]) -> tuple[int, list[int]]:
    """The node a chain of reshapes starts from, and the reshapes."""
    chain = []
    while nodes[node_id].op == "reshape":
        chain.append(node_id)
        node_id = nodes[node_id].args[0]
    return node_id, chain


def _depthwise_of(
    n: MapNode, nodes: list[MapNode]
) -> tuple[DepthwiseShape, tuple[int, int], list[int]] | None:
    """The depthwise convolution node `n` computes from an im2col window, else None: its shape,
    the (X, F) nodes it reads and the window nodes (window, reshapes) it makes unnecessary.

    Three forms: `einsum(window(X), F)`, and batched products (N = 1) of the reshaped window by
    the reshaped filter, filter first (`[C, 1, RS] . [C, RS, HW]`) or window first
    (`[C, HW, RS] . [C, RS, 1]`)."""
    if n.op == "einsum" and nodes[n.args[0]].op == "window":
        win = nodes[n.args[0]]
        spec = WindowSpec.parse(str(win.attrs["spec"]))
        x_shape = tuple(nodes[win.args[0]].shape)
        f_shape = tuple(nodes[n.args[1]].shape)
        shape = depthwise_shape(str(n.attrs["spec"]), spec, x_shape, f_shape)
        return None if shape is None else (shape, (win.args[0], n.args[1]), [win.id])
    if n.op != "host_matmul" or len(n.shape) != 3:
        return None
    for w_arg, f_arg, order in ((1, 0, (0, 1, 2, 3, 4, 5)), (0, 1, (0, 4, 5, 1, 2, 3))):
        win_id, chain = _through_reshapes(n.args[w_arg], nodes)
        f_id, _ = _through_reshapes(n.args[f_arg], nodes)
        win, filt = nodes[win_id], nodes[f_id]
        if win.op != "window" or len(filt.shape) != 3 or not chain:
            continue
        spec = WindowSpec.parse(str(win.attrs["spec"]))
        names = [a for a, _ in spec.axes]
        if len(names) != 6:
            continue
        c, r, s_, b, h, w = (names[i] for i in order)  # roles by the reshape's grouping
        x_shape = tuple(nodes[win.args[0]].shape)
        shape = depthwise_shape(
            f"{','.join(names)};{c},{r},{s_};{b},{c},{h},{w}", spec, x_shape, tuple(filt.shape)
        )
        if shape is None or shape.n != 1:
            continue
        pixels, taps = shape.ho * shape.wo, shape.r * shape.s
        grouped = (shape.c, taps, pixels) if w_arg == 1 else (shape.c, pixels, taps)
        result = (shape.c, 1, pixels) if w_arg == 1 else (shape.c, pixels, 1)
        if tuple(nodes[n.args[w_arg]].shape) != grouped or tuple(n.shape) != result:
            continue
        return shape, (win.args[0], f_id), [win.id, *chain]
    return None


def _same_shapes(n: MapNode, shapes: list[tuple[int, ...]]) -> None:
    if any(s != tuple(n.shape) for s in shapes):
        raise IsamapError(f"codegen: elementwise node %{n.id} has operands of other shapes")

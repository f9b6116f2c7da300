"""Role promotion by broadcast: a per-lane instruction computing a matrix product.

An instruction whose lanes are a batch index of both operands (AVX-512 VNNI's `vpdpbusd`,
`C[j] += A[j, q] * B[j, q]`: sixteen independent 4-element dot products) computes a matrix
product when one operand is the same in every lane: with A broadcast (`{1to16}`, one dword read
for all lanes) it is `C[j] += A[q] * B[j, q]`, whose lanes are the N of a product, not a batch.
Each such reading is added to the target as a derived instruction, `<name>.bcast_<operand>`, with
the original's unit, costs and memories, so the derived rules, the scheduler and the simulators
treat it like any other instruction. Its semantics is the original's with that operand's batch
indices dropped, which is the original applied to the operand broadcast over them. An
instruction's `broadcasts` key names the operands its hardware can broadcast (default: any).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from isamap.hardware.matrix_form import matrix_form
from isamap.hardware.target import Instruction
from isamap.ir.kernel import Access, Binary, Kernel, Statement, TensorDecl
from isamap.ir.shapes import check_kernel

__all__ = ["broadcast_promotions", "with_promotions"]


def _drop(acc: Access, indices: set[str]) -> Access:
    kept = tuple(a for a in acc.indices if a.plain_index() not in indices)
    return Access(acc.tensor, kept, acc.loc)


def broadcast_promotions(ins: Instruction) -> list[Instruction]:
    """The derived instructions that read one operand of `ins` broadcast over its batch lanes."""
    form = matrix_form(ins.semantics)
    if ins.kind != "compute" or ins.reuses_stationary or form is None or form.squares:
        return []
    batch = set(form.role_indices("b"))
    if not batch:
        return []
    s = ins.semantics.statements[0]
    assert isinstance(s.expr, Binary)
    out: list[Instruction] = []
    for operand in (form.lhs, form.rhs):
        if ins.broadcasts is not None and operand not in ins.broadcasts:
            continue  # the hardware cannot read this one broadcast
        lhs, rhs = s.expr.lhs, s.expr.rhs
        assert isinstance(lhs, Access) and isinstance(rhs, Access)
        if operand == form.lhs:
            lhs = _drop(lhs, batch)
        else:
            rhs = _drop(rhs, batch)
        stmt = Statement(s.target, s.indices, True, Binary("*", lhs, rhs), s.loc)
        tensors = {
            name: _decl(ins.semantics, name, lhs if name == lhs.tensor else rhs)
            if name in (lhs.tensor, rhs.tensor)
            else decl
            for name, decl in ins.semantics.tensors.items()
        }
        name = f"{ins.name}.bcast_{operand}"
        kernel = check_kernel(name, tensors, (stmt,), ins.semantics.source)
        out.append(
            dataclasses.replace(
                ins,
                name=name,
                semantics_text=str(stmt),
                semantics=kernel,
                doc=f"{ins.name} with {operand} broadcast over its lanes ({ins.semantics_text})",
                derived_from=ins.name,
            )
        )
    return out


def _decl(semantics: Kernel, name: str, access: Access) -> TensorDecl:
    decl = semantics.tensors[name]
    extents = semantics.extents[0]
    shape = tuple(extents[a.plain_index() or ""] for a in access.indices)
    return dataclasses.replace(decl, shape=shape, padding=())


def with_promotions(instructions: Mapping[str, Instruction]) -> dict[str, Instruction]:
    """`instructions` and, after each, its broadcast promotions (names never clash: '.')."""
    out: dict[str, Instruction] = {}
    for name, ins in instructions.items():
        out[name] = ins
        for derived in broadcast_promotions(ins):
            out[derived.name] = derived
    return out

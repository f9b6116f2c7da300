"""The constructor table agrees with sorts.egg, and every stage has an entry for every row."""

from __future__ import annotations

import inspect

import pytest

from isamap.egraph.tensor_types import constructor_signatures
from isamap.egraph.vocabulary import (
    CONSTRUCTORS,
    LIST_CONSTRUCTORS,
    TENSOR_CONSTRUCTORS,
    IllShapedError,
    constructor,
    shape_of,
)
from isamap.extract.cost import HOST_COSTS
from isamap.hardware import functional
from isamap.ir.mapping import LAYOUT_OPS


def test_table_matches_sorts_egg() -> None:
    sigs = constructor_signatures()
    tensor_sigs = {k: v for k, v in sigs.items() if k not in LIST_CONSTRUCTORS}
    assert tensor_sigs == {c.name: c.sorts for c in CONSTRUCTORS}


def test_literal_names_cover_the_literal_arguments() -> None:
    for c in CONSTRUCTORS:
        literal_sorts = [s for s in c.sorts if s not in ("Tensor", "TensorList")]
        assert len(c.literals) == len(literal_sorts), c.name


def test_every_host_constructor_has_a_cost_and_every_lowered_op_runs() -> None:
    host = {c.name for c in CONSTRUCTORS if c.cost == "host"}
    assert host == set(HOST_COSTS)
    source = inspect.getsource(functional.run_node)
    for c in CONSTRUCTORS:
        if c.mapping_op != "input":
            assert f'"{c.mapping_op}"' in source, f"functional machine cannot run {c.mapping_op}"
    layout = {c.mapping_op for c in CONSTRUCTORS if c.cost in ("view", "move") and c.unit != "dram"}
    assert layout == set(LAYOUT_OPS)


@pytest.mark.parametrize(
    ("name", "lits", "shapes", "want"),
    [
        ("Transpose", ("1,0",), [(3, 4)], (4, 3)),
        ("Reshape", ("2,6",), [(3, 4)], (2, 6)),
        ("Bmm", (2, 3, 5, 4), [(2, 3, 4), (2, 4, 5)], (2, 3, 5)),
        ("Instr", ("mm", 1, 3, 5, 4), [(1, 3, 4), (1, 4, 5)], (1, 3, 5)),
        ("Einsum", ("i,k;k,j;i,j",), [(3, 4), (4, 5)], (3, 5)),
        ("Slice", (1, 2, 3), [(4, 6)], (4, 3)),
        ("Concat", (0,), [(2, 5), (3, 5)], (5, 5)),
        ("BlockDiag", (0, 4), [(8, 9)], (2, 4, 9, 4)),
        ("ReduceSum", ("0,2",), [(2, 3, 4)], (3,)),
        ("Ew", ("max",), [(2, 3), (2, 3)], (2, 3)),
        ("Fn", ("sqrt",), [(7,)], (7,)),
    ],
)
def test_shape_rules(
    name: str, lits: tuple[object, ...], shapes: list[tuple[int, ...]], want: tuple[int, ...]
) -> None:
    assert shape_of(name, lits, shapes) == want


@pytest.mark.parametrize(
    ("name", "lits", "shapes"),
    [
        ("Transpose", ("0,0",), [(3, 4)]),
        ("Reshape", ("5",), [(3, 4)]),
        ("Bmm", (1, 3, 5, 4), [(1, 3, 5), (1, 4, 5)]),
        ("Slice", (1, 4, 3), [(4, 6)]),
        ("Ew", ("%",), [(2, 3), (2, 3)]),
        ("Ew", ("+",), [(2, 3), (3, 2)]),
        ("BlockDiag", (0, 3), [(8, 9)]),
    ],
)
def test_ill_shaped_terms_are_refused(
    name: str, lits: tuple[object, ...], shapes: list[tuple[int, ...]]
) -> None:
    with pytest.raises(IllShapedError):
        shape_of(name, lits, shapes)


def test_input_and_host_statement_shapes_come_from_the_kernel() -> None:
    assert shape_of("Input", ("A",), []) is None
    assert constructor("HostStmt").shape is None
    assert "TCons" not in TENSOR_CONSTRUCTORS

"""The operator table: every row parses, prints, evaluates as numpy does, and runs on a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.hardware.target_file import target_path
from isamap.ir.kernel import ELEMENTWISE_FUNCTIONS, Binary, Unary
from isamap.ir.ops import BINARY, OPERATORS, TRANSCENDENTAL, UNARY, Operator, apply
from isamap.ir.parser import parse_kernel
from isamap.ir.reference import evaluate

DECLS = "tensor A[3, 5] f32\ntensor B[3, 5] f32\n"


def _statement(op: Operator) -> str:
    if op.arity == 1:
        return "-A[i, j]" if op.spelling == "prefix" else f"{op.name}(A[i, j])"
    if op.spelling == "call":
        return f"{op.name}(A[i, j], B[i, j])"
    return f"A[i, j] {op.name} B[i, j]"


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    # positive and away from zero: sqrt and division are defined on every element
    return {n: rng.uniform(0.5, 2.0, size=(3, 5)) for n in ("A", "B")}


@pytest.mark.parametrize("op", OPERATORS, ids=lambda o: o.name)
def test_every_operator_parses_prints_and_evaluates(op: Operator) -> None:
    kernel = parse_kernel(DECLS + f"C[i, j] = {_statement(op)}\n")
    expr = kernel.statements[0].expr
    node_type = Unary if op.arity == 1 else Binary
    assert isinstance(expr, node_type)
    assert parse_kernel(str(kernel)).statements == kernel.statements  # printing round-trips
    x = _inputs()
    args = (x["A"],) if op.arity == 1 else (x["A"], x["B"])
    assert np.array_equal(evaluate(kernel, x)["C"], apply(op.name, *args))


def _erf_by_quadrature(x: float) -> float:
    """erf from its definition, 2/sqrt(pi) * integral of exp(-t^2) from 0 to x (Simpson)."""
    t = np.linspace(0.0, x, 2001)
    f = np.exp(-t * t)
    h = x / 2000
    return float(
        2 / np.sqrt(np.pi) * h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    )


REFERENCE = {
    "relu": lambda a, b: np.maximum(a, 0),
    "relu6": lambda a, b: np.clip(a, 0, 6),
    "sigmoid": lambda a, b: 1 / (1 + np.exp(-a)),
    "tanh": lambda a, b: np.tanh(a),
    "exp": lambda a, b: np.exp(a),
    "sqrt": lambda a, b: np.sqrt(a),
    "erf": lambda a, b: np.array([_erf_by_quadrature(x) for x in a]),
    "neg": lambda a, b: -a,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "max": lambda a, b: np.maximum(a, b),
    "min": lambda a, b: np.minimum(a, b),
}


def test_table_semantics_against_an_independent_spelling() -> None:
    assert set(REFERENCE) == {op.name for op in OPERATORS}
    a, b = np.linspace(-3, 3, 13), np.linspace(0.5, 4, 13)
    for op in OPERATORS:
        got = apply(op.name, a) if op.arity == 1 else apply(op.name, a, b)
        with np.errstate(invalid="ignore"):
            want = REFERENCE[op.name](a, b)
        assert np.allclose(got, want, equal_nan=True), op.name


def test_table_is_the_vocabulary_everywhere() -> None:
    assert set(ELEMENTWISE_FUNCTIONS) == {n for n, o in UNARY.items() if o.spelling == "call"}
    assert {"max", "min", "/"} <= set(BINARY)
    assert {"sigmoid", "tanh", "exp", "sqrt", "/"} <= TRANSCENDENTAL
    assert not {"+", "-", "*", "max", "min", "relu"} & TRANSCENDENTAL


def test_division_by_zero_is_ieee_not_an_error() -> None:
    out = apply("/", np.array([1.0, -1.0, 0.0]), np.zeros(3))
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])


@pytest.mark.parametrize("name", ["max", "min", "/"])
def test_new_binary_operators_compile_on_the_host_and_run(name: str) -> None:
    op = BINARY[name]
    kernel = isamap.parse_kernel(DECLS + f"C[i, j] = {_statement(op)} + 1\n")
    result = isamap.compile(kernel, isamap.load_target("gemmini"))
    x = _inputs()
    assert np.allclose(result.run(x)["C"], evaluate(kernel, x)["C"])


def test_a_max_instruction_runs_max(tmp_path: Path) -> None:
    """A vector target that declares `Z[i] = max(X[i], W[i])` maps a kernel's max onto it."""
    vecdsp = target_path("vecdsp")
    text = vecdsp.read_text() + (
        '\n[instructions.vmax]\nunit = "vpu"\nkind = "compute"\n'
        'semantics = "Z[i] = max(X[i], W[i])"\nextents = { i = 16 }\n'
        'operands = { X = "local", W = "local", Z = "local" }\n'
        'latency_cycles = 2\nissue_cycles = 1.0\nenergy_pj = 1.0\ndoc = "Max of 16 lanes."\n'
    )
    path = tmp_path / "vecmax.toml"
    path.write_text(text.replace('name = "vecdsp"', 'name = "vecmax"'))
    kernel = isamap.parse_kernel(
        "tensor A[40, 24] f32\ntensor B[40, 24] f32\nC[i, j] = max(A[i, j], B[i, j])\n"
    )
    result = isamap.compile(kernel, isamap.load_target(str(path)))
    assert "vmax" in str(result.mapping)
    rng = np.random.default_rng(0)
    x = {n: rng.standard_normal((40, 24)) for n in ("A", "B")}
    assert np.array_equal(result.run(x)["C"], np.maximum(x["A"], x["B"]))

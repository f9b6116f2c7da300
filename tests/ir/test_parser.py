"""Parser: good kernels give the expected IR; errors give file:line:col and what was expected."""

from __future__ import annotations

import pytest

from isamap.ir import Access, Affine, Binary, Const, IsamapError, SourceLoc, Unary, parse_kernel

CONV = """\
# conv2d, stride 2, dilation 2, padding 2 in H and 1:3 in W
tensor X[1, 3, 9, 10] f16 pad(0, 0, 2, 1:3)
tensor W[4, 3, 3, 3] f16
O[n, k, h, w] += X[n, c, 2*h + 2*r - 2, w*2 + (s*2) - 1] * W[k, c, r, s]
"""


def test_gemm_with_comments_and_blank_lines() -> None:
    text = (
        "# a GEMM\n\ntensor A[4, 8]   # default dtype\ntensor B[8, 3] i8\n\n"
        "C[i, j] += A[i, k] * B[k, j]\n"
    )
    k = parse_kernel(text, "g.kernel")
    assert k.name == "g"
    assert k.tensors["A"].dtype == "f32" and k.tensors["B"].dtype == "i8"
    assert k.shapes["C"] == (4, 3)
    assert k.extents[0] == {"i": 4, "j": 3, "k": 8}
    stmt = k.statements[0]
    assert stmt.accumulate and stmt.indices == ("i", "j")
    assert stmt.loc == SourceLoc("g.kernel", 6, 1)
    assert isinstance(stmt.expr, Binary)
    assert stmt.expr.lhs == Access("A", (Affine.index("i"), Affine.index("k")))
    assert isinstance(stmt.expr.lhs, Access)
    assert stmt.expr.lhs.loc == SourceLoc("g.kernel", 6, 12)


def test_conv_with_stride_dilation_and_padding() -> None:
    k = parse_kernel(CONV)
    x = k.tensors["X"]
    assert x.dtype == "f16"
    assert x.padding == ((0, 0), (0, 0), (2, 2), (1, 3))
    assert k.shapes["O"] == (1, 4, 5, 5)  # (9 + 4 - 5) // 2 + 1, (10 + 4 - 5) // 2 + 1
    expr = k.statements[0].expr
    assert isinstance(expr, Binary) and isinstance(expr.lhs, Access)
    assert expr.lhs.indices[2] == Affine((("h", 2), ("r", 2)), -2)
    assert expr.lhs.indices[3] == Affine((("w", 2), ("s", 2)), -1)


def test_affine_forms() -> None:
    text = "tensor A[20]\nB[i] = A[-(i - 3) + 2*i + 3 - 2*(1)]\n"
    k = parse_kernel(text)
    expr = k.statements[0].expr
    assert isinstance(expr, Access)
    assert expr.indices[0] == Affine((("i", 1),), 4)


def test_expression_precedence_functions_and_literals() -> None:
    text = "tensor A[3]\ntensor s[]\nB[i] = -relu(A[i]) * 2.5e-1 + exp(s[]) - -1 * (A[i] - .5)\n"
    k = parse_kernel(text)
    expr = k.statements[0].expr
    a = Access("A", (Affine.index("i"),))
    left = Binary(
        "+", Binary("*", Unary("neg", Unary("relu", a)), Const(0.25)), Unary("exp", Access("s", ()))
    )
    assert expr == Binary("-", left, Binary("*", Const(-1.0), Binary("-", a, Const(0.5))))
    assert k.shapes["s"] == ()


def test_scalar_output_sums_everything() -> None:
    k = parse_kernel("tensor A[3, 4]\ntotal[] += A[i, j]\n")
    assert k.shapes["total"] == ()
    assert k.extents[0] == {"i": 3, "j": 4}


def test_gru_text_parses() -> None:
    text = """
tensor X[2, 3]
tensor H[2, 4]
tensor W[3, 4]
tensor U[4, 4]
G[b, j] += X[b, k] * W[k, j]
G[b, j] += H[b, k] * U[k, j]
Z[b, j] = sigmoid(G[b, j])
Hn[b, j] = (1 - Z[b, j]) * tanh(G[b, j]) + Z[b, j] * H[b, j]
"""
    k = parse_kernel(text)
    assert k.written() == ("G", "Z", "Hn")
    assert k.outputs() == ("Hn",)
    assert k.inputs() == ("X", "H", "W", "U")


ERRORS = [
    ("tensor A[4]\nB[i] = foo(A[i])\n", 2, 8, "unknown function 'foo'"),
    ("tensor A[4]\nB[i] = A[i] % 2\n", 2, 13, "unexpected character '%'"),
    ("tensor A[4]\nB[i] = max(A[i])\n", 2, 16, "max() takes 2 arguments, given 1"),
    ("tensor A[4]\nB[i] = relu(A[i], A[i])\n", 2, 23, "relu() takes 1 argument, given 2"),
    ("tensor A[4]\nB[i] = A[i / 2]\n", 2, 12, "expected ',' or ']', found '/'"),
    ("tensor A[4, 4]\nB[i, j] = A[i, j\n", 2, 17, "expected ']'"),
    ("tensor A[4, 4]\nB[i, j = A[i, j]\n", 2, 8, "expected ']'"),
    ("tensor A[4, 4]\nB[i] += A[i, h*w]\n", 2, 15, "not affine"),
    ("tensor A[4, 4]\nB[i] += A[i, 1.5]\n", 2, 14, "integers"),
    ("tensor A[4] f64\n", 1, 13, "unknown dtype 'f64'"),
    ("tensor A[4, 0]\n", 1, 13, "positive"),
    ("tensor A[-4]\n", 1, 10, "positive"),
    ("tensor A[4]\n# again\ntensor A[5]\n", 3, 8, "already declared at bad.kernel:1:8"),
    ("tensor A[4, 4] pad(1)\n", 1, 16, "2 entries"),
    ("tensor A[4] pad(1:-1)\n", 1, 19, "negative"),
    ("tensor A[4]\nB[i+1] = A[i]\n", 2, 3, "bare index names"),
    ("tensor A[4]\nB[i, i] = A[i]\n", 2, 6, "appears twice"),
    ("tensor A[4]\nB[i] == A[i]\n", 2, 7, "expected an expression"),
    ("tensor A[4]\nB[i] := A[i]\n", 2, 6, "expected '+=' or '='"),
    ("tensor A[4]\nB[i] = A\n", 2, 9, "expected '['"),
    ("tensor A[4]\nB[i] = (A[i]\n", 2, 13, "expected ')'"),
    ("tensor A[4]\nB[i] = A[i] A[i]\n", 2, 13, "expected end of line"),
    ("B[i] = A[i]\ntensor A[4]\n", 2, 8, "before the first statement"),
    ("tensor A[4]\n] = 1\n", 2, 1, "expected a declaration or a statement"),
    ("tensor A[4]\nB[i] = A[relu(i)]\n", 2, 10, "only indices and integers"),
]


@pytest.mark.parametrize(("text", "line", "col", "fragment"), ERRORS)
def test_errors_point_at_the_offending_token(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(IsamapError) as info:
        parse_kernel(text, "bad.kernel")
    assert info.value.loc == SourceLoc("bad.kernel", line, col), str(info.value)
    assert fragment in info.value.message
    assert str(info.value).startswith(f"bad.kernel:{line}:{col}: ")


def test_shape_errors_carry_the_access_location() -> None:
    text = "tensor A[4, 8]\ntensor B[9, 3]\nC[i, j] += A[i, k] * B[k, j]\n"
    with pytest.raises(IsamapError) as info:
        parse_kernel(text, "mm.kernel")
    assert str(info.value.loc) == "mm.kernel:3:22"
    assert "A[4, 8]" in info.value.message and "B[9, 3]" in info.value.message


def test_unknown_tensor() -> None:
    with pytest.raises(IsamapError, match="unknown tensor Q") as info:
        parse_kernel("tensor A[4]\nB[i] = A[i] + Q[i]\n")
    assert info.value.loc == SourceLoc("<string>", 2, 15)


def test_load_kernel_names_after_stem(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from isamap.ir import load_kernel

    path = Path(str(tmp_path)) / "tiny_mm.kernel"
    path.write_text("tensor A[2, 3]\ntensor B[3, 2]\nC[i, j] += A[i, k] * B[k, j]\n")
    k = load_kernel(path)
    assert k.name == "tiny_mm" and k.source == str(path)
    with pytest.raises(IsamapError, match="cannot read"):
        load_kernel(path.with_name("missing.kernel"))


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "tensor A[4] f32\nB[i] = " + "(" * 5000 + "A[i]" + ")" * 5000 + "\n"
    with pytest.raises(IsamapError, match="nested too deeply"):
        parse_kernel(deep, "deep.kernel")
    long_sum = "tensor A[4] f32\nB[i] = " + " + ".join(["A[i]"] * 5000) + "\n"
    with pytest.raises(IsamapError, match="nested too deeply"):
        parse_kernel(long_sum, "long.kernel")

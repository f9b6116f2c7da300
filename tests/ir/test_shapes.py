"""Shape checking: tensor roles, extent inference (windows, padding, negative strides), errors."""

from __future__ import annotations

import pytest

from isamap.ir import (
    Access,
    Affine,
    Const,
    IsamapError,
    SourceLoc,
    Statement,
    TensorDecl,
    check_kernel,
    parse_kernel,
)


def extents(text: str, stmt: int = 0) -> dict[str, int]:
    return dict(parse_kernel(text).extents[stmt])


def error(text: str) -> IsamapError:
    with pytest.raises(IsamapError) as info:
        parse_kernel(text, "k.kernel")
    return info.value


def test_window_extent_is_the_largest_in_bounds() -> None:
    text = "tensor X[10]\ntensor F[3]\nY[h] += X[h + r] * F[r]\n"
    assert extents(text) == {"h": 8, "r": 3}


def test_strided_dilated_window() -> None:
    text = "tensor X[11]\ntensor F[3]\nY[h] += X[3*h + 2*r] * F[r]\n"
    # 3*(E-1) + 4 <= 10  ->  E = 3
    assert extents(text) == {"h": 3, "r": 3}


def test_padding_widens_the_readable_range() -> None:
    text = "tensor X[10] pad(1:2)\ntensor F[3]\nY[h] += X[h + r - 1] * F[r]\n"
    # h + r - 1 in [-1, 11]: E - 1 + 2 - 1 <= 11  ->  E = 11
    assert extents(text) == {"h": 11, "r": 3}


def test_negative_coefficients() -> None:
    # a reversed read: 9 - i >= 0  ->  i < 10
    assert extents("tensor X[10]\nY[i] = X[9 - i]\n") == {"i": 10}
    # full correlation with flipped taps: h - r + 2 in [0, 9] with r < 3
    text = "tensor X[10]\ntensor F[3]\nY[h] += X[h - r + 2] * F[r]\n"
    assert extents(text) == {"h": 8, "r": 3}
    assert extents("tensor X[10] pad(3:0)\nY[i] = X[2 - i]\n") == {"i": 6}


def test_index_fixed_by_another_tensor_only_later() -> None:
    # h is first seen only next to r; r comes from F, then h from X
    text = "tensor X[12]\ntensor F[5]\nY[h] += X[h + r] * F[r]\n"
    assert extents(text) == {"h": 8, "r": 5}


def test_min_over_accesses() -> None:
    text = "tensor X[10]\ntensor Z[7]\nY[i] = X[i] + Z[i]\n"
    err = error(text)
    assert "shape mismatch on index 'i'" in err.message
    text = "tensor X[5]\ntensor Z[8]\nY[i] = X[i + 1] + Z[i]\n"
    err = error(text)
    assert "out of bounds" in err.message and err.loc == SourceLoc("k.kernel", 3, 8)
    text = "tensor X[10]\ntensor Z[12]\nY[i] = X[i + 1] + Z[i + 2]\n"
    assert extents(text) == {"i": 9}


def test_matmul_shape_mismatch_names_both_tensors() -> None:
    err = error("tensor A[4, 8]\ntensor B[9, 3]\nC[i, j] += A[i, k] * B[k, j]\n")
    assert err.message == (
        "shape mismatch on index 'k': A[4, 8] has 8 in dim 1 but B[9, 3] has 9 in dim 0"
    )
    assert str(err.loc) == "k.kernel:3:22"


def test_declared_output_must_agree() -> None:
    err = error("tensor A[4, 8]\ntensor B[8, 3]\ntensor C[5, 3]\nC[i, j] += A[i, k] * B[k, j]\n")
    assert "C[5, 3] has 5" in err.message and "A[4, 8] has 4" in err.message
    err = error("tensor X[10]\ntensor Y[9]\nY[i] = X[i + 2]\n")
    assert "out of bounds" in err.message


def test_declared_output_broadcasts() -> None:
    k = parse_kernel("tensor b[3]\ntensor Y[2, 3]\nY[i, j] = b[j]\n")
    assert k.extents[0] == {"i": 2, "j": 3}
    assert k.outputs() == ("Y",)


def test_undeclared_output_index_must_appear_on_the_right() -> None:
    err = error("tensor b[3]\nY[i, j] = b[j]\n")
    assert "output index 'i'" in err.message and "declare Y" in err.message


def test_assignment_with_reduction_asks_for_accumulate() -> None:
    err = error("tensor A[3, 4]\nY[i] = A[i, k]\n")
    assert "use +=" in err.message and err.loc == SourceLoc("k.kernel", 2, 8)


def test_second_assignment_is_an_error_accumulation_is_not() -> None:
    err = error("tensor A[3]\nY[i] = A[i]\nY[i] = A[i]\n")
    assert "already written at k.kernel:2:1" in err.message
    k = parse_kernel("tensor A[3]\nY[i] = A[i]\nY[i] += A[i]\n")
    assert k.shapes["Y"] == (3,)


def test_rewritten_intermediate_keeps_its_shape() -> None:
    err = error("tensor A[3]\ntensor B[4]\nY[i] = A[i]\nY[i] += B[i]\n")
    assert "shape mismatch" in err.message and "Y[3]" in err.message


def test_read_before_write() -> None:
    err = error("tensor A[3]\nY[i] = T[i]\nT[i] = A[i]\n")
    assert "read before any statement writes it" in err.message
    err = error("tensor A[3]\ntensor Y[3]\nY[i] = A[i] + Y[i]\n")
    assert "read before" in err.message


def test_rank_mismatch() -> None:
    err = error("tensor A[3, 4]\nY[i] = A[i]\n")
    assert "rank 2" in err.message and err.loc == SourceLoc("k.kernel", 2, 8)
    err = error("tensor Y[3]\ntensor A[3]\nY[i, j] = A[i]\n")
    assert "rank 1" in err.message


def test_lower_bound_out_of_range_even_at_extent_one() -> None:
    err = error("tensor X[10]\nY[i] = X[i - 1]\n")
    assert "even with 'i' of extent 1" in err.message and err.loc == SourceLoc("k.kernel", 2, 8)


def test_undeterminable_extent() -> None:
    err = error("tensor X[10]\nY[i] += X[i + j]\n")
    assert "cannot infer the extent of index 'i'" in err.message


def test_kernel_build_checks_ir_built_directly() -> None:
    a = TensorDecl("A", (3,))
    stmt = Statement("Y", ("i",), False, Access("A", (Affine((("i", 1),), 1),)))
    k = check_kernel("shift", {"A": a}, [stmt])
    assert k.shapes["Y"] == (2,)
    with pytest.raises(IsamapError, match="unknown dtype"):
        check_kernel("bad", {"A": TensorDecl("A", (3,), "f64")}, [stmt])
    with pytest.raises(IsamapError, match="padding has 2 entries"):
        check_kernel("bad", {"A": TensorDecl("A", (3,), padding=((1, 1), (1, 1)))}, [stmt])
    dup = Statement("Y", ("i", "i"), False, Access("A", (Affine.index("i"),)))
    with pytest.raises(IsamapError, match="appears twice"):
        check_kernel("bad", {"A": a}, [dup])
    const = Statement("Y", (), False, Const(2.0))
    assert check_kernel("c", {}, [const]).shapes["Y"] == ()


def test_max_reduction_must_be_the_first_write() -> None:
    import pytest as _pytest

    from isamap.ir.errors import IsamapError as _Error
    from isamap.ir.parser import parse_kernel as parse

    with _pytest.raises(_Error, match="max= must be its first write"):
        parse("tensor X[3, 4] f32\nM[i] += X[i, j]\nM[i] max= X[i, j]\n")

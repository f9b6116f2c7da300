"""Python builders for common DL kernels (GEMM, convolutions, a GRU cell) as checked Kernels.

Each builder writes the same IR a `*.kernel` file would parse to; outputs are left undeclared so
their shapes are inferred, and each docstring states every tensor's shape.
"""

from __future__ import annotations

from isamap.ir.errors import IsamapError
from isamap.ir.kernel import (
    Access,
    Affine,
    Binary,
    Const,
    Expr,
    Kernel,
    Statement,
    TensorDecl,
    Unary,
)
from isamap.ir.shapes import check_kernel

__all__ = [
    "batched_matmul",
    "conv2d",
    "depthwise",
    "dw_separable",
    "gru_cell",
    "matmul",
    "pointwise",
]

Padding = int | str | tuple[int, int]


def _acc(tensor: str, *indices: str | Affine) -> Access:
    return Access(tensor, tuple(Affine.index(i) if isinstance(i, str) else i for i in indices))


def _mul(a: Expr, b: Expr) -> Expr:
    return Binary("*", a, b)


def _window(out: str, stride: int, tap: str, dilation: int, offset: int) -> Affine:
    """`stride*out + dilation*tap - offset` (the input position a convolution reads)."""
    return Affine(((out, stride), (tap, dilation)), -offset)


def _positive(**values: int) -> None:
    for key, v in values.items():
        if v < 1:
            raise IsamapError(f"{key} must be a positive integer, got {v}")


def _pads(padding: Padding, size: int, window: int, stride: int, dilation: int) -> tuple[int, int]:
    """(lo, hi) zero padding of one spatial dim; `same` gives ceil(size/stride) outputs."""
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + (window - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2
    if isinstance(padding, int) and padding >= 0:
        return padding, padding
    raise IsamapError(f"padding must be a non-negative int, (ph, pw) or 'same', got {padding!r}")


def _spatial_pads(
    padding: Padding, hw: tuple[int, int], rs: tuple[int, int], stride: int, dilation: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, tuple):
        if len(padding) != 2:
            raise IsamapError(f"padding tuple must be (ph, pw), got {padding!r}")
        ph = _pads(padding[0], hw[0], rs[0], stride, dilation)
        pw = _pads(padding[1], hw[1], rs[1], stride, dilation)
        return ph, pw
    return (
        _pads(padding, hw[0], rs[0], stride, dilation),
        _pads(padding, hw[1], rs[1], stride, dilation),
    )


def matmul(
    M: int,  # noqa: N803 - the literature's names for GEMM dims
    N: int,  # noqa: N803
    K: int,  # noqa: N803
    transpose_a: bool = False,
    transpose_b: bool = False,
    dtype: str = "f32",
) -> Kernel:
    """GEMM `C[i, j] += A[i, k] * B[k, j]`.

    Tensors: A[M, K] (A[K, M] read as A[k, i] if transpose_a), B[K, N] (B[N, K] read as B[j, k]
    if transpose_b), output C[M, N].
    """
    _positive(M=M, N=N, K=K)
    a_shape, a_idx = ((K, M), ("k", "i")) if transpose_a else ((M, K), ("i", "k"))
    b_shape, b_idx = ((N, K), ("j", "k")) if transpose_b else ((K, N), ("k", "j"))
    tensors = {"A": TensorDecl("A", a_shape, dtype), "B": TensorDecl("B", b_shape, dtype)}
    stmt = Statement("C", ("i", "j"), True, _mul(_acc("A", *a_idx), _acc("B", *b_idx)))
    return check_kernel("matmul", tensors, [stmt])


def batched_matmul(B: int, M: int, N: int, K: int) -> Kernel:  # noqa: N803 - GEMM dims
    """Batched GEMM `C[b, i, j] += A[b, i, k] * B[b, k, j]`.

    Tensors: A[B, M, K], B[B, K, N], output C[B, M, N].
    """
    _positive(B=B, M=M, N=N, K=K)
    tensors = {"A": TensorDecl("A", (B, M, K)), "B": TensorDecl("B", (B, K, N))}
    expr = _mul(_acc("A", "b", "i", "k"), _acc("B", "b", "k", "j"))
    return check_kernel("batched_matmul", tensors, [Statement("C", ("b", "i", "j"), True, expr)])


def conv2d(
    N: int,  # noqa: N803 - the literature's names for conv dims
    C: int,  # noqa: N803
    H: int,  # noqa: N803
    W: int,  # noqa: N803
    K: int,  # noqa: N803
    R: int,  # noqa: N803
    S: int,  # noqa: N803
    stride: int = 1,
    dilation: int = 1,
    padding: Padding = 0,
    groups: int = 1,
) -> Kernel:
    """2-D convolution, NCHW, cross-correlation as in every DL framework.

    groups == 1: X[N, C, H, W] (zero-padded via its declared padding), W[K, C, R, S], output
    O[N, K, OH, OW]; `O[n, k, h, w] += X[n, c, st*h + dl*r - ph, st*w + dl*s - pw] * W[k, c, r, s]`.

    groups > 1: a channel `g*Cg + c` is not affine in one index per dim, so the group is its own
    dim: X[N, G, Cg, H, W], W[G, Kg, Cg, R, S], output O[N, G, Kg, OH, OW] with Cg = C/G, Kg = K/G.
    (Framework layouts are these reshaped: X[N, C, H, W] = X[N, G, Cg, H, W].)

    padding: an int (both dims), (ph, pw), or "same" (OH = ceil(H/stride), extra row at the end).
    """
    _positive(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride, dilation=dilation, groups=groups)
    if C % groups or K % groups:
        raise IsamapError(f"groups={groups} must divide C={C} and K={K}")
    (ph, pw) = _spatial_pads(padding, (H, W), (R, S), stride, dilation)
    hw = (_window("h", stride, "r", dilation, ph[0]), _window("w", stride, "s", dilation, pw[0]))
    if groups == 1:
        x = TensorDecl("X", (N, C, H, W), padding=((0, 0), (0, 0), ph, pw))
        wt = TensorDecl("W", (K, C, R, S))
        expr = _mul(_acc("X", "n", "c", *hw), _acc("W", "k", "c", "r", "s"))
        out: tuple[str, ...] = ("n", "k", "h", "w")
    else:
        cg, kg = C // groups, K // groups
        x = TensorDecl("X", (N, groups, cg, H, W), padding=((0, 0), (0, 0), (0, 0), ph, pw))
        wt = TensorDecl("W", (groups, kg, cg, R, S))
        expr = _mul(_acc("X", "n", "g", "c", *hw), _acc("W", "g", "k", "c", "r", "s"))
        out = ("n", "g", "k", "h", "w")
    kernel = check_kernel("conv2d", {"X": x, "W": wt}, [Statement("O", out, True, expr)])
    if padding == "same":
        _expect_spatial(kernel, "O", (-(-H // stride), -(-W // stride)))
    return kernel


def _expect_spatial(kernel: Kernel, name: str, hw: tuple[int, int]) -> None:
    if kernel.shapes[name][-2:] != hw:
        raise IsamapError(f"'same' padding gave {name} {kernel.shapes[name]}, expected ...{hw}")


def depthwise(
    N: int,  # noqa: N803 - the literature's names for conv dims
    C: int,  # noqa: N803
    H: int,  # noqa: N803
    W: int,  # noqa: N803
    R: int,  # noqa: N803
    S: int,  # noqa: N803
    stride: int = 1,
    padding: Padding = 0,
) -> Kernel:
    """Depthwise convolution `D[n, c, h, w] += X[n, c, st*h + r - ph, st*w + s - pw] * F[c, r, s]`.

    Tensors: X[N, C, H, W] (zero-padded via its declared padding), F[C, R, S],
    output D[N, C, OH, OW].
    """
    _positive(N=N, C=C, H=H, W=W, R=R, S=S, stride=stride)
    x, f, stmt = _depthwise_parts(N, C, H, W, R, S, stride, padding)
    kernel = check_kernel("depthwise", {"X": x, "F": f}, [stmt])
    if padding == "same":
        _expect_spatial(kernel, "D", (-(-H // stride), -(-W // stride)))
    return kernel


def _depthwise_parts(
    n: int, c: int, h: int, w: int, r: int, s: int, stride: int, padding: Padding
) -> tuple[TensorDecl, TensorDecl, Statement]:
    ph, pw = _spatial_pads(padding, (h, w), (r, s), stride, 1)
    x = TensorDecl("X", (n, c, h, w), padding=((0, 0), (0, 0), ph, pw))
    f = TensorDecl("F", (c, r, s))
    hw = (_window("h", stride, "r", 1, ph[0]), _window("w", stride, "s", 1, pw[0]))
    expr = _mul(_acc("X", "n", "c", *hw), _acc("F", "c", "r", "s"))
    return x, f, Statement("D", ("n", "c", "h", "w"), True, expr)


def _pointwise_stmt(src: str) -> Statement:
    expr = _mul(_acc(src, "n", "c", "h", "w"), _acc("P", "k", "c"))
    return Statement("Y", ("n", "k", "h", "w"), True, expr)


def pointwise(N: int, C: int, H: int, W: int, K: int) -> Kernel:  # noqa: N803 - conv dims
    """Pointwise (1x1) convolution `Y[n, k, h, w] += X[n, c, h, w] * P[k, c]`.

    Tensors: X[N, C, H, W], P[K, C], output Y[N, K, H, W].
    """
    _positive(N=N, C=C, H=H, W=W, K=K)
    tensors = {"X": TensorDecl("X", (N, C, H, W)), "P": TensorDecl("P", (K, C))}
    return check_kernel("pointwise", tensors, [_pointwise_stmt("X")])


def dw_separable(
    N: int,  # noqa: N803 - the literature's names for conv dims
    C: int,  # noqa: N803
    H: int,  # noqa: N803
    W: int,  # noqa: N803
    K: int,  # noqa: N803
    R: int = 3,  # noqa: N803
    S: int = 3,  # noqa: N803
    stride: int = 1,
    padding: Padding = "same",
) -> Kernel:
    """Depthwise-separable convolution (MobileNet): depthwise, then pointwise.

    Tensors: X[N, C, H, W] (zero-padded), F[C, R, S], P[K, C]; intermediate D[N, C, OH, OW]
    (`D[n, c, h, w] += X[...] * F[c, r, s]`), output Y[N, K, OH, OW]
    (`Y[n, k, h, w] += D[n, c, h, w] * P[k, c]`).
    """
    _positive(N=N, C=C, H=H, W=W, K=K, R=R, S=S, stride=stride)
    x, f, dw = _depthwise_parts(N, C, H, W, R, S, stride, padding)
    tensors = {"X": x, "F": f, "P": TensorDecl("P", (K, C))}
    return check_kernel("dw_separable", tensors, [dw, _pointwise_stmt("D")])


def gru_cell(batch: int, input: int, hidden: int) -> Kernel:
    """One GRU step in cuDNN form (linear before reset), without biases.

    Tensors: X[batch, input], H[batch, hidden], Wz, Wr, Wh [input, hidden], Uz, Ur, Uh
    [hidden, hidden]; intermediates Gz, Gr, Xh, Hh, Z, R, N [batch, hidden];
    output Hn[batch, hidden]:

        Gz[b, j] += X[b, k] * Wz[k, j];   Gz[b, j] += H[b, k] * Uz[k, j];   Z = sigmoid(Gz)
        Gr[b, j] += X[b, k] * Wr[k, j];   Gr[b, j] += H[b, k] * Ur[k, j];   R = sigmoid(Gr)
        Xh[b, j] += X[b, k] * Wh[k, j];   Hh[b, j] += H[b, k] * Uh[k, j]
        N[b, j] = tanh(Xh[b, j] + R[b, j] * Hh[b, j])
        Hn[b, j] = (1 - Z[b, j]) * N[b, j] + Z[b, j] * H[b, j]

    The three X·W GEMMs share X and the three H·U GEMMs share H, so they can be fused.
    """
    _positive(batch=batch, input=input, hidden=hidden)
    tensors = {"X": TensorDecl("X", (batch, input)), "H": TensorDecl("H", (batch, hidden))}
    for w in ("Wz", "Wr", "Wh"):
        tensors[w] = TensorDecl(w, (input, hidden))
    for u in ("Uz", "Ur", "Uh"):
        tensors[u] = TensorDecl(u, (hidden, hidden))
    bj = ("b", "j")

    def gemm(out: str, a: str, w: str) -> Statement:
        return Statement(out, bj, True, _mul(_acc(a, "b", "k"), _acc(w, "k", "j")))

    def at(t: str) -> Access:
        return _acc(t, *bj)

    stmts = [
        gemm("Gz", "X", "Wz"),
        gemm("Gz", "H", "Uz"),
        Statement("Z", bj, False, Unary("sigmoid", at("Gz"))),
        gemm("Gr", "X", "Wr"),
        gemm("Gr", "H", "Ur"),
        Statement("R", bj, False, Unary("sigmoid", at("Gr"))),
        gemm("Xh", "X", "Wh"),
        gemm("Hh", "H", "Uh"),
        Statement("N", bj, False, Unary("tanh", Binary("+", at("Xh"), _mul(at("R"), at("Hh"))))),
        Statement(
            "Hn",
            bj,
            False,
            Binary(
                "+",
                _mul(Binary("-", Const(1.0), at("Z")), at("N")),
                _mul(at("Z"), at("H")),
            ),
        ),
    ]
    return check_kernel("gru_cell", tensors, stmts)

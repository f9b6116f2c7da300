"""The IR: index-notation kernels, their parser and shape checks, op builders, numpy reference."""

from __future__ import annotations

from isamap.ir.builders import (
    batched_matmul,
    conv2d,
    depthwise,
    dw_separable,
    gru_cell,
    matmul,
    pointwise,
)
from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import (
    ELEMENTWISE_FUNCTIONS,
    Access,
    Affine,
    Binary,
    Const,
    Expr,
    Kernel,
    Statement,
    TensorDecl,
    Unary,
    walk,
)
from isamap.ir.parser import load_kernel, parse_kernel
from isamap.ir.reference import evaluate, random_inputs
from isamap.ir.shapes import DTYPES, check_kernel

__all__ = [
    "DTYPES",
    "ELEMENTWISE_FUNCTIONS",
    "Access",
    "Affine",
    "Binary",
    "Const",
    "Expr",
    "IsamapError",
    "Kernel",
    "SourceLoc",
    "Statement",
    "TensorDecl",
    "Unary",
    "batched_matmul",
    "check_kernel",
    "conv2d",
    "depthwise",
    "dw_separable",
    "evaluate",
    "gru_cell",
    "load_kernel",
    "matmul",
    "parse_kernel",
    "pointwise",
    "random_inputs",
    "walk",
]

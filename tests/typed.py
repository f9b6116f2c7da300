"""Kernels as a user declares them for a target, and the comparison their types call for.

On an integer-only target (gemmini, VTA, VNNI, TPU v1) a float kernel is refused unless quantized,
so the tests give it integer tensors there (`isamap.quantize.integer_kernel`: int8 inputs, int32
products, a computed factor cast to int8); integer outputs are then compared bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import isamap
from isamap.ir.dtypes import is_integer
from isamap.quantize import integer_kernel, needs_quantization


def typed_for(kernel: isamap.Kernel, target: isamap.Target) -> isamap.Kernel:
    """`kernel` in `target`'s integer types where the target multiplies integers only."""
    if needs_quantization(kernel, target) is None:
        return kernel
    return integer_kernel(kernel, target)[0]


def check_outputs(
    outputs: Mapping[str, np.ndarray], kernel: isamap.Kernel, inputs: Mapping[str, np.ndarray]
) -> None:
    """Every output of `kernel` equals numpy's: bit for bit when integer, else within 1e-9."""
    reference = isamap.evaluate(kernel, inputs)
    for name in kernel.outputs():
        if is_integer(kernel.dtype(name)):
            assert np.array_equal(outputs[name], reference[name]), name
        else:
            np.testing.assert_allclose(outputs[name], reference[name], rtol=1e-9, atol=1e-9)

"""Compile a kernel for Gemmini, print the mapping and its report, run it and check it with numpy.

Run: python examples/01_compile_a_kernel.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import isamap

HERE = Path(__file__).resolve().parent


def main() -> None:
    kernel = isamap.load_kernel(HERE / "kernels" / "dw_separable.kernel")
    target = isamap.load_target("gemmini")
    inputs = isamap.random_inputs(kernel, seed=0)
    # the kernel is f32 and Gemmini multiplies int8: quantize it, with scales from these inputs
    result = isamap.compile(kernel, target, cost="latency", quantize=True, calibration=inputs)
    print(result.mapping)
    print(result.report)  # its "numbers:" line gives the scales and the error against f32

    outputs = result.run(inputs)  # tile by tile, on the instructions' own semantics, in int8
    reference = isamap.evaluate(kernel, inputs)
    q = result.quantization
    assert q is not None
    for name in kernel.outputs():
        error = float(np.abs(outputs[name] - reference[name]).max())
        assert error <= q.max_abs_error + 1e-9, name  # what the report says, no more
    print("functional run matches numpy within the quantization error for", *kernel.outputs())


if __name__ == "__main__":
    main()

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
    result = isamap.compile(kernel, target, cost="latency")
    print(result.mapping)
    print(result.report)

    inputs = isamap.random_inputs(kernel, seed=0)
    outputs = result.run(inputs)  # tile by tile, on the instructions' own semantics
    reference = isamap.evaluate(kernel, inputs)
    for name in kernel.outputs():
        assert np.allclose(outputs[name], reference[name]), name
    print("functional run matches numpy for", ", ".join(kernel.outputs()))


if __name__ == "__main__":
    main()

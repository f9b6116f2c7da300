"""An ONNX model end to end: build a small network, load it, compile it, run it, compare.

The network is a transformer encoder block (attention, LayerNorm, GELU) built with onnx.helper
and random weights (`isamap.frontend.models`; `examples/models/` writes it and MobileNetV2 and a
GRU to .onnx files). Needs the onnx extra: pip install -e ".[onnx]".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

import isamap
from isamap.frontend.models import transformer_encoder

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "encoder.onnx"
    onnx.save(transformer_encoder(seq=16, width=32, heads=4, ffn=64), str(path))
    model = isamap.load_onnx(path)  # kernels in index notation, weights as constants

print(model)
# nnp runs the f32 model as declared (on gemmini, which multiplies int8, pass quantize=True)
result = isamap.compile(model, "nnp")  # fused layers, each distinct kernel compiled once
print(result.report)

x = np.random.default_rng(0).standard_normal(model.inputs["x"])
outputs = result.run({"x": x})  # every layer's program on the simulated machine
reference = model.evaluate({"x": x})  # the numpy reference of the same kernels
for name in model.outputs:
    error = float(np.abs(outputs[name] - reference[name]).max())
    print(f"{name}: shape {outputs[name].shape}, max error against numpy {error:.2e}")
    assert error < 1e-6

"""Fusion: a contraction takes its epilogue, a depthwise convolution the pointwise one after it;
nothing read elsewhere disappears, and the fused model computes what the unfused one does."""

from __future__ import annotations

import numpy as np

from isamap.frontend import model_from_proto
from isamap.frontend.fuse import fuse
from isamap.frontend.models import mobilenet_v2, transformer_encoder
from isamap.ir.model import View
from tests.frontend.onnx_helpers import random_feed


def _same_outputs(model: object) -> None:
    m = model_from_proto(model)
    fused = fuse(m)
    feed = random_feed(m)
    want, got = m.evaluate(feed), fused.evaluate(feed)
    for name in m.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-9)
    assert fused.macs() == m.macs()


def test_mobilenet_v2_blocks_fuse_into_the_csv_rows() -> None:
    m = fuse(model_from_proto(mobilenet_v2(32)))
    ops = [layer.op for layer in m.layers()]
    assert ops[0] == "Conv+BatchNormalization+Clip"  # conv + bias + ReLU6
    blocks = [layer for layer in m.layers() if layer.kind == "dw_separable"]
    assert len(blocks) == 17  # every depthwise with its projection
    residual = [layer for layer in blocks if layer.op.endswith("+Add")]
    assert len(residual) == 10
    assert len(m.layers()) == 37


def test_fusion_keeps_values_read_later() -> None:
    m = fuse(model_from_proto(mobilenet_v2(32)))
    m.check()  # every layer's inputs are computed before it, at their shapes
    read = {v for layer in m.layers() for v in layer.inputs().values()}
    read |= {v for step in m.steps if isinstance(step, View) for v in step.sources}
    for layer in m.layers():
        for value in layer.outputs().values():
            assert value in read or value in m.outputs


def test_fused_models_compute_the_same() -> None:
    _same_outputs(mobilenet_v2(32))
    _same_outputs(transformer_encoder(8, 16, 2, 32))
    _same_outputs(transformer_encoder(8, 16, 2, 32, "relu"))


def test_gelu_chain_joins_its_matmul() -> None:
    m = fuse(model_from_proto(transformer_encoder(8, 16, 2, 32)))
    ffn = next(layer for layer in m.layers() if layer.name == "ffn/in/MatMul")
    assert "Erf" in ffn.op and ffn.op.count("Mul") == 3
    assert not any(layer.kind == "elementwise" for layer in m.layers())

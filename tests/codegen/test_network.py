"""Whole models run natively (`ModelResult.run` on a CPU target): float32 from the inputs to the
outputs, every layer's weights bound once, outputs matching onnxruntime within fp32 tolerance.

The models are small (compile time): an inverted-residual network (a strided stem, expand,
depthwise, project and residual add, pooling and a fully connected head, each convolution with
its batch normalization and ReLU6) and a GRU layer over a few steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import isamap
from isamap.codegen.network import NativeNetwork
from isamap.frontend import model_from_proto, models
from isamap.ir.errors import IsamapError
from tests.frontend.onnx_helpers import ort_outputs, random_feed

#: fp32 against onnxruntime's fp32: different summation orders
RTOL = 1e-4


def _inverted_residual() -> Any:
    """A strided stem, expand, depthwise, project and residual add, pooling and a fully
    connected head, built with the ONNX builders of `isamap.frontend.models`."""
    net = models._Net(3)
    y = net.conv_bn("X", "stem", 3, 8, 3, 2)
    e = net.conv_bn(y, "expand", 8, 32, 1, 1)
    d = net.conv_bn(e, "dw", 32, 32, 3, 1, group=32)
    p = net.conv_bn(d, "project", 32, 8, 1, 1, act=False)
    res = net.node("Add", [p, y], "res")
    out = models._head(net, res, 8, 10, "pool")
    return net.model(
        "inverted_residual", [net.tensor("X", (1, 3, 16, 16))], [net.tensor(out, (1, 10))], 13
    )


@pytest.fixture(scope="module", params=["cnn", "gru"])
def compiled(request: pytest.FixtureRequest) -> tuple[Any, isamap.ModelResult]:
    if request.param == "cnn":
        proto = _inverted_residual()
    else:
        proto = models.gru_model(steps=4, batch=2, input_size=8, hidden=8, initial_h=True)
    return proto, isamap.compile(model_from_proto(proto), "host")


def _bound(net: NativeNetwork) -> int:
    return len({id(s.program) for s in net._steps if not hasattr(s, "sources")})


def test_a_model_runs_natively_in_float32_like_onnxruntime(
    compiled: tuple[Any, isamap.ModelResult],
) -> None:
    proto, result = compiled
    assert result.runs_natively()
    for seed in (0, 1):  # twice: the bound weights and reused buffers serve every call
        feed = random_feed(result.model, seed)
        got = result.run(feed)
        want = ort_outputs(proto, feed)
        assert set(got) == set(want)
        for name, value in want.items():
            assert got[name].dtype == np.float32, name
            scale = max(1.0, float(np.abs(value).max()))
            np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=RTOL * scale, err_msg=name)
    net = result.native()
    assert net is result.native()  # built once per result
    # a GRU's steps run one program on the same weights: bound once for all of them
    assert _bound(net) == len({id(c) for c in result.compiled})


def test_the_outputs_are_the_callers(compiled: tuple[Any, isamap.ModelResult]) -> None:
    _, result = compiled
    feed = random_feed(result.model, 2)
    first = result.run(feed)
    again = result.run(random_feed(result.model, 3))
    for name, value in first.items():  # not the network's buffers, which the second run reused
        assert not np.shares_memory(value, again[name])
        np.testing.assert_array_equal(value, result.run(feed)[name])


def test_native_inputs_are_checked(compiled: tuple[Any, isamap.ModelResult]) -> None:
    _, result = compiled
    feed = random_feed(result.model, 4)
    name, value = next(iter(feed.items()))
    with pytest.raises(IsamapError, match=f"input {name} has shape"):
        result.run({**feed, name: value[None]})
    with pytest.raises(IsamapError, match="non-finite"):  # past float32's range
        result.run({**feed, name: np.full(value.shape, 1e300)})

"""Bad models: every unsupported op or attribute is one error line naming the node, its op type and
the attribute; a missing, truncated or non-ONNX file is one clear error; the CLI exits 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import isamap
from isamap.cli import cli
from isamap.frontend import models
from tests.frontend.onnx_helpers import model_of, out, rand, single_node


def _error(model: onnx.ModelProto, tmp_path: Path) -> str:
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(isamap.IsamapError) as info:
        isamap.load_onnx(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


GRU_CONSTS = {"W": rand(1, 9, 2), "R": rand(1, 9, 3)}

CASES = [
    (
        "unsupported op",
        single_node("MaxPool", {"X": (1, 2, 4, 4)}, kernel_shape=[2, 2]),
        "node the_maxpool (MaxPool): unsupported op type MaxPool",
    ),
    (
        "invalid attribute",
        single_node("Relu", {"X": (2, 3)}, alpha=0.1),
        "invalid ONNX model: Unrecognized attribute: alpha for operator Relu",
    ),
    (
        "GRU layout",
        single_node(
            "GRU",
            {"X": (1, 4, 2)},
            constants=GRU_CONSTS,
            layout=1,
            hidden_size=3,
            outputs=("Y", "Yh"),
        ),
        "node the_gru (GRU): unsupported attribute layout=1: only layout 0",
    ),
    (
        "GRU direction",
        single_node(
            "GRU",
            {"X": (4, 1, 2)},
            constants=GRU_CONSTS,
            direction="reverse",
            hidden_size=3,
            outputs=("Y", "Yh"),
        ),
        "node the_gru (GRU): unsupported attribute direction='reverse'",
    ),
    (
        "GRU clip",
        single_node(
            "GRU",
            {"X": (4, 1, 2)},
            constants=GRU_CONSTS,
            clip=2.0,
            hidden_size=3,
            outputs=("Y", "Yh"),
        ),
        "node the_gru (GRU): unsupported attribute clip=2.0",
    ),
    (
        "GRU activations",
        single_node(
            "GRU",
            {"X": (4, 1, 2)},
            constants=GRU_CONSTS,
            hidden_size=3,
            activations=["Relu", "Tanh"],
            outputs=("Y", "Yh"),
        ),
        "node the_gru (GRU): unsupported attribute activations=",
    ),
    (
        "1-D conv",
        single_node("Conv", {"X": (1, 2, 8)}, constants={"W": rand(3, 2, 3)}),
        "node the_conv (Conv): input X has shape [1, 2, 8]: only 2-D convolutions",
    ),
    (
        "training BN",
        single_node(
            "BatchNormalization",
            {"X": (1, 2, 3, 3)},
            constants={k: np.ones(2, np.float32) for k in "sbmv"},
            training_mode=1,
            opset=15,
            output_shape=(1, 2, 3, 3),
        ),
        "node the_batchnormalization (BatchNormalization): unsupported attribute training_mode=1",
    ),
    (
        "negative variance",
        single_node(
            "BatchNormalization",
            {"X": (1, 2, 3, 3)},
            constants={k: np.full(2, -1.0 if k == "v" else 1.0, np.float32) for k in "sbmv"},
            output_shape=(1, 2, 3, 3),
        ),
        "node the_batchnormalization (BatchNormalization): variance (v) + epsilon must be positive",
    ),
    (
        "Gelu approximation",
        single_node("Gelu", {"X": (2, 3)}, opset=20, approximate="fast"),
        "node the_gelu (Gelu): unsupported attribute approximate='fast'",
    ),
    (
        "non-constant clip",
        single_node("Clip", {"X": (2, 3), "lo": ()}, opset=13),
        "node the_clip (Clip): min (lo) must be a constant scalar",
    ),
    (
        "non-constant reshape",
        single_node("Reshape", {"X": (2, 3), "s": (2,)}),
        "node the_reshape (Reshape): the shape (s) must be a constant",
    ),
    (
        "shape mismatch",
        single_node("MatMul", {"A": (2, 3), "B": (4, 5)}, output_shape=(2, 5)),
        "node the_matmul (MatMul): inner dimensions differ: [2, 3] by [4, 5]",
    ),
    (
        "LayerNorm statistics",
        single_node(
            "LayerNormalization", {"X": (2, 3)}, constants={"G": rand(3)}, outputs=("Y", "mean")
        ),
        "node the_layernormalization (LayerNormalization): the Mean and InvStdDev outputs",
    ),
]


@pytest.mark.parametrize(("model", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unsupported_is_one_line_naming_the_node(
    model: onnx.ModelProto, expected: str, tmp_path: Path
) -> None:
    assert expected in _error(model, tmp_path)


def test_symbolic_dimensions_need_input_shapes(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["X"], ["Y"], name="r")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])], [out("Y")]
    )
    model = model_of(graph, 13)
    assert "input X has a symbolic or unknown dimension" in _error(model, tmp_path)
    fixed = isamap.load_onnx(tmp_path / "bad.onnx", input_shapes={"X": (2, 3)})
    assert fixed.inputs == {"X": (2, 3)}
    with pytest.raises(isamap.IsamapError, match="input_shapes gives X"):
        isamap.load_onnx(tmp_path / "bad.onnx", input_shapes={"X": (2, 4)})


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_file_is_one_clear_error(cut: float, tmp_path: Path) -> None:
    data = models.gru_model(steps=2, input_size=4, hidden=4).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(isamap.IsamapError) as info:
        isamap.load_onnx(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"tensor A[4] f32\nB[i] = A[i]\n", bytes(range(256))])
def test_non_onnx_file_is_one_clear_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    path.write_bytes(content)
    with pytest.raises(isamap.IsamapError, match="not an ONNX model"):
        isamap.load_onnx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(isamap.IsamapError, match="cannot read the ONNX file"):
        isamap.load_onnx(tmp_path / "nope.onnx")


@pytest.mark.parametrize("command", ["compile", "bench"])
def test_cli_bad_model_exits_2_with_one_line(command: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage")
    result = CliRunner().invoke(cli, [command, str(path), "--target", "gemmini"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isamap: error: ") and str(path) in lines[0]


def test_compile_says_how_to_read_a_model_proto() -> None:
    with pytest.raises(isamap.IsamapError, match="model_from_proto"):
        isamap.compile(models.gru_model(steps=2, input_size=4, hidden=4), "gemmini")  # type: ignore[call-overload]

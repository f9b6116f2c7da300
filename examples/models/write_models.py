"""Write the reference networks as .onnx files (random weights, no downloads).

    python examples/models/write_models.py [DIR]

mobilenet_v2.onnx (224x224), mobilenet_v1.onnx, gru.onnx (hidden 512, 50 steps, Y and Y_h),
transformer_encoder.onnx (sequence 128, width 256, 4 heads, GELU). Then, for example:

    isamap compile DIR/mobilenet_v2.onnx --target gemmini --out report/
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx

from isamap.frontend import models


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("onnx-models")
    out.mkdir(parents=True, exist_ok=True)
    builders = {
        "mobilenet_v2": models.mobilenet_v2,
        "mobilenet_v1": models.mobilenet_v1,
        "gru": models.gru_model,
        "transformer_encoder": models.transformer_encoder,
    }
    for name, build in builders.items():
        path = out / f"{name}.onnx"
        onnx.save(build(), str(path))
        print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()

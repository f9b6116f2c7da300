"""Gemmini's C library as the `gemmini-default` baseline every speedup on Gemmini is against.

`baseline.py` is `tiled_matmul_auto`'s tile choice, `baseline_conv.py` `tiled_conv_auto`'s, and
`conv_path.py` how the library issues a convolution (its conv path, not an im2col GEMM). Importing
this package registers them (`isamap.schedule.registry`); `gemmini.toml` names the baseline.
"""

from __future__ import annotations

from isamap.hardware.target import Target
from isamap.hardware.timing import ArrayModel
from isamap.ir.program import MatmulCall, TileSchedule
from isamap.schedule.registry import register_strategy
from isamap.targets.gemmini.baseline import gemmini_default
from isamap.targets.gemmini.baseline_conv import conv_schedule
from isamap.targets.gemmini.conv_path import conv_path

__all__ = ["BASELINE", "library_schedule"]

#: The strategy name `gemmini.toml` gives as its `baseline_schedule`.
BASELINE = "gemmini-default"


def library_schedule(model: ArrayModel, call: MatmulCall, target: Target) -> TileSchedule:
    """The schedule Gemmini's library runs `call` with: a tap accumulation that is a
    convolution its conv path takes gets `tiled_conv_auto`'s tile (`baseline_conv`), any other
    call `tiled_matmul_auto`'s (`baseline.gemmini_default`)."""
    if call.taps is not None:
        conv = conv_schedule(model, call, target)
        if conv is not None:
            return conv
    return gemmini_default(call, target)


register_strategy(BASELINE, library_schedule, issue=conv_path)

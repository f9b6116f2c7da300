"""isamap: a retargetable compiler for deep-learning accelerators.

Kernels and instruction semantics share one IR (tensor index notation); equality saturation over
an e-graph finds every way to compute a kernel with a target's instructions; a cost model picks one.
"""

from __future__ import annotations

from isamap.compile import CompileReport, CompileResult, load_target
from isamap.compile_model import ModelReport, ModelResult, compile
from isamap.egraph import Limits, RunReport
from isamap.frontend import load_onnx
from isamap.hardware.target import Target, list_targets
from isamap.ir import IsamapError, Kernel, evaluate, load_kernel, parse_kernel, random_inputs
from isamap.ir.mapping import Mapping
from isamap.ir.model import Model
from isamap.saturation import Saturation, saturate

__all__ = [
    "CompileReport",
    "CompileResult",
    "IsamapError",
    "Kernel",
    "Limits",
    "Mapping",
    "Model",
    "ModelReport",
    "ModelResult",
    "RunReport",
    "Saturation",
    "Target",
    "compile",
    "evaluate",
    "list_targets",
    "load_kernel",
    "load_onnx",
    "load_target",
    "parse_kernel",
    "random_inputs",
    "saturate",
]

__version__ = "0.1.0"

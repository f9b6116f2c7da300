"""The e-graph: egglog encoding of kernels, rule loading, saturation under limits, dumps.

The only package of isamap that imports egglog.
"""

from __future__ import annotations

from isamap.egraph.dump import EGraphDump, ENode, Ref
from isamap.egraph.encode import Encoding, encode_kernel
from isamap.egraph.saturate import Limits, RunReport, Saturation, saturate
from isamap.egraph.target_rules import DerivedRule, derive_rules

__all__ = [
    "DerivedRule",
    "EGraphDump",
    "ENode",
    "Encoding",
    "Limits",
    "Ref",
    "RunReport",
    "Saturation",
    "derive_rules",
    "encode_kernel",
    "saturate",
]

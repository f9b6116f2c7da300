"""Cost models and extraction: from a saturated e-graph to one Mapping."""

from __future__ import annotations

from isamap.extract.cost import (
    COST_MODELS,
    CostModel,
    EnergyCost,
    InstructionsCost,
    LatencyCost,
    cost_model,
    op_cost,
)
from isamap.extract.exact import ExtractionTimeLimit
from isamap.extract.methods import METHODS, extract, extract_variants

__all__ = [
    "COST_MODELS",
    "METHODS",
    "CostModel",
    "EnergyCost",
    "ExtractionTimeLimit",
    "InstructionsCost",
    "LatencyCost",
    "cost_model",
    "extract",
    "extract_variants",
    "op_cost",
]

"""Saturation in phases: which rules run when, and what each phase did.

Every iteration runs the phases in order, each once; saturation ends when an iteration changes
nothing, so the e-graph reaches the same fixpoint as running every rule together. The order
points the work at the goal: channels packed before products are laid out, layouts before
fusions, instruction rules last in each iteration, on the layouts made in it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PHASES", "PhaseStats", "phase_of_ruleset"]

#: The phases of a round, in order, and what each holds.
PHASES: dict[str, str] = {
    "packing": "splitting an index to pack independent channels (einsum-pack-channels)",
    "layout": "operand orientation and index grouping: Einsum -> Bmm, transposes, reshapes",
    "fusion": "products sharing an operand fused into one; independent small products batched",
    "instruction": "the target's instruction rules (derived and hand-written), epilogues",
}

#: Shipped rulesets and their phase; the derived instruction rules are ruleset `target`.
_SHIPPED = {"layout": "layout", "fusion": "fusion", "target": "instruction"}


def phase_of_ruleset(name: str) -> str:
    """The phase a ruleset runs in: a shipped one's; for a target's rule file, the phase its name
    starts with (`layout-...`, `packing-...`, `fusion-...`), else `instruction`."""
    if name in _SHIPPED:
        return _SHIPPED[name]
    for phase in PHASES:
        if name.startswith(f"{phase}-") or name.startswith(f"{phase}_"):
            return phase
    return "instruction"


@dataclass
class PhaseStats:
    """What one phase did over a saturation: iterations that changed the e-graph, seconds, the
    e-nodes after its last iteration, and its rules' matches."""

    iterations: int = 0
    seconds: float = 0.0
    enodes: int = 0
    matches: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "iterations": self.iterations,
            "seconds": round(self.seconds, 6),
            "enodes": self.enodes,
            "matches": self.matches,
        }

"""`isamap.saturate`: the e-graph of a kernel on a target, with extraction on it.

Extraction sits above the e-graph package (the import order tests/test_layout.py keeps), so the
saturation `egraph` returns cannot extract by itself; the public API's subclass here can.
Arguments are checked here, so a misused call is one IsamapError, not an AttributeError inside.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from isamap.egraph import Limits
from isamap.egraph import Saturation as EGraphSaturation
from isamap.egraph import saturate as saturate_egraph
from isamap.extract import extract as extract_mapping
from isamap.extract import extract_variants
from isamap.extract.cost import COST_MODELS, CostModel
from isamap.hardware.target import Target
from isamap.hardware.target_file import load_target
from isamap.ir.errors import IsamapError
from isamap.ir.kernel import Kernel
from isamap.ir.mapping import Mapping
from isamap.soundness import require_checked_rules

__all__ = ["Saturation", "check_cost", "check_kernel_arg", "check_target_arg", "saturate"]


class Saturation(EGraphSaturation):
    """A saturated e-graph for one kernel on one target: inspect it, extract from it, dump it."""

    def extract(
        self,
        cost: str | CostModel = "latency",
        method: str = "exact",
        seconds: float | None = None,
    ) -> Mapping:
        """The cheapest mapping under `cost` (a model name or a CostModel object), by `method`
        "greedy" (greedy DAG + local search) or "exact" (an ILP, at most `seconds`)."""
        return extract_mapping(self, check_cost(cost), method, seconds)

    def variants(
        self,
        n: int,
        cost: str | CostModel = "latency",
        method: str = "exact",
        seconds: float | None = None,
    ) -> list[Mapping]:
        """Up to `n` distinct mappings (n >= 0), cheapest first: the n best ("exact", an ILP
        k-best) or the greedy mapping's neighbourhood ("greedy": fast, not a k-best)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise IsamapError(f"variants: n must be an integer >= 0, not {n!r}"[:100])
        if n == 0:
            return []
        return extract_variants(self, n, check_cost(cost), method, seconds)


def saturate(
    kernel: Kernel,
    target: Target | str | os.PathLike[str],
    limits: Limits | None = None,
    disabled_rules: Collection[str] = (),
    allow_unchecked_rules: bool = False,
) -> Saturation:
    """Encode `kernel`, load the algebra and `target`'s rules, and saturate within `limits`.

    `target` is a Target, a shipped name or a path to a `.toml` file. `disabled_rules` names
    rules to leave out (to see what a rule contributes, or to compare mappings without it).
    A rule of the target's own rule file that `isamap check-rules` finds unsound or cannot
    exercise is refused (IsamapError at the rule) unless `allow_unchecked_rules`.
    """
    check_kernel_arg(kernel, "saturate")
    target = check_target_arg(target, "saturate")
    if limits is not None and not isinstance(limits, Limits):
        raise IsamapError(f"saturate: limits must be isamap.Limits, not {type(limits).__name__}")
    if isinstance(disabled_rules, str) or not all(isinstance(r, str) for r in disabled_rules):
        raise IsamapError("saturate: disabled_rules must be a collection of rule names")
    if not allow_unchecked_rules:
        require_checked_rules(target)
    sat = saturate_egraph(kernel, target, limits, disabled_rules)
    return Saturation(sat.kernel, sat.target, sat.dump, sat.report, sat.limits)


def check_kernel_arg(kernel: object, what: str) -> None:
    """IsamapError unless `kernel` is a Kernel (a string of kernel text is the common mistake)."""
    if isinstance(kernel, Kernel):
        return
    hint = " (parse kernel text with isamap.parse_kernel)" if isinstance(kernel, str) else ""
    raise IsamapError(f"{what}: expected a Kernel{hint}, not {type(kernel).__name__}")


def check_target_arg(target: object, what: str) -> Target:
    """A Target as given, or loaded from a name or path; IsamapError for anything else."""
    if isinstance(target, Target):
        return target
    if isinstance(target, str | os.PathLike):
        return load_target(target)
    raise IsamapError(
        f"{what}: expected a Target, a shipped target name or a .toml path, "
        f"not {type(target).__name__}"
    )


def check_cost(cost: object) -> str | CostModel:
    """`cost` if it is a cost model name or a CostModel object; IsamapError otherwise."""
    if isinstance(cost, str) and cost not in COST_MODELS:
        known = ", ".join(COST_MODELS)
        raise IsamapError(f"unknown cost model '{cost}' (known: {known})")
    if isinstance(cost, str | CostModel):
        return cost
    raise IsamapError(
        f"cost must be a cost model name ({', '.join(COST_MODELS)}) or an object with "
        f"`name` and `node_cost`, not {type(cost).__name__}"
    )

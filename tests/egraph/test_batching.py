"""`batch-independent-products`: small products with no input in common in one call.

The rule's terms are checked with numpy like every computed rule; on gemmini (16x16x16) the cost
model chooses the batched call for two 16x8.8x8 products and for two 8x8.8x16 ones, the result
equals numpy, and the rule adds nothing where the products already fill the array or share an
input.
"""

from __future__ import annotations

import pytest

import isamap
from isamap.egraph.batching import batch_fits
from isamap.egraph.computed_rules import COMPUTED_RULES
from isamap.egraph.saturate import saturate_with
from isamap.soundness import check_eclasses
from tests.typed import check_outputs

RULE = "batch-independent-products"


def _two(m1: int, k1: int, n1: int, m2: int, k2: int, n2: int, dtype: str = "i8") -> str:
    return (
        f"tensor A1[{m1}, {k1}] {dtype}\ntensor B1[{k1}, {n1}] {dtype}\n"
        f"tensor A2[{m2}, {k2}] {dtype}\ntensor B2[{k2}, {n2}] {dtype}\n"
        "P[i, j] += A1[i, k] * B1[k, j]\nQ[i, j] += A2[i, k] * B2[k, j]\n"
    )


@pytest.fixture(scope="module")
def gemmini() -> isamap.Target:
    return isamap.load_target("gemmini")


def test_the_guard_counts_instruction_tiles() -> None:
    tile = [(16, 16, 16)]
    assert batch_fits((16, 8, 8), (16, 8, 8), (16, 16, 16), tile)  # 1 tile instead of 2
    assert not batch_fits((16, 16, 16), (16, 8, 8), (16, 24, 24), tile)  # one already fills it
    assert not batch_fits((16, 8, 16), (16, 8, 8), (16, 16, 24), tile)  # K would spill
    assert batch_fits((16, 16, 16), (16, 8, 8), (16, 24, 24), [(16, 32, 32)])  # a wider array
    # 12 tiles apart, 9 batched, but more than the 6 of either: a GRU's X.W and H.U stacked
    assert not batch_fits((3, 48, 20), (3, 48, 24), (6, 48, 44), tile)


@pytest.mark.parametrize(
    "text",
    [_two(3, 2, 4, 3, 3, 2, "f32"), _two(2, 3, 4, 3, 2, 4, "f32"), _two(3, 2, 4, 3, 3, 4, "f32")],
    ids=["same-m", "same-n", "both"],
)
def test_rule_is_sound_and_fires(gemmini: isamap.Target, text: str) -> None:
    kernel = isamap.parse_kernel(text)
    sat = saturate_with(kernel, gemmini, [], computed_rules=COMPUTED_RULES)
    assert sat.report.matches_per_rule[RULE] > 0
    zeros = [n for nodes in sat.dump.classes.values() for n in nodes if n.op == "Full"]
    assert zeros and all(float(z.args[0]) == 0.0 for z in zeros)
    found = check_eclasses(sat, seed=4)
    assert found is None, f"{RULE} is unsound:\n{found}"


@pytest.mark.parametrize(
    "text",
    [
        _two(16, 16, 16, 16, 16, 16, "f32"),  # each fills the 16x16 array already
        "tensor A[4, 3] f32\ntensor B1[3, 4] f32\ntensor B2[3, 2] f32\n"  # a shared input: fusion
        "P[i, j] += A[i, k] * B1[k, j]\nQ[i, j] += A[i, k] * B2[k, j]\n",
        "tensor A[4, 3] f32\ntensor B[3, 4] f32\ntensor C[4, 2] f32\n"  # Q reads P
        "P[i, j] += A[i, k] * B[k, j]\nQ[i, j] += P[i, k] * C[k, j]\n",
    ],
    ids=["large", "shared-input", "dependent"],
)
def test_rule_does_not_fire_where_it_cannot_help(gemmini: isamap.Target, text: str) -> None:
    kernel = isamap.parse_kernel(text)
    sat = saturate_with(kernel, gemmini, [], computed_rules=COMPUTED_RULES)
    assert sat.report.matches_per_rule[RULE] == 0


@pytest.mark.parametrize(
    ("dims", "batched"),
    [((16, 8, 8, 16, 8, 8), True), ((8, 8, 16, 8, 8, 16), True), ((32, 32, 32, 32, 32, 32), False)],
    ids=["side-by-side", "stacked", "large"],
)
def test_the_cost_model_chooses_one_call_where_it_is_faster(
    gemmini: isamap.Target, dims: tuple[int, ...], batched: bool
) -> None:
    kernel = isamap.parse_kernel(_two(*dims), name="two_gemms")
    result = isamap.compile(kernel, gemmini)
    calls = result.mapping.instruction_calls()
    assert len(calls) == (1 if batched else 2), result.mapping
    inputs = isamap.random_inputs(kernel, seed=6)
    check_outputs(result.run(inputs), kernel, inputs)
    if batched:  # the zero blocks are loaded and multiplied: half the MACs are not useful
        assert "50.0% of their MACs are useful" in "\n".join(result.mapping.call_summary())
        apart = isamap.compile(kernel, gemmini, disabled_rules=[RULE])
        assert len(apart.mapping.instruction_calls()) == 2
        assert result.report.cycles < apart.report.cycles

"""The e-graph's shape analysis (`shape` in rules/sorts.egg) against the constructor table.

Every e-class of a saturated e-graph carries its shape in egglog — set by the encoder and the
computed rules for the terms they write, by the `shapes` rules for the terms egglog rules create —
so the dump reads shapes instead of re-inferring them, and rule files can guard on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import isamap
from isamap.egraph import saturate
from isamap.egraph.dump import _node_shape
from isamap.egraph.rule_file import read_rule_file
from isamap.egraph.saturate import SHAPE_RULES, check_rule_names
from isamap.hardware.target_file import target_path
from isamap.ir import builders
from isamap.ir.errors import IsamapError

KERNELS = {
    "gemm_at_b": lambda: builders.matmul(24, 20, 28, transpose_a=True),
    "conv_strided": lambda: builders.conv2d(1, 8, 11, 11, 16, 3, 3, stride=2, padding=1),
    "dw_separable": lambda: builders.dw_separable(1, 16, 10, 10, 32),
    "gru_cell": lambda: builders.gru_cell(8, 24, 16),
    "fc_bias_relu": lambda: isamap.parse_kernel(
        "tensor X[12, 20] i8\ntensor W[20, 24] i8\ntensor bias[24] i32\n"
        "T[b, j] += X[b, k] * W[k, j]\nY[b, j] = relu(T[b, j] + bias[j])\n",
        name="fc_bias_relu",
    ),
}


NVDLA = str(Path(__file__).resolve().parents[2] / "examples" / "isa" / "nvdla.toml")


@pytest.mark.parametrize("target", ["gemmini", "nnp", "vecdsp", NVDLA])
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_eclass_has_its_shape_from_the_egraph(target: str, name: str) -> None:
    kernel = KERNELS[name]()
    dump = saturate(kernel, isamap.load_target(target)).dump
    assert dump.inferred_shapes == 0
    tensors = [c for c, nodes in dump.classes.items() if nodes[0].op not in ("TNil", "TCons")]
    assert set(tensors) <= set(dump.shapes)
    for cid in tensors:  # each e-node's shape by the table agrees with its e-class's analysis
        for node in dump.classes[cid]:
            table = _node_shape(node, dump.shapes, kernel)
            assert table is None or table == dump.shapes[cid], (node, dump.shapes[cid])


def test_shapes_are_not_counted_as_rule_matches() -> None:
    report = saturate(builders.matmul(16, 16, 16), isamap.load_target("gemmini")).report
    assert SHAPE_RULES and not SHAPE_RULES & set(report.matches_per_rule)
    assert report.matches_per_rule["bmm-swap-operands"] > 0


GUARDED = (
    "(ruleset mine)\n"
    '(rule ((= t (Fn "relu" x)) (= (shape t) "12,20"))\n'
    '      ((union t (Fn "relu" (Fn "relu" x)))) :ruleset mine :name "relu-idempotent-12x20")\n'
)

RELU = """
tensor X[{m}, 20] f32
Y[i, j] = relu(X[i, j])
"""


def test_a_rule_file_can_guard_on_shapes(tmp_path: Path) -> None:
    toml = tmp_path / "chip.toml"
    shutil.copy(target_path("gemmini"), toml)
    (tmp_path / "chip.egg").write_text(GUARDED)
    chip = isamap.load_target(str(toml))
    for m, fires in ((12, True), (13, False)):
        kernel = isamap.parse_kernel(RELU.format(m=m), name="relu")
        matches = saturate(kernel, chip).report.matches_per_rule
        assert (matches["relu-idempotent-12x20"] > 0) is fires


def test_a_rule_file_may_not_take_a_shape_rules_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.egg"
    path.write_text(
        '(ruleset mine)\n(rewrite (Fn "relu" x) (Fn "relu" x) :ruleset mine :name "shape-of-fn")\n'
    )
    forms = read_rule_file(path)[1]
    with pytest.raises(IsamapError, match="already a rule of isamap's"):
        check_rule_names(forms, isamap.load_target("gemmini"))

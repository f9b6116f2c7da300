"""A contraction instruction whose semantics chains a function onto its product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.egraph.target_rules import derive_rules
from isamap.hardware.target_file import target_path
from isamap.ir.errors import IsamapError
from isamap.soundness import check_rules

VECDSP = target_path("vecdsp")
PLAIN = 'semantics = "C[i, j] += A[i, k] * B[k, j]"\nextents = { i = 1, j = 16, k = 1 }'
PLAIN_OPERANDS = 'operands = { A = "local", B = "local", C = "vregs" }'


def _target(tmp_path: Path, chain: str, operands: str = "") -> isamap.Target:
    text = VECDSP.read_text()
    assert PLAIN in text and PLAIN_OPERANDS in text
    text = text.replace(
        PLAIN,
        f'semantics = """\nC[i, j] += A[i, k] * B[k, j]\n{chain}\n"""\n'
        "extents = { i = 1, j = 16, k = 1 }",
    )
    ops = operands or 'operands = { A = "local", B = "local", C = "vregs", D = "vregs" }'
    text = text.replace(PLAIN_OPERANDS, ops, 1)
    path = tmp_path / "chained.toml"
    path.write_text(text.replace('name = "vecdsp"', 'name = "chained"'))
    return isamap.load_target(str(path))


def test_a_chained_relu_maps_only_products_under_relu(tmp_path: Path) -> None:
    target = _target(tmp_path, "D[i, j] = relu(C[i, j])")
    assert target.instruction("vmac").chain == "relu"
    fused = isamap.parse_kernel(
        "tensor A[20, 12] f32\ntensor B[12, 40] f32\n"
        "T[i, j] += A[i, k] * B[k, j]\nY[i, j] = relu(T[i, j])\n"
    )
    result = isamap.compile(fused, target)
    calls = [n for n in result.mapping.nodes if n.op == "instr"]
    assert calls and all(n.attrs["instruction"] == "vmac" for n in calls)
    assert all(n.attrs["epilogue"] == "relu" for n in calls)
    x = isamap.random_inputs(fused)
    want = isamap.evaluate(fused, x)
    assert np.allclose(result.run(x)["Y"], want["Y"])

    plain = isamap.parse_kernel(
        "tensor A[20, 12] f32\ntensor B[12, 40] f32\nT[i, j] += A[i, k] * B[k, j]\n"
    )
    result = isamap.compile(plain, target)
    assert not [n for n in result.mapping.nodes if n.op == "instr"]  # vmac would relu it
    x = isamap.random_inputs(plain)
    assert np.allclose(result.run(x)["T"], isamap.evaluate(plain, x)["T"])


def test_the_chained_rule_is_sound(tmp_path: Path) -> None:
    target = _target(tmp_path, "D[i, j] = relu(C[i, j])")
    assert "bmm-to-vmac" not in {r.name for r in derive_rules(target)}
    (check,) = check_rules(target, only={"relu-of-bmm-to-vmac"})  # the rules before it trusted
    assert check.verdict == "ok"


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        ("D[i, j] = C[i, j] + C[i, j]", "is not a function and/or a per-column bias"),
        ("D[j, i] = relu(C[i, j])", "is not a function and/or a per-column bias"),
        ("D[i, j] = relu(C[i, j])\nE[i, j] = tanh(D[i, j])", "chains 2 statements"),
    ],
)
def test_a_chain_that_cannot_map_is_refused_at_load(
    tmp_path: Path, chain: str, reason: str
) -> None:
    operands = 'operands = { A = "local", B = "local", C = "vregs", D = "vregs", E = "vregs" }'
    if "E[" not in chain:
        operands = ""
    with pytest.raises(IsamapError, match=reason) as info:
        _target(tmp_path, chain, operands)
    loc = info.value.loc
    assert loc is not None and loc.file.endswith("chained.toml") and loc.line is not None

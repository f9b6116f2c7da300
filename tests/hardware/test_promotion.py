"""Role promotion by broadcast: readings only for the operands the hardware can broadcast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.ir.errors import IsamapError

VNNI = Path(__file__).resolve().parents[2] / "examples" / "isa" / "vnni.toml"


def _vnni(tmp_path: Path, broadcasts: str | None) -> isamap.Target:
    text = VNNI.read_text()
    line = 'broadcasts = ["B"]'
    assert line in text
    text = text.replace(line, "" if broadcasts is None else f"broadcasts = {broadcasts}")
    path = tmp_path / "vnni.toml"
    path.write_text(text)
    return isamap.load_target(str(path))


@pytest.mark.parametrize(
    ("broadcasts", "readings"),
    [
        (None, {"vpdpbusd.bcast_A", "vpdpbusd.bcast_B"}),
        ('["B"]', {"vpdpbusd.bcast_B"}),
        ('["A"]', {"vpdpbusd.bcast_A"}),
        ("[]", set()),
    ],
)
def test_readings_follow_the_broadcasts_key(
    tmp_path: Path, broadcasts: str | None, readings: set[str]
) -> None:
    target = _vnni(tmp_path, broadcasts)
    assert {n for n in target.instructions if ".bcast_" in n} == readings


def test_shipped_vnni_maps_a_gemm_with_b_broadcast() -> None:
    target = isamap.load_target(str(VNNI))
    kernel = isamap.parse_kernel(
        "tensor A[64, 64] i8\ntensor B[64, 48] i8\nC[i, j] += A[i, k] * B[k, j]\n"
    )
    result = isamap.compile(kernel, target)
    used = {str(n.attrs["instruction"]) for n in result.mapping.nodes if n.op == "instr"}
    assert used == {"vpdpbusd.bcast_B"}
    x = isamap.random_inputs(kernel)
    assert np.array_equal(result.run(x)["C"], isamap.evaluate(kernel, x)["C"])


def test_broadcasts_must_name_input_operands(tmp_path: Path) -> None:
    with pytest.raises(IsamapError, match="broadcasts"):
        _vnni(tmp_path, '["C"]')

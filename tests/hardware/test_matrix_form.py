"""Matrix forms with several indices per role, and instructions that can never be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isamap
from isamap.hardware.functional import run_instruction
from isamap.hardware.matrix_form import contraction_problem, matrix_form


def _form(text: str) -> isamap.Kernel:
    return isamap.parse_kernel(text)


def test_vnni_quad_splits_k_row_major() -> None:
    """AMX tdpbusd: K is (k, q), 16 x 4; a kernel's K axis is split k * 4 + q."""
    kernel = _form(
        "tensor A[16, 16, 4] i8\ntensor B[16, 16, 4] i8\nC[m, n] += A[m, k, q] * B[k, n, q]\n"
    )
    form = matrix_form(kernel)
    assert form is not None
    assert form.role_indices("k") == ("k", "q")
    assert (form.tile("m"), form.tile("n"), form.tile("k")) == (16, 16, 64)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1, 40, 150)), rng.standard_normal((1, 150, 20))
    np.testing.assert_allclose(run_instruction(form, x, y), x @ y, atol=1e-9)


def test_two_m_indices_and_transposed_output() -> None:
    """An mma-style fragment covering M with two indices, writing its result transposed."""
    kernel = _form(
        "tensor A[2, 4, 8] f32\ntensor B[8, 4] f32\nC[n, a, b] += A[a, b, k] * B[k, n]\n"
    )
    form = matrix_form(kernel)
    assert form is not None
    assert form.role_indices("m") == ("a", "b") and form.tile("m") == 8
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 13, 17)), rng.standard_normal((3, 17, 9))
    np.testing.assert_allclose(run_instruction(form, x, y), x @ y, atol=1e-9)


def test_square_instruction_only_squares() -> None:
    kernel = _form("tensor A[8, 8] f32\nC[i, j] += A[i, k] * A[k, j]\n")
    form = matrix_form(kernel)
    assert form is not None and form.squares
    assert contraction_problem(kernel) is None


@pytest.mark.parametrize(
    ("semantics", "reason"),
    [
        ("tensor A[4, 2] f32\ntensor B[4] f32\nC[i] += A[i, q] * B[i]\n", "within operand A"),
        (
            "tensor A[4] f32\ntensor B[4] f32\ntensor D[4] f32\nC[i] += A[i] * B[i] * D[i]\n",
            "not a tensor access",
        ),
        ("tensor X[4, 6] f32\ntensor W[3] f32\nO[h] += X[h, h + r] * W[r]\n", "affine"),
    ],
)
def test_unusable_contractions_have_a_reason(semantics: str, reason: str) -> None:
    problem = contraction_problem(_form(semantics))
    assert problem is not None and reason in problem


def _target_with(tmp_path: Path, semantics: str, extents: str) -> Path:
    text = (Path(__file__).parents[2] / "examples/new_hardware/tiny8.toml").read_text()
    start = text.index("[instructions.mmrelu]")
    end = text.index("[instructions.mmrelu_reuse]")
    block = text[start:end]
    block = block.replace(
        'semantics = "C[i, j] += A[i, k] * B[k, j]"', f'semantics = "{semantics}"'
    )
    block = block.replace("extents = { i = 8, j = 8, k = 8 }", f"extents = {extents}")
    path = tmp_path / "chip.toml"
    path.write_text(text[:start] + block + text[end:])
    return path


@pytest.mark.parametrize(
    ("semantics", "extents", "reason"),
    [
        ("C[i, j] += A[i] * B[i]", "{ i = 8, j = 8 }", "appears only in the result"),
        ("C[i] += A[i, k] * B[i]", "{ i = 8, k = 8 }", "summed within operand A alone"),
        ("C[i, j] = A[i, j] + B[i, j] + A[i, j]", "{ i = 8, j = 8 }", "is not one function"),
        ("C[i, j] += A[i, j + k] * B[k, j]", "{ i = 8, j = 8, k = 8 }", "affine"),
    ],
)
def test_unusable_instruction_is_an_error_at_load(
    tmp_path: Path, semantics: str, extents: str, reason: str
) -> None:
    path = _target_with(tmp_path, semantics, extents)
    with pytest.raises(isamap.IsamapError) as info:
        isamap.load_target(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    line = int(message.split(":")[1])
    assert "semantics" in path.read_text().splitlines()[line - 1]
    assert "can never be used" in message and reason in message

"""The element types: round-to-nearest-even conversions checked against independent oracles
(numpy's own float16 and float32 casts, the bit-level bf16 rounding, every fp8 code decoded),
known values, integer saturation and wraparound, and which types hold which."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isamap.ir.dtypes import DTYPES, KERNEL_DTYPES, canonical_dtype, dtype, fits
from isamap.ir.errors import IsamapError


def _wide_values(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * np.exp(rng.uniform(-40, 40, n))


def test_the_kernel_types_are_the_issue_s_set() -> None:
    assert set(KERNEL_DTYPES) == {
        "u8", "i8", "i16", "i32", "bf16", "f16", "f32", "fp8_e4m3", "fp8_e5m2",
    }  # fmt: skip
    assert [dtype(t).bytes for t in ("u8", "i16", "i32", "bf16", "fp8_e5m2")] == [1, 2, 4, 2, 1]
    assert canonical_dtype("int8") == "i8"
    with pytest.raises(IsamapError, match="unknown element type 'f7'"):
        dtype("f7")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**20))
def test_f16_and_f32_match_numpy_casts(seed: int) -> None:
    x = _wide_values(seed)
    with np.errstate(over="ignore"):
        assert np.array_equal(dtype("f16").convert(x), x.astype(np.float16).astype(float))
        assert np.array_equal(dtype("f32").convert(x), x.astype(np.float32).astype(float))


def _bf16_by_bits(x32: np.ndarray) -> np.ndarray:
    """bf16 rounding of float32 values on their bits: add 0x7fff plus the kept lsb, truncate."""
    bits = x32.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**20))
def test_bf16_matches_the_bit_level_rounding(seed: int) -> None:
    x = _wide_values(seed)
    x = x[np.abs(x) < 3e38].astype(np.float32)
    assert np.array_equal(dtype("bf16").convert(x.astype(np.float64)), _bf16_by_bits(x))


def test_bf16_known_values() -> None:
    bf16 = dtype("bf16")
    one_ulp = 2.0**-7
    got = bf16.convert([1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 2 + 1e-9, 3.4e38])
    assert list(got[:3]) == [1.0, 1 + 2 * one_ulp, 1 + one_ulp]  # ties to even, else nearest
    assert np.isinf(got[3])  # rounds past the largest bf16, 3.3895e38
    assert bf16.hi == pytest.approx(3.3895313892515355e38)
    assert bf16.convert([3.4e38], "saturate")[0] == bf16.hi
    assert bf16.convert([2.0**-133])[0] == 2.0**-133  # the smallest subnormal
    assert bf16.convert([2.0**-134])[0] == 0.0  # half of it: a tie, to even (zero)


def _fp8_values(exp_bits: int, man_bits: int, ieee: bool) -> np.ndarray:
    """Every finite value of an fp8 format, by decoding its 256 codes."""
    bias = 2 ** (exp_bits - 1) - 1
    out = []
    for code in range(256):
        sign = -1.0 if code >> 7 else 1.0
        e = (code >> man_bits) & ((1 << exp_bits) - 1)
        m = code & ((1 << man_bits) - 1)
        if ieee and e == (1 << exp_bits) - 1:
            continue  # inf / nan
        if not ieee and e == (1 << exp_bits) - 1 and m == (1 << man_bits) - 1:
            continue  # e4m3fn: only S.1111.111 is nan
        if e == 0:
            out.append(sign * m * 2.0 ** (1 - bias - man_bits))
        else:
            out.append(sign * (1 + m / 2**man_bits) * 2.0 ** (e - bias))
    return np.unique(out)


@pytest.mark.parametrize(
    ("name", "exp_bits", "man_bits", "ieee"),
    [("fp8_e4m3", 4, 3, False), ("fp8_e5m2", 5, 2, True)],
)
def test_fp8_rounds_to_the_nearest_code_ties_to_even(
    name: str, exp_bits: int, man_bits: int, ieee: bool
) -> None:
    t = dtype(name)
    grid = _fp8_values(exp_bits, man_bits, ieee)
    assert grid.max() == t.hi
    assert np.array_equal(t.convert(grid), grid)  # every code is a fixed point
    rng = np.random.default_rng(1)
    x = rng.uniform(-t.hi, t.hi, 5000) * rng.choice([1, 1e-2, 1e-4], 5000)
    got = t.convert(x)
    idx = np.clip(np.searchsorted(grid, x), 1, len(grid) - 1)
    lo, hi = grid[idx - 1], grid[idx]
    nearest = np.where(np.abs(x - lo) <= np.abs(hi - x), lo, hi)
    ties = np.abs(x - lo) == np.abs(hi - x)
    assert np.array_equal(got[~ties], nearest[~ties])
    # midpoints between neighbours go to the one with an even last mantissa bit
    mids = (grid[:-1] + grid[1:]) / 2
    picked = t.convert(mids)
    assert set(np.unique(picked)) <= set(grid)
    even = [v for v in picked if _mantissa_lsb(v, man_bits, exp_bits) == 0]
    assert len(even) == len(picked)


def _mantissa_lsb(v: float, man_bits: int, exp_bits: int) -> int:
    if v == 0:
        return 0
    bias = 2 ** (exp_bits - 1) - 1
    e = max(int(np.floor(np.log2(abs(v)))), 1 - bias)
    return round(abs(v) / 2.0 ** (e - man_bits)) & 1


def test_fp8_known_values() -> None:
    e4m3, e5m2 = dtype("fp8_e4m3"), dtype("fp8_e5m2")
    got = e4m3.convert([448, 464, 465, 2**-9, 2**-10, 2**-10 * 1.01, -17])
    assert list(got[[0, 1, 3, 4, 5, 6]]) == [448, 448, 2**-9, 0, 2**-9, -16]
    assert np.isnan(got[2])  # no infinities: past 464 is nan (non-saturating conversion)
    assert e4m3.convert([1000], "saturate")[0] == 448
    got = e5m2.convert([57344, 61440, 2**-16, 2**-17])
    assert list(got[[0, 2, 3]]) == [57344, 2**-16, 0] and np.isinf(got[1])


def test_integers_round_half_to_even_then_saturate_or_wrap() -> None:
    i8, u8 = dtype("i8"), dtype("u8")
    assert list(i8.convert([2.5, 3.5, -2.5, 127.4, 300, -129])) == [2, 4, -2, 127, 127, -128]
    assert list(i8.convert([128, 300, -129, 255], "wrap")) == [-128, 44, 127, -1]
    assert list(u8.convert([-3, 256, 255.5], "saturate")) == [0, 255, 255]
    assert list(u8.convert([-1, 256], "wrap")) == [255, 0]
    assert list(dtype("i16").convert([40000], "wrap")) == [40000 - 65536]


def test_an_overflowed_float_saturates_to_the_integer_bound() -> None:
    """+-inf (a float that overflowed) saturates; it has no wrapped value, and NaN no value."""
    assert list(dtype("i8").convert([np.inf, -np.inf])) == [127, -128]
    with pytest.raises(IsamapError, match="non-finite"):
        dtype("i8").convert([np.inf], "wrap")
    with pytest.raises(IsamapError, match="non-finite"):
        dtype("i8").convert([np.nan])


def test_which_types_hold_which() -> None:
    assert fits("i8", "bf16") and fits("u8", "bf16") and fits("i8", "i16") and fits("u8", "i16")
    assert fits("fp8_e4m3", "bf16") and fits("bf16", "f32") and fits("f16", "f32")
    assert not fits("f32", "bf16") and not fits("f32", "i32") and not fits("i8", "u8")
    assert not fits("i32", "f32") and not fits("bf16", "f16") and not fits("i16", "bf16")
    assert all(fits(t, t) for t in DTYPES)

"""`einsum-to-taps`'s guard: which window products are tap accumulations, and why the others
are not (each refusal leaves the product to `einsum-to-bmm`)."""

from __future__ import annotations

import pytest

from isamap.egraph.computed_rules import tap_roles
from isamap.ir.window import WindowSpec


def _roles(spec: str, views: str, other: str, out: str) -> dict[str, list[str]] | str:
    def axes(text: str) -> tuple[str, ...]:
        return tuple(text.split(","))

    return tap_roles(WindowSpec.parse(spec), axes(views), axes(other), axes(out))


def test_a_strided_grouped_convolution_has_every_role() -> None:
    roles = _roles(
        "n=1,g=2,c=3,h=4,r=3,w=4,s=3|1*n+0;1*g+0;1*c+0;2*h+1*r+-1;2*w+1*s+-1",
        "n,g,c,h,r,w,s",
        "g,k,c,r,s",
        "n,g,k,h,w",
    )
    assert roles == {
        "b": ["g"],
        "rows": ["n", "h", "w"],
        "cols": ["k"],
        "taps": ["r", "s"],
        "channels": ["c"],
    }


@pytest.mark.parametrize(
    ("spec", "views", "other", "out", "reason"),
    [
        # a strided 1x1 convolution: nothing shifts an output index
        ("c=3,h=4|1*c+0;2*h+0", "c,h", "c,k", "k,h", "no tap"),
        # depthwise: the channel is a batch index, nothing is contracted per tap
        ("c=3,h=4,r=3|1*c+0;1*h+1*r+-1", "c,h,r", "c,r", "c,h", "no channel"),
        ("c=3,h=4,r=3,q=2|1*c+1*q+0;1*h+1*r+-1", "c,h,r,q", "c,r", "h", "one operand only"),
        ("c=3,h=4,r=3|1*c+1*r+0;1*h+1*r+-1", "c,h,r", "c,r,k", "k,h", "mixes channels"),
        ("g=2,c=3,h=4,r=3|1*g+0;1*c+0;1*h+1*g+1*r+0", "g,c,h,r", "g,c,r,k", "g,k,h", "batch"),
    ],
    ids=["pointwise", "depthwise", "summed-in-one", "mixed", "batch-moves-pixels"],
)
def test_refusals_say_why(spec: str, views: str, other: str, out: str, reason: str) -> None:
    got = _roles(spec, views, other, out)
    assert isinstance(got, str) and reason in got, got

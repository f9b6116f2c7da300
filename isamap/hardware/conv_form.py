"""The direct-convolution form of a compute instruction whose semantics has window accesses.

`O[k, h, w] += X[c, h + r, w + s] * W[k, c, r, s]` (an NVDLA-style convolution core) is read with
the same function that reads a kernel's convolution (`ir.conv.conv_geometry`): output channels
`k`, input channels `c`, output pixels `h, w`, filter taps `r, s`. Its extents are one call's
block: `k` and `c` the atomic output- and input-channel counts, the pixel indices the stripe of
outputs one weight block is held for, and the tap extents the largest filter the engine's
sequencer walks in one call (a call runs only the kernel's own taps, one atomic operation per tap,
as NVDLA's CSC does for the kernel size it is programmed with). What else the engine handles on
the way in is declared beside the semantics: `strides`, `dilations` (each the values it supports;
default: the coefficients the semantics writes) and `max_padding` (zero rows its DMA adds at an
edge; default 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from isamap.ir.conv import ConvGeometry, conv_geometry
from isamap.ir.einsum import einsum_spec
from isamap.ir.kernel import Access, Binary, Kernel
from isamap.ir.window import WindowSpec

if TYPE_CHECKING:
    from isamap.hardware.target import Instruction

__all__ = [
    "ConvForm",
    "conv_form",
    "conv_form_problem",
    "has_window_access",
    "instruction_conv_form",
]


@dataclass(frozen=True)
class ConvForm:
    """A direct-convolution instruction: its operands, block and what its DMA supports."""

    x: str
    w: str
    out: str
    geometry: ConvGeometry  # the instruction's own semantics, read as a convolution
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    max_padding: int

    @property
    def stripe(self) -> int:
        """Output pixels per block (the M extent)."""
        return self.geometry.pixels

    @property
    def atom_k(self) -> int:
        return self.geometry.k

    @property
    def atom_c(self) -> int:
        return self.geometry.c

    @property
    def max_taps(self) -> tuple[int, ...]:
        return tuple(s.taps for s in self.geometry.spatial)

    def supports(self, g: ConvGeometry) -> str | None:
        """Why this instruction cannot run convolution `g` as a direct convolution, or None."""
        windowed = [s for s in g.spatial if s.taps > 1 or s.stride > 1 or s.pad or s.pad_after]
        mine = self.geometry.spatial
        if len(windowed) > len(mine):
            return (
                f"a convolution over {len(windowed)} windowed dimensions; the instruction has "
                f"{len(mine)}"
            )
        for s, limit in zip(reversed(windowed), reversed(mine), strict=False):
            if s.taps > limit.taps:
                return (
                    f"a filter of {s.taps} taps along '{s.out}'; the instruction walks {limit.taps}"
                )
            if s.stride not in self.strides:
                return f"stride {s.stride} (the instruction supports {_listed(self.strides)})"
            if s.taps > 1 and s.dilation not in self.dilations:
                return f"dilation {s.dilation} (the instruction supports {_listed(self.dilations)})"
            if max(s.pad, s.pad_after) > self.max_padding:
                return (
                    f"padding {max(s.pad, s.pad_after)} along '{s.out}' (the instruction pads at "
                    f"most {self.max_padding})"
                )
        return None

    def blocks(self, g: ConvGeometry) -> tuple[int, int, int]:
        """(pixel, output-channel, input-channel) blocks of one image of `g`."""
        return (-(-g.pixels // self.stripe), -(-g.k // self.atom_k), -(-g.c // self.atom_c))

    def issues(self, g: ConvGeometry) -> int:
        """Atomic blocks a call of `g` issues: every pixel, channel and channel block, per tap."""
        mb, nb, kb = self.blocks(g)
        return g.b * mb * nb * kb * g.taps

    def padded_macs(self, g: ConvGeometry) -> int:
        return self.issues(g) * self.stripe * self.atom_k * self.atom_c


def _listed(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def has_window_access(semantics: Kernel) -> bool:
    """True when the first statement's product reads an affine (non-plain) access."""
    e = semantics.statements[0].expr
    return isinstance(e, Binary) and any(
        isinstance(f, Access) and not f.is_plain() for f in (e.lhs, e.rhs)
    )


def _read(semantics: Kernel) -> tuple[Access, Access, ConvGeometry] | str:
    s = semantics.statements[0]
    e = s.expr
    if not (s.accumulate and isinstance(e, Binary) and e.op == "*"):
        return "its semantics is not a `+=` product"
    a, b = e.lhs, e.rhs
    if not (isinstance(a, Access) and isinstance(b, Access)):
        return "a factor of its product is not a tensor access"
    if not a.is_plain() and not b.is_plain():
        return "both factors have affine accesses; a convolution windows its input only"
    if a.is_plain():
        a, b = b, a
    if not b.is_plain():
        return f"access `{b}` of the weights is not bare distinct indices"
    extents = semantics.extents[0]
    window = WindowSpec(tuple((n, extents[n]) for n in a.index_names()), a.indices)
    spec = einsum_spec(a.index_names(), b.index_names(), s.indices)
    g = conv_geometry(
        spec, window.to_string(), semantics.shapes[a.tensor], semantics.shapes[b.tensor]
    )
    if isinstance(g, str):
        return f"its affine access `{a}` is not a convolution window: {g}"
    return a, b, g


def conv_form_problem(semantics: Kernel) -> str | None:
    """Why an instruction with window accesses can never run a kernel's convolution, or None."""
    found = _read(semantics)
    if isinstance(found, str):
        return found
    _, _, g = found
    if g.batch:
        return (
            f"index '{g.batch[0][0]}' is in the input, the weights and the result (a batch index "
            "of a direct-convolution instruction is not mapped)"
        )
    for s in g.spatial:
        if s.pad:
            return f"the window reads before the input along '{s.out}' (write `{s.out} + tap`)"
    return None


def conv_form(
    semantics: Kernel,
    strides: tuple[int, ...] = (),
    dilations: tuple[int, ...] = (),
    max_padding: int = 0,
) -> ConvForm | None:
    """The direct-convolution form of `semantics`, or None if it has none."""
    if conv_form_problem(semantics) is not None:
        return None
    found = _read(semantics)
    assert not isinstance(found, str)
    a, b, g = found
    written_strides = tuple(sorted({s.stride for s in g.spatial}))
    written_dils = tuple(sorted({s.dilation for s in g.spatial}))
    return ConvForm(
        x=a.tensor,
        w=b.tensor,
        out=semantics.statements[0].target,
        geometry=g,
        strides=strides or written_strides,
        dilations=dilations or written_dils,
        max_padding=max_padding,
    )


def instruction_conv_form(ins: Instruction) -> ConvForm | None:
    """The direct-convolution form of compute instruction `ins`, with its declared limits."""
    if ins.kind != "compute" or not has_window_access(ins.semantics):
        return None
    return conv_form(ins.semantics, ins.strides, ins.dilations, ins.max_padding)

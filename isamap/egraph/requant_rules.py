"""Requantization on the store: the rules that fuse a statement's integer cast into a matrix call.

A quantized kernel casts each int32 accumulator result back to int8 between layers: `Y_q = s * Y`
into an int8 tensor, which rounds to nearest (ties to even) and saturates. The encoder writes that
cast as `(Narrow "i8" (Ew "*" (Full s) Y))`. A store that declares a `scale` and a `narrowing`
(Gemmini's mvout: ACC_SCALE multiplies by an f32, rounds half to even and saturates to int8, then
applies its activation) computes exactly that on the way out of the accumulator, so the int8 result
goes to DRAM at one byte per element and no host pass runs. Rules, per matrix instruction, per
such store and per type it narrows to (ruleset `target`):

- `requant-...`: `Narrow T (s * call)` -> `InstrScale` / `InstrBiasScale` for a plain call, one
  onto a bias, or one with a function the store applies (`scale-first` turns `call * s` around).
  The function must commute with a positive scale and with the narrowing (relu does:
  `relu(narrow(s x)) = narrow(s relu(x))` for `s > 0`; a sigmoid would not), so the store's
  order (scale, narrow, then relu) and the kernel's agree.
- `requant-relu6-...` and `requant-clip-...`: `Narrow T (s * relu6(call))`, `Narrow T (s *
  min(relu(call), c))` -> the same with relu, when `round(c * s) >= max(T)`: the clip's bound is at
  or past the saturation, so the narrowing clips there anyway (`narrow` is monotone, and
  `narrow(s min(v, c)) = min(narrow(s v), narrow(s c))`). The guard is checked by the rule
  (`c * s > max(T) - 1/2`); where it fails the clip stays a host pass.
- `...-through-...`: the cast and a constant scale or clip bound carried through a product's
  views (`Narrow T (Reshape x)` -> `Reshape (Narrow T x)`; `Full v * view(x)` -> `view(Full v' *
  x)`), so they meet the call below its layout, as the activation's `fn-through-*` rules do.

Every fusing rule requires the scale to be a positive normal number of the store's scale type
(for f32: exactly representable, tested in egglog by a Veltkamp split), so the store multiplies by
the kernel's own constant; the machine holds it in that type (`hardware/functional.py`).
"""

from __future__ import annotations

from collections.abc import Collection

from isamap.hardware.functional import scaling_stores
from isamap.hardware.target import Target
from isamap.ir.dtypes import DType, dtype

__all__ = ["COMMUTING", "requant_rules"]

#: Store epilogues that commute with a positive scale and with rounding and saturation.
COMMUTING = ("relu",)

#: The views a cast, a scale or a clip bound is carried through.
_VIEWS = ("Reshape", "Transpose")


def _scale_guard(scale: DType, var: str) -> str:
    """Egglog conditions: `var` is a positive normal number of float type `scale`, exactly
    (Veltkamp: `var` splits into its top `p` bits unchanged)."""
    lo, hi = 2.0**scale.min_exp, scale.hi
    conds = [f"(> {var} {lo!r})", f"(< {var} {hi!r})"]
    bits = scale.mantissa_bits + 1
    if bits < 53:
        c = f"{float(2 ** (53 - bits) + 1)!r}"
        conds.append(f"(= (- (* {var} {c}) (- (* {var} {c}) {var})) {var})")
    return " ".join(conds)


def _calls(name: str, fn: str, taps: bool = False) -> list[tuple[str, str, str]]:
    """(pattern, fused constructor, its arguments with `{fn}` and `{to}` to fill in) of the
    calls a cast may read with function `fn` ("" for none) already on them: a plain call or
    one with `fn`, and one onto a bias; with `taps`, a tap accumulation on `name` likewise
    (`InstrTaps`, or `InstrTapsEpi` / `InstrTapsBias` with `fn` and no narrowing yet)."""
    mm = "b m n k x y"
    if taps:
        tm = f"taps {mm}"
        plain = f'(InstrTaps "{name}" g {tm})'
        if fn:
            plain = f'(InstrTapsEpi "{name}" g "{fn}" "" 1.0 {tm})'
        fused = f'"{name}" g "{{fn}}" "{{to}}" s {tm}'
        return [
            (plain, "InstrTapsEpi", fused),
            (f'(InstrTapsBias "{name}" g "{fn}" "" 1.0 {tm} z)', "InstrTapsBias", f"{fused} z"),
        ]
    plain = f'(Instr "{name}" {mm})' if not fn else f'(InstrAct "{name}" "{fn}" {mm})'
    fused = f'"{name}" "{{fn}}" "{{to}}" s {mm}'
    return [
        (plain, "InstrScale", fused),
        (f'(InstrBias "{name}" "{fn}" {mm} z)', "InstrBiasScale", f"{fused} z"),
    ]


def _rule(name: str, lhs: str, guard: str, rhs: str, doc: str) -> tuple[str, str, str]:
    return (name, f'(rule ((= t {lhs}) {guard}) ((union t {rhs})) :ruleset target :name "{name}")',
            doc)  # fmt: skip


def requant_rules(
    target: Target, names: list[str], taps: Collection[str] = ()
) -> list[tuple[str, str, str]]:
    """(name, egglog text, doc) of the requantization rules for matrix instructions `names`,
    and for the tap accumulations on those of them in `taps`."""
    rules: list[tuple[str, str, str]] = []
    for name in names:
        for kind in (False, True) if name in taps else (False,):
            rules.extend(_instruction_rules(target, name, kind))
    # the carrying rules first: the fusing ones read what they bring below a product's views
    return [*_carry_rules(), *rules] if rules else []


def _instruction_rules(target: Target, name: str, taps: bool) -> list[tuple[str, str, str]]:
    """The requantization rules of matrix instruction `name`'s calls (`taps`: of its tap
    accumulations)."""
    rules: list[tuple[str, str, str]] = []
    call = f"taps on {name}" if taps else name
    ins = target.instructions[name]
    for st in scaling_stores(target, ins):
        scale = dtype(st.scale or "f32")
        if scale.is_integer:
            continue  # an integer scale register: no rule (none ships)
        fns = [f for f in COMMUTING if f in (*st.epilogues, *ins.epilogues)]
        guard = _scale_guard(scale, "s")
        for to in st.narrowing:
            t = dtype(to)
            if not t.is_integer:
                continue
            via = f"{name}-via-{st.name}-{to}"
            for fn in ["", *fns]:
                for pattern, ctor, operands in _calls(name, fn, taps):
                    rhs = f"({ctor} {operands.format(fn=fn, to=to)})"
                    what = f"{fn}({call}(...))" if fn else f"{call}(...)"
                    rules.append(
                        _rule(
                            f"requant-{fn or 'plain'}-{ctor.lower()}-{via}",
                            f'(Narrow "{to}" (Ew "*" (Full s sh) {pattern}))',
                            guard,
                            rhs,
                            f"{to}(s * {what}) -> {name} read out scaled by s, narrowed "
                            f"to {to}{', then ' + fn if fn else ''} by {st.name}",
                        )
                    )
            if not fns:
                continue
            relu, bound = fns[0], f"{t.hi - 0.5!r}"
            for (plain, ctor, operands), (fused, _, _) in zip(
                _calls(name, "", taps), _calls(name, relu, taps), strict=True
            ):
                rhs = f"({ctor} {operands.format(fn=relu, to=to)})"
                clip_doc = f"with round(c s) >= {t.hi:g} -> {call} read out scaled, "
                clip_doc += f"narrowed to {to} (its saturation is the clip), then {relu}"
                rules.append(
                    _rule(
                        f"requant-relu6-{ctor.lower()}-{via}",
                        f'(Narrow "{to}" (Ew "*" (Full s sh) (Fn "relu6" {plain})))',
                        f"{guard} (> (* s 6.0) {bound})",
                        rhs,
                        f"{to}(s * relu6({call}(...))) {clip_doc.replace('c s', '6 s')}",
                    )
                )
                rules.append(
                    _rule(
                        f"requant-clip-{ctor.lower()}-{via}",
                        f'(Narrow "{to}" (Ew "*" (Full s sh) (Ew "min" {fused} (Full c sc))))',
                        f"{guard} (> (* s c) {bound})",
                        rhs,
                        f"{to}(s * min({relu}({call}(...)), c)) {clip_doc}",
                    )
                )
    return rules


def _carry_rules() -> list[tuple[str, str, str]]:
    """The cast, a constant scale and a clip bound carried through a product's views."""
    first = '(rewrite (Ew "*" x (Full v sh)) (Ew "*" (Full v sh) x) :ruleset target'
    rules: list[tuple[str, str, str]] = [
        (
            "scale-first",
            first + ' :name "scale-first")',
            "x * Full v -> Full v * x: a scale written after what it scales, as the rules read it",
        )
    ]
    for view in _VIEWS:
        low = view.lower()
        rule = f"narrow-through-{low}"
        rules.append(
            (
                rule,
                f"(rewrite (Narrow to ({view} x p)) ({view} (Narrow to x) p)"
                f' :ruleset target :name "{rule}")',
                f"Narrow({view}(x)) -> {view}(Narrow(x)): a cast is elementwise",
            )
        )
        for op, tag, lhs, rhs in (  # a scale as `Full * x` (scale-first), a bound as `min(x, c)`
            ("*", "", f'(Ew "*" (Full v sh) ({view} x p))', '(Ew "*" (Full v sx) x)'),
            ("min", "", f'(Ew "min" ({view} x p) (Full v sh))', '(Ew "min" x (Full v sx))'),
        ):
            rule = f"{'scale' if op == '*' else 'clip'}{tag}-through-{low}"
            rules.append(
                (
                    rule,
                    f"(rule ((= t {lhs}) (= sx (shape x)))"
                    f' ((union t ({view} {rhs} p))) :ruleset target :name "{rule}")',
                    f"{op}(Full v, {view}(x)) -> {view}({op}(Full v, x)): a constant is the same "
                    "in every layout",
                )
            )
    return rules

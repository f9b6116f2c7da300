"""Building egglog terms against a serialised e-graph, for rules whose right-hand side is computed.

A computed rule reads e-nodes from an `EGraphDump` and adds terms over existing e-classes. Egglog
text cannot name an e-class by its id, so each e-class a new term needs gets a let-bound handle
built from a representative e-node (bottom-up, so handles only ever refer to earlier handles).
A term that already exists is found in the dump and not rebuilt; a new one gets its shape (the
e-graph's `shape` analysis). A new operand layout gets the next creation number (`lo`/`hi`), as
the encoder numbers its terms; the fusion rules rely on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from isamap.egraph.dump import EGraphDump, ENode, Literal, Ref
from isamap.egraph.encode import f64_literal

__all__ = ["Builder", "Val"]


@dataclass(frozen=True)
class Val:
    """A term: its egglog expression (a let name), its e-class if it already exists, its shape."""

    var: str
    eclass: str | None
    shape: tuple[int, ...]


def _key(op: str, args: tuple[Literal | Ref, ...]) -> tuple[object, ...]:
    return (
        op,
        *((("@", a.eclass) if isinstance(a, Ref) else ("=", type(a).__name__, a)) for a in args),
    )


def _literal_text(value: Literal) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return f64_literal(value)
    return str(value)


class Builder:
    """Egglog commands that add terms (and unions) to the e-graph a dump was taken from."""

    def __init__(self, dump: EGraphDump, first_number: int, prefix: str) -> None:
        self.dump = dump
        self.number = first_number
        self.prefix = prefix
        self.commands: list[str] = []
        self.index: dict[tuple[object, ...], str] = {}
        for nodes in dump.classes.values():
            for node in nodes:
                self.index.setdefault(_key(node.op, node.args), node.eclass)
        self.rep = _representatives(dump)
        self.handles: dict[str, str] = {}
        self.memo: dict[str, Val] = {}
        self.numbered: set[str] = set()
        self.lets = 0

    def _let(self, text: str) -> str:
        var = f"$c{self.prefix}_{self.lets}"
        self.lets += 1
        self.commands.append(f"(let {var} {text})")
        return var

    def handle(self, eclass: str) -> str:
        """A let name for an existing e-class (built from representatives, children first)."""
        stack = [eclass]
        while stack:
            cid = stack[-1]
            if cid in self.handles:
                stack.pop()
                continue
            node = self.rep[cid]
            missing = [r for r in node.refs() if r not in self.handles]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            parts = [
                self.handles[a.eclass] if isinstance(a, Ref) else _literal_text(a)
                for a in node.args
            ]
            self.handles[cid] = self._let(f"({' '.join([node.op, *parts])})")
        return self.handles[eclass]

    def of(self, eclass: str) -> Val:
        """The existing e-class `eclass` as a term."""
        return Val(self.handle(eclass), eclass, self.dump.shapes.get(eclass, ()))

    def make(self, op: str, args: tuple[Literal | Val, ...], shape: tuple[int, ...]) -> Val:
        """The term `(op args...)`: the existing e-class if the e-graph has it, else a new term."""
        if all(a.eclass is not None for a in args if isinstance(a, Val)):
            key = _key(op, tuple(Ref(a.eclass or "") if isinstance(a, Val) else a for a in args))
            if key in self.index:
                return self.of(self.index[key])
        text = (
            "("
            + " ".join([op, *(a.var if isinstance(a, Val) else _literal_text(a) for a in args)])
            + ")"
        )
        if text in self.memo:
            return self.memo[text]
        var = self._let(text)
        self.commands.append(f'(set (shape {var}) "{",".join(str(d) for d in shape)}")')
        val = Val(var, None, shape)
        self.memo[text] = val
        return val

    def operand(self, value: Val) -> Val:
        """Give a new term the next creation number (`lo`/`hi`): it is an operand the fusion
        rules may build sets of. Only rules that lay out a product's operands do this, so the
        numbered terms stay finitely many and fusion terminates."""
        if value.eclass is None and value.var not in self.numbered:
            self.numbered.add(value.var)
            self.commands.append(f"(set (lo {value.var}) {self.number})")
            self.commands.append(f"(set (hi {value.var}) {self.number})")
            self.number += 1
        return value

    def union(self, eclass: str, value: Val) -> bool:
        """Union `value` into `eclass`; False when it is already there."""
        if value.eclass == eclass:
            return False
        self.commands.append(f"(union {self.handle(eclass)} {value.var})")
        return True

    def label(self, name: str, value: Val) -> None:
        """Mark `value` as kernel tensor `name` in another layout (for people reading mappings)."""
        self.commands.append(f'(Part "{name}" {value.var})')

    def program(self) -> str:
        return "\n".join(self.commands) + "\n"


def _representatives(dump: EGraphDump) -> dict[str, ENode]:
    """One e-node per e-class whose children all have representatives (none is cyclic)."""
    rep: dict[str, ENode] = {}
    changed = True
    while changed:
        changed = False
        for cid, nodes in dump.classes.items():
            if cid in rep:
                continue
            for node in nodes:
                if all(r in rep for r in node.refs()):
                    rep[cid] = node
                    changed = True
                    break
    return rep

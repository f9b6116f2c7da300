"""Hand-written rule files (`<target>.egg`): read as data, checked, split into rules.

A rule file may only declare rulesets and rules (`ruleset`, `rule`, `rewrite`, `birewrite`), each
rule in a ruleset the file declares, each `:name` used once. Anything else — `run`, `extract`,
`include`, `push`, new sorts — and the rule actions `delete`, `set` and `panic` are refused with
their file:line before egglog sees the file, so a rule file can neither run work of its own, hang
a compile, abort it, nor touch the `lo`/`hi` creation order that makes fusion terminate. egglog
then checks names and types against isamap's sorts. Every form is also kept as an s-expression
(`SList`), so the soundness checker can read a rule's left-hand side as data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from isamap.ir.errors import IsamapError, SourceLoc

__all__ = [
    "REFUSED_ACTIONS",
    "RULE_COMMANDS",
    "RuleForm",
    "SExpr",
    "SList",
    "parse_rule_file",
    "parse_sexprs",
    "read_rule_file",
]

#: Top-level commands a rule file may contain.
RULE_COMMANDS = frozenset({"ruleset", "rule", "rewrite", "birewrite"})

#: Rule actions a hand-written rule file may not use, and why.
REFUSED_ACTIONS = {
    "delete": "deletes e-nodes (a rewrite may only add equalities)",
    "panic": "aborts the saturation",
    "set": "sets lo/hi, the creation order the fusion rules rely on to terminate",
}

_TOKEN = re.compile(r'\s+|;[^\n]*|"(?:[^"\\]|\\.)*"|[()]|[^\s()";]+')


@dataclass(frozen=True)
class SList:
    """A parenthesised s-expression: its items (atoms are strings, quotes kept) and location."""

    items: tuple[SExpr, ...]
    loc: SourceLoc

    @property
    def head(self) -> str:
        first = self.items[0] if self.items else ""
        return first if isinstance(first, str) else ""

    def __str__(self) -> str:
        return "(" + " ".join(str(i) for i in self.items) + ")"


SExpr: TypeAlias = str | SList


@dataclass(frozen=True)
class RuleForm:
    """One top-level form of a rule file: its head, text, ruleset, name, location and items."""

    head: str
    text: str
    ruleset: str | None
    name: str | None
    loc: SourceLoc
    body: SList | None = None


def parse_sexprs(text: str, filename: str) -> list[tuple[SList, str]]:
    """Top-level s-expressions with their source text; IsamapError at file:line:col if malformed."""
    out: list[tuple[SList, str]] = []
    stack: list[tuple[list[SExpr], SourceLoc, int]] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        here = SourceLoc(filename, line, pos - line_start + 1)
        if match is None:  # an unterminated string
            raise IsamapError("unterminated string", here)
        token = match.group(0)
        if token == "(":
            stack.append(([], here, pos))
        elif token == ")":
            if not stack:
                raise IsamapError("unbalanced ')'", here)
            items, loc, start = stack.pop()
            node = SList(tuple(items), loc)
            if stack:
                stack[-1][0].append(node)
            else:
                out.append((node, text[start : pos + 1]))
        elif not token.isspace() and not token.startswith(";"):
            if not stack:
                raise IsamapError(f"expected '(' to start a command, found {token!r}", here)
            stack[-1][0].append(token)
        newlines = token.count("\n")
        if newlines:
            line += newlines
            line_start = pos + token.rfind("\n") + 1
        pos = match.end()
    if stack:
        raise IsamapError("unbalanced '(': missing ')'", stack[0][1])
    return out


def _options(form: SList) -> dict[str, SExpr]:
    """The `:key value` options of a rule form."""
    items = form.items
    return {
        str(items[i]): items[i + 1]
        for i in range(len(items) - 1)
        if isinstance(items[i], str) and str(items[i]).startswith(":")
    }


def _unquote(value: SExpr | None) -> str | None:
    if not isinstance(value, str):
        return None
    return value[1:-1] if value.startswith('"') else value


def _refused_actions(form: SList) -> None:
    """Raise at the first refused action of a `rule` form."""
    if form.head != "rule" or len(form.items) < 3 or not isinstance(form.items[2], SList):
        return
    for action in form.items[2].items:
        if isinstance(action, SList) and action.head in REFUSED_ACTIONS:
            why = REFUSED_ACTIONS[action.head]
            raise IsamapError(f"rule action '{action.head}' is not allowed: it {why}", action.loc)


def parse_rule_file(text: str, filename: str, trusted: bool = False) -> list[RuleForm]:
    """The forms of a rule file, checked for allowed commands, actions, declared rulesets and
    unique names. `trusted` (isamap's own algebra.egg) may set lo/hi."""
    declared: set[str] = set()
    names: dict[str, SourceLoc] = {}
    out: list[RuleForm] = []
    for body, form in parse_sexprs(text, filename):
        loc = body.loc
        head = body.head
        if head not in RULE_COMMANDS:
            allowed = ", ".join(sorted(RULE_COMMANDS))
            raise IsamapError(f"'{head}' is not allowed in a rule file (allowed: {allowed})", loc)
        if head == "ruleset":
            if len(body.items) != 2 or not isinstance(body.items[1], str):
                raise IsamapError("expected (ruleset NAME)", loc)
            declared.add(body.items[1])
            out.append(RuleForm(head, form, body.items[1], None, loc, body))
            continue
        if not trusted:
            _refused_actions(body)
        options = _options(body)
        ruleset = _unquote(options.get(":ruleset"))
        if ruleset is None:
            raise IsamapError(f"{head} needs ':ruleset NAME' (a ruleset this file declares)", loc)
        if ruleset not in declared:
            raise IsamapError(f"ruleset '{ruleset}' is not declared above (ruleset ...)", loc)
        name = _unquote(options.get(":name"))
        if name is not None:
            if name in names:
                raise IsamapError(f"rule name '{name}' is already used at {names[name]}", loc)
            names[name] = loc
        out.append(RuleForm(head, form, ruleset, name, loc, body))
    return out


def read_rule_file(path: Path, trusted: bool = False) -> tuple[str, list[RuleForm]]:
    """Read and check a rule file; IsamapError at file:line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IsamapError(f"cannot read rule file: {err}", SourceLoc(str(path))) from None
    return text, parse_rule_file(text, str(path), trusted)

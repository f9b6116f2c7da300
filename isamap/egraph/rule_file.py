"""Hand-written rule files (`<target>.egg`): read as data, checked, split into rules.

A rule file may only declare rulesets and rules (`ruleset`, `rule`, `rewrite`, `birewrite`), each
rule in a ruleset the file declares. Anything else — `run`, `extract`, `include`, `push`, new
sorts — is refused with its file:line before egglog sees the file, so a rule file can neither run
work of its own nor hang a compile. egglog then checks names and types against isamap's sorts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from isamap.ir.errors import IsamapError, SourceLoc

__all__ = ["RULE_COMMANDS", "RuleForm", "parse_rule_file"]

#: Top-level commands a rule file may contain.
RULE_COMMANDS = frozenset({"ruleset", "rule", "rewrite", "birewrite"})

_TOKEN = re.compile(r'\s+|;[^\n]*|"(?:[^"\\]|\\.)*"|[()]|[^\s()";]+')


@dataclass(frozen=True)
class RuleForm:
    """One top-level form of a rule file: its head, text, ruleset, name and where it starts."""

    head: str
    text: str
    ruleset: str | None
    name: str | None
    loc: SourceLoc


def _forms(text: str, filename: str) -> list[tuple[str, int, int, int]]:
    """Top-level s-expressions as (text, start offset, line, col)."""
    forms: list[tuple[str, int, int, int]] = []
    depth, start, start_line, start_col = 0, 0, 0, 0
    line, line_start = 1, 0
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # an unterminated string
            raise IsamapError(
                "unterminated string", SourceLoc(filename, line, pos - line_start + 1)
            )
        token = match.group(0)
        col = pos - line_start + 1
        if token == "(":
            if depth == 0:
                start, start_line, start_col = pos, line, col
            depth += 1
        elif token == ")":
            if depth == 0:
                raise IsamapError("unbalanced ')'", SourceLoc(filename, line, col))
            depth -= 1
            if depth == 0:
                forms.append((text[start : pos + 1], start, start_line, start_col))
        elif depth == 0 and not token.isspace() and not token.startswith(";"):
            raise IsamapError(
                f"expected '(' to start a command, found {token!r}", SourceLoc(filename, line, col)
            )
        newlines = token.count("\n")
        if newlines:
            line += newlines
            line_start = pos + token.rfind("\n") + 1
        pos = match.end()
    if depth:
        raise IsamapError("unbalanced '(': missing ')'", SourceLoc(filename, start_line, start_col))
    return forms


def _option(form: str, key: str) -> str | None:
    match = re.search(rf"{key}\s+(\"(?:[^\"\\]|\\.)*\"|[^\s()]+)", form)
    if match is None:
        return None
    value = match.group(1)
    return value[1:-1] if value.startswith('"') else value


def parse_rule_file(text: str, filename: str) -> list[RuleForm]:
    """The forms of a rule file, checked for allowed commands and declared rulesets."""
    declared: set[str] = set()
    out: list[RuleForm] = []
    for form, _, line, col in _forms(text, filename):
        loc = SourceLoc(filename, line, col)
        head_match = re.match(r"\(\s*([^\s()]+)", form)
        head = head_match.group(1) if head_match else ""
        if head not in RULE_COMMANDS:
            allowed = ", ".join(sorted(RULE_COMMANDS))
            raise IsamapError(f"'{head}' is not allowed in a rule file (allowed: {allowed})", loc)
        if head == "ruleset":
            parts = form[1:-1].split()
            if len(parts) != 2:
                raise IsamapError("expected (ruleset NAME)", loc)
            declared.add(parts[1])
            out.append(RuleForm(head, form, parts[1], None, loc))
            continue
        ruleset = _option(form, ":ruleset")
        if ruleset is None:
            raise IsamapError(f"{head} needs ':ruleset NAME' (a ruleset this file declares)", loc)
        if ruleset not in declared:
            raise IsamapError(f"ruleset '{ruleset}' is not declared above (ruleset ...)", loc)
        out.append(RuleForm(head, form, ruleset, _option(form, ":name"), loc))
    return out


def read_rule_file(path: Path) -> tuple[str, list[RuleForm]]:
    """Read and check a rule file; IsamapError at file:line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IsamapError(f"cannot read rule file: {err}", SourceLoc(str(path))) from None
    return text, parse_rule_file(text, str(path))

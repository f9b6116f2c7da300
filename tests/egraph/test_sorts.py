"""Every constructor of rules/sorts.egg is known to the dump, the extractor and the executor."""

from __future__ import annotations

import re

from isamap.egraph.dump import TENSOR_OPS
from isamap.egraph.saturate import RULES_DIR
from isamap.extract.lower import _OPS


def _constructors() -> set[str]:
    text = (RULES_DIR / "sorts.egg").read_text()
    body = re.search(r"\(datatype Tensor(.*?)\)\)\n", text, re.S)
    assert body is not None
    names = set(re.findall(r"^\s+\((\w+)", body.group(1) + ")", re.M))
    names |= set(re.findall(r"\(constructor (\w+)", text))
    return names


def test_every_tensor_constructor_is_handled() -> None:
    constructors = _constructors()
    assert {"Bmm", "Instr", "VecFn", "HostStmt"} <= constructors
    assert constructors <= TENSOR_OPS
    assert constructors <= set(_OPS)

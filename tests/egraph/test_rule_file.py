"""Hand-written rule files: only rulesets and rules, named rulesets, errors at file:line:col."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import isamap
from isamap.egraph.rule_file import parse_rule_file
from isamap.hardware.target_file import target_path
from tests.typed import typed_for

GOOD = """; double transposes of any permutation cancel when they are the batch-matrix one
(ruleset mine)
(rewrite (Transpose (Transpose x "0,2,1") "0,2,1") x :ruleset mine :name "my-involution")
"""


def _compile_with(tmp_path: Path, rules: str, allow: bool = False) -> isamap.CompileResult:
    """Compile a GEMM on gemmini with `rules` as its rule file (checked first unless `allow`)."""
    toml = tmp_path / "chip.toml"
    shutil.copy(target_path("gemmini"), toml)
    (tmp_path / "chip.egg").write_text(rules)
    gemm = isamap.load_kernel("examples/kernels/gemm.kernel")
    kernel = typed_for(gemm, isamap.load_target("gemmini"))  # chip.toml is gemmini: int8
    return isamap.compile(kernel, str(toml), allow_unchecked_rules=allow)


def test_good_rule_file_is_loaded_and_runs(tmp_path: Path) -> None:
    result = _compile_with(tmp_path, GOOD)
    assert "my-involution" in result.report.egraph.matches_per_rule


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("(ruleset r)\n(run 100000)\n", 2, "'run' is not allowed"),
        ('(ruleset r)\n\n(include "x.egg")\n', 3, "'include' is not allowed"),
        ("(rewrite (Fn f x) x :ruleset r)\n", 1, "ruleset 'r' is not declared"),
        ("(ruleset r)\n(rewrite (Fn f x) x)\n", 2, "needs ':ruleset NAME'"),
        ("(ruleset r)\n(rewrite (Fn f x) x :ruleset r\n", 2, "missing ')'"),
        ("(ruleset r))\n", 1, "unbalanced ')'"),
        ("ruleset r\n", 1, "expected '('"),
        ("(ruleset r)\n(rewrite (Fnn f x) x :ruleset r)\n", 2, "Fnn"),
        ("(ruleset r)\n(rewrite (Fn f x y) x :ruleset r)\n", 2, "Arity"),
        ("(ruleset r)\n(rewrite (Fn f y) x :ruleset r)\n", 2, "Unbound symbol x"),
        ('(ruleset r)\n(rewrite (Fn f x) (Full "a" "b") :ruleset r)\n', 2, ""),
        ("(ruleset r)\n(rule ((= t (Fn f x)))\n  ((delete (Fn f x))) :ruleset r)\n", 3, "'delete'"),
        ("(ruleset r)\n(rule ((= t (Fn f x)))\n  ((set (lo t) 0)) :ruleset r)\n", 3, "lo/hi"),
        ("(ruleset r)\n(rule ((= t (Fn f x)))\n  ((set (hi t) 9)) :ruleset r)\n", 3, "'set'"),
        ('(ruleset r)\n(rule ((= t (Fn f x)))\n  ((panic "boom")) :ruleset r)\n', 3, "'panic'"),
        (
            '(ruleset r)\n(rewrite (Fn f x) x :ruleset r :name "a")\n'
            '(rewrite (Ew o x y) x :ruleset r :name "a")\n',
            3,
            "'a' is already used at",
        ),
        (
            '(ruleset r)\n(rewrite (Fn f x) x :ruleset r :name "bmm-swap-operands")\n',
            2,
            "already a rule of isamap's",
        ),
        (
            "(ruleset r)\n(rewrite (Bmm b m n k x y) (Bmm b m n (* k 4611686018427387904) x y)"
            ' :ruleset r :name "overflows")\n',
            2,
            "failed",
        ),
    ],
)
def test_bad_rule_files(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    with pytest.raises(isamap.IsamapError) as info:
        _compile_with(tmp_path, text, allow=True)
    err = info.value
    assert err.loc is not None and err.loc.file.endswith("chip.egg")
    assert err.loc.line == line, str(err)
    assert fragment in str(err)
    assert "\n" not in str(err)


def test_forms_carry_locations() -> None:
    forms = parse_rule_file(GOOD, "mine.egg")
    assert [f.head for f in forms] == ["ruleset", "rewrite"]
    assert (forms[1].loc.line, forms[1].loc.col) == (3, 1)
    assert forms[1].name == "my-involution" and forms[1].ruleset == "mine"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_rule_files_never_crash(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    text = GOOD
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 5)) :]
        elif action == "insert":
            text = text[:pos] + data.draw(st.sampled_from(list('()" ;:xa0\n'))) + text[pos:]
        else:
            text = text[:pos] + text[pos : pos + 8] + text[pos:]
    tmp = tmp_path_factory.mktemp("fuzz")
    # one in four also goes through the soundness check in front of compile (the slow part)
    allow = data.draw(st.sampled_from([True, True, True, False]))
    try:
        _compile_with(tmp, text, allow)
    except isamap.IsamapError as err:
        assert err.loc is not None and err.loc.file.endswith("chip.egg")

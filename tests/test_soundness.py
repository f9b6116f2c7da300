"""Rule soundness checking: shipped rules pass, a wrong rule is caught with a counterexample."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import isamap
from isamap import soundness
from isamap.cli import cli
from isamap.egraph.computed_rules import COMPUTED_RULES
from isamap.egraph.rule_terms import instantiate, lhs_alternatives
from isamap.hardware.target_file import target_path
from isamap.soundness import (
    RuleCheck,
    check_rule_file,
    check_rules,
    require_checked_rules,
    rules_of,
)

WRONG_RULES = """; a deliberately wrong rule: relu is not the identity
(ruleset sloppy)
(rewrite (Fn "relu" x) x :ruleset sloppy :name "relu-is-identity")
"""


def _target_with_rules(tmp_path: Path, rules: str) -> Path:
    toml = tmp_path / "sloppy.toml"
    shutil.copy(target_path("gemmini"), toml)
    (tmp_path / "sloppy.egg").write_text(rules)
    return toml


@pytest.mark.parametrize("name", isamap.list_targets())
def test_every_shipped_rule_is_sound(name: str) -> None:
    checks = check_rules(isamap.load_target(name))
    assert checks
    for check in checks:
        assert check.sound, f"{check.rule.name}: {check.counterexample}"
        assert check.kernels > 0


def test_every_shipped_rule_fires_on_the_corpus() -> None:
    checks = check_rules(isamap.load_target("gemmini"))
    assert all(c.matches > 0 for c in checks), [c.rule.name for c in checks if not c.matches]


def test_wrong_rule_is_caught(tmp_path: Path) -> None:
    target = isamap.load_target(str(_target_with_rules(tmp_path, WRONG_RULES)))
    names = [r.name for r in rules_of(target)]
    assert "relu-is-identity" in names
    checks = {c.rule.name: c for c in check_rules(target)}
    bad = checks["relu-is-identity"]
    assert not bad.sound and bad.counterexample is not None
    assert bad.counterexample.max_abs_diff > 0
    assert "relu" in str(bad.counterexample)
    assert all(c.sound for name, c in checks.items() if name != "relu-is-identity")


def test_check_rules_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli, ["check-rules", "--target", "gemmini"])
    assert good.exit_code == 0, good.output
    # algebra and derived rules, and the computed ones
    shipped = len(rules_of(isamap.load_target("gemmini"))) + len(COMPUTED_RULES)
    assert f"{shipped} of {shipped} rules sound" in good.output
    assert re.search(r"^ok +einsum-to-bmm ", good.output, re.M), good.output
    toml = _target_with_rules(tmp_path, WRONG_RULES)
    bad = runner.invoke(cli, ["check-rules", "--target", str(toml)])
    assert bad.exit_code == 1
    assert re.search(r"^UNSOUND +relu-is-identity ", bad.output, re.M), bad.output
    assert "counterexample" in bad.output


# -- rules that never fired on the corpus are checked on terms built from their pattern --------

#: The issue's reproductions, one file: each wrong, none fires on the corpus.
RELU_THROUGH_ADD = """(ruleset u)
(rewrite (Fn "relu" (Ew "+" x y)) (Ew "+" (Fn "relu" x) (Fn "relu" y))
         :ruleset u :name "relu-through-add")
"""
REPRODUCTIONS = (
    RELU_THROUGH_ADD
    + """(rewrite (Fn "relu" (Ew "*" x y)) (Ew "*" (Fn "relu" x) (Fn "relu" y))
         :ruleset u :name "relu-through-mul")
(rewrite (Fn "relu" (ReduceSum x a)) (ReduceSum (Fn "relu" x) a)
         :ruleset u :name "relu-through-sum")
(rewrite (Slice a s1 l1 (Slice a s2 l2 x)) (Slice a (+ s1 (+ s2 1)) l1 x)
         :ruleset u :name "slice-offset")
(rewrite (Bmm b m n k x y) (Transpose (Bmm b n m k y x) "0,2,1") :ruleset u :name "bmm-ill-shaped")
(rewrite (Reshape x s) (Reshape x "2,2") :ruleset u :name "reshape-wrong-shape")
(rule ((= c1 (Bmm b m n1 k x y1)) (= c2 (Bmm b m n2 k x y2))
       (= h1 (hi y1)) (= l2 (lo y2)) (< h1 l2))
      ((let fused (Bmm b m (+ n1 n2) k x (Concat 2 y1 y2)))
       (union c1 (Slice 2 0 n1 fused)) (union c2 (Slice 2 (+ n1 1) n2 fused)))
      :ruleset u :name "fusion-off-by-one")
(rewrite (HostStmt 99 a) (Full 0.0 "1") :ruleset u :name "never-matches")
(rewrite (Ew "+" x y) (Ew "+" y x) :ruleset u :name "add-commutes")
"""
)

WRONG = {
    "relu-through-add": "differ by up to",
    "relu-through-mul": "differ by up to",
    "relu-through-sum": "differ by up to",
    "slice-offset": "differ by up to",
    "bmm-ill-shaped": "is ill-shaped: left operand",
    "reshape-wrong-shape": "2, 2]",
    "fusion-off-by-one": "is ill-shaped: slice",
}


def _tiny8_with(tmp_path: Path, rules: str) -> Path:
    toml = tmp_path / "chip.toml"
    shutil.copy(Path("examples/new_hardware/tiny8.toml"), toml)
    (tmp_path / "chip.egg").write_text(rules)
    return toml


@pytest.fixture(scope="module")
def reproductions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleCheck]:
    toml = _tiny8_with(tmp_path_factory.mktemp("repro"), REPRODUCTIONS)
    return {c.rule.name: c for c in check_rule_file(isamap.load_target(str(toml)))}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_rule_found_from_its_own_pattern(
    reproductions: dict[str, RuleCheck], name: str
) -> None:
    check = reproductions[name]
    assert check.verdict == "UNSOUND" and not check.sound
    assert check.instances >= 5 and check.pattern_matches > 0
    assert check.counterexample is not None
    assert check.counterexample.kernel.startswith("terms (")
    assert WRONG[name] in str(check.counterexample)


def test_rule_that_cannot_be_exercised_fails(reproductions: dict[str, RuleCheck]) -> None:
    check = reproductions["never-matches"]
    assert check.verdict == "UNCHECKED" and not check.sound
    assert check.counterexample is None and check.matches == check.pattern_matches == 0


def test_sound_rule_beside_wrong_ones_passes(reproductions: dict[str, RuleCheck]) -> None:
    check = reproductions["add-commutes"]
    assert check.verdict == "ok" and check.pattern_matches > 0


def test_terms_are_built_at_several_shapes(reproductions: dict[str, RuleCheck]) -> None:
    check = reproductions["add-commutes"]
    target = isamap.load_target("gemmini")
    assert check.rule.body is not None
    (alternative,) = lhs_alternatives(check.rule.body)
    shapes = set()
    for dims in ((2, 4), (3, 6), (1, 3)):
        built = instantiate(alternative, target, random.Random(1), dims, "_t", [0])
        assert built is not None
        shapes.update(tuple(s) for s in built.tensors.values())
    assert len(shapes) >= 2


def test_every_match_is_checked(tmp_path: Path) -> None:
    """A Slice offset that is only wrong where the inner slice does not start at 0."""
    rule = (
        "(ruleset u)\n(rewrite (Slice a s1 l1 (Slice a s2 l2 x)) (Slice a s1 l1 x)"
        ' :ruleset u :name "slice-forgets-offset")\n'
    )
    toml = _tiny8_with(tmp_path, rule)
    (check,) = check_rule_file(isamap.load_target(str(toml)))
    assert check.verdict == "UNSOUND", check


GEMM_PAIR = """tensor A[12, 8] i8
tensor B[8, 10] i8
tensor D[12, 8] i8
tensor E[8, 10] i8
T1[i, j] += A[i, k] * B[k, j]
T2[i, j] += D[i, k] * E[k, j]
C[i, j] = relu(T1[i, j] + T2[i, j])
"""


def test_compile_refuses_an_unsound_rule_file(tmp_path: Path) -> None:
    toml = _tiny8_with(tmp_path, RELU_THROUGH_ADD)
    kernel = isamap.parse_kernel(GEMM_PAIR)
    with pytest.raises(isamap.IsamapError) as info:
        isamap.compile(kernel, str(toml))
    err = info.value
    assert err.loc is not None and err.loc.file.endswith("chip.egg") and err.loc.line == 2
    assert "relu-through-add" in str(err) and "unsound" in str(err) and "\n" not in str(err)
    with pytest.raises(isamap.IsamapError):
        isamap.saturate(kernel, str(toml))
    # explicitly allowed, it is used (and gives the wrong answer the check predicted)
    result = isamap.compile(kernel, str(toml), allow_unchecked_rules=True)
    assert result.report.egraph.matches_per_rule["relu-through-add"] > 0


def test_compile_refuses_an_unchecked_rule_and_the_cli_says_so(tmp_path: Path) -> None:
    toml = _tiny8_with(
        tmp_path, '(ruleset u)\n(rewrite (HostStmt 99 a) (Full 0.0 "1") :ruleset u :name "n")\n'
    )
    kernel = tmp_path / "k.kernel"
    kernel.write_text(GEMM_PAIR)
    runner = CliRunner()
    refused = runner.invoke(cli, ["extract", str(kernel), "--target", str(toml)])
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isamap: error: ") and "unchecked" in lines[0]
    allowed = runner.invoke(
        cli, ["extract", str(kernel), "--target", str(toml), "--allow-unchecked-rules"]
    )
    assert allowed.exit_code == 0, allowed.output
    checked = runner.invoke(cli, ["check-rules", "--target", str(toml)])
    assert checked.exit_code == 1
    assert re.search(r"^UNCHECKED +n .*not verified", checked.output, re.M), checked.output


def test_verdict_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = _tiny8_with(tmp_path, GOOD_RULE)
    target = isamap.load_target(str(toml))
    calls: list[int] = []
    real = soundness.check_rule_file

    def counting(t: isamap.Target, seed: int = 0) -> list[RuleCheck]:
        calls.append(1)
        return real(t, seed)

    monkeypatch.setattr(soundness, "check_rule_file", counting)
    monkeypatch.setenv("ISAMAP_CACHE_DIR", str(tmp_path / "cache"))
    require_checked_rules(target)
    require_checked_rules(target)
    assert len(calls) == 1  # memoised in the process
    soundness._VERDICTS.clear()
    require_checked_rules(target)
    assert len(calls) == 1  # and read back from the cache directory
    assert list((tmp_path / "cache" / "rule-checks").glob("*.json"))
    (tmp_path / "chip.egg").write_text(GOOD_RULE.replace(") x", ")  x") + "; a comment\n")
    require_checked_rules(target)
    assert len(calls) == 1  # comments and layout do not count
    relu_twice = '(rewrite (Fn "relu" (Fn "relu" x)) (Fn "relu" x) :ruleset u :name "relu-twice")'
    (tmp_path / "chip.egg").write_text(GOOD_RULE + relu_twice + "\n")
    require_checked_rules(target)
    assert len(calls) == 2  # a changed rule is checked again


GOOD_RULE = (
    "(ruleset u)\n"
    '(rewrite (Transpose (Transpose x "0,2,1") "0,2,1") x :ruleset u :name "involution")\n'
)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x00\xff\xfe(ruleset u)\n", "cannot read rule file"),
        (
            b'(ruleset u)\n(rule ((= t (Fn f x)))\n ((panic "boom")) :ruleset u :name "p")\n',
            "panic",
        ),
        (
            b'(ruleset u)\n(rewrite (Fn f x) x :ruleset u :name "a")\n'
            b'(rewrite (Ew o x y) x :ruleset u :name "a")\n',
            "already used",
        ),
    ],
)
def test_check_rules_bad_file_is_one_error_line(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    toml = _tiny8_with(tmp_path, "")
    (tmp_path / "chip.egg").write_bytes(content)
    done = CliRunner().invoke(cli, ["check-rules", "--target", str(toml)])
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isamap: error: "), done.output
    assert "chip.egg" in lines[0] and fragment in lines[0]


def test_check_rules_ill_shaped_rule_is_a_verdict(tmp_path: Path) -> None:
    rule = (
        '(ruleset u)\n(rewrite (Bmm b m n k x y) (Transpose (Bmm b n m k y x) "0,2,1")'
        ' :ruleset u :name "swap-wrong")\n'
    )
    done = CliRunner().invoke(cli, ["check-rules", "--target", str(_tiny8_with(tmp_path, rule))])
    assert done.exit_code == 1, done.output
    assert re.search(r"^UNSOUND +swap-wrong ", done.output, re.M)
    assert "ill-shaped" in done.output

"""Rule soundness checking: shipped rules pass, a wrong rule is caught with a counterexample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import isamap
from isamap.cli import cli
from isamap.hardware.target import TARGET_DIR
from isamap.soundness import check_rules, rules_of

WRONG_RULES = """; a deliberately wrong rule: relu is not the identity
(ruleset sloppy)
(rewrite (Fn "relu" x) x :ruleset sloppy :name "relu-is-identity")
"""


def _target_with_rules(tmp_path: Path, rules: str) -> Path:
    toml = tmp_path / "sloppy.toml"
    shutil.copy(TARGET_DIR / "gemmini.toml", toml)
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
    assert "9 of 9 rules sound" in good.output
    toml = _target_with_rules(tmp_path, WRONG_RULES)
    bad = runner.invoke(cli, ["check-rules", "--target", str(toml)])
    assert bad.exit_code == 1
    assert "UNSOUND   relu-is-identity" in bad.output.replace("UNSOUND  ", "UNSOUND   ")
    assert "counterexample" in bad.output

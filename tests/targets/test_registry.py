"""Shipped targets in their folders and the vendor baselines they register by name: a shipped
library's baseline is found by name from any target file, an unknown name is one error at the
target file's line, and Python beside a user's target file is never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import isamap
from isamap.cli import cli
from isamap.hardware.target import TARGET_DIR, list_targets
from isamap.hardware.target_file import target_path
from isamap.ir.errors import IsamapError
from isamap.schedule import registry
from isamap.schedule.registry import library_issue, register_strategy, strategy, strategy_names
from isamap.schedule.strategies import STRATEGIES, heuristic
from isamap.targets.gemmini import library_schedule
from isamap.targets.gemmini.conv_path import conv_path

GEMMINI = target_path("gemmini").read_text()
BASELINE_LINE = 1 + GEMMINI.split("\n").index(
    next(s for s in GEMMINI.split("\n") if s.startswith("baseline_schedule ="))
)


def _with_baseline(folder: Path, name: str, baseline: str) -> Path:
    """A copy of gemmini.toml at `folder/name.toml` whose baseline is `baseline`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    old = 'baseline_schedule = "gemmini-default"'
    text = GEMMINI.replace(old, f'baseline_schedule = "{baseline}"')
    path.write_text(text)
    return path


def test_every_shipped_target_is_a_folder_named_as_its_target() -> None:
    names = list_targets()
    assert {"gemmini", "nnp", "vecdsp", "host-generic"} <= set(names)
    for name in names:
        target = isamap.load_target(name)
        assert target.name == name  # `load_target(name).name == name`
        assert Path(target.path) == TARGET_DIR / name / f"{name}.toml"
    assert isamap.load_target("host").name in names  # the alias resolves to a shipped CPU target


def test_a_shipped_baseline_registers_by_name() -> None:
    assert strategy("gemmini-default") is library_schedule
    assert library_issue("gemmini-default") is conv_path
    assert library_issue("heuristic") is None
    names = strategy_names()
    assert names[: len(STRATEGIES)] == list(STRATEGIES)  # isamap's own first, as `--help` lists
    assert "gemmini-default" in names[len(STRATEGIES) :]


def test_a_target_file_anywhere_finds_a_shipped_baseline(tmp_path: Path) -> None:
    # a fresh process that never loads the shipped gemmini: the copy alone finds its baseline
    path = _with_baseline(tmp_path / "mine", "mine", "gemmini-default")
    code = (
        "import sys, isamap\n"
        f"t = isamap.load_target({str(path)!r})\n"
        "assert 'isamap.targets.gemmini' in sys.modules\n"
        "print(t.name, t.baseline_schedule)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["gemmini", "gemmini-default"]


def test_an_unknown_baseline_is_one_error_at_the_target_files_line(tmp_path: Path) -> None:
    path = _with_baseline(tmp_path, "chip", "acme-default")
    with pytest.raises(IsamapError) as err:
        isamap.load_target(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{BASELINE_LINE}:1: baseline_schedule: unknown schedule")
    assert "'acme-default'" in text and "gemmini-default" in text  # the known names, listed
    result = CliRunner().invoke(cli, ["targets", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"isamap: error: {text}"]


def test_python_beside_a_users_target_file_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a folder laid out like a shipped target with a baseline package, importable even: loading
    # its file by path reads data only, so its baseline name stays unknown
    folder = tmp_path / "acme"
    path = _with_baseline(folder, "acme", "acme-default")
    marker = tmp_path / "imported"
    payload = (
        f"open({str(marker)!r}, 'w').close()\n"
        "from isamap.schedule.registry import register_strategy\n"
        "from isamap.schedule.strategies import heuristic\n"
        "register_strategy('acme-default', heuristic)\n"
    )
    for name in ("__init__.py", "acme.py", "baseline.py"):
        (folder / name).write_text(payload)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(folder)
    with pytest.raises(IsamapError, match=r"unknown schedule strategy 'acme-default'"):
        isamap.load_target(str(path))
    assert CliRunner().invoke(cli, ["targets", str(path)]).exit_code == 2
    assert not marker.exists()
    assert "acme" not in sys.modules and "acme-default" not in strategy_names()


def test_a_name_is_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_LIBRARIES", dict(registry._LIBRARIES))
    with pytest.raises(IsamapError, match="'heuristic' is already registered"):
        register_strategy("heuristic", library_schedule)
    with pytest.raises(IsamapError, match="'gemmini-default' is already registered"):
        register_strategy("gemmini-default", heuristic)
    register_strategy("gemmini-default", library_schedule, issue=conv_path)  # the same: no-op
    register_strategy("mine", heuristic)
    assert strategy("mine") is heuristic and library_issue("mine") is None

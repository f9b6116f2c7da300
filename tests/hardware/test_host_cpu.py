"""The CPU targets' keys, feature detection and the `host` alias."""

from __future__ import annotations

from pathlib import Path

import pytest

import isamap
from isamap.hardware import host_cpu
from isamap.hardware.target_file import target_path


def _features(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    monkeypatch.setattr(host_cpu, "cpu_features", lambda: frozenset(flags))


@pytest.mark.parametrize(
    ("flags", "best"),
    [
        (("avx512f", "avx512dq", "avx512vl", "avx2", "fma", "sse2"), "host-avx512"),
        (("avx2", "fma", "sse2"), "host-avx2"),
        (("avx512f", "sse2"), "host-generic"),  # AVX-512 without AVX2/FMA: no intrinsics family
        ((), "host-generic"),
    ],
)
def test_host_is_the_best_target_this_cpu_runs(
    monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...], best: str
) -> None:
    _features(monkeypatch, *flags)
    assert host_cpu.host_target_name() == best
    assert isamap.load_target("host").name == best


def test_this_cpu_is_read() -> None:
    features = host_cpu.cpu_features()
    assert isinstance(features, frozenset)
    name = host_cpu.host_target_name()
    assert not host_cpu.missing_features(isamap.load_target(name).cpu_features)


def test_cpu_targets_name_their_family() -> None:
    families = {isamap.load_target(n).codegen for n in ("host-avx512", "host-avx2", "host-generic")}
    assert families == {"avx512", "avx2", "c"}
    assert isamap.load_target("gemmini").codegen is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('codegen = "avx2"', 'codegen = "sse9"', "'codegen' must be one of avx512, avx2, c"),
        ('cpu_features = ["avx2", "fma"]', "cpu_features = 3", "must be a list of strings"),
        ('cpu_features = ["avx2", "fma"]', 'cpu_features = ["a-b"]', "bad CPU feature name"),
    ],
)
def test_bad_cpu_keys_are_located(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = target_path("host-avx2").read_text()
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(isamap.IsamapError) as err:
        isamap.load_target(str(path))
    line = text[: text.index(old)].count("\n") + 1
    assert err.value.loc is not None and err.value.loc.line == line
    assert message in str(err.value)


def test_cpu_features_need_a_codegen_family(tmp_path: Path) -> None:
    text = target_path("host-avx2").read_text()
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("codegen")))
    with pytest.raises(isamap.IsamapError, match="needs a 'codegen' family"):
        isamap.load_target(str(path))

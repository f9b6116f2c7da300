"""The C toolchain: the compiler from CC or PATH, one clear error line without one, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from isamap.codegen.toolchain import BuildError, build, cache_dir, find_compiler

SOURCE = "int answer(void) { return 42; }\n"


def test_cc_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "cc -Wall")
    assert find_compiler() == ["cc", "-Wall"]


@pytest.mark.parametrize("cc", ["/nonexistent/cc", None])
def test_no_compiler_is_one_line_naming_cc(monkeypatch: pytest.MonkeyPatch, cc: str | None) -> None:
    if cc is None:
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", "/nonexistent")
    else:
        monkeypatch.setenv("CC", cc)
    with pytest.raises(BuildError) as err:
        build(SOURCE, ("-O1",))
    message = str(err.value)
    assert "\n" not in message and "set CC" in message


def test_objects_are_cached_by_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ISAMAP_CACHE_DIR", str(tmp_path))
    first = build(SOURCE, ("-O1",))
    assert not first.cached and first.path.parent == tmp_path
    assert first.library.answer() == 42
    again = build(SOURCE, ("-O1",))
    assert again.cached and again.path == first.path
    other = build(SOURCE.replace("42", "43"), ("-O1",))
    assert other.path != first.path and other.library.answer() == 43


def test_the_cache_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ISAMAP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "isamap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "isamap"


def test_a_compile_error_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ISAMAP_CACHE_DIR", str(tmp_path))
    with pytest.raises(BuildError) as err:
        build("int broken(void) { return }\n", ("-O1",))
    assert "failed on emitted code" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.so"))


PRELUDE = "#include <math.h>\nstatic inline int twice(int x) { return 2 * x; }\n"


def test_the_prelude_is_precompiled_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A source starting (after its comment line) with the prelude includes it from the cache,
    where it is compiled once per compiler and options; a source that does not start with it
    is compiled as it is."""
    monkeypatch.setenv("ISAMAP_CACHE_DIR", str(tmp_path))
    body = "int answer(void) { return twice(21); }\n"
    first = build(f"/* one */\n{PRELUDE}{body}", ("-O1",), prelude=PRELUDE)
    assert first.library.answer() == 42
    (header,) = tmp_path.glob("isamap-prelude-*.h")
    assert header.read_text() == PRELUDE and header.with_name(header.name + ".gch").is_file()
    second = build(f"/* two */\n{PRELUDE}{body.replace('21', '4')}", ("-O1",), prelude=PRELUDE)
    assert second.library.answer() == 8 and len(list(tmp_path.glob("isamap-prelude-*"))) == 2
    other = build(f"/* three */\n{SOURCE}", ("-O1",), prelude=PRELUDE)
    assert other.library.answer() == 42 and len(list(tmp_path.glob("isamap-prelude-*"))) == 2
    build(f"/* four */\n{PRELUDE}{body}", ("-O2",), prelude=PRELUDE)  # other options: another
    assert len(list(tmp_path.glob("isamap-prelude-*.gch"))) == 2

"""Errors that carry a source location, so every bad input reads as one `file:line:col` line."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IsamapError", "SourceLoc"]


@dataclass(frozen=True)
class SourceLoc:
    """Where something came from: a file (or `<string>`), a 1-based line and an optional column."""

    file: str = "<string>"
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        if self.col <= 0:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


class IsamapError(Exception):
    """Any error caused by user input (kernel, target, rule file, shapes); printed as one line."""

    def __init__(self, message: str, loc: SourceLoc | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def __str__(self) -> str:
        if self.loc is None:
            return self.message
        return f"{self.loc}: {self.message}"

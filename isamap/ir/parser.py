"""Parser for `*.kernel` files: a hand-written tokenizer and a recursive-descent parser.

One declaration or statement per line; `#` starts a comment. See `parse_kernel` for the syntax.
"""

from __future__ import annotations

import math
import os
import string
from dataclasses import dataclass
from pathlib import Path

from isamap.ir.errors import IsamapError, SourceLoc
from isamap.ir.kernel import (
    Access,
    Affine,
    Binary,
    Const,
    Expr,
    Kernel,
    Statement,
    TensorDecl,
    Unary,
)
from isamap.ir.ops import CALL_FUNCTIONS
from isamap.ir.shapes import DTYPES, MAX_ELEMENTS, check_kernel

__all__ = ["MAX_INT", "decode_utf8", "load_kernel", "parse_kernel"]

_PUNCT = ("+=", "[", "]", "(", ")", ",", ":", "+", "-", "*", "/", "=")
_DIGITS = frozenset(string.digits)
_NAME_START = frozenset(string.ascii_letters + "_")
_NAME_CHARS = _NAME_START | _DIGITS
#: The largest integer literal: no dimension, padding or index offset can usefully be larger.
MAX_INT = MAX_ELEMENTS


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "int", "float", "newline", "eof", or the punctuation itself
    text: str
    line: int
    col: int


def _lines(text: str) -> list[str]:
    """Lines as editors count them: split at \n only (a form feed or U+2028 is white space)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _tokenize(text: str, filename: str) -> list[_Token]:
    tokens: list[_Token] = []
    for lineno, line in enumerate(_lines(text), start=1):
        pos = 0
        while pos < len(line):
            ch = line[pos]
            col = pos + 1
            if ch == "#":
                break
            if ch.isspace():
                pos += 1
            elif ch in _NAME_START:
                end = pos
                while end < len(line) and line[end] in _NAME_CHARS:
                    end += 1
                tokens.append(_Token("name", line[pos:end], lineno, col))
                pos = end
            elif ch in _DIGITS or (ch == "." and line[pos + 1 : pos + 2] in _DIGITS):
                end, kind = _scan_number(line, pos)
                tok = _Token(kind, line[pos:end], lineno, col)
                _check_number(tok, filename)
                tokens.append(tok)
                pos = end
            else:
                punct = next((p for p in _PUNCT if line.startswith(p, pos)), None)
                if punct is None:
                    raise IsamapError(
                        f"unexpected character {ch!r}", SourceLoc(filename, lineno, col)
                    )
                tokens.append(_Token(punct, punct, lineno, col))
                pos += len(punct)
        tokens.append(_Token("newline", "", lineno, len(line) + 1))
    last = len(_lines(text))
    tokens.append(_Token("eof", "", last + 1, 1))
    return tokens


def _check_number(tok: _Token, filename: str) -> None:
    """An integer must be at most MAX_INT (shapes, padding and index offsets are far smaller),
    and a float a finite f64: `1e999` or a 400-digit literal is refused, not made infinite."""
    where = SourceLoc(filename, tok.line, tok.col)
    shown = tok.text if len(tok.text) <= 24 else tok.text[:20] + "..."
    if tok.kind == "int":
        if len(tok.text) > len(str(MAX_INT)) or int(tok.text) > MAX_INT:
            raise IsamapError(f"integer {shown} is too large (at most 2**48)", where)
    elif not math.isfinite(float(tok.text)):
        raise IsamapError(f"number {shown} is too large for a 64-bit float", where)


def _scan_number(line: str, pos: int) -> tuple[int, str]:
    """End of the number starting at `pos` and its kind (`int` or `float`)."""
    end = pos
    kind = "int"
    while end < len(line) and line[end] in _DIGITS:
        end += 1
    if end < len(line) and line[end] == ".":
        kind = "float"
        end += 1
        while end < len(line) and line[end] in _DIGITS:
            end += 1
    if end < len(line) and line[end] in "eE":
        exp = end + 1
        if exp < len(line) and line[exp] in "+-":
            exp += 1
        if exp < len(line) and line[exp] in _DIGITS:
            kind = "float"
            end = exp
            while end < len(line) and line[end] in _DIGITS:
                end += 1
    return end, kind


class _LinearForm:
    """An index expression while it is parsed: `sum coef * index + const`, in first-seen order."""

    def __init__(self, terms: dict[str, int] | None = None, const: int = 0) -> None:
        self.terms = dict(terms or {})
        self.const = const

    def add(self, other: _LinearForm, sign: int) -> _LinearForm:
        out = _LinearForm(self.terms, self.const + sign * other.const)
        for n, c in other.terms.items():
            out.terms[n] = out.terms.get(n, 0) + sign * c
        return out

    def scale(self, k: int) -> _LinearForm:
        return _LinearForm({n: c * k for n, c in self.terms.items()}, self.const * k)

    def affine(self) -> Affine:
        return Affine(tuple((n, c) for n, c in self.terms.items() if c != 0), self.const)


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.tokens = _tokenize(text, filename)
        self.pos = 0
        self.tensors: dict[str, TensorDecl] = {}
        self.statements: list[Statement] = []

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        tok = self.peek()
        self.pos += 1
        return tok

    def loc(self, tok: _Token) -> SourceLoc:
        return SourceLoc(self.filename, tok.line, tok.col)

    def error(self, message: str, tok: _Token) -> IsamapError:
        return IsamapError(message, self.loc(tok))

    def expect(self, kind: str, what: str) -> _Token:
        tok = self.peek()
        if tok.kind != kind:
            raise self.error(f"expected {what}, found {_describe(tok)}", tok)
        return self.next()

    # -- lines ---------------------------------------------------------------------------------
    def parse(self) -> None:
        while self.peek().kind != "eof":
            tok = self.peek()
            if tok.kind == "newline":
                self.next()
                continue
            if tok.kind == "name" and tok.text == "tensor" and self.peek(1).kind == "name":
                self.declaration()
            elif tok.kind == "name":
                self.statements.append(self.statement())
            else:
                raise self.error(
                    f"expected a declaration or a statement, found {_describe(tok)}", tok
                )
            self.expect("newline", "end of line")

    def declaration(self) -> None:
        self.next()  # `tensor`
        name_tok = self.expect("name", "a tensor name")
        name = name_tok.text
        if name in self.tensors:
            first = self.tensors[name].loc
            raise self.error(f"tensor {name} is already declared at {first}", name_tok)
        if any(name == s.target or name in _reads(s) for s in self.statements):
            raise self.error(f"declare {name} before the first statement that uses it", name_tok)
        self.expect("[", f"'[' after tensor {name}")
        shape: list[int] = []
        while self.peek().kind != "]":
            if shape:
                self.expect(",", "',' or ']'")
            tok = self.peek()
            if tok.kind == "-" or (tok.kind == "int" and int(tok.text) == 0):
                raise self.error("dimension must be a positive integer", tok)
            shape.append(int(self.expect("int", "a dimension (a positive integer)").text))
        self.next()
        dtype = "f32"
        if self.peek().kind == "name" and self.peek().text != "pad":
            tok = self.next()
            if tok.text not in DTYPES:
                raise self.error(
                    f"unknown dtype '{tok.text}' (expected one of {', '.join(DTYPES)})", tok
                )
            dtype = tok.text
        padding: tuple[tuple[int, int], ...] = ()
        if self.peek().kind == "name" and self.peek().text == "pad":
            padding = self.padding(len(shape))
        loc = self.loc(name_tok)
        self.tensors[name] = TensorDecl(name, tuple(shape), dtype, padding, loc)

    def padding(self, rank: int) -> tuple[tuple[int, int], ...]:
        pad_tok = self.next()
        self.expect("(", "'(' after pad")
        pads: list[tuple[int, int]] = []
        while self.peek().kind != ")":
            if pads:
                self.expect(",", "',' or ')'")
            if self.peek().kind == "-":
                raise self.error("padding must not be negative", self.peek())
            lo = int(self.expect("int", "a padding amount (an integer)").text)
            hi = lo
            if self.peek().kind == ":":
                self.next()
                if self.peek().kind == "-":
                    raise self.error("padding must not be negative", self.peek())
                hi = int(self.expect("int", "a padding amount after ':'").text)
            pads.append((lo, hi))
        self.next()
        if len(pads) != rank:
            raise self.error(f"pad(...) needs {rank} entries, one per dimension", pad_tok)
        return tuple(pads)

    def statement(self) -> Statement:
        target = self.next()
        self.expect("[", f"'[' after {target.text}")
        indices: list[str] = []
        while self.peek().kind != "]":
            if indices:
                self.expect(",", "',' or ']'")
            tok = self.peek()
            if tok.kind in ("newline", "eof", "+=", "="):
                raise self.error("expected ']'", tok)
            after = self.peek(1)
            if tok.kind == "name" and after.kind in ("newline", "eof", "+=", "="):
                raise self.error("expected ']'", after)
            if tok.kind != "name" or after.kind not in (",", "]"):
                raise self.error("output indices must be bare index names", tok)
            if tok.text in indices:
                raise self.error(f"output index '{tok.text}' appears twice", tok)
            indices.append(self.next().text)
        self.next()
        op = self.peek()
        reduce = "+"
        if op.kind == "name" and op.text == "max" and self.peek(1).kind == "=":
            self.next()  # `max=`: a max-reduction over the indices only on the right
            reduce = "max"
        elif op.kind not in ("+=", "="):
            raise self.error(f"expected '+=' or '=' (or 'max='), found {_describe(op)}", op)
        self.next()
        expr = self.expr()
        accumulate = op.kind == "+=" or reduce == "max"
        loc = self.loc(target)
        return Statement(target.text, tuple(indices), accumulate, expr, loc, reduce)

    # -- expressions ---------------------------------------------------------------------------
    def expr(self) -> Expr:
        lhs = self.term()
        while self.peek().kind in ("+", "-"):
            op = self.next().kind
            lhs = Binary(op, lhs, self.term())
        return lhs

    def term(self) -> Expr:
        lhs = self.unary()
        while self.peek().kind in ("*", "/"):
            op = self.next().kind
            lhs = Binary(op, lhs, self.unary())
        return lhs

    def unary(self) -> Expr:
        if self.peek().kind == "-":
            self.next()
            if self.peek().kind in ("int", "float"):
                return Const(-float(self.next().text))
            return Unary("neg", self.unary())
        return self.primary()

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind in ("int", "float"):
            self.next()
            return Const(float(tok.text))
        if tok.kind == "(":
            self.next()
            inner = self.expr()
            self.expect(")", "')'")
            return inner
        if tok.kind != "name":
            raise self.error(f"expected an expression, found {_describe(tok)}", tok)
        self.next()
        if self.peek().kind == "(":
            return self.call(tok)
        if self.peek().kind != "[":
            raise self.error(
                f"expected '[' after tensor {tok.text} (a scalar is written {tok.text}[])",
                self.peek(),
            )
        return self.access(tok)

    def call(self, name: _Token) -> Expr:
        """`f(x)` or `f(x, y)`: a function of `ir/ops.py` written as a call."""
        op = CALL_FUNCTIONS.get(name.text)
        if op is None:
            raise self.error(
                f"unknown function '{name.text}' (expected {', '.join(CALL_FUNCTIONS)})", name
            )
        self.next()  # `(`
        args = [self.expr()]
        while self.peek().kind == ",":
            self.next()
            args.append(self.expr())
        closing = self.peek()
        self.expect(")", f"')' closing {name.text}(")
        if len(args) != op.arity:
            raise self.error(
                f"{name.text}() takes {op.arity} argument{'s' if op.arity > 1 else ''}, "
                f"given {len(args)}",
                closing,
            )
        return Unary(op.name, args[0]) if op.arity == 1 else Binary(op.name, args[0], args[1])

    def access(self, name: _Token) -> Access:
        self.next()  # `[`
        indices: list[Affine] = []
        while self.peek().kind != "]":
            if indices:
                if self.peek().kind in ("newline", "eof"):
                    raise self.error("expected ']'", self.peek())
                self.expect(",", "',' or ']'")
            indices.append(self.index_expr().affine())
        self.next()
        return Access(name.text, tuple(indices), self.loc(name))

    def index_expr(self) -> _LinearForm:
        form = self.index_term()
        while self.peek().kind in ("+", "-"):
            sign = 1 if self.next().kind == "+" else -1
            form = form.add(self.index_term(), sign)
        return form

    def index_term(self) -> _LinearForm:
        form = self.index_unary()
        while self.peek().kind == "*":
            star = self.next()
            rhs = self.index_unary()
            if form.terms and rhs.terms:
                raise self.error("index expression is not affine (index times index)", star)
            form = rhs.scale(form.const) if not form.terms else form.scale(rhs.const)
        return form

    def index_unary(self) -> _LinearForm:
        if self.peek().kind == "-":
            self.next()
            return self.index_unary().scale(-1)
        tok = self.peek()
        if tok.kind == "int":
            self.next()
            return _LinearForm({}, int(tok.text))
        if tok.kind == "name":
            self.next()
            if self.peek().kind in ("(", "["):
                raise self.error("index expressions may use only indices and integers", tok)
            return _LinearForm({tok.text: 1})
        if tok.kind == "(":
            self.next()
            inner = self.index_expr()
            self.expect(")", "')'")
            return inner
        if tok.kind == "float":
            raise self.error("index expressions use integers only", tok)
        if tok.kind in ("newline", "eof"):
            raise self.error("expected ']'", tok)
        raise self.error(f"expected an index expression, found {_describe(tok)}", tok)


def _reads(stmt: Statement) -> set[str]:
    return {a.tensor for a in stmt.accesses()}


def _describe(tok: _Token) -> str:
    if tok.kind == "newline":
        return "end of line"
    if tok.kind == "eof":
        return "end of file"
    return f"'{tok.text}'"


def parse_kernel(text: str, filename: str = "<string>", name: str | None = None) -> Kernel:
    """Parse and check kernel text.

    Syntax, one item per line (`#` starts a comment):

        tensor X[1, 8, 12, 12] f32 pad(0, 0, 1:1, 1)   # element type (ir/dtypes.py), default f32
        tensor s[] f32                                   # a scalar
        O[n, k, h, w] += X[n, c, 2*h + r - 1, 2*w + s - 1] * W[k, c, r, s]
        Z[b, j] = sigmoid(G[b, j]) * 0.5 + exp(-U[b, j])

    `pad(...)` gives zero padding per dimension, `lo:hi` or `p` for `p:p`; a padded dimension may be
    read from `-lo` to `size - 1 + hi`. Index expressions are affine with integer coefficients.

    Args:
        text: the kernel source.
        filename: used in error locations and as the default name.
        name: the kernel's name; defaults to the file stem, or `kernel`.
    """
    if not isinstance(text, str):
        hint = " (decode it first, or use isamap.load_kernel)" if isinstance(text, bytes) else ""
        raise IsamapError(
            f"parse_kernel: expected kernel text (str){hint}, not {type(text).__name__}"
        )
    if not isinstance(filename, str) or not (name is None or isinstance(name, str)):
        raise IsamapError("parse_kernel: filename and name must be strings")
    parser = _Parser(text, filename)
    if name is None:
        name = Path(filename).stem if filename != "<string>" else "kernel"
    try:
        parser.parse()
        return check_kernel(name, parser.tensors, tuple(parser.statements), filename)
    except RecursionError:  # expression trees are walked recursively; depth follows nesting
        raise IsamapError("expression nested too deeply", parser.loc(parser.peek())) from None


def load_kernel(path: str | os.PathLike[str]) -> Kernel:
    """Read and parse a `*.kernel` file (UTF-8, a byte-order mark allowed); the kernel is named
    after the file's stem."""
    if not isinstance(path, str | os.PathLike):
        raise IsamapError(f"load_kernel: expected a path, not {type(path).__name__}")
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IsamapError(f"cannot read kernel file: {exc.strerror}", SourceLoc(str(p))) from None
    return parse_kernel(decode_utf8(data, str(p), "kernel file"), str(p), p.stem)


def decode_utf8(data: bytes, filename: str, what: str) -> str:
    """`data` as UTF-8 text (a leading byte-order mark dropped); IsamapError at the line and
    column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start
        line = data.count(b"\n", 0, offset) + 1
        col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise IsamapError(
            f"{what} is not UTF-8 text (byte 0x{data[offset]:02x})", SourceLoc(filename, line, col)
        ) from None

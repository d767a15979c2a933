"""containerd's filter grammar, ported rule for rule from its ``filters`` package
(``scanner.go``, ``parser.go``, ``quote.go``), so that a filter means here what it means
to containerd and is rejected where containerd rejects it, with the same message::

    selectors := selector ("," selector)*
    selector  := fieldpath [operator value]
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="
    value     := quoted | a run of printable characters other than "," and space
    quoted    := "..." with Go's escapes; after "~=" also /.../ and |...|

The empty string is the filter that matches everything. Spaces may stand before a
field, an operator or a value, nowhere else (containerd rejects ``a==b , c``).

Positions in messages count characters where containerd counts UTF-8 bytes; the two
agree for ASCII filters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["FilterSyntaxError", "Selector", "parse_filter"]

# token kinds, as in scanner.go (a plain character stands for itself)
_EOF: Final = -1
_QUOTED: Final = -2
_VALUE: Final = -3
_FIELD: Final = -4
_SEPARATOR: Final = -5
_OPERATOR: Final = -6
_ILLEGAL: Final = -7

Token = int | str

#: selector operators; PRESENT is a selector without operator (a presence test)
PRESENT: Final = "?"
EQUAL: Final = "=="
NOT_EQUAL: Final = "!="
MATCHES: Final = "~="

_LATIN1_SPACE = frozenset("\t\n\v\f\r \x85\xa0")
_WIDE_SPACE = frozenset("\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_FIELD_CHARS = frozenset("_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_QUOTES = frozenset('/|"')
_SIMPLE_ESCAPES = frozenset("abfnrtv\\")
_ESCAPE_BYTES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace``."""
    return ch in _LATIN1_SPACE if ch <= "\xff" else ch in _WIDE_SPACE


def _is_value_char(ch: str) -> bool:
    """scanner.go's ``isValueRune``: graphic, not a space, not ``,``."""
    if ch == ",":
        return False
    if ch < "\x7f":
        return ch > " "
    return unicodedata.category(ch)[0] in "LMNPS" and not _is_space(ch)


def _digit_value(ch: Token) -> int:
    if isinstance(ch, str) and len(ch) == 1:
        if "0" <= ch <= "9":
            return ord(ch) - 48
        if "a" <= ch <= "f":
            return ord(ch) - 87
        if "A" <= ch <= "F":
            return ord(ch) - 55
    return 16


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``fieldpath[operator value]`` of a filter.

    :ivar path: the field path, quoted components unquoted
    :ivar operator: ``?`` (presence), ``==``, ``!=`` or ``~=``
    :ivar value: the unquoted value (``""`` for a presence test)
    """

    path: tuple[str, ...]
    operator: str
    value: str


class FilterSyntaxError(ValueError):
    """A filter containerd's parser would reject; the message is containerd's."""


class _Scanner:
    """scanner.go: ``pos`` is where the current character starts, ``ppos`` past it."""

    __slots__ = ("err", "input", "pos", "ppos", "value")

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.ppos = 0
        self.value = False  # the next token is a value (after an operator)
        self.err = ""

    def next(self) -> Token:
        text = self.input
        if self.pos >= len(text):
            return _EOF
        self.pos = self.ppos
        if self.ppos >= len(text):
            return _EOF
        ch = text[self.ppos]
        self.ppos += 1
        if ch == "\ufffd" or "\ud800" <= ch <= "\udfff":  # utf8.RuneError
            self.error("rune error")
            return _ILLEGAL
        if ch == "\0":
            self.error("unexpected null")
            return _ILLEGAL
        return ch

    def peek(self) -> Token:
        pos, ppos = self.pos, self.ppos
        ch = self.next()
        self.pos, self.ppos = pos, ppos
        return ch

    def scan(self) -> tuple[int, Token, str]:
        ch = self.next()
        pos = self.pos
        while isinstance(ch, str):
            if ch in _QUOTES:
                ok = self._scan_quoted(ch)
                return pos, _QUOTED if ok else _ILLEGAL, self.input[pos : self.ppos]
            if ch in ",.":
                self.value = False
                return pos, _SEPARATOR, ch
            if ch in "=!~":
                self._scan_while(lambda c: c in "=!~")
                self.value = True
                return pos, _OPERATOR, self.input[pos : self.ppos]
            if _is_space(ch):
                ch = self.next()
                pos = self.pos
                continue
            if self.value:
                self._scan_while(_is_value_char)
                self.value = False
                return pos, _VALUE, self.input[pos : self.ppos]
            if ch in _FIELD_CHARS:
                self._scan_while(_FIELD_CHARS.__contains__)
                return pos, _FIELD, self.input[pos : self.ppos]
            return self.pos, ch, ""
        return self.pos, ch, ""

    def _scan_while(self, accept: Callable[[str], bool]) -> None:
        while True:
            ch = self.peek()
            if not isinstance(ch, str) or not accept(ch):
                return
            self.next()

    def _scan_quoted(self, quote: str) -> bool:
        illegal = False
        ch = self.next()
        while ch != quote:
            if ch == "\n" or not isinstance(ch, str):
                self.error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, legal = self._scan_escape(quote)
                illegal = illegal or not legal
            else:
                ch = self.next()
        return not illegal

    def _scan_escape(self, quote: str) -> tuple[Token, bool]:
        ch = self.next()
        if isinstance(ch, str) and (ch in _SIMPLE_ESCAPES or ch == quote):
            return self.next(), True
        if isinstance(ch, str) and "0" <= ch <= "7":
            return self._scan_digits(ch, 8, 3)
        if ch == "x":
            return self._scan_digits(self.next(), 16, 2)
        if ch == "u":
            return self._scan_digits(self.next(), 16, 4)
        if ch == "U":
            return self._scan_digits(self.next(), 16, 8)
        self.error("illegal escape sequence")
        return ch, False

    def _scan_digits(self, ch: Token, base: int, n: int) -> tuple[Token, bool]:
        while n > 0 and _digit_value(ch) < base:
            ch = self.next()
            n -= 1
        if n > 0:
            self.error("illegal numeric escape sequence")
            return ch, False
        return ch, True

    def error(self, message: str) -> None:
        if not self.err:
            self.err = message


class _QuoteSyntax(Exception):
    pass


def _unquote(s: str) -> str:
    """quote.go's ``unquote``: Go string-literal escapes, with ``/`` and ``|`` as quotes
    too. ``\\x`` and octal escapes give bytes; the result is decoded as UTF-8 and bytes
    that are not UTF-8 stay as lone surrogates (they can equal no valid string)."""
    if len(s) < 2 or s[0] != s[-1]:
        raise _QuoteSyntax
    quote, body = s[0], s[1:-1]
    if quote not in "\"'|/" or "\n" in body:
        raise _QuoteSyntax
    if "\\" not in body and quote not in body and quote != "'":
        return body
    out = bytearray()
    i, end = 0, len(body)
    while i < end:
        c = body[i]
        if c == quote:
            raise _QuoteSyntax
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= end:
            raise _QuoteSyntax
        c = body[i + 1]
        i += 2
        if c in _ESCAPE_BYTES:
            out.append(_ESCAPE_BYTES[c])
        elif c in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[c]
            digits = body[i : i + n]
            if len(digits) < n or any(_digit_value(d) > 15 for d in digits):
                raise _QuoteSyntax
            value = int(digits, 16)
            i += n
            if c == "x":
                out.append(value)
            elif value > 0x10FFFF:
                raise _QuoteSyntax
            else:  # utf8.EncodeRune writes U+FFFD for surrogates
                rune = "\ufffd" if 0xD800 <= value <= 0xDFFF else chr(value)
                out += rune.encode()
        elif "0" <= c <= "7":
            digits = body[i : i + 2]
            if len(digits) < 2 or not all("0" <= d <= "7" for d in digits):
                raise _QuoteSyntax
            value = int(c + digits, 8)
            i += 2
            if value > 255:
                raise _QuoteSyntax
            out.append(value)
        elif c in "'\"|/":
            if c != quote:
                raise _QuoteSyntax
            out.append(ord(c))
        else:
            raise _QuoteSyntax
        if quote == "'" and i < end:
            raise _QuoteSyntax
    return out.decode("utf-8", "surrogateescape")


def _token_text(tok: Token) -> str:
    return tok if isinstance(tok, str) else "\ufffd"


class _Parser:
    """parser.go."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.scanner = _Scanner(text)

    def parse(self) -> tuple[Selector, ...]:
        selectors = [self.selector()]
        while True:
            tok = self.scanner.peek()
            if tok == ",":
                pos, tok, _ = self.scanner.scan()
                if tok != _SEPARATOR:  # pragma: no cover - a "," always scans so
                    raise self.error(pos, "expected a separator")
                selectors.append(self.selector())
            elif tok == _EOF:
                return tuple(selectors)
            else:
                raise self.error(self.scanner.ppos, f"unexpected input: {_token_text(tok)}")

    def selector(self) -> Selector:
        path = self.fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return Selector(path, PRESENT, "")
        operator = self.operator()
        return Selector(path, operator, self.value(allow_alt_quotes=operator == MATCHES))

    def fieldpath(self) -> tuple[str, ...]:
        fields = [self.field()]
        while self.scanner.peek() == ".":
            pos, tok, _ = self.scanner.scan()
            if tok != _SEPARATOR:  # pragma: no cover - a "." always scans so
                raise self.error(pos, "expected a field separator (`.`)")
            fields.append(self.field())
        return tuple(fields)

    def field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok == _FIELD:
            return text
        if tok == _QUOTED:
            return self.unquote(pos, text, allow_alts=False)
        if tok == _ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected field or quoted")

    def operator(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok == _OPERATOR:
            if text in (EQUAL, NOT_EQUAL, MATCHES):
                return text
            raise self.error(pos, f'unsupported operator "{text}"')
        if tok == _ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')

    def value(self, allow_alt_quotes: bool) -> str:
        pos, tok, text = self.scanner.scan()
        if tok in (_VALUE, _FIELD):
            return text
        if tok == _QUOTED:
            return self.unquote(pos, text, allow_alt_quotes)
        if tok == _ILLEGAL:
            raise self.error(pos, self.scanner.err)
        raise self.error(pos, "expected value or quoted")

    def unquote(self, pos: int, text: str, allow_alts: bool) -> str:
        if not allow_alts and text[0] not in "'\"":
            raise self.error(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except _QuoteSyntax:
            raise self.error(pos, "unquoting failed: quote syntax error") from None

    def error(self, pos: int, message: str) -> FilterSyntaxError:
        text = self.input
        if pos < len(text):
            where = f"[{text[:pos]} >|{text[pos]}|< {text[pos + 1:]}]"
        else:
            where = f"[{text}]"
        return FilterSyntaxError(f"parse error: {where}: {message}")


def parse_filter(text: str) -> tuple[Selector, ...]:
    """The selectors of one filter, all of which must match; ``()`` for ``""``, the
    filter that matches everything.

    :raises FilterSyntaxError: with containerd's message for the same input
    """
    if text == "":
        return ()
    return _Parser(text).parse()

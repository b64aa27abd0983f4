"""Tenant-supplied regular expressions, run on RE2 (linear time in the input).

A ``match:`` pattern comes from a tenant file, and tenant files are written by city
administrators: untrusted input.  Python's ``re`` backtracks, so a pattern such as
``^(a+)+$`` takes exponential time on an 88-character group name and holds a worker
until it is killed.  RE2 (``google-re2``) never backtracks: matching is linear in the
length of the value, whatever the pattern.

The pattern keeps Python's syntax and meaning.  It is parsed by Python's own regular
expression parser (so syntax errors read as they always did), then written out in
RE2 syntax with Python's semantics made explicit:

* ``\\d``, ``\\w`` and ``\\s`` are Unicode classes as in Python (``\\w`` matches ``ä``);
  with the ``(?a)`` flag they are ASCII, as in Python;
* ``^``/``$`` without ``(?m)`` are the start of the value and its end (or just before a
  final newline); ``.`` does not match a newline unless ``(?s)``; ``\\Z`` is the end;
* ``(?i)`` scoped or global, lazy quantifiers, named groups ``(?P<name>...)`` are kept;
  group numbers are unchanged.

What cannot run in linear time is refused with a message saying so: backreferences
(``\\1``, ``(?P=name)``, ``(?(1)...)``), lookahead and lookbehind, atomic groups and
possessive quantifiers.  ``\\b``/``\\B`` are refused unless ``(?a)`` (RE2's word boundary
is ASCII-only, Python's is not).  Patterns are at most :data:`MAX_PATTERN_LENGTH`
characters and compile within RE2's memory budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from re2 import _re2

if TYPE_CHECKING:
    # typeshed has no stubs for re._constants / re._parser; since 3.11 sre_constants and
    # sre_parse are their deprecated aliases (``from re._parser import *``), the same API.
    import sre_constants as _c
    import sre_parse as _sre
else:
    try:  # Python 3.11+: the parser the re module itself uses
        from re import _constants as _c
        from re import _parser as _sre
    except ImportError:  # pragma: no cover - older layout
        import sre_constants as _c
        import sre_parse as _sre

#: Longer patterns are refused: no rule needs more, and it bounds parsing and compiling.
MAX_PATTERN_LENGTH = 1000
#: RE2's memory budget for one compiled pattern (its default is 8 MiB).
MAX_MEMORY = 8 << 20

_ASCII_WORD = "0-9A-Z_a-z"
_ASCII_DIGIT = "0-9"
_ASCII_SPACE = r"\t-\r\x{20}"
# Python's \w on str: str.isalnum() or '_'  (letters L*, numbers N*).
_UNI_WORD = r"\p{L}\p{N}_"
# Python's \d on str: decimal digits (Nd).
_UNI_DIGIT = r"\p{Nd}"
# Python's \s on str: exactly the characters for which str.isspace() is true.
_UNI_SPACE = (r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}"
              r"\x{205f}\x{3000}")

_NOT = {_c.CATEGORY_NOT_DIGIT: _c.CATEGORY_DIGIT, _c.CATEGORY_NOT_WORD: _c.CATEGORY_WORD,
        _c.CATEGORY_NOT_SPACE: _c.CATEGORY_SPACE}

_LINEAR = "tenant patterns run on a linear-time engine (RE2)"
_NULL_SPAN = (-1, -1)
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class RegexError(ValueError):
    """The pattern is not a regular expression RE2 can run; the message says why."""


class TenantRegex:
    """A compiled tenant pattern: ``search`` as :meth:`re.Pattern.search`, in linear time.

    ``pattern`` is the tenant's text, ``translated`` what RE2 runs, ``groupindex`` and
    ``groups`` as in :mod:`re`.  ``search`` returns ``None`` for a value RE2 cannot
    read (lone surrogates, which no genuine value contains) rather than raising.
    Matching calls RE2's compiled object directly on the UTF-8 bytes: the ``re2``
    module's ``re``-like wrapper costs several times more per call on the login path.
    """

    __slots__ = ("_names", "_re2", "groupindex", "groups", "pattern", "translated")

    def __init__(self, pattern: str, translated: str, compiled: Any):
        self.pattern = pattern
        self.translated = translated
        self._re2 = compiled
        self.groupindex: Mapping[str, int] = {name.decode("utf-8"): index
                                              for name, index in compiled.NamedCapturingGroups()}
        self.groups: int = compiled.NumberOfCapturingGroups()
        self._names = tuple(self.groupindex.items())

    def search(self, value: str) -> Found | None:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        spans = self._re2.Match(_UNANCHORED, data, 0, len(data))
        if spans[0] == _NULL_SPAN:
            return None
        return Found(self, data, spans)

    def __reduce__(self) -> tuple[Callable[[str], TenantRegex], tuple[str]]:
        return compile_tenant_regex, (self.pattern,)

    def __repr__(self) -> str:
        return f"TenantRegex({self.pattern!r})"


class Found:
    """One match: ``group`` and ``groupdict`` as on :class:`re.Match`."""

    __slots__ = ("_data", "_regex", "_spans")

    def __init__(self, regex: TenantRegex, data: bytes, spans: Sequence[tuple[int, int]]):
        self._regex = regex
        self._data = data
        self._spans = spans

    def group(self, key: int | str = 0) -> str | None:
        index = key if isinstance(key, int) else self._regex.groupindex[key]
        start, end = self._spans[index]
        return None if start < 0 else self._data[start:end].decode("utf-8")

    def groupdict(self) -> dict[str, str | None]:
        return {name: self.group(index) for name, index in self._regex._names}


def compile_tenant_regex(pattern: Any) -> TenantRegex:
    """Compile a tenant's pattern for RE2, or raise :class:`RegexError`."""
    if not isinstance(pattern, str) or not pattern:
        raise RegexError("a regular expression")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"a regular expression of at most {MAX_PATTERN_LENGTH} characters "
                         f"(this one has {len(pattern)})")
    try:
        parsed = _sre.parse(pattern, 0)
    except re.error as exc:
        raise RegexError(f"a regular expression ({exc})") from None
    except (RecursionError, OverflowError, ValueError, TypeError, AssertionError, IndexError) as exc:
        raise RegexError(f"a regular expression ({type(exc).__name__}: {exc})") from None
    names = {number: name for name, number in parsed.state.groupdict.items()}
    try:
        body = _Writer(names).sequence(parsed, parsed.state.flags)
    except RecursionError:
        raise RegexError("a regular expression with less nesting") from None
    translated = ("(?i)" if parsed.state.flags & _c.SRE_FLAG_IGNORECASE else "") + body
    options = _re2.RE2.Options()
    options.log_errors = False
    options.max_mem = MAX_MEMORY
    compiled = _re2.RE2(translated.encode("utf-8"), options)
    if not compiled.ok():
        reason = compiled.error()
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
        raise RegexError(f"a regular expression the linear-time engine (RE2) accepts ({reason})")
    regex = TenantRegex(pattern, translated, compiled)
    if regex.groups != parsed.state.groups - 1 or dict(regex.groupindex) != dict(parsed.state.groupdict):
        raise RegexError("a regular expression with plain groups")  # pragma: no cover - a translation bug
    return regex


class _Writer:
    """Writes a parsed Python pattern (``re._parser``'s tree) in RE2 syntax."""

    def __init__(self, names: Mapping[int, str]):
        self.names = names

    def sequence(self, items: _sre.SubPattern, flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items.data)

    def atom(self, items: _sre.SubPattern, flags: int) -> str:
        """``items`` as one unit a quantifier can follow."""
        text = self.sequence(items, flags)
        return text if len(items) == 1 and items[0][0] in (_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY,
                                                          _c.SUBPATTERN) else f"(?:{text})"

    def item(self, op: _c._NamedIntConstant, av: Any, flags: int) -> str:
        if op is _c.LITERAL:
            return _char(av)
        if op is _c.NOT_LITERAL:
            return f"[^{_char(av)}]"
        if op is _c.ANY:
            return r"(?s:.)" if flags & _c.SRE_FLAG_DOTALL else r"[^\n]"
        if op is _c.IN:
            return self.charset(av, flags)
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.sequence(alt, flags) for alt in av[1]) + ")"
        if op is _c.SUBPATTERN:
            group, add, delete, sub = av
            inner_flags = (flags | add) & ~delete
            inner = self.sequence(sub, inner_flags)
            case = ""
            if (add | delete) & _c.SRE_FLAG_IGNORECASE:
                case = "(?i)" if inner_flags & _c.SRE_FLAG_IGNORECASE else "(?-i)"
            if group is None:
                return f"(?:{case}{inner})"
            name = self.names.get(group)
            return f"(?P<{name}>{case}{inner})" if name else f"({case}{inner})"
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, sub = av
            if high is _c.MAXREPEAT or high == _c.MAXREPEAT:
                quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
            elif (low, high) == (0, 1):
                quantifier = "?"
            else:
                quantifier = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
            return self.atom(sub, flags) + quantifier + ("?" if op is _c.MIN_REPEAT else "")
        if op is _c.AT:
            return self.at(av, flags)
        if op is _c.GROUPREF or op is _c.GROUPREF_EXISTS:
            raise RegexError(f"a regular expression without backreferences (\\1, (?P=name), (?(1)...)): {_LINEAR}")
        if op is _c.ASSERT or op is _c.ASSERT_NOT:
            raise RegexError(f"a regular expression without lookahead or lookbehind ((?=, (?!, (?<=, (?<!): "
                             f"{_LINEAR}")
        if op.name in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
            raise RegexError(f"a regular expression without atomic groups or possessive quantifiers: {_LINEAR}")
        raise RegexError(f"a regular expression without {op.name.lower()}")  # pragma: no cover

    def at(self, code: _c._NamedIntConstant, flags: int) -> str:
        multiline = flags & _c.SRE_FLAG_MULTILINE
        if code is _c.AT_BEGINNING:
            return "(?m:^)" if multiline else r"\A"
        if code is _c.AT_BEGINNING_STRING:
            return r"\A"
        if code is _c.AT_END:
            return "(?m:$)" if multiline else r"(?:\n?\z)"
        if code is _c.AT_END_STRING:
            return r"\z"
        if code in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
            if flags & _c.SRE_FLAG_ASCII:
                return r"\b" if code is _c.AT_BOUNDARY else r"\B"
            raise RegexError("a regular expression without \\b or \\B (word boundaries are ASCII-only on the "
                             "linear-time engine; use ^, $ or a class such as [^\\w], or the (?a) flag)")
        raise RegexError(f"a regular expression without {code}")  # pragma: no cover

    def charset(self, items: list[tuple[_c._NamedIntConstant, Any]], flags: int) -> str:
        negate = bool(items) and items[0][0] is _c.NEGATE
        if negate:
            items = items[1:]
        ascii_only = bool(flags & _c.SRE_FLAG_ASCII)
        plain: list[str] = []
        negated_categories: list[str] = []
        for op, av in items:
            if op is _c.LITERAL:
                plain.append(_char(av))
            elif op is _c.RANGE:
                plain.append(f"{_char(av[0])}-{_char(av[1])}")
            elif op is _c.CATEGORY:
                if av in _NOT:
                    negated_categories.append(_category(_NOT[av], ascii_only))
                else:
                    plain.append(_category(av, ascii_only))
            else:  # pragma: no cover - the parser puts nothing else in a set
                raise RegexError(f"a regular expression without {op.name.lower()} in a set")
        if not negate:
            parts = ([f"[{''.join(plain)}]"] if plain else []) + [f"[^{c}]" for c in negated_categories]
            return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
        if not negated_categories:
            return f"[^{''.join(plain)}]"
        if len(negated_categories) == 1 and not plain:
            return f"[{negated_categories[0]}]"
        raise RegexError("a regular expression without \\W, \\D or \\S inside a negated set [^...] "
                         "(write the set of characters wanted instead)")


def _char(code: int) -> str:
    """One character, escaped for RE2 unless it is an ASCII letter or digit."""
    if code < 128 and chr(code).isalnum():
        return chr(code)
    if 0xD800 <= code <= 0xDFFF:
        raise RegexError("a regular expression without surrogate characters")
    return f"\\x{{{code:x}}}"


def _category(code: _c._NamedIntConstant, ascii_only: bool) -> str:
    if code is _c.CATEGORY_DIGIT:
        return _ASCII_DIGIT if ascii_only else _UNI_DIGIT
    if code is _c.CATEGORY_WORD:
        return _ASCII_WORD if ascii_only else _UNI_WORD
    if code is _c.CATEGORY_SPACE:
        return _ASCII_SPACE if ascii_only else _UNI_SPACE
    raise RegexError(f"a regular expression without {code}")  # pragma: no cover

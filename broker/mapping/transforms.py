"""Value transforms: the steps a rule applies to upstream values, compiled once.

Each transform is built (and validated) from configuration when the ruleset is
loaded, and is then a total function on strings: whatever an upstream IdP sends,
it returns a result, never raises.  Regular expressions are compiled here, once.

Upstream values are bounded before any transform sees them (:data:`MAX_VALUES`,
:data:`MAX_VALUE_LENGTH`).  A tenant's regular expression runs on the login path, on
RE2 (:mod:`broker.mapping.regex`): linear in the value's length whatever the pattern,
so no pattern can hold a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from broker.mapping.regex import RegexError, compile_tenant_regex

#: At most this many values of one upstream attribute are read (Entra sends at most
#: 200 groups in a token before switching to an overage claim).
MAX_VALUES = 1000
#: Longer values are skipped (and reported) rather than truncated: a cut value
#: would be a different value.
MAX_VALUE_LENGTH = 2048


class TransformError(ValueError):
    """A transform's configuration is invalid; ``key`` is the offending option."""

    def __init__(self, key: str, expected: str):
        self.key = key
        self.expected = expected
        super().__init__(f"{key}: expected {expected}")


class Split:
    """``split: ";"`` — one upstream string carrying several values.

    Azure AD, ADFS and Google often send a multi-valued attribute as one string
    joined with ``;``.  Parts are stripped; empty parts are dropped.
    """

    __slots__ = ("sep",)

    def __init__(self, sep: Any):
        if not isinstance(sep, str) or not 1 <= len(sep) <= 8:
            raise TransformError("split", "a separator of 1-8 characters, e.g. \";\"")
        self.sep = sep

    def __call__(self, value: str) -> list[str]:
        return [p for p in (part.strip() for part in value.split(self.sep)) if p]


class Match:
    """``match: <regex>`` — keep values the pattern finds (``re.search`` semantics, on RE2), and extract.

    :meth:`extract` returns the named group ``value``, else the first group, else
    the whole match.  :meth:`parts` returns the named groups (``role``, ``school``,
    ``group``) for role rules.  Non-matching values yield ``None``: a rule reading
    Entra ``groups`` sees many groups that are not about roles at all.
    """

    __slots__ = ("_value_group", "pattern")

    def __init__(self, pattern: Any, *, allowed_groups: Iterable[str] | None = None):
        try:
            self.pattern = compile_tenant_regex(pattern)
        except RegexError as exc:
            raise TransformError("match", str(exc)) from None
        names = set(self.pattern.groupindex)
        if allowed_groups is not None and not names <= set(allowed_groups):
            raise TransformError("match", "named groups among " + ", ".join(sorted(allowed_groups))
                                 + f", not {', '.join(sorted(names - set(allowed_groups)))}")
        self._value_group: int | str = "value" if "value" in names else (1 if self.pattern.groups else 0)

    def extract(self, value: str) -> str | None:
        m = self.pattern.search(value)
        if m is None:
            return None
        got = m.group(self._value_group)
        return got.strip() if got else None

    def parts(self, value: str) -> dict[str, str] | None:
        m = self.pattern.search(value)
        if m is None:
            return None
        return {k: v.strip() for k, v in m.groupdict().items() if v and v.strip()}


class Lookup:
    """``lookup: {key: value}`` — a table such as Entra group id → role.

    Keys match case-insensitively and ignoring surrounding space (group GUIDs and
    role names arrive in any case).  Values not in the table yield ``None``.
    ``convert`` validates and converts each table value when the rule is loaded;
    it raises :class:`TransformError` with the key path for a bad entry.
    """

    __slots__ = ("table",)

    def __init__(self, table: Any, *, convert: Callable[[str, Any], Any] | None = None):
        if not isinstance(table, Mapping) or not table:
            raise TransformError("lookup", "a non-empty mapping of upstream value to result")
        compiled: dict[str, Any] = {}
        for key, result in table.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool) or not str(key).strip():
                raise TransformError(f"lookup[{key!r}]", "a non-empty string key")
            skey = str(key)
            compiled[skey.strip().casefold()] = convert(skey, result) if convert else result
        self.table = compiled

    def get(self, value: str) -> Any:
        return self.table.get(value.strip().casefold())


def bounded(values: Any) -> tuple[list[str], int]:
    """The usable string values of one upstream attribute, and how many were skipped.

    Accepts what callers actually pass (a list of strings, a lone string, a tuple);
    non-strings, empty strings and over-long strings are skipped and counted.
    """
    if isinstance(values, str):
        values = (values,)
    elif not isinstance(values, (list, tuple)):
        return [], 1 if values is not None else 0
    skipped = max(0, len(values) - MAX_VALUES)
    if skipped:
        values = values[:MAX_VALUES]
    usable = [v for v in values if type(v) is str and len(v) <= MAX_VALUE_LENGTH]
    skipped += len(values) - len(usable)
    return [v for v in (u.strip() for u in usable) if v], skipped

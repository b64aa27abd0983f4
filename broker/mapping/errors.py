"""The two errors this package raises on bad input; anything else is a bug."""

from __future__ import annotations


class RuleError(ValueError):
    """A mapping configuration is invalid.

    ``str()`` reads ``<source>: <path>: expected <what>``, e.g.
    ``tenants/vantaa.yaml: identity_providers[0].mapping.roles[2].match: expected a
    regular expression (missing ), unterminated subpattern at position 0)``.
    """

    def __init__(self, source: str, path: str, expected: str):
        self.source = source
        self.path = path
        self.expected = expected
        super().__init__(f"{source or '<mapping>'}: {path}: expected {expected}")


class InputError(ValueError):
    """An upstream sample given to the simulator cannot be read (not JSON claims,
    an attribute map, or a SAML Response/Assertion)."""
